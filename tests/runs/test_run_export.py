"""Export round trips: .npz loads to the same result, CSV parses back to the same numbers, figures
render with every label, the HTML report holds every figure."""

import csv
import re
import struct

import numpy as np
import pytest

from msa_core import ModesResult, shapley_modes
from msa_core.errors import MSAInputError
from msa_core.runs import export
from msa_core.runs.export import figure, figure_bytes, publishable
from msa_core.runs.report import run_figures


@pytest.fixture(scope="module")
def result() -> ModesResult:
    """Exact modes of a game with values [2 samples, 3 classes] and 4 players (awkward floats)."""
    weights = np.random.default_rng(0).normal(size=(4, 2, 3)) / 3.0

    def game(coalitions):
        return np.einsum("cn,nbk->cbk", coalitions.astype(float), weights) ** 2

    res = shapley_modes(game, n_players=4, method="exact")
    res.stderr = np.abs(res.modes) / 7.0  # non-zero errors, so their column is checked too
    res.meta.update(model="toy", units="four", output="squares")
    return res


def test_npz_loads_back_to_the_same_result(result, tmp_path):
    loaded = ModesResult.load(export(result, tmp_path / "r.npz"))
    for key in ("modes", "stderr", "v_full", "v_empty"):
        assert np.array_equal(getattr(loaded, key), getattr(result, key))
    assert loaded.player_names == result.player_names and loaded.meta["output"] == "squares"


def test_csv_is_long_format_and_parses_back_to_the_same_numbers(result, tmp_path):
    with open(export(result, tmp_path / "r.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["unit", "output_0", "output_1", "value", "stderr"]
    assert len(rows) == result.modes.size
    modes, stderr = np.full(result.modes.shape, np.nan), np.full(result.modes.shape, np.nan)
    for row in rows:
        index = (result.player_names.index(row["unit"]), int(row["output_0"]), int(row["output_1"]))
        modes[index], stderr[index] = float(row["value"]), float(row["stderr"])
    assert np.array_equal(modes, result.modes) and np.array_equal(stderr, result.stderr)


def test_a_scalar_output_has_no_index_columns(tmp_path):
    res = shapley_modes(lambda c: c.sum(1).astype(float) ** 2, n_players=3, method="exact")
    rows = (export(res, tmp_path / "s.csv")).read_text().splitlines()
    assert rows == ["unit,value,stderr", "u0,3,0", "u1,3,0", "u2,3,0"]


def test_html_is_a_standalone_heatmap_centred_at_zero(result, tmp_path):
    html = export(result, tmp_path / "r.html").read_text()
    assert (
        "<html>" in html and "<script src=" not in html and len(html) > 1e6
    )  # plotly.js inlined: works offline
    assert '"type":"heatmap"' in html and '"zmid":0.0' in html


def test_html_report_holds_every_figure_and_the_runs_numbers(result, tmp_path):
    html = export(result, tmp_path / "r.html").read_text()
    figures = run_figures(result)
    assert html.count("Plotly.newPlot(") == len(figures) >= 4
    assert len(re.findall(r"plotly\.js v\d", html)) == 1  # plotly.js inlined once, not per figure
    for name in figures:
        assert f'<h3 class="figure">{name}</h3>' in html
    for fact in ("toy", "squares", "efficiency gap", "Gini".lower(), "hub", "units for 80%"):
        assert fact in html.lower()
    assert all(name in html for name in result.player_names)


def test_report_figures_follow_the_views_and_cluster_with_a_dendrogram():
    res, labels = (
        shapley_modes(
            lambda c: np.stack([c.astype(float), 2 * c.astype(float)], 1),
            n_players=5,
            method="exact",
        ),
        np.array([0, 1]),
    )
    figures = run_figures(res, labels)
    assert set(figures) == {
        "heatmap, sum",
        "heatmap, mean",
        "heatmap, class",
        "heatmap, clustered",
        "standard errors",
        "sorted contribution curve",
    }
    clustered = figures["heatmap, clustered"]
    assert (
        clustered.data[0].type == "heatmap" and len(clustered.data) == 1 + 4
    )  # 5 leaves: 4 merges


def svg_texts(svg: bytes) -> list[tuple[str, float, float]]:
    """(text, x, y) of each <text> element of an SVG, plus the translate() of its own transform."""
    import xml.etree.ElementTree as ElementTree

    texts = []
    for element in ElementTree.fromstring(svg).iter("{http://www.w3.org/2000/svg}text"):
        x, y = float(element.get("x", 0)), float(element.get("y", 0))
        moved = re.search(r"translate\(([-\d.]+),\s*([-\d.]+)\)", element.get("transform", ""))
        if moved:
            x, y = x + float(moved[1]), y + float(moved[2])
        texts.append(("".join(element.itertext()), x, y))
    return texts


@pytest.fixture(scope="module")
def many_units() -> ModesResult:
    """64 units with long names and 10 outputs: enough rows that an unsized figure skips labels."""
    rng = np.random.default_rng(1)
    modes = rng.normal(size=(64, 10))
    return ModesResult(
        modes,
        np.abs(modes) / 5,
        modes.sum(0),
        np.zeros(10),
        100,
        3,
        [f"block{i // 8}.layer.neuron_{i:02d}" for i in range(64)],
        meta={"model": "toy"},
    )


def test_svg_shows_every_unit_label_inside_the_canvas_and_the_title_above_the_plot(many_units):
    """Starts Chromium through kaleido (a few seconds)."""
    pytest.importorskip("kaleido")
    heatmap = figure(many_units)
    svg = figure_bytes(heatmap, "svg")
    width, height = publishable(heatmap).layout.width, publishable(heatmap).layout.height
    texts = svg_texts(svg)
    shown = {text: (x, y) for text, x, y in texts}
    assert set(many_units.player_names) <= set(shown)  # every unit, not every second one
    assert all(str(k) in shown for k in range(10))
    longest = max(len(name) for name in many_units.player_names)
    for (
        name
    ) in many_units.player_names:  # right-aligned tick labels: the left end is x - the text's width
        x, y = shown[name]
        assert x - 0.5 * 11 * longest >= 0 and 0 < y < height
    rows = sorted(shown[name][1] for name in many_units.player_names)
    assert min(np.diff(rows)) >= 11  # one 11 px label per row, no overlap
    title_y = next(y for text, _, y in texts if text.startswith("Shapley modes"))
    assert title_y < rows[0] - 11 and 0 < width


def test_png_is_sized_to_the_content_at_twice_the_pixels(many_units, tmp_path):
    """Starts Chromium once through kaleido (a few seconds)."""
    path = export(many_units, tmp_path / "r.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    laid_out = publishable(figure(many_units)).layout
    assert (width, height) == (2 * laid_out.width, 2 * laid_out.height)
    assert laid_out.height >= 64 * 16  # 16 px per unit row


def test_csv_export_reports_its_progress_per_unit(result, tmp_path):
    heard = []
    export(result, tmp_path / "r.csv", progress=lambda done, total: heard.append((done, total)))
    per_unit = result.modes[0].size
    assert heard == [((unit + 1) * per_unit, result.modes.size) for unit in range(result.n_players)]


def test_bad_formats_and_folders_are_clear_errors(result, tmp_path):
    with pytest.raises(
        MSAInputError, match="unknown export format 'xlsx'.*allowed: npz, csv, html, png"
    ):
        export(result, tmp_path / "r.xlsx")
    with pytest.raises(MSAInputError, match="unknown image format 'jpg'"):
        figure_bytes(figure(result), "jpg")
    with pytest.raises(MSAInputError, match="folder .* does not exist"):
        export(result, tmp_path / "missing" / "r.csv")

"""Export round trips: .npz loads to the same result, CSV parses back to the same numbers, figures render."""

import csv

import numpy as np
import pytest

from msa_core import ModesResult, shapley_modes
from msa_core.errors import MSAInputError
from msa_core.runs import export


@pytest.fixture(scope="module")
def result() -> ModesResult:
    """Exact modes of a game with values [2 samples, 3 classes] and 4 players (awkward floats included)."""
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
    assert "<html>" in html and "<script src=" not in html and len(html) > 1e6  # plotly.js inlined: works offline
    assert '"type":"heatmap"' in html and '"zmid":0.0' in html


def test_png_renders_with_the_system_chromium(result, tmp_path):
    """Starts Chromium once through kaleido (a few seconds)."""
    path = export(result, tmp_path / "r.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_bad_formats_and_folders_are_clear_errors(result, tmp_path):
    with pytest.raises(MSAInputError, match="unknown export format 'xlsx'.*allowed: npz, csv, html, png"):
        export(result, tmp_path / "r.xlsx")
    with pytest.raises(MSAInputError, match="folder .* does not exist"):
        export(result, tmp_path / "missing" / "r.csv")

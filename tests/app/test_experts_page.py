"""AppTest of the Experts page (study 2): empty store, a stored run's matrix, lesions, per-token
view.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from msa_core.analysis import study2
from msa_core.runs import RunRequest, RunStore, execute
from msa_core.zoo import moe

LANGUAGE_NAMES = [moe.LANGUAGE_NAMES[language] for language in moe.LANGUAGES]


def charts(app: AppTest) -> dict[str, list[dict]]:
    """Plotly traces by chart title."""
    found = {}
    for chart in app.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        found[spec["layout"]["title"]["text"]] = spec["data"]
    return found


def layer_grids(figures: dict[str, list[dict]], view: str) -> list[dict]:
    """The heatmaps of the language x expert figure of ``view``: one layer x expert grid each."""
    traces = figures[
        f"Language x expert {view} (log-prob per byte): one layer x unit grid per group"
    ]
    return [trace for trace in traces if trace["type"] == "heatmap"]


def grid_of(matrix: np.ndarray) -> np.ndarray:
    """``[languages, L0.E0 ... L3.E7]`` as ``[languages, layers, experts]``."""
    return matrix.reshape(len(matrix), 4, -1)


def array_of(value) -> np.ndarray:
    if isinstance(value, dict):  # plotly typed array
        import base64

        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")]) if shape else flat
    return np.array(value, dtype=float)


def test_empty_store_offers_a_small_run(cache_dir, open_page):
    app = open_page("pages/experts.py")
    assert any("No finished run" in info.value for info in app.info)
    assert any(b.label == "Run now" for b in app.button)
    assert not app.error


def reopened(open_page, patched, tab: str, *slow: str):
    """A new session of the Experts page opened on ``tab`` with study2's ``slow`` functions made to
    fail: what it shows was kept with the run."""
    for name in slow:
        patched.setattr(study2, name, lambda *args, **kwargs: pytest.fail("recomputed"))
    again = open_page("pages/experts.py")
    again.session_state["experts_tab"] = tab
    again.run()
    assert not again.exception and not again.error, [e.value for e in again.error]
    return again


def test_a_stored_run_shows_its_matrix_lesions_and_per_token_modes(
    cache_dir, open_page, monkeypatch
):
    """About 30 s on one core: the page lesions the real model (selective lesions with 10 greedy
    continuations, 66 removal-curve passes, 44 pruning passes) and runs 10 permutations on a typed
    text, each tab when opened."""
    stored = execute(
        RunRequest(
            moe.NAME,
            units="experts (all layers)",
            output="target_logprob",
            method="permutation",
            n_permutations=3,
        ),
        RunStore(cache_dir),
    )
    app = open_page("pages/experts.py")
    assert not app.error, [e.value for e in app.error]
    figures = charts(app)
    matrix = study2.language_matrix(stored, moe.game_inputs()[1].numpy(), 5)
    grids = layer_grids(figures, "contribution")  # one layer x expert grid per language
    np.testing.assert_allclose(
        np.stack([array_of(g["z"]) for g in grids]), grid_of(matrix), rtol=1e-6
    )
    assert grids[0]["y"] == ["L0", "L1", "L2", "L3"] and grids[0]["x"][:2] == ["E0", "E1"]
    assert [g["hovertemplate"].split("<br>")[0] for g in grids] == LANGUAGE_NAMES
    # the first render draws the open tab only: no lesion, removal or per-token work yet
    assert (
        not any(md.value.startswith("Greedy continuation") for md in app.markdown)
        and len(figures) == 3
    )

    app.radio(key="experts_view").set_value("selectivity").run()
    np.testing.assert_allclose(
        np.stack([array_of(g["z"]) for g in layer_grids(charts(app), "selectivity")]),
        grid_of(study2.selectivity(matrix)),
        rtol=1e-6,
    )

    app.session_state["experts_tab"] = "Selective lesion"
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    table = app.dataframe[0].value
    assert list(table["language"]) == LANGUAGE_NAMES and table["ratio"].notna().all()
    assert any(md.value.startswith("Greedy continuation, intact:") for md in app.markdown)
    prompt = next(md.value for md in app.markdown if md.value.startswith("Prompt:"))
    # bytes, not int64s, shown as plain text (every markup character escaped)
    shown = re.sub(r"\\(.)", r"\1", prompt.removeprefix("Prompt: "))
    assert shown == repr(moe.decode(moe.prompts()[0])) and "\x00" not in prompt
    assert not any(title.startswith("Language x expert") for title in charts(app))
    # kept with the run: a new session reads the lesions and continuations instead of computing
    fingerprint = stored.meta["fingerprint"]
    kept = RunStore(cache_dir).analysis(fingerprint, f"selective-lesions-k{study2.LESION_SIZE}")
    assert [item["language"] for item in kept["lesions"]] == list(range(len(LANGUAGE_NAMES)))
    with monkeypatch.context() as patched:
        again = reopened(
            open_page, patched, "Selective lesion", "selective_lesions", "greedy_continuation"
        )
        assert again.dataframe[0].value.equals(table)

    app.session_state["experts_tab"] = "Per-token contributions"
    app.run()
    tokens = charts(app)["Expert contribution to each next byte's log-prob"][0]
    np.testing.assert_allclose(array_of(tokens["z"]), stored.modes[:, 0], rtol=1e-6)
    sentence = app.selectbox(key="experts_sentence")
    first = moe.decode(moe.game_inputs()[0]["input_ids"][0])
    assert sentence.format_func(0) == f"English: {first}" and first.isprintable()
    app.radio(key="experts_source").set_value("your own text").run()
    assert not app.exception and not app.error
    tokens = charts(app)["Expert contribution to each next byte's log-prob"][0]
    assert tokens["x"][:4] == [
        "0:Z",
        "1:a",
        "2:·",
        "3:ż",
    ]  # "Zażółć ...": the first byte of "ż" shown as "·"

    app.session_state["experts_tab"] = "Removal and pruning"
    app.run()
    assert len(charts(app)["Removal curves"]) == 2
    app.toggle(key="experts_pruning_on").set_value(True).run()
    assert [t["name"] for t in charts(app)["Pruning: keep only k experts"]] == [
        "top-k by Shapley",
        "random k",
    ]
    # the curves are kept with the run too: a new session draws them without a lesioned pass
    curves = charts(app)["Removal curves"]
    with monkeypatch.context() as patched:
        again = reopened(open_page, patched, "Removal and pruning", "removal_curves", "pruning")
        again.toggle(key="experts_pruning_on").set_value(True).run()
        assert not again.exception and not again.error, [e.value for e in again.error]
        assert charts(again)["Removal curves"] == curves

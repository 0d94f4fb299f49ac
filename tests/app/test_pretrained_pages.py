"""The dashboard on the fetched all-MiniLM-L6-v2 (marked ``pretrained``: after ``python -m
msa_core.zoo.fetch minilm``): a run launched from the Run page finishes in the background worker,
and the Modes page shows its modes beside the sentence pairs it scored, each with its group.

EfficientNet-Lite0 has no such test: its smallest run (2 permutations of stage 0's 16 channels, 34
passes over its 20 photographs) takes about a minute on a busy 2-core machine."""

from __future__ import annotations

import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_pages import APP, array_of, plotly_data

from msa_core.paths import default_cache_dir
from msa_core.runs import RunStore

MINILM = "all-minilm-l6-v2"
FETCHED = default_cache_dir() / "models"  # read at import, before a test points the store away

pytestmark = pytest.mark.pretrained


@pytest.fixture
def store_with_minilm(cache_dir):
    """An empty run store whose model folder is the fetched models' (read only)."""
    if not (FETCHED / MINILM / "model.safetensors").exists():
        pytest.skip(f"{MINILM} is not fetched: python -m msa_core.zoo.fetch minilm")
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / "models").symlink_to(FETCHED, target_is_directory=True)
    return cache_dir


def test_a_minilm_run_from_the_run_page_shows_its_modes_beside_its_pairs(
    store_with_minilm, open_page
):
    """About 45 s on a 2-core machine at load 4 (90 s at load 10): the page probes the model, and
    the worker process imports torch and transformers, loads MiniLM, and plays
    3 permutations (regression-adjusted) of its 6 attention blocks on the 24 bundled pairs."""
    app = open_page("pages/run.py")
    app.selectbox(key="model").select(MINILM).run()
    app.selectbox(key="granularity").select("attention blocks").run()
    app.number_input(key="run_permutations").set_value(3)
    next(b for b in app.button if b.label == "Launch run").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    deadline = time.time() + 120
    while not RunStore(store_with_minilm).list() and time.time() < deadline:
        time.sleep(0.5)
    [entry] = RunStore(store_with_minilm).list()
    assert entry["request"]["model"] == MINILM and entry["request"]["units"] == "attention blocks"
    stored = RunStore(store_with_minilm).get(entry["fingerprint"])

    app = AppTest.from_file(APP, default_timeout=120).run()
    app.switch_page("pages/modes.py").run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    heatmap = plotly_data(app)[0]
    np.testing.assert_allclose(array_of(heatmap["z"]), stored.modes, rtol=1e-6)  # [6, 24 pairs]
    assert heatmap["y"] == stored.player_names == [f"L{i}.attention" for i in range(6)]
    [inputs] = [e for e in app.expander if e.label.startswith("The run's 24 inputs in 6 groups")]
    assert "animals" in inputs.label and "unrelated" in inputs.label
    table = inputs.dataframe[0].value
    assert table["group"].iloc[0] == "animals"
    assert table["input"].iloc[0].startswith("A: the cat is sleeping on the sofa.")

"""AppTest of every dashboard page: widgets, empty states, a run launched from the Run page, its
heatmap.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from msa_core.analysis.modes import view_of
from msa_core.runs import RunRequest, RunStore, execute
from msa_core.zoo import load_model

APP = str(Path(__file__).parents[2] / "app.py")
MODEL = "mlp-digits-h32-none-s0"
PAGES = (
    "pages/run.py",
    "pages/modes.py",
    "pages/compare.py",
    "pages/lesion_lab.py",
    "pages/export.py",
)


def plotly_data(app: AppTest, index: int = 0) -> list[dict]:
    """The traces of the page's ``index``-th plotly chart, as the browser receives them."""
    return json.loads(app.get("plotly_chart")[index].proto.spec)["data"]


def array_of(value) -> np.ndarray:
    """A plotly JSON array: a (nested) list, or a typed array ``{"dtype", "bdata", "shape"}``
    (base64).
    """
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")]) if shape else flat
    return np.array(value, dtype=float)


def test_home_page_explains_the_method_and_the_empty_store(cache_dir):
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert app.title[0].value == "MSA Dashboard"
    assert any("Shapley mode" in md.value for md in app.markdown)
    assert [m.value for m in app.metric if m.label.startswith("Finished runs")] == ["0"]


@pytest.mark.parametrize("page", PAGES[1:3] + PAGES[4:])
def test_pages_that_need_runs_explain_the_empty_store(cache_dir, page, open_page):
    app = open_page(page)
    assert any("No finished runs yet" in info.value for info in app.info)
    assert not app.error


def test_run_page_offers_every_choice_and_reads_hf_checkpoints(cache_dir, tmp_path, open_page):
    app = open_page("pages/run.py")
    assert MODEL in app.selectbox(key="model").options
    labels = {widget.label for widget in app.selectbox} | {
        widget.label for widget in app.number_input
    }
    assert {
        "Unit granularity",
        "Output (the game's value)",
        "Lesion",
        "Method",
        "Budget: permutations",
        "Seed",
    } <= labels
    app.selectbox(key="model").select(MODEL).run()
    assert any("32 units" in md.value and "hidden.n31" in md.value for md in app.markdown)
    app.selectbox(key="model").select("Local Hugging Face checkpoint…").run()
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    app.text_input[0].input(str(tmp_path / "ckpt")).run()  # config.json but no weights
    assert not app.exception
    assert any("safetensors" in e.value for e in app.error), [e.value for e in app.error]
    app.text_input[0].input(str(tmp_path / "missing")).run()
    assert "not a directory" in app.error[0].value
    transformers = pytest.importorskip("transformers")
    config = transformers.MixtralConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=32,
    )
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "tiny")
    app.text_input[0].input(str(tmp_path / "tiny")).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert app.selectbox(key="granularity").value == "experts (all layers)"
    assert any("8 units" in md.value and "L1.E3" in md.value for md in app.markdown)
    assert any(b.label == "Launch run" for b in app.button)


def test_a_run_launched_from_the_run_page_finishes_and_its_heatmap_is_the_stored_result(
    cache_dir, open_page
):
    """About 20 s: the run executes in a spawned worker process, which imports torch and the model
    first.
    """
    app = open_page("pages/run.py")
    app.selectbox(key="model").select(MODEL).run()
    app.number_input(key="run_permutations").set_value(8)
    next(b for b in app.button if b.label == "Launch run").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    deadline = time.time() + 60
    # reloads (AppTest draws app.py's sidebar on a first run only): the jobs panel reads the store
    while True:
        app = AppTest.from_file(APP, default_timeout=60).run()
        if (
            any(b.label == "Open in Shapley modes" for b in app.sidebar.button)
            or app.error
            or time.time() > deadline
        ):
            break
        time.sleep(0.5)
    assert not app.error, [e.value for e in app.error]
    assert any(b.label == "Open in Shapley modes" for b in app.sidebar.button)
    [entry] = RunStore(cache_dir).list()
    assert entry["request"]["model"] == MODEL and entry["request"]["n_permutations"] == 8

    app.switch_page("pages/modes.py").run()
    assert not app.exception
    stored = RunStore(cache_dir).get(entry["fingerprint"])
    heatmap = plotly_data(app)[0]
    # default view: sum over images
    np.testing.assert_allclose(array_of(heatmap["z"]), stored.modes.sum(1))
    assert heatmap["y"] == stored.player_names and heatmap["zmid"] == 0
    app.radio(key="modes_view").set_value("class").run()
    labels = load_model(MODEL).labels.numpy()
    np.testing.assert_allclose(
        array_of(plotly_data(app)[0]["z"]), view_of(stored, "class", labels).values
    )
    app.toggle(key="modes_stderr").set_value(True).run()
    np.testing.assert_allclose(
        array_of(plotly_data(app, 1)[0]["z"]), view_of(stored, "class", labels).stderr
    )
    assert {"Gini", "Units for 50%", "Units for 80%", "Units for 90%"} <= {
        m.label for m in app.metric
    }


def small_runs(cache_dir: Path, models: tuple[str, ...]) -> list[str]:
    store = RunStore(cache_dir)
    results = [execute(RunRequest(name, n_permutations=4), store) for name in models]
    return [res.meta["fingerprint"] for res in results]


def test_compare_and_export_pages_show_the_stored_runs(cache_dir, open_page):
    fingerprints = small_runs(cache_dir, (MODEL, "mlp-digits-h32-l1-s0"))
    app = open_page("pages/compare.py")
    assert set(app.multiselect(key="compare_runs").value) == set(fingerprints)
    curve, *heatmaps = plotly_data(app, 0), plotly_data(app, 1), plotly_data(app, 2)
    assert len(curve) == 2 and all(
        array_of(trace["y"])[-1] == pytest.approx(1.0) for trace in curve
    )
    zmax = {h[0]["zmax"] for h in heatmaps}
    assert len(zmax) == 1  # one colour scale
    assert zmax.pop() == pytest.approx(max(np.abs(array_of(h[0]["z"])).max() for h in heatmaps))
    concentration, seeds = app.dataframe  # one seed per setup: values without intervals, no test
    assert len(concentration.value) == 2 and seeds.value["seeds"].tolist() == ["0", "0"]

    app.switch_page("pages/export.py").run()
    assert not app.exception
    assert {b.label for b in app.get("download_button")} >= {
        ".npz (all arrays)",
        "CSV (long table)",
        "Standalone HTML of this figure",
    }


def test_lesion_lab_matches_a_hand_lesioned_forward_pass(cache_dir, open_page):
    app = open_page("pages/lesion_lab.py")
    app.selectbox(key="lesion_model").select(MODEL).run()
    pills = app.get("button_group")[0]
    lesioned = ["hidden.n0", "hidden.n3", "hidden.n7", "hidden.n12"]
    pills.set_value(lesioned).run()
    assert not app.exception

    loaded = load_model(MODEL)
    mask = torch.ones(32)
    mask[[0, 3, 7, 12]] = 0
    with torch.no_grad():
        logits = loaded.model.fc2(loaded.model.hidden(loaded.model.fc1(loaded.inputs)) * mask)
    expected = (logits.argmax(1) == loaded.labels).float().mean().item()
    shown = next(m.value for m in app.metric if m.label == "Accuracy, lesioned")
    assert shown == f"{expected:.1%}"
    intact = next(m.value for m in app.metric if m.label == "Accuracy, intact")
    assert intact != shown

    small_runs(cache_dir, (MODEL,))
    app.run()
    app.slider(key="lesion_k").set_value(6).run()
    assert not app.exception
    labels = [m.label for m in app.metric]
    assert {"Top 6 lesioned", "6 random lesioned", "Bottom 6 lesioned"} <= set(labels)


def test_lesion_lab_shows_a_generators_images_change(open_page):
    app = open_page("pages/lesion_lab.py")
    generators = [
        name for name in app.selectbox(key="lesion_model").options if name.startswith("gan-")
    ]
    if not generators:
        pytest.skip("no bundled generator")
    app.selectbox(key="lesion_model").select(generators[0]).run()
    assert [m.value for m in app.metric if m.label == "Mean |pixel change|"] == ["0.0000"]
    pills = app.get("button_group")[0]
    pills.set_value(list(pills.options[:3])).run()
    assert not app.exception and not app.error
    change = float(next(m.value for m in app.metric if m.label == "Mean |pixel change|"))
    assert change > 0
    assert len(app.get("image")) == 1


def test_lesion_lab_shows_a_language_models_log_probs_and_continuation_change(open_page):
    """About 15 s: each greedy continuation runs one forward pass per generated byte."""
    app = open_page("pages/lesion_lab.py")
    app.selectbox(key="lesion_model").select("moe-fortunes-5lang").run()
    # the first listed model may share a granularity name ("heads") with this one, which is kept
    app.selectbox(key="lesion_granularity").select("experts (all layers)").run()
    intact = next(m.value for m in app.metric if m.label == "Mean log-prob per byte, intact")
    assert next(m.value for m in app.metric if m.label == "Lesioned") == intact
    lesioned = ["L0.E1", "L0.E3", "L0.E7"]
    app.get("button_group")[0].set_value(lesioned).run()
    assert not app.exception and not app.error, [e.value for e in app.error]

    loaded = load_model("moe-fortunes-5lang")
    game = loaded.game("experts (all layers)", "target_logprob")
    keep = ~np.isin(game.player_names, lesioned)
    expected = game(np.stack([np.ones_like(keep), keep])).double().mean(dim=(1, 2))
    assert intact == f"{expected[0]:.3f}"
    assert next(m.value for m in app.metric if m.label == "Lesioned") == f"{expected[1]:.3f}"
    texts = {
        md.value.split(":", 1)[0]: md.value
        for md in app.markdown
        if md.value.startswith(("**Intact**", "**Lesioned**"))
    }
    assert set(texts) == {"**Intact**", "**Lesioned**"}
    assert texts["**Intact**"].split(":", 1)[1] != texts["**Lesioned**"].split(":", 1)[1]
    assert len(app.get("plotly_chart")) == 1

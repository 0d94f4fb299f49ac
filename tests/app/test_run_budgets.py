"""AppTest of launching from the Home and Run pages: the first suggestion opens the Run page set to
it,
impossible budgets are refused beside the form before launch, cached and failed repeats say so."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from msa_core.runs import RunRequest, RunStore, execute, fingerprint_of

APP = str(Path(__file__).parents[2] / "app.py")
MODEL = "mlp-digits-h32-none-s0"
WIDE_MODEL = "mlp-digits-h128-none-s0"  # 128 hidden neurons


def run_page(open_page, model: str = MODEL) -> AppTest:
    app = open_page("pages/run.py")
    app.selectbox(key="model").select(model).run()
    return app


def launch_button(app: AppTest):
    return next(b for b in app.button if b.label == "Launch run")


def test_the_first_suggestion_opens_the_run_page_set_to_it(cache_dir):
    app = AppTest.from_file(APP, default_timeout=60).run()
    first = app.button(key="suggestion-0")
    first.click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert app.selectbox(key="model").value == MODEL
    assert app.selectbox(key="run_output").value == "class_accuracy"
    assert app.number_input(key="run_permutations").value == 20
    assert any(
        md.value.startswith("**622 evaluations** of 32 units") for md in app.markdown
    )  # 2 + 20 x 31
    assert any("auto picked regression_adjusted" in md.value for md in app.markdown)  # says which
    assert any(
        "class_accuracy: the paper's game" in c.value for c in app.caption
    )  # the output in one line
    assert not launch_button(app).disabled


@pytest.mark.parametrize(
    "model, changes, message",
    [
        (MODEL, {"run_permutations": 0}, "the budget is 0 permutations: set at least 1"),
        (MODEL, {"run_evaluations": 1}, "at least 66"),
        (WIDE_MODEL, {"run_method": "exact"}, "N <= 20"),
        (WIDE_MODEL, {"run_permutations": 10**9}, "of memory"),
        # gradients: one backward pass per output number of an image (1,024): refused, not slow
        ("gan-digits-s0", {"run_method": "gradient"}, "per sample"),
        (MODEL, {"run_method": "gradient"}, "no gradients"),  # accuracy: argmax counts
    ],
)
def test_impossible_budgets_are_refused_beside_the_form_before_launch(
    cache_dir, open_page, model, changes, message
):
    app = run_page(open_page, model)
    for key, value in changes.items():
        widget = app.selectbox(key=key) if key == "run_method" else app.number_input(key=key)
        (widget.select(value) if key == "run_method" else widget.set_value(value)).run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert (
        len(errors) == 1 and errors[0].startswith("This budget cannot run") and message in errors[0]
    ), errors
    assert launch_button(app).disabled


def test_a_cached_repeat_says_so_and_a_failed_run_says_it_retries(cache_dir, open_page):
    store = RunStore(cache_dir)
    execute(RunRequest(MODEL, n_permutations=4), store)
    app = run_page(open_page)
    app.number_input(key="run_permutations").set_value(4).run()
    launch_button(app).click().run()
    assert any("already in the store" in s.value for s in app.success)

    failed = RunRequest(MODEL, n_permutations=5)
    fingerprint = fingerprint_of(failed)
    store.set_progress(fingerprint, state="failed", error="out of memory", request=failed.to_dict())
    app.number_input(key="run_permutations").set_value(5).run()
    launch_button(app).click().run()
    assert any(
        "failed before (out of memory)" in w.value and "retries" in w.value for w in app.warning
    )


def test_the_model_list_filters_by_family_size_and_regularisation(cache_dir):
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.error, [e.value for e in app.error]
    everything = app.dataframe[0].value
    assert {"gan", "mlp", "moe"} <= set(everything["family"])
    sizes = dict(zip(everything["model"], everything["size"], strict=True))
    assert sizes["gan-digits-s0"] == "64 / 32 / 16 / 1 channels"  # a size for every model
    app.multiselect(key="home_size").select(128).run()
    app.multiselect(key="home_regularisation").select("l1").run()
    shown = app.dataframe[0].value
    assert len(shown) > 0 and set(shown["size"]) == {"128 hidden"}
    assert set(shown["regularisation"]) == {"l1"}
    assert set(shown["model"]) == {name for name in everything["model"] if "-h128-l1-" in name}


def test_the_run_page_opens_on_an_mlp_and_keeps_the_budget_when_the_model_changes(
    cache_dir, open_page
):
    app = open_page("pages/run.py")
    assert app.selectbox(key="model").value.startswith("mlp-")  # not the GAN, first in the list
    app.number_input(key="run_permutations").set_value(37).run()
    app.selectbox(key="model").select(WIDE_MODEL).run()
    assert app.number_input(key="run_permutations").value == 37
    assert any(md.value.startswith("**4,") and "128 units" in md.value for md in app.markdown)
    assert not launch_button(app).disabled


def test_a_gradient_run_is_timed_with_its_backward_passes(cache_dir, open_page):
    app = run_page(open_page)
    app.selectbox(key="run_output").select("logits").run()
    app.selectbox(key="run_method").select("gradient").run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert any("evaluations** of 32 units" in md.value for md in app.markdown)
    assert not launch_button(app).disabled

"""AppTest of the LLM page: the empty state says how to fetch a model; with a tiny stand-in model
in the model store and a stored task run, the page shows the group x unit matrix and a lesion."""

from __future__ import annotations

import os

import pytest
from streamlit.testing.v1 import AppTest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from test_pages import APP  # noqa: E402
from test_tasks import tiny_llama, word_tokenizer  # noqa: E402

from msa_core.zoo import load_model  # noqa: E402


def test_without_a_language_model_the_page_says_how_to_fetch_one(cache_dir):
    app = AppTest.from_file(APP, default_timeout=120).run()
    app.switch_page("pages/llm.py").run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("python -m msa_core.zoo.fetch smollm2" in info.value for info in app.info)


@pytest.fixture
def forget_loaded_models():
    """The stand-in below is loaded under the real model's name (models are cached per process by
    name): forget the fetched SmolLM2 an earlier test loaded, so the page gets the stand-in, and
    forget the stand-in afterwards, so later tests load the fetched model."""
    load_model.cache_clear()
    yield
    load_model.cache_clear()


def test_a_stored_task_run_shows_the_matrix_and_a_selective_lesion(
    cache_dir, one_torch_thread, forget_loaded_models
):
    from msa_core.runs import RunRequest, RunStore, execute

    folder = (
        cache_dir / "models" / "smollm2-135m"
    )  # a tiny stand-in where the fetched model would be
    tiny_llama().save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    execute(
        RunRequest(model="smollm2-135m", units="heads", method="permutation", n_permutations=2),
        RunStore(cache_dir),
    )
    app = AppTest.from_file(APP, default_timeout=120).run()
    app.switch_page("pages/llm.py").run()
    assert not app.exception, [e.value for e in app.exception]
    assert len(app.get("plotly_chart")) >= 4  # matrix, layer shares, correlation, the lesion
    assert any("Greedy continuation" in md.value for md in app.markdown)
    kept = [key.split(":")[-1] for key in RunStore(cache_dir).rows["work"].keys("analysis:")]
    assert any(name.startswith("llm-selective-lesions-k") for name in kept), kept  # with the run
    app.selectbox[-1].select("language").run()
    assert not app.exception, [e.value for e in app.exception]
    # before launch: each group's intact score and the budget a top-k target needs
    next(button for button in app.button if button.label == "Check before launch").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("Resolving each group's top 10 units" in md.value for md in app.markdown)

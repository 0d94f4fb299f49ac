"""AppTest of what a visitor can do to the LLM and Interactions pages (issue 23): a stored run's
analysis reads the examples stored with it, not its task file; Launch is off while the task is
invalid; a shared dashboard caps pasted tasks and run budgets before anything is stored or
queued; an interaction budget of 0 is refused with the reason shown."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from test_tasks import tiny_llama, word_tokenizer  # noqa: E402

from msa_core.runs import RunRequest, RunStore, execute  # noqa: E402
from msa_core.runs.interaction_runs import KEY_PREFIX  # noqa: E402
from msa_core.zoo import load_model  # noqa: E402

LLM = "smollm2-135m"  # a tiny stand-in is saved where the fetched model would be
ROWS = [
    {"prompt": "The capital of France is", "target": " Paris", "group": "capital"},
    {"prompt": "2 + 3 =", "target": " 5", "group": "addition"},
]
LAUNCH = "Launch in the background"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def llm_store(cache_dir):
    """The run store with the tiny stand-in LLM in its model folder; models are cached per process
    by name, so the fetched one an earlier test loaded is forgotten first, the stand-in after."""
    load_model.cache_clear()
    folder = cache_dir / "models" / LLM
    tiny_llama().save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    yield cache_dir
    load_model.cache_clear()


def write_task(path, rows) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def launch_expander(open_page):
    app = open_page("pages/llm.py")
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_the_analysis_uses_the_examples_stored_with_the_run(
    llm_store, open_page, tmp_path, monkeypatch
):
    """The task file changes after the run, and the run was launched with a relative path from
    another folder: the page still shows the run's own groups, and says the file differs."""
    launched_from = tmp_path / "elsewhere"
    launched_from.mkdir()
    write_task(launched_from / "mine.jsonl", ROWS)
    monkeypatch.chdir(launched_from)
    execute(
        RunRequest(LLM, units="heads", n_permutations=2, method="permutation", task="mine.jsonl"),
        RunStore(llm_store),
    )
    write_task(launched_from / "mine.jsonl", [{**ROWS[0], "group": "changed"}])
    app = launch_expander(open_page)
    assert [box.options for box in app.selectbox if box.label == "Group"] == [
        ["capital", "addition"]
    ]
    assert any("now holds other examples" in warning.value for warning in app.warning)
    monkeypatch.chdir(tmp_path)  # the relative path no longer resolves
    app = launch_expander(open_page)
    assert any("cannot be read from here" in warning.value for warning in app.warning)
    assert [box.options for box in app.selectbox if box.label == "Group"] == [
        ["capital", "addition"]
    ]
    assert not app.error, [e.value for e in app.error]


def test_launch_is_off_with_its_reason_while_the_task_is_invalid(llm_store, open_page):
    app = launch_expander(open_page)
    app.radio[0].set_value("paste rows").run()
    app.text_area[0].set_value('{"prompt": "a"}\n').run()
    assert any("missing field 'target'" in error.value for error in app.error)
    button = next(button for button in app.button if button.label == LAUNCH)
    assert button.disabled
    assert any("Launch is off: choose a valid task" in c.value for c in app.caption)


def test_a_shared_dashboard_refuses_a_large_paste_and_stores_nothing_before_launch(
    llm_store, open_page, monkeypatch
):
    monkeypatch.setenv("MSA_DEPLOYMENT", "shared")
    monkeypatch.setenv("MSA_MAX_TASK_BYTES", "1000")
    app = launch_expander(open_page)
    app.radio[0].set_value("paste rows").run()
    big = json.dumps({**ROWS[0], "group": "é" * 600}, ensure_ascii=False)  # 680 chars, 1,280 bytes
    app.text_area[0].set_value(big).run()
    assert any("takes tasks of at most 1,000 bytes" in e.value for e in app.error), [
        (e.value, len(app.text_area[0].value)) for e in app.error
    ]
    assert next(button for button in app.button if button.label == LAUNCH).disabled
    app.text_area[0].set_value(json.dumps(ROWS[0]) + "\n").run()  # valid, small: not yet stored
    assert not app.error, [e.value for e in app.error]
    assert not (llm_store / "tasks").exists()


def test_a_shared_dashboard_caps_the_llm_pages_budget_like_the_run_pages(
    llm_store, open_page, monkeypatch
):
    monkeypatch.setenv("MSA_DEPLOYMENT", "shared")
    monkeypatch.setenv("MSA_MAX_RUN_EVALUATIONS", "20")
    app = launch_expander(open_page)
    units = next(box for box in app.selectbox if box.label == "Units")
    units.set_value("heads")
    next(number for number in app.number_input if number.label == "Permutations").set_value(1000)
    next(button for button in app.button if button.label == LAUNCH).click().run()
    assert any("runs at most 20 evaluations per run" in e.value for e in app.error), [
        e.value for e in app.error
    ]
    assert not RunStore(llm_store).progress_fingerprints()  # nothing queued


def test_an_interaction_budget_of_0_is_refused_with_its_reason(cache_dir, open_page):
    """Below the input's minimum the browser kept the previous budget and ran that, silently."""
    execute(RunRequest("mlp-digits-h32-none-s0", n_permutations=4), RunStore(cache_dir))
    app = open_page("pages/interactions.py")
    app.number_input(key="ix_cost").set_value(0.0)
    next(b for b in app.button if b.label == "Launch interaction run").click().run()
    assert any("cost must be a positive multiple" in e.value for e in app.error), [
        e.value for e in app.error
    ]
    queued = RunStore(cache_dir).progress_fingerprints()
    assert not [key for key in queued if key.startswith(KEY_PREFIX)]  # no interaction run queued


def test_the_modes_page_lists_the_task_examples_the_run_scored(llm_store, open_page, tmp_path):
    """Not the model's default examples: the run's own task, each example with its group."""
    write_task(tmp_path / "mine.jsonl", ROWS)
    execute(
        RunRequest(
            LLM,
            units="heads",
            n_permutations=2,
            method="permutation",
            task=str(tmp_path / "mine.jsonl"),
        ),
        RunStore(llm_store),
    )
    app = open_page("pages/modes.py")
    assert not app.error, [e.value for e in app.error]
    [inputs] = [e for e in app.expander if e.label.startswith("The run's 2 inputs")]
    assert inputs.label.endswith("in 2 groups: capital, addition")
    table = inputs.dataframe[0].value
    assert list(table["group"]) == ["capital", "addition"]
    assert list(table["input"]) == [
        "Prompt: The capital of France is\nTarget:  Paris",
        "Prompt: 2 + 3 =\nTarget:  5",
    ]

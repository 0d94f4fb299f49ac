"""Every test in this folder drives Debian's Chromium with playwright: skipped, with the reason,
when either is missing here; CI installs both, so there a missing one fails instead of skipping."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit_server import CHROMIUM

HERE = Path(__file__).resolve().parent


def missing_browser() -> str | None:
    """Why the browser tests cannot run here (None when they can, or on CI, where they must)."""
    if os.environ.get("CI"):
        return None
    if importlib.util.find_spec("playwright") is None:
        return "the browser tests need playwright (requirements-test.txt)"
    if not Path(CHROMIUM).exists():
        return f"the browser tests need {CHROMIUM} (apt-get install chromium)"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = missing_browser()
    if reason is None:
        return
    for item in items:
        if item.path.parent == HERE:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def stand_in_llm_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., object]:
    """``run(rows)``: a permutation run (2 permutations) of the heads of a tiny random Llama saved
    where the fetched SmolLM2 would be, on a task of ``rows`` (prompt, target, group dicts), stored
    in ``tmp_path / "cache"`` (this test's ``MSA_CACHE_DIR``); returns the stored result. Models are
    cached per process by name, so the real one an earlier test loaded is forgotten before, and
    the stand-in after."""
    pytest.importorskip("transformers")
    sys.path.insert(0, str(HERE.parent))
    from test_tasks import tiny_llama, word_tokenizer

    from msa_core.runs import RunRequest, RunStore, execute
    from msa_core.zoo import load_model

    cache = tmp_path / "cache"
    monkeypatch.setenv("MSA_CACHE_DIR", str(cache))
    tiny_llama().save_pretrained(cache / "models" / "smollm2-135m")
    word_tokenizer().save_pretrained(cache / "models" / "smollm2-135m")

    def run(rows: list[dict[str, str]]) -> object:
        task = tmp_path / "task.jsonl"
        task.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        load_model.cache_clear()
        try:
            request = RunRequest(
                "smollm2-135m",
                units="heads",
                method="permutation",
                n_permutations=2,
                task=str(task),
            )
            return execute(request, RunStore(cache))
        finally:
            load_model.cache_clear()

    return run

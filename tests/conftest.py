import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, which only wait on each other on a busy
    machine.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


APP = str(Path(__file__).parents[1] / "app.py")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """An empty run store for the test (the app reads ``MSA_CACHE_DIR``)."""
    monkeypatch.setenv("MSA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def open_page():
    """``open_page("pages/x.py")``: the app started and switched to that page, with no exception
    raised.
    """

    def opened(page: str) -> AppTest:
        app = AppTest.from_file(APP, default_timeout=120).run()
        app.switch_page(page).run()
        assert not app.exception, [e.value for e in app.exception]
        return app

    return opened


# The browser tests (tests/browser/: Debian's Chromium driven by playwright) are skipped, with the
# reason, when either is missing here; CI installs both, so there a missing one fails instead.
# Kept here, not in tests/browser/conftest.py: two modules named conftest collide on sys.path.
BROWSER_TESTS = Path(__file__).parent / "browser"


def missing_browser() -> str | None:
    """Why the browser tests cannot run here (None when they can, or on CI, where they must)."""
    if os.environ.get("CI"):
        return None
    if importlib.util.find_spec("playwright") is None:
        return "the browser tests need playwright (requirements-test.txt)"
    from streamlit_server import CHROMIUM  # importable once a browser test module is collected

    if not Path(CHROMIUM).exists():
        return f"the browser tests need {CHROMIUM} (apt-get install chromium)"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    browser_tests = [item for item in items if item.path.parent == BROWSER_TESTS]
    reason = missing_browser() if browser_tests else None
    for item in browser_tests if reason is not None else ():
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def stand_in_llm_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., object]:
    """``run(rows)``: a permutation run (2 permutations) of the heads of a tiny random Llama saved
    where the fetched SmolLM2 would be, on a task of ``rows`` (prompt, target, group dicts), stored
    in ``tmp_path / "cache"`` (this test's ``MSA_CACHE_DIR``); returns the stored result. Models are
    cached per process by name, so the real one an earlier test loaded is forgotten before, and
    the stand-in after."""
    pytest.importorskip("transformers")
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

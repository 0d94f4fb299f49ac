import sys
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

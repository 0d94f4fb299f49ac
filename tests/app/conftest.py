"""Shared pieces of the page tests: a fresh run store per test and a page opened through the app's navigation."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).parents[2] / "app.py")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """An empty run store for the test (the app reads ``MSA_CACHE_DIR``)."""
    monkeypatch.setenv("MSA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def open_page():
    """``open_page("pages/x.py")``: the app started and switched to that page, with no exception raised."""
    def opened(page: str) -> AppTest:
        app = AppTest.from_file(APP, default_timeout=120).run()
        app.switch_page(page).run()
        assert not app.exception, [e.value for e in app.exception]
        return app

    return opened

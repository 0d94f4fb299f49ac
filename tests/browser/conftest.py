"""Every test in this folder drives Debian's Chromium with playwright: skipped, with the reason,
when either is missing here; CI installs both, so there a missing one fails instead of skipping."""

from __future__ import annotations

import importlib.util
import os
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

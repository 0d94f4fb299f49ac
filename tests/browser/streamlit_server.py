"""Start the dashboard headless on 127.0.0.1 and drive it with Debian's Chromium (playwright, no
download).

Shared by the browser test and ``bench/browser_bench.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def dashboard(cache_dir: Path, timeout: float = 60.0) -> Iterator[str]:
    """Run ``streamlit run app.py`` with ``MSA_CACHE_DIR=cache_dir``; yields its URL; stops it
    afterwards.
    """
    port = free_port()
    env = {
        **os.environ,
        "MSA_CACHE_DIR": str(cache_dir),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "app.py"),
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
    ]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    output = (
                        server.stdout.read().decode(errors="replace")
                        if server.poll() is not None
                        else ""
                    )
                    raise RuntimeError(
                        f"streamlit did not start on {url}: {output[-2000:]}"
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextmanager
def browser_page(width: int = 1280, height: int = 860) -> Iterator[object]:
    """A playwright page in Debian's headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


@contextmanager
def fresh_page(page, url: str) -> Iterator[object]:
    """``url`` opened in a new context of ``page``'s browser (a new session, as a pasted link)."""
    context = page.context.browser.new_context(viewport=page.viewport_size)
    try:
        other = context.new_page()
        other.set_default_timeout(30_000)
        other.goto(url)
        wait_idle(other)
        yield other
    finally:
        context.close()


SCRIPT_STATE = (
    "() => document.querySelector('[data-testid=\"stApp\"]')"
    "?.getAttribute('data-test-script-state')"
)


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until the app has finished its current script run."""
    page.wait_for_function(f"() => ({SCRIPT_STATE})() === 'notRunning'", timeout=timeout)


def rerun_after(page, action, timeout: float = 60_000) -> None:
    """Do ``action()`` (a click...), then wait for the rerun it starts to finish."""
    action()
    try:
        page.wait_for_function(f"() => ({SCRIPT_STATE})() === 'running'", timeout=2_000)
    except Exception:  # noqa: BLE001  (a fast rerun may be over before we look)
        pass
    wait_idle(page, timeout)


def go_to(page, title: str) -> None:
    """Click a page's link in the sidebar navigation (keeps the session), wait for its title."""
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()


def select_option(page, label: str, option: str) -> None:
    """Pick ``option`` in the Streamlit select box labelled ``label``."""
    box = page.get_by_test_id("stSelectbox").filter(has_text=label).first
    box.click()
    page.keyboard.type(option)  # long option lists are virtualised: filter first
    page.get_by_role("option", name=option, exact=True).click()


def metric_value(page, label: str) -> str:
    metric = page.get_by_test_id("stMetric").filter(has_text=label).first
    return metric.get_by_test_id("stMetricValue").inner_text()


def chart(page, key: str):
    """The Plotly chart a page draws with ``key=key``. Charts mount lazily, so the page's first
    chart is not always the first one drawn: address them by key, never by position."""
    return page.locator(f".st-key-{key} .js-plotly-plot")

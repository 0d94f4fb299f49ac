"""The dashboard in a real browser: Debian's Chromium driven by playwright, streamlit headless on
127.0.0.1.
"""

from __future__ import annotations

import time

from streamlit_server import (
    browser_page,
    chart,
    dashboard,
    fresh_page,
    go_to,
    metric_value,
    rerun_after,
    select_option,
    wait_idle,
)

MODEL = "mlp-digits-h32-none-s0"


def tick_texts(plot) -> list[str]:
    """The y-axis tick labels a plotly chart draws (SVG text), top to bottom."""
    return plot.locator("g.ytick text").evaluate_all("ticks => ticks.map(tick => tick.textContent)")


def test_launch_a_run_see_its_heatmap_and_toggle_a_lesion(tmp_path):
    """Takes about 60 s: a streamlit server, Chromium, and a run in a spawned worker process (which
    imports torch) on an empty cache, as a new user would see it. URLs copied from the Modes page
    and the Lesion lab reopen the same view in a fresh browser context (no cookies, no session)."""
    with dashboard(tmp_path / "cache") as url, browser_page() as page:
        page.goto(url)
        wait_idle(page)  # the first request may rerun once (app.py's navigation), so wait for it
        page.get_by_role("heading", name="MSA Dashboard").wait_for(state="visible")

        rerun_after(page, lambda: go_to(page, "Run"))
        rerun_after(page, lambda: select_option(page, "Model", MODEL))
        page.get_by_text("32 units", exact=True).wait_for()
        page.get_by_role("spinbutton", name="Budget: permutations").fill("4")
        page.get_by_role("button", name="Launch run").click()
        page.get_by_role("button", name="Open in Shapley modes").wait_for(timeout=120_000)
        rerun_after(page, lambda: page.get_by_role("button", name="Open in Shapley modes").click())
        heatmap = chart(page, "heatmap")
        heatmap.wait_for()
        assert heatmap.locator(".heatmaplayer").count() == 1
        units = tick_texts(heatmap)
        assert units == [f"hidden.n{i}" for i in range(32)]  # every unit labelled, not every 2nd
        rerun_after(page, lambda: page.get_by_text("per class", exact=True).click())
        assert "view=class" in page.url
        with fresh_page(page, page.url) as shared:  # the copied URL in a new browser context
            assert shared.get_by_role("radio", name="per class").is_checked()
            plots = shared.locator(".js-plotly-plot")
            shared_heatmap = plots.filter(has=shared.locator(".heatmaplayer")).first
            shared_heatmap.wait_for()
            assert tick_texts(shared_heatmap) == units

        rerun_after(page, lambda: go_to(page, "Lesion lab"))
        page.get_by_text("Lesioned units (of 32)").wait_for()
        assert metric_value(page, "Units lesioned") == "0 / 32"
        intact = metric_value(page, "Accuracy, intact")
        assert metric_value(page, "Accuracy, lesioned") == intact
        pills = page.get_by_test_id("stButtonGroup")
        for unit in ("hidden.n0", "hidden.n1", "hidden.n2", "hidden.n3", "hidden.n4", "hidden.n5"):
            # "#rank unit (value)"
            toggle = pills.get_by_role("button").filter(has_text=f" {unit} (")
            rerun_after(page, lambda toggle=toggle: toggle.click())
        deadline = time.time() + 10
        while metric_value(page, "Units lesioned") != "6 / 32" and time.time() < deadline:
            time.sleep(0.1)
        assert metric_value(page, "Units lesioned") == "6 / 32"
        assert metric_value(page, "Accuracy, lesioned") != intact
        with fresh_page(page, page.url) as shared:  # the lesion travels with the URL
            assert metric_value(shared, "Units lesioned") == "6 / 32"
            lesioned = metric_value(page, "Accuracy, lesioned")
            assert metric_value(shared, "Accuracy, lesioned") == lesioned
        assert not page.get_by_test_id("stException").count()


def test_a_shared_link_is_a_fresh_servers_first_request(tmp_path):
    """About 20 s. A bookmark opened right after the dashboard starts: Streamlit runs that first
    request with its legacy pages-folder navigation unless the page switches to app.py's."""
    from msa_core.runs import RunRequest, RunStore, execute

    stored = execute(RunRequest(MODEL, n_permutations=4), RunStore(tmp_path / "cache"))
    run = stored.meta["fingerprint"]
    with dashboard(tmp_path / "cache") as url, browser_page() as page:
        page.goto(f"{url}/modes?run={run[:12]}&view=class&order=cluster")
        wait_idle(page)
        page.get_by_role("radio", name="per class").wait_for()
        assert page.get_by_role("radio", name="per class").is_checked()
        navigation = page.get_by_test_id("stSidebarNav").inner_text()
        assert "Shapley modes" in navigation and "common" not in navigation
        assert "order=cluster" in page.url and f"run={run[:12]}" in page.url


def test_experts_page_renders_a_cached_run_and_a_reload_mid_run_shows_the_job(tmp_path):
    """About 60 s: a small MoE run is stored first (not timed); the Experts page draws its matrix
    without computing any lesion; a GAN run launched on the Run page is still listed, running, in
    the sidebar's jobs panel after a reload, and can be cancelled there."""
    from msa_core.runs import RunRequest, RunStore, execute

    execute(
        RunRequest(
            "moe-fortunes-5lang",
            units="experts (all layers)",
            output="target_logprob",
            method="permutation",
            n_permutations=2,
        ),
        RunStore(tmp_path / "cache"),
    )
    with dashboard(tmp_path / "cache") as url, browser_page() as page:
        page.goto(url)
        wait_idle(page)
        rerun_after(page, lambda: go_to(page, "Experts"))
        matrix = chart(page, "experts_matrix")
        matrix.locator(".heatmaplayer").first.wait_for()
        labels = matrix.inner_text().split("\n")
        assert {"L3", "E7", "English: unit", "Chinese: unit"} <= set(labels)  # layer x expert grids
        # the lesion tab is not computed unopened
        assert not page.get_by_text("Greedy continuation").count()
        assert not page.get_by_test_id("stException").count()

        rerun_after(page, lambda: go_to(page, "Run"))
        rerun_after(page, lambda: select_option(page, "Model", "gan-digits-s0"))
        page.get_by_text("113 units", exact=True).wait_for()
        rerun_after(
            page, lambda: page.get_by_role("spinbutton", name="Budget: permutations").fill("200")
        )
        page.get_by_role("button", name="Launch run").click()
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_text("gan-digits-s0 · channels of every layer", exact=False).wait_for()
        page.reload()
        wait_idle(page)
        row = sidebar.get_by_test_id("stMarkdownContainer").filter(has_text="gan-digits-s0").first
        row.wait_for()
        assert any(state in row.inner_text() for state in ("queued", "running"))
        sidebar.get_by_role("button", name="Cancel").click()
        sidebar.get_by_text("stopped", exact=False).first.wait_for(timeout=60_000)
        assert not page.get_by_test_id("stException").count()


def test_a_fresh_servers_first_requests_at_once_all_get_the_dashboards_navigation(tmp_path):
    """About 25 s. Four visitors open four pages at once right after the dashboard starts: each
    first request runs under Streamlit's legacy pages-folder navigation, and each must end on
    app.py's (no ``ImportError`` from a module half imported by another session, no sidebar
    listing the files of ``pages/``, the jobs panel there)."""
    with dashboard(tmp_path / "cache") as url, browser_page() as page:
        pages = [page] + [page.context.browser.new_page() for _ in range(3)]
        for visitor, path in zip(pages, ("", "modes", "llm", "run"), strict=True):
            visitor.set_default_timeout(60_000)
            visitor.goto(f"{url}/{path}", wait_until="commit")
        for visitor in pages:
            navigation = visitor.get_by_test_id("stSidebarNav")
            navigation.get_by_text("Shapley modes", exact=True).wait_for()
            wait_idle(visitor)
            visitor.get_by_test_id("stSidebar").get_by_text("Jobs", exact=True).wait_for()
            listed = navigation.inner_text()
            assert "common" not in listed and "jobs panel" not in listed, listed
            assert not visitor.get_by_test_id("stException").count(), visitor.get_by_test_id(
                "stException"
            ).all_inner_texts()


def test_markdown_in_a_task_makes_no_browser_fetch_anything(tmp_path, stand_in_llm_run):
    """About 60 s. A task whose prompt and group are Markdown images and HTML pointing at a port
    listened on here: the LLM page shows the stored run's analysis and a pasted copy of the task,
    and the browser requests nothing but the dashboard's own URLs (nothing reaches the port)."""
    import json
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    port, reached = listener.getsockname()[1], []

    def accept() -> None:
        while not stop.is_set():
            try:
                reached.append(listener.accept()[0])
            except OSError:
                continue

    stop = threading.Event()
    watcher = threading.Thread(target=accept, daemon=True)
    watcher.start()
    image = f"![x](http://127.0.0.1:{port}/p.png)"
    rows = [
        {"prompt": f"The {image} is", "target": " Paris", "group": image},
        {"prompt": f'<img src="http://127.0.0.1:{port}/q.png"> 2 +', "target": " 5", "group": "b"},
    ]
    stand_in_llm_run(rows)
    task = tmp_path / "visitor.jsonl"
    task.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    cache = tmp_path / "cache"
    try:
        with dashboard(cache) as url, browser_page() as page:
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.set_default_timeout(120_000)
            page.goto(f"{url}/llm")
            wait_idle(page, 180_000)
            page.get_by_text("Greedy continuation of", exact=False).wait_for()
            page.get_by_text("Launch a run on your task").click()
            rerun_after(page, lambda: page.get_by_text("paste rows", exact=True).click())
            area = page.get_by_role("textbox", name="One JSON object per line")
            rerun_after(page, lambda: (area.fill(task.read_text()), area.press("Control+Enter")))
            page.get_by_text("2 examples; groups:", exact=False).wait_for()
            assert "![x](http://127.0.0.1" in page.get_by_text("2 examples; groups:").inner_text()
            time.sleep(2)  # an image request would have been sent by now
            assert not page.get_by_test_id("stException").count()
    finally:
        stop.set()
        watcher.join()
        listener.close()
    assert not reached
    outside = [u for u in requested if not u.startswith((url, "data:", "blob:"))]
    assert not outside, outside

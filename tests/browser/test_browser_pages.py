"""Issue 24 in a real browser (Debian's Chromium, playwright): one ranking on every page, Launch
disabled with its reason on invalid input, Compare refreshing after it launches the missing seeds,
and the HTML report's figures laid out with nothing overlapping or clipped."""

from __future__ import annotations

import re

from streamlit_server import (
    browser_page,
    chart,
    dashboard,
    go_to,
    rerun_after,
    wait_idle,
)

MODELS = ("mlp-digits-h32-none-s0", "mlp-digits-h32-l1-s0")
TOP = 8


# per plotly figure: its svg box, the top of its plot area, its title's bottom and every label's box
LAYOUT = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(plot => {
    const svg = plot.querySelector('svg.main-svg').getBoundingClientRect();
    const area = plot.querySelector('.nsewdrag').getBoundingClientRect();
    const title = plot.querySelector('.gtitle').getBoundingClientRect();
    const labels = Array.from(plot.querySelectorAll(
        '.ytick text, .xtick text, .g-ytitle text, .g-xtitle text, .gtitle'
    )).map(text => text.getBoundingClientRect());
    return {svg: [svg.left, svg.top, svg.right, svg.bottom], area: area.top, title: title.bottom,
            labels: labels.map(b => [b.left, b.top, b.right, b.bottom])};
})"""


def top_units(page) -> list[str]:
    """The unit names of the page's "Top units by Shapley value" line, in rank order."""
    markdown = page.get_by_test_id("stMarkdown").filter(has_text="Top units by Shapley value")
    line = markdown.first.inner_text()
    return re.findall(r"#[\d-]+ (\S+)", line)


def test_one_ranking_launch_disabled_compare_refreshes_and_report_unclipped(tmp_path):
    """About 100 s: four small runs stored first; then, in one browser session, the Modes page, the
    Lesion lab and the Interactions page rank the run's units alike; a zero budget disables Launch
    with the reason beside it; Compare opens on the two comparable runs, launches their missing
    seeds and refreshes (jobs panel and page) when they finish; the report's titles clear the
    heatmaps and no axis label is cut off."""
    from msa_core.runs import RunRequest, RunStore, execute
    from msa_core.runs.report import report_html
    from msa_core.zoo import load_model

    store = RunStore(tmp_path / "cache")
    runs = [execute(RunRequest(model, n_permutations=4), store) for model in MODELS]
    viewed = runs[-1].meta["fingerprint"]
    for model in MODELS:  # seed 1 stored too: Compare launches the two seeds 2
        execute(RunRequest(model.replace("-s0", "-s1"), n_permutations=4), store)
    report = tmp_path / "report.html"
    report.write_text(report_html(runs[0], load_model(MODELS[0]).labels.numpy()))

    with dashboard(tmp_path / "cache") as url, browser_page(width=1400) as page:
        page.goto(f"{url}/modes?run={viewed[:12]}")
        wait_idle(page)
        ranked = top_units(page)
        assert len(ranked) == TOP and all(unit.startswith("hidden.n") for unit in ranked)

        rerun_after(page, lambda: go_to(page, "Lesion lab"))  # opens on the run being viewed
        page.get_by_text("Lesioned units (of 32)").wait_for()
        pills = page.get_by_test_id("stButtonGroup").get_by_role("button").filter(has_text="#")
        labels = [pills.nth(i).inner_text() for i in range(TOP)]
        assert [label.split()[1] for label in labels] == ranked, labels
        assert labels[0].startswith("#1")  # "#1 unit (value ± stderr)", or "#1-5 ..." if unresolved

        rerun_after(page, lambda: go_to(page, "Interactions"))
        page.get_by_role("heading", name="Interaction modes").wait_for()
        assert top_units(page)[:TOP] == ranked  # its top 16, the ranking's first 16

        rerun_after(page, lambda: go_to(page, "Run"))
        budget = page.get_by_role("spinbutton", name="Budget: permutations")
        rerun_after(page, lambda: (budget.fill("0"), budget.press("Enter")))
        page.get_by_text("the budget is 0 permutations").wait_for()
        assert page.get_by_role("button", name="Launch run").is_disabled()
        rerun_after(page, lambda: (budget.fill("7"), budget.press("Enter")))
        assert page.get_by_role("button", name="Launch run").is_enabled()
        assert budget.input_value() == "7"

        rerun_after(page, lambda: go_to(page, "Compare"))
        chosen = page.get_by_test_id("stMultiSelect").first.inner_text()
        assert chosen.count("mlp-digits-h32-") == 3  # the three newest comparable runs
        missing = page.get_by_text(re.compile("^Missing runs of the bundled seeds"))
        missing.wait_for()
        rerun_after(
            page, lambda: page.get_by_role("button", name=re.compile("Run the missing")).click()
        )
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_text("mlp-digits-h32-l1-s2").first.wait_for(timeout=10_000)  # listed now
        missing.wait_for(state="detached", timeout=120_000)  # all seeds stored: page refreshed
        assert len(store.list()) == 6
        assert not page.get_by_test_id("stException").count()

        reader = page.context.browser.new_context(viewport=page.viewport_size).new_page()
        reader.goto(report.as_uri())  # the report as its reader opens it: a file, a new context
        reader.wait_for_function(
            "document.querySelectorAll('.js-plotly-plot .main-svg').length > 4"
        )
        boxes, previous = None, []
        for _ in range(40):  # plotly's automargin lays a figure out again: wait until it is still
            reader.wait_for_timeout(500)
            boxes, previous = reader.evaluate(LAYOUT), boxes
            if boxes == previous:
                break
    assert len(boxes) >= 5
    for box in boxes:
        left, top, right, bottom = box["svg"]
        assert box["title"] <= box["area"], box  # the title clears the first row
        for label in box["labels"]:
            assert left <= label[0] and label[2] <= right + 0.5, (label, box["svg"])
            assert top <= label[1] and label[3] <= bottom + 0.5, (label, box["svg"])


# per plotly figure: its title, every axis's tick labels with their boxes, and every title
AXES = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(plot => ({
    title: (plot.querySelector('.gtitle') || {}).textContent || '',
    axes: Array.from(plot.querySelectorAll('g.xaxislayer-above, g.yaxislayer-above')).map(
        axis => Array.from(axis.querySelectorAll('text')).map(text => {
            const b = text.getBoundingClientRect();
            return {text: text.textContent, box: [b.left, b.top, b.right, b.bottom]};
        })),
    titles: Array.from(plot.querySelectorAll('text[class$="title"]')).map(t => t.textContent),
}))"""


def overlapping(labels: list[dict]) -> list[tuple[str, str]]:
    """Pairs of one axis's tick labels whose boxes overlap (by more than half a pixel)."""
    return [
        (a["text"], b["text"])
        for i, a in enumerate(labels)
        for b in labels[i + 1 :]
        if min(a["box"][2], b["box"][2]) - max(a["box"][0], b["box"][0]) > 0.5
        and min(a["box"][3], b["box"][3]) - max(a["box"][1], b["box"][1]) > 0.5
    ]


def test_llm_views_label_groups_prompts_and_every_head_by_layer(tmp_path, stand_in_llm_run):
    """About 40 s: a stand-in 2-layer, 4-head LLM stored under SmolLM2's name and a run of its heads
    on a two-group task; the LLM page draws one layer x head grid per group (each titled with its
    group, every layer and head labelled, no two labels overlapping), and the Modes page labels the
    run's outputs by example, group and prompt."""
    run = stand_in_llm_run(
        [
            {"prompt": "The capital of France is", "target": " Paris", "group": "capital"},
            {"prompt": "2 + 3 =", "target": " 5", "group": "addition"},
            {"prompt": "The capital of Spain is", "target": " Madrid", "group": "capital"},
        ]
    )
    cache = tmp_path / "cache"
    with dashboard(cache) as url, browser_page(width=1400) as page:
        page.set_default_timeout(120_000)
        page.goto(f"{url}/llm")
        wait_idle(page, 180_000)
        page.get_by_text("Greedy continuation of", exact=False).wait_for()
        page.locator(".js-plotly-plot .gtitle", has_text="Group x unit").first.wait_for()
        [grids] = [f for f in page.evaluate(AXES) if f["title"].startswith("Group x unit")]
        assert {"capital: unit", "addition: unit", "layer"} <= set(grids["titles"])
        texts = [[label["text"] for label in axis] for axis in grids["axes"]]
        heads = [f"H{h}" for h in range(4)]
        assert texts.count(heads) == 2 and ["L0", "L1"] in texts  # every head, every layer
        for axis in grids["axes"]:
            assert not overlapping(axis), overlapping(axis)

        page.goto(f"{url}/modes?run={run.meta['fingerprint'][:12]}")
        wait_idle(page, 180_000)
        heatmap = chart(page, "heatmap")
        heatmap.wait_for()
        columns = heatmap.locator("g.xtick text").all_text_contents()
        assert columns == [
            "0 capital: The capital of France is",
            "1 addition: 2 + 3 =",
            "2 capital: The capital of Spain is",
        ]
        page.get_by_text("The run's 3 inputs in 2 groups: capital, addition").wait_for()

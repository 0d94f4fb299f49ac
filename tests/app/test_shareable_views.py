"""Shareable views: each page's state comes from the URL's query string and goes back into it, so a
copied URL reproduces the view; and what each view then shows (input, dendrogram, unit mode, seeds,
ranks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from streamlit.testing.v1 import AppTest

from msa_core.analysis.modes import unit_order, view_of
from msa_core.analysis.ranking import NOISE_LEGEND
from msa_core.analysis.seeds import view_metrics
from msa_core.runs import RunRequest, RunStore, execute
from msa_core.zoo import load_model

MODEL = "mlp-digits-h32-none-s0"


@pytest.fixture
def store_runs(cache_dir):
    """Small runs (4 permutations, a fraction of a second each) of the models, in the store."""

    def made(*models: str) -> list[str]:
        store = RunStore(cache_dir)
        return [
            execute(RunRequest(name, n_permutations=4), store).meta["fingerprint"]
            for name in models
        ]

    return made


def opened_with(page: str, params: dict) -> AppTest:
    """The app opened on ``page`` with ``params`` in the URL, as a fresh session (a pasted link)."""
    app = AppTest.from_file(
        str(__import__("pathlib").Path(__file__).parents[2] / "app.py"), default_timeout=120
    )
    app.run()
    app.switch_page(page)
    app.query_params.update(params)
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.exception] + [
        e.value for e in app.error
    ]
    return app


def charts(app: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def test_modes_page_opens_the_urls_view_and_writes_changes_back(cache_dir, store_runs):
    older, newer = store_runs("mlp-digits-h32-l1-s0", MODEL)
    app = opened_with(
        "pages/modes.py",
        {
            "run": older[:12],
            "view": "sample",
            "sample": "7",
            "order": "cluster",
            "stderr": "1",
            "unit": "hidden.n5",
        },
    )
    assert app.selectbox(key="modes_run").value == older  # not the newest run
    assert (
        app.radio(key="modes_view").value == "sample"
        and app.number_input(key="modes_sample").value == 7
    )
    assert (
        app.selectbox(key="modes_order").value == "cluster" and app.toggle(key="modes_stderr").value
    )
    stored = RunStore(cache_dir).get(older)
    view = view_of(stored, "sample", sample=7)
    heatmap, errors, unit, _curve = charts(app)  # the hub tab's contribution curve last
    assert heatmap["data"][0]["y"] == [view.units[i] for i in unit_order(view.values, "cluster")]
    branches = [trace for trace in heatmap["data"] if trace.get("mode") == "lines"]
    assert len(branches) == 31  # the dendrogram beside the clustered heatmap: 32 leaves, 31 merges
    [targets] = [
        trace
        for trace in heatmap["data"]
        if trace.get("mode") == "markers" and trace.get("name") != NOISE_LEGEND
    ]
    assert targets["marker"]["opacity"] == 0  # invisible click targets, one per cell
    assert (
        heatmap["data"][0]["colorbar"]["title"]["text"].endswith("accuracy)")
        or "accuracy" in heatmap["data"][0]["colorbar"]["title"]["text"]
    )
    assert (
        errors["data"][0]["colorscale"] != heatmap["data"][0]["colorscale"]
    )  # stderr below, full width
    assert unit["layout"]["title"]["text"].startswith("hidden.n5")
    [picture] = app.get(
        "image"
    )  # the digit the sample view is about, with its label and prediction
    label = int(load_model("mlp-digits-h32-l1-s0").labels[7])
    assert f"label {label}" in picture.captions[0] and "prediction" in picture.captions[0]

    app.radio(key="modes_view").set_value("class").run()
    app.selectbox(key="modes_order").set_value("total").run()
    app.selectbox(key="modes_run").set_value(newer).run()
    assert not app.exception
    assert app.query_params["view"] == "class" and app.query_params["order"] == "total"
    assert app.query_params["run"] == newer[:12] and app.query_params["stderr"] == "1"
    again = opened_with("pages/modes.py", app.query_params)  # the URL, pasted into a fresh session
    assert (
        again.radio(key="modes_view").value == "class"
        and again.selectbox(key="modes_run").value == newer
    )
    assert charts(again)[0]["data"][0]["y"] == charts(app)[0]["data"][0]["y"]


def test_compare_page_reads_runs_from_the_url_and_tests_seeds_with_welch(cache_dir, store_runs):
    fingerprints = store_runs(
        *(f"mlp-digits-h32-{regime}-s{seed}" for regime in ("none", "l1") for seed in range(3))
    )
    app = opened_with(
        "pages/compare.py", {"runs": [fingerprints[0][:12], fingerprints[3][:12]], "view": "class"}
    )
    assert app.multiselect(key="compare_runs").value == [fingerprints[0], fingerprints[3]]
    assert app.radio(key="compare_view").value == "class"
    _, seeds, tests = app.dataframe
    assert seeds.value["seeds"].tolist() == ["0, 1, 2", "0, 1, 2"]
    store, labels = RunStore(cache_dir), load_model(MODEL).labels.numpy()
    gini = {
        regime: [view_metrics(view_of(store.get(fp), "class", labels))["gini"] for fp in fps]
        for regime, fps in (("none", fingerprints[:3]), ("l1", fingerprints[3:]))
    }
    row = tests.value.set_index("metric").loc["Gini"]
    names = {
        app.selectbox(key="compare_a").value.split(" ")[0],
        app.selectbox(key="compare_b").value.split(" ")[0],
    }
    assert names == {"mlp-digits-h32-none", "mlp-digits-h32-l1"}
    a, b = (
        (gini["l1"], gini["none"])
        if app.selectbox(key="compare_a").value.startswith("mlp-digits-h32-l1")
        else (gini["none"], gini["l1"])
    )
    assert row["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-6)
    assert row["A - B"] == pytest.approx(np.mean(a) - np.mean(b))
    assert (
        app.query_params["runs"] == [fingerprints[0][:12], fingerprints[3][:12]]
        and "a" in app.query_params
    )


def test_lesion_lab_opens_on_the_urls_run_ranks_its_units_and_keeps_the_lesion(
    cache_dir, store_runs
):
    [fingerprint] = store_runs("mlp-digits-h32-l1-s1")
    app = opened_with(
        "pages/lesion_lab.py",
        {"run": fingerprint[:12], "lesion": "mean", "off": ["hidden.n3", "hidden.n9"]},
    )
    assert app.selectbox(key="lesion_model").value == "mlp-digits-h32-l1-s1"
    assert app.radio(key="lesion_kind").value == "mean"
    pills = app.get("button_group")[0]
    assert pills.value == ["hidden.n3", "hidden.n9"]
    stored = RunStore(cache_dir).get(fingerprint)
    scores = stored.modes.reshape(stored.n_players, -1).mean(1)  # the one statistic, by hand
    ranking = app.dataframe[0].value
    assert ranking["unit"].tolist() == [
        stored.player_names[i] for i in np.argsort(-scores, kind="stable")
    ]
    np.testing.assert_allclose(ranking["Shapley value"], np.sort(scores)[::-1])
    assert [option.content.split(" ")[1] for option in pills.proto.options[:2]] == [
        stored.player_names[i] for i in np.argsort(-scores, kind="stable")[:2]
    ]  # by rank
    assert pills.proto.options[0].content.startswith("#1")
    curve = next(
        c
        for c in charts(app)
        if c["layout"]["title"]["text"].startswith("accuracy after lesioning")
    )
    assert {trace["name"] for trace in curve["data"]} >= {
        "top k by Shapley value",
        "random k (mean)",
        "bottom k by Shapley value",
    }
    assert app.query_params["model"] == "mlp-digits-h32-l1-s1" and app.query_params["off"] == [
        "hidden.n3",
        "hidden.n9",
    ]
    app.radio(key="lesion_kind").set_value("zero").run()
    assert app.query_params["lesion"] == "zero" and not app.exception


def test_export_page_opens_the_urls_run_and_figure(cache_dir, store_runs):
    older, _ = store_runs("mlp-digits-h32-l1-s0", MODEL)
    app = opened_with("pages/export.py", {"run": older[:12], "figure": "heatmap, clustered"})
    assert app.selectbox(key="export_run").value == older
    assert app.selectbox(key="export_figure").value == "heatmap, clustered"
    assert {
        "HTML report (all figures and numbers)",
        "PNG of this figure",
        "SVG of this figure",
    } <= {b.label for b in app.get("download_button")}
    app.selectbox(key="export_figure").set_value("standard errors").run()
    assert app.query_params == {"run": older[:12], "figure": "standard errors"}

"""Compare: runs side by side (contribution curves, concentration, heatmaps on one scale), and
setups over their training seeds: mean metrics with 95% intervals and Welch's t-test of the
difference.

The chosen runs, view, order and the two setups tested live in the URL.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from msa_core.analysis.modes import (
    available_views,
    contribution_curve_figure,
    heatmap_figure,
    shared_zmax,
    view_of,
)
from msa_core.analysis.seeds import (
    LEVEL,
    METRICS,
    comparable_runs,
    metric_name,
    seed_of,
    setup_of,
    t_interval,
    view_metrics,
    welch_test,
)
from msa_core.errors import MSAInputError
from msa_core.runs import RunRequest
from msa_core.zoo import list_models
from pages.common import (
    COMPARED_RUNS,
    RUN_ID_LENGTH,
    VIEW_NAMES,
    explained_errors,
    labels_of,
    no_runs_yet,
    result,
    run_label,
    runs,
    seed_from_url,
    share_in_url,
    show_notice,
    submit_job,
    url_value,
)
from pages.uncertainty import MARKS_CAPTION, noise_warnings

COLUMNS = 2  # heatmaps per row
ORDER_NAMES = {"total": "by total |contribution|", "index": "as stored", "cluster": "clustered"}


def setup_name(setup: tuple[str, str, str, str]) -> str:
    model, units, output, lesion = setup
    return f"{model} · {units} · {output} · {lesion} lesion"


def seeds_section(requests: list[dict], view_name: str) -> None:
    """Every stored run of the chosen runs' setups, grouped over seeds: mean and 95% interval per
    metric, and Welch's t-test between two setups."""
    st.subheader("Over training seeds")
    setups: dict[tuple[str, str, str, str], dict[int, str]] = {}
    chosen_setups = {setup_of(request) for request in requests}
    for entry in runs():  # newest first: the newest run of each seed counts
        setup, seed = setup_of(entry["request"]), seed_of(entry["request"]["model"])
        if setup in chosen_setups and seed is not None:
            setups.setdefault(setup, {}).setdefault(seed, entry["fingerprint"])
    bundled = {card.name for card in list_models()}
    missing = {
        setup: [s for s in range(3) if s not in seeds and f"{setup[0]}-s{s}" in bundled]
        for setup, seeds in setups.items()
    }
    if any(missing.values()):
        lacking = ", ".join(
            f"{setup[0]} seed(s) {', '.join(map(str, seeds))}"
            for setup, seeds in missing.items()
            if seeds
        )
        st.caption(f"Missing runs of the bundled seeds: {lacking}.")
        if st.button(
            "Run the missing seeds (same request, in the background)", key="compare_run_seeds"
        ):
            with explained_errors("Launching the seeds"):
                template = {setup: request_of(setup, setups) for setup in missing}
                submit_job(
                    [
                        RunRequest.from_dict(dict(template[setup], model=f"{setup[0]}-s{seed}"))
                        for setup, seeds in missing.items()
                        for seed in seeds
                    ],
                    (
                        "info",
                        "Launched the missing seeds in the background: follow them in the "
                        "**Jobs** panel (sidebar). This page refreshes when they finish and they "
                        "join the table below.",
                    ),
                )
    show_notice()
    metrics_by_setup: dict[tuple[str, str, str, str], dict[int, dict[str, float]]] = {}
    for setup, seeds in setups.items():
        for seed, fingerprint in sorted(seeds.items()):
            res = result(fingerprint)
            if res is not None and view_name in available_views(res, labels_of(res)):
                metrics_by_setup.setdefault(setup, {})[seed] = view_metrics(
                    view_of(res, view_name, labels_of(res))
                )
    rows = []
    for setup, per_seed in metrics_by_setup.items():
        row: dict[str, object] = {
            "setup": setup_name(setup),
            "seeds": ", ".join(map(str, per_seed)),
        }
        for metric in METRICS:
            mean, low, high = t_interval([m[metric] for m in per_seed.values()])
            row[metric_name(metric)] = (
                f"{mean:.3g} [{low:.3g}, {high:.3g}]" if len(per_seed) > 1 else f"{mean:.3g}"
            )
        rows.append(row)
    if not rows:
        st.info("None of the chosen runs is of a bundled model with a seed in its name.")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption(
        f"Mean over seeds with its {LEVEL:.0%} t-interval [low, high] (n - 1 degrees of freedom; "
        "with 3 seeds the interval is the mean ± 4.3 standard errors). A single seed shows its "
        "value only."
    )
    testable = [setup for setup, per_seed in metrics_by_setup.items() if len(per_seed) >= 2]
    if len(testable) < 2:
        st.caption("Welch's test needs two setups with at least two seeds each.")
        return
    names = {setup_name(s): s for s in testable}
    seed_from_url("compare_a", "a", list(names))
    seed_from_url("compare_b", "b", list(names))
    left, right = st.columns(2)
    a = left.selectbox("Setup A", list(names), key="compare_a")
    b = right.selectbox("Setup B", list(names), index=1, key="compare_b")
    share_in_url(a=a, b=b)
    if a == b:
        st.info("Pick two different setups to test.")
        return
    tests = []
    for metric in METRICS:
        values_a = [m[metric] for m in metrics_by_setup[names[a]].values()]
        values_b = [m[metric] for m in metrics_by_setup[names[b]].values()]
        if np.isnan(values_a + values_b).any():
            continue
        outcome = welch_test(values_a, values_b)
        tests.append(
            {
                "metric": metric_name(metric),
                "mean A": float(np.mean(values_a)),
                "mean B": float(np.mean(values_b)),
                "A - B": outcome["difference"],
                f"{LEVEL:.0%} interval": f"[{outcome['low']:.3g}, {outcome['high']:.3g}]",
                "t": outcome["t"],
                "df": outcome["df"],
                "p": outcome["p"],
            }
        )
    st.dataframe(
        pd.DataFrame(tests),
        hide_index=True,
        width="stretch",
        column_config={
            key: st.column_config.NumberColumn(format="%.3g")
            for key in ("mean A", "mean B", "A - B", "t", "df", "p")
        },
    )
    st.caption(
        "Welch's two-sample t-test on the per-seed metrics (unequal variances, Welch-Satterthwaite "
        "degrees of freedom), two-sided; one test per metric, not corrected for multiple testing."
    )


def request_of(setup: tuple[str, str, str, str], setups: dict) -> dict:
    """The request of a stored run of ``setup`` (its budget and method serve the missing seeds)."""
    fingerprint = next(iter(setups[setup].values()))
    return next(entry["request"] for entry in runs() if entry["fingerprint"] == fingerprint)


st.title("Compare runs")
st.markdown(
    "Put runs side by side, e.g. the same MLP trained with no, L1 or L2 regularisation: does "
    "regularisation concentrate the work in a few hub units?"
)
entries = runs()
if len(entries) < 2:
    no_runs_yet("compare (it takes two)" if not entries else "compare with the one you have")
    st.stop()

labels = {entry["fingerprint"]: run_label(entry) for entry in entries}
if "compare_runs" not in st.session_state:
    wanted = url_value("runs", many=True) or []
    from_url = [fp for prefix in wanted for fp in labels if fp.startswith(prefix)]
    remembered = [fp for fp in st.session_state.get(COMPARED_RUNS, []) if fp in labels]
    st.session_state["compare_runs"] = from_url or remembered or comparable_runs(entries)
chosen = st.multiselect("Runs", list(labels), format_func=labels.__getitem__, key="compare_runs")
st.session_state[COMPARED_RUNS] = chosen
share_in_url(runs=[fp[:RUN_ID_LENGTH] for fp in chosen])
if len(chosen) < 2:
    st.info("Choose at least two runs.")
    st.stop()

with explained_errors("Comparing the runs"):
    results = {fp: result(fp) for fp in chosen}
    missing = [fp for fp, res in results.items() if res is None]
    if missing:
        st.warning(f"{len(missing)} run(s) are no longer in the store and are left out.")
    results = {fp: res for fp, res in results.items() if res is not None}
    names = {
        fp: f"{res.meta.get('request', {}).get('model', '?')} ({fp[:6]})"
        for fp, res in results.items()
    }
    noise_warnings({names[fp]: res for fp, res in results.items()})
    common = [
        v
        for v in ("sum", "mean", "class")
        if all(v in available_views(res, labels_of(res)) for res in results.values())
    ]
    if not common:
        raise MSAInputError("the chosen runs share no view (their outputs differ in shape)")
    seed_from_url("compare_view", "view", common)
    view_name = st.radio(
        "View", common, format_func=VIEW_NAMES.get, horizontal=True, key="compare_view"
    )
    views = {fp: view_of(res, view_name, labels_of(res)) for fp, res in results.items()}

    st.subheader("Concentration")
    rows = [
        {
            "run": names[fp],
            "units": len(view.units),
            **{metric_name(key): value for key, value in view_metrics(view).items()},
        }
        for fp, view in views.items()
    ]
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        column_config={
            "Gini": st.column_config.NumberColumn(format="%.3f"),
            "top unit share": st.column_config.NumberColumn(format="percent"),
            "IDC": st.column_config.NumberColumn(
                format="%.3f",
                help="Index of Distributed Computation of each unit's "
                "mode averaged over the outputs (1: evenly spread, towards 0: one unit does all)",
            ),
        },
    )
    st.caption(
        "Gini 0: every unit contributes equally; higher: a few hubs carry the output. "
        "'Units for 80%': "
        "the fewest units whose |contribution| adds up to 80% of the total."
    )
    curve = contribution_curve_figure({names[fp]: view for fp, view in views.items()})
    st.plotly_chart(curve.update_layout(height=380), key="compare_curve")

    seeds_section(
        [entry["request"] for entry in entries if entry["fingerprint"] in results], view_name
    )

    st.subheader("Heatmaps on one colour scale")
    seed_from_url("compare_order", "order", list(ORDER_NAMES))
    order = st.selectbox(
        "Unit order", list(ORDER_NAMES), key="compare_order", format_func=ORDER_NAMES.get
    )
    share_in_url(view=view_name, order=order)
    zmax = shared_zmax(list(views.values()))
    fps = list(views)
    for start in range(0, len(fps), COLUMNS):
        for column, fp in zip(st.columns(COLUMNS), fps[start : start + COLUMNS], strict=False):
            figure = heatmap_figure(views[fp], order, zmax=zmax, title=names[fp])
            figure.update_traces(colorbar={"thickness": 12}, selector={"type": "heatmap"})
            figure.update_layout(yaxis_title=None)
            column.plotly_chart(figure, key=f"compare_{fp}")
    st.caption(f"All heatmaps share the colour limit ±{zmax:.3g}. {MARKS_CAPTION}")

"""Compare: two or more runs side by side: sorted contribution curves, concentration, matching heatmaps."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from msa_core.analysis.modes import (available_views, concentration, contribution_curve_figure, heatmap_figure,
                                     shared_zmax, unit_scores, view_of)

try:  # the paper's concentration measure, from the study 1 analysis when it is installed
    from msa_core.analysis.study1 import idc
except ImportError:
    idc = None
from msa_core.errors import MSAInputError
from pages.common import COMPARED_RUNS, VIEW_NAMES, explained_errors, labels_of, no_runs_yet, result, run_label, runs

COLUMNS = 3  # heatmaps per row

st.title("Compare runs")
st.markdown("Put runs side by side, e.g. the same MLP trained with no, L1 or L2 regularisation: does "
            "regularisation concentrate the work in a few hub units?")
entries = runs()
if len(entries) < 2:
    no_runs_yet("compare (it takes two)" if not entries else "compare with the one you have")
    st.stop()

labels = {entry["fingerprint"]: run_label(entry) for entry in entries}
remembered = [fp for fp in st.session_state.get(COMPARED_RUNS, []) if fp in labels]
chosen = st.multiselect("Runs", list(labels), default=remembered or list(labels)[:3], format_func=labels.__getitem__,
                        key="compare_runs")
st.session_state[COMPARED_RUNS] = chosen
if len(chosen) < 2:
    st.info("Choose at least two runs.")
    st.stop()

with explained_errors("Comparing the runs"):
    results = {fp: result(fp) for fp in chosen}
    missing = [fp for fp, res in results.items() if res is None]
    if missing:
        st.warning(f"{len(missing)} run(s) are no longer in the store and are left out.")
    results = {fp: res for fp, res in results.items() if res is not None}
    run_labels = {fp: labels[fp] for fp in results}
    names = {fp: f"{res.meta.get('request', {}).get('model', '?')} ({fp[:6]})" for fp, res in results.items()}
    common = [v for v in ("sum", "mean", "class") if all(v in available_views(res, labels_of(res)) for res in results.values())]
    view_name = st.radio("View", common, format_func=VIEW_NAMES.get, horizontal=True, key="compare_view")
    views = {fp: view_of(res, view_name, labels_of(res)) for fp, res in results.items()}

    st.subheader("Concentration")
    rows = []
    for fp, view in views.items():
        metrics = concentration(view)
        rows.append({"run": names[fp], "units": int(metrics["units"]), "Gini": metrics["gini"],
                     **{f"units for {s}": int(metrics[f"units for {s}"]) for s in ("50%", "80%", "90%")},
                     "top unit share": metrics["top unit share"]})
        if idc is not None:
            try:
                rows[-1]["IDC"] = idc(unit_scores(view))
            except MSAInputError:
                rows[-1]["IDC"] = None
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"Gini": st.column_config.NumberColumn(format="%.3f"),
                                "top unit share": st.column_config.NumberColumn(format="percent"),
                                "IDC": st.column_config.NumberColumn(
                                    format="%.3f", help="Index of Distributed Computation of each unit's mode "
                                    "averaged over the outputs (1: evenly spread, towards 0: one unit does all)")})
    st.caption("Gini 0: every unit contributes equally; higher: a few hubs carry the output. 'Units for 80%': "
               "the fewest units whose |contribution| adds up to 80% of the total.")
    curve = contribution_curve_figure({names[fp]: view for fp, view in views.items()})
    st.plotly_chart(curve.update_layout(height=380), key="compare_curve")

    st.subheader("Heatmaps on one colour scale")
    order = st.selectbox("Unit order", ["total", "index", "cluster"], key="compare_order",
                         format_func={"total": "by total |contribution|", "index": "as stored",
                                      "cluster": "clustered"}.get)
    zmax = shared_zmax(list(views.values()))
    fps = list(views)
    for start in range(0, len(fps), COLUMNS):
        for column, fp in zip(st.columns(COLUMNS), fps[start:start + COLUMNS]):
            figure = heatmap_figure(views[fp], order, zmax=zmax, title=names[fp])
            figure.update_traces(colorbar={"title": {"text": ""}, "thickness": 12}).update_layout(yaxis_title=None)
            column.plotly_chart(figure, key=f"compare_{fp}")
    st.caption(f"All heatmaps share the colour limit ±{zmax:.3g}.")

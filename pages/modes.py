"""Shapley modes: heatmap of one run (sorted / clustered, per class or sample), stderr, top units and hubs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from msa_core.analysis.modes import (ORDERS, ModesView, available_views, concentration, contribution_curve_figure,
                                     heatmap_figure, hub_table, top_units, view_of)
from pages.common import VIEW_NAMES, chosen_result, explained_errors, labels_of

ORDER_NAMES = {"index": "as stored", "total": "by total |contribution|", "cluster": "clustered (similar units together)"}

@st.fragment
def heatmap_panel(view: ModesView) -> None:
    """Unit order, stderr switch and the heatmap(s); changing them reruns only this panel."""
    left, right = st.columns([3, 1])
    order = left.selectbox("Unit order", ORDERS, format_func=ORDER_NAMES.get, key="modes_order")
    show_stderr = right.toggle("Show stderr", key="modes_stderr",
                               help="Standard errors of the estimates (zero for exact runs).")
    if show_stderr:
        if view.stderr_is_bound:
            st.caption("Standard errors of a sum or mean over samples are shown as an upper bound (the sum or "
                       "mean of the samples' errors).")
        heat, err = st.columns(2)
        heat.plotly_chart(heatmap_figure(view, order), key="heatmap")
        err.plotly_chart(heatmap_figure(view, order, stderr=True), key="stderr_heatmap")
    else:
        st.plotly_chart(heatmap_figure(view, order), key="heatmap")
    st.caption("Red: the unit pushes that output up; blue: down; white: no work for it. Each column's modes "
               "add up to the output with all units intact minus the output with all lesioned.")


st.title("Shapley modes")
fingerprint, res = chosen_result("modes_run", "show")

with explained_errors("Showing the run"):
    request = res.meta.get("request", {})
    cols = st.columns(5)
    cols[0].metric("Units", res.n_players)
    cols[1].metric("Output shape", " x ".join(map(str, res.output_shape)) or "scalar")
    cols[2].metric("Method", res.meta.get("method", request.get("method", "?")))
    cols[3].metric("Evaluations", f"{res.n_evaluations:,}")
    cols[4].metric("Efficiency gap", f"{res.efficiency_gap():.1e}",
                   help="max |sum of modes - (v_full - v_empty)|: 0 up to float error for every method")

    labels = labels_of(res)
    views = available_views(res, labels)
    left, right = st.columns([3, 1])
    view_name = left.radio("View", views, format_func=VIEW_NAMES.get, horizontal=True, key="modes_view",
                           help="Per class: each sample's mode on its own class, averaged over the class's samples.")
    sample = 0
    if view_name == "sample":
        sample = right.number_input("Sample", min_value=0, max_value=res.output_shape[0] - 1, value=0,
                                    key="modes_sample")
    view = view_of(res, view_name, labels, sample)
    heatmap_panel(view)
    hubs, tops = st.tabs(["Hub statistics", "Top units per output"], key="modes_tab", on_change="rerun")
    if hubs.open:  # only the open tab is drawn
        with hubs:
            metrics = concentration(view)
            cols = st.columns(5)
            cols[0].metric("Gini", f"{metrics['gini']:.2f}",
                           help="0: all units contribute equally; near 1: one unit does all")
            for col, share in zip(cols[1:4], ("50%", "80%", "90%")):
                col.metric(f"Units for {share}", int(metrics[f"units for {share}"]),
                           help=f"The fewest units holding {share} of the total |contribution|")
            cols[4].metric("Top unit's share", f"{metrics['top unit share']:.0%}")
            left, right = st.columns(2)
            left.dataframe(pd.DataFrame(hub_table(view)), hide_index=True, width="stretch",
                           column_config={"share of |contribution|": st.column_config.ProgressColumn(
                               format="percent", min_value=0.0, max_value=1.0)})
            right.plotly_chart(contribution_curve_figure({"this run": view}), key="curve")
    if tops.open:
        with tops:
            k = st.slider("Units per output", 1, min(10, res.n_players), min(3, res.n_players), key="modes_top_k")
            st.dataframe(pd.DataFrame(top_units(view, k)), hide_index=True, width="stretch")

"""Shapley modes: heatmap of one run (sorted / clustered, per class or sample), stderr, top units,
hubs.

Everything the page shows lives in the URL (run, view, sample, order, stderr, unit, tab, k), so a
copied URL opens the same view.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from msa_core.analysis.modes import (
    ORDERS,
    ModesView,
    available_views,
    concentration,
    contribution_curve_figure,
    heatmap_figure,
    hub_table,
    output_names,
    top_units,
    view_of,
    with_click_targets,
)
from msa_core.analysis.ranking import STATISTIC, STATISTIC_HELP, unit_ranking
from msa_core.analysis.samples import SampleInput, input_table, sample_input, unit_mode_figure
from msa_core.errors import MSAInputError
from msa_core.result import ModesResult
from msa_core.runs.report import run_facts
from pages.common import (
    VIEW_NAMES,
    chosen_result,
    explained_errors,
    labels_of,
    result,
    run_model,
    seed_from_url,
    share_in_url,
    url_flag,
)
from pages.uncertainty import MARKS_CAPTION, noise_banner, top_line

ORDER_NAMES = {
    "index": "as stored",
    "total": "by total |contribution|",
    "cluster": "clustered (similar units together)",
}
SCROLL_HEIGHT = (
    760  # pixels: a taller heatmap scrolls inside a box of this height (hover keeps working)
)
TABS = ("Hub statistics", "Top units per output")


@st.cache_resource(show_spinner=False, max_entries=256)
def the_input(fingerprint: str, index: int) -> SampleInput | None:
    """Sample ``index`` of the inputs run ``fingerprint`` scored (its task's examples, pairs or
    images), in their own form, with their group or label (None: its model cannot load here)."""
    res = result(fingerprint)
    try:
        return None if res is None else sample_input(run_model(res), index)
    except (MSAInputError, LookupError):
        return None


def show_run_inputs(res: ModesResult) -> None:
    """The text inputs the run scored (task examples, sentence pairs, masked sentences), each
    with its group, in an expander beside the modes."""
    try:
        rows = input_table(run_model(res))
    except (MSAInputError, LookupError):
        return
    if rows:
        groups = list(dict.fromkeys(row["group"] for row in rows if row["group"]))
        with st.expander(
            f"The run's {len(rows)} inputs"
            + (f" in {len(groups)} groups: {', '.join(groups)}" if groups else ""),
        ):
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def show_input(shown: SampleInput) -> None:
    """The sample the view is about: its picture or text, label and the intact prediction."""
    facts = [f"sample **{shown.index}**"]
    if shown.label is not None:
        facts.append(f"label **{shown.label}**")
    if shown.prediction is not None:
        facts.append(
            f"prediction **{shown.prediction}**"
            + (" (wrong)" if shown.prediction != shown.label else "")
        )
    if shown.image is not None:
        picture = Image.fromarray(np.uint8(255 * (1 - shown.image))).resize(
            (112, 112), Image.Resampling.NEAREST
        )
        st.image(picture, caption=", ".join(facts).replace("**", ""))
    elif shown.photo is not None:  # an image classifier's input, as the model sees it
        st.image(shown.photo, width=160, caption=", ".join(facts).replace("**", ""))
    else:
        st.markdown("Input: " + ", ".join(facts))
    if shown.text is not None:
        st.code(shown.text, language=None, wrap_lines=True)


def pick_unit() -> None:
    """Heatmap click: the clicked row's unit becomes the selected one."""
    points = st.session_state["heatmap"].selection.points if "heatmap" in st.session_state else []
    if points:
        st.session_state["modes_unit"] = str(points[0]["y"])


@st.fragment
def heatmap_panel(res: ModesResult, view: ModesView, sample: int | None) -> None:
    """Unit order, stderr switch, the heatmap(s) and the clicked unit's mode; a change reruns only
    this panel."""
    left, right = st.columns([3, 1])
    seed_from_url("modes_order", "order", ORDERS)
    order = left.selectbox("Unit order", ORDERS, format_func=ORDER_NAMES.get, key="modes_order")
    seed_from_url("modes_stderr", "stderr", cast=url_flag)
    show_stderr = right.toggle(
        "Show stderr",
        key="modes_stderr",
        help="Standard errors of the estimates (zero for exact runs), as a second heatmap "
        "below; the hover of the modes' heatmap shows them too.",
    )
    figure = heatmap_figure(view, order)
    box = (
        st.container(height=SCROLL_HEIGHT)
        if figure.layout.height > SCROLL_HEIGHT
        else st.container()
    )
    box.plotly_chart(
        with_click_targets(figure), key="heatmap", on_select=pick_unit, selection_mode="points"
    )
    st.caption(
        "Red: the unit pushes that output up; blue: down; white: no work for it. Each column's "
        "modes add up to the output with all units intact minus the output with all lesioned. "
        "Click a cell to "
        "see its unit's mode below. "
        + MARKS_CAPTION
        + (" The tree on the right joins units with similar modes." if order == "cluster" else "")
    )
    if show_stderr:
        if view.stderr_is_bound:
            st.caption(
                "Standard errors of a sum or mean over samples are shown as an upper bound (the "
                "sum or "
                "mean of the samples' errors)."
            )
        errors = heatmap_figure(view, order, stderr=True)
        box = (
            st.container(height=SCROLL_HEIGHT)
            if errors.layout.height > SCROLL_HEIGHT
            else st.container()
        )
        box.plotly_chart(errors, key="stderr_heatmap")
    seed_from_url("modes_unit", "unit", view.units)
    unit = st.selectbox(
        "Unit",
        view.units,
        key="modes_unit",
        index=None,
        placeholder="click a cell or pick a unit",
        help="The selected unit's mode in the output's own form.",
    )
    share_in_url(order=order, stderr=show_stderr, unit=unit)
    if unit is not None:
        st.plotly_chart(unit_mode_figure(res, view, unit, sample), key="unit_mode")


st.title("Shapley modes")
fingerprint, res = chosen_result("modes_run", "show")

with explained_errors("Showing the run"):
    facts = run_facts(res)
    st.markdown(
        " · ".join(
            f"**{key}** {value}"
            for key, value in facts.items()
            if key not in ("fingerprint", "units (players)")
        )
    )
    noise_banner(res)
    top_line(unit_ranking(res))

    labels = labels_of(res)
    views = available_views(res, labels)
    seed_from_url("modes_view", "view", views)
    left, right = st.columns([3, 1])
    view_name = left.radio(
        "View",
        views,
        format_func=VIEW_NAMES.get,
        horizontal=True,
        key="modes_view",
        help="Per class: each sample's mode on its own class, averaged over the class's samples.",
    )
    sample = None
    shown = None
    if view_name == "sample":
        n_samples = res.output_shape[0]
        seed_from_url("modes_sample", "sample", range(n_samples), cast=int)
        sample = int(
            right.number_input("Sample", min_value=0, max_value=n_samples - 1, key="modes_sample")
        )
        shown = the_input(fingerprint, sample)
    names = output_names(res)
    if shown is not None and shown.tokens and len(shown.tokens) == res.output_shape[-1]:
        names = [
            f"{position} {token}" for position, token in enumerate(shown.tokens)
        ]  # unique column names
    view = view_of(res, view_name, labels, sample or 0, class_names=names)
    share_in_url(view=view_name, sample=sample)
    if shown is not None:
        pictured = shown.image is not None or shown.photo is not None
        left, right = st.columns([1, 4]) if pictured else (st.container(), None)
        with left:
            show_input(shown)
    show_run_inputs(res)
    heatmap_panel(res, view, sample)

    seed_from_url("modes_tab", "tab", TABS)
    hubs, tops = st.tabs(list(TABS), key="modes_tab", on_change="rerun")
    share_in_url(tab=st.session_state.get("modes_tab"))
    if hubs.open:  # only the open tab is drawn
        with hubs:
            metrics = concentration(view)
            cols = st.columns(5)
            cols[0].metric(
                "Gini",
                f"{metrics['gini']:.2f}",
                help="0: all units contribute equally; near 1: one unit does all",
            )
            for col, share in zip(cols[1:4], ("50%", "80%", "90%"), strict=True):
                col.metric(
                    f"Units for {share}",
                    int(metrics[f"units for {share}"]),
                    help=f"The fewest units holding {share} of the total |contribution|",
                )
            cols[4].metric("Top unit's share", f"{metrics['top unit share']:.0%}")
            left, right = st.columns(2)
            left.markdown(
                f"**Units ranked by {STATISTIC}** (the ranking every page uses; a rank range "
                "where the order is not resolved at 95%)"
            )
            left.dataframe(
                pd.DataFrame(hub_table(view, unit_ranking(res))),
                hide_index=True,
                width="stretch",
                column_config={
                    STATISTIC: st.column_config.NumberColumn(format="%.4g", help=STATISTIC_HELP),
                    "stderr": st.column_config.NumberColumn(format="%.2g"),
                    "share of |contribution|": st.column_config.ProgressColumn(
                        format="percent", min_value=0.0, max_value=1.0
                    ),
                },
            )
            right.plotly_chart(contribution_curve_figure({"this run": view}), key="curve")
    if tops.open:
        with tops:
            seed_from_url("modes_top_k", "k", range(1, min(10, res.n_players) + 1), cast=int)
            if "modes_top_k" not in st.session_state:
                st.session_state["modes_top_k"] = min(3, res.n_players)
            k = st.slider("Units per output", 1, min(10, res.n_players), key="modes_top_k")
            share_in_url(k=k)
            st.dataframe(pd.DataFrame(top_units(view, k)), hide_index=True, width="stretch")

"""Interaction modes: which pairs of a run's top units work together (or back each other up),
shaped like the output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from msa_core.analysis.interactions import (
    DEFAULT_TOP,
    image_figure,
    interaction_matrix_figure,
    is_image,
    network_figure,
    pair_and_units,
    pair_stderr,
    pair_values,
    strength,
    strongest_pairs,
)
from msa_core.analysis.modes import ORDERS, available_views, heatmap_figure, view_of
from msa_core.analysis.ranking import STATISTIC, unit_ranking
from msa_core.deployment import deployment
from msa_core.interaction_result import InteractionResult
from msa_core.names import INTERACTION_METHODS
from msa_core.runs.interaction_runs import (
    DEFAULT_COST,
    InteractionRequest,
    delete_interactions,
    list_interactions,
    stored_interactions,
)
from pages.common import (
    RUN_ID_LENGTH,
    VIEW_NAMES,
    chosen_result,
    explained_errors,
    format_seconds,
    jobs,
    labels_of,
    model,
    show_notice,
    store,
    submit_job,
)
from pages.uncertainty import MARKS_CAPTION, noise_banner, top_line

JOBS = "interaction_jobs"  # session key: ids of the interaction runs this session launched
ORDER_NAMES = {
    "index": f"by the run's ranking ({STATISTIC})",
    "total": "by total |interaction|",
    "cluster": "clustered",
}
SUMMED = "summed over outputs"


@st.cache_resource(show_spinner=False, max_entries=16)
def interaction_result(directory: str, key: str) -> InteractionResult:
    stored = stored_interactions(store(), key)
    if stored is None:  # raising keeps a missing result out of the cache
        raise LookupError(key)
    return stored


def launch_form(fingerprint: str, n_players: int) -> None:
    """K, budget, method and seed of an interaction run of the picked run; submits it to the job
    manager."""
    with st.form("interactions_launch"):
        left, middle, right = st.columns(3)
        top = left.number_input(
            "Top units K",
            min_value=2,
            max_value=n_players,
            value=min(DEFAULT_TOP, n_players),
            key="ix_top",
            help=f"The first K units of the run's ranking ({STATISTIC}, as on every page); "
            "all K(K-1)/2 pairs are measured.",
        )
        cost = middle.number_input(
            "Budget (x the run's evaluations)",
            min_value=0.0,  # 0 reaches the request and is refused there, with the reason shown
            # (below a minimum, the browser would silently keep the previous budget)
            value=DEFAULT_COST,
            step=0.5,
            key="ix_cost",
            help="The interaction run's evaluations as a multiple of the run's.",
        )
        method = right.selectbox(
            "Method",
            INTERACTION_METHODS,
            key="ix_method",
            help="auto: exact when all 2^N coalitions fit the budget, else sampled.",
        )
        seed = left.number_input("Seed", min_value=0, value=0, step=1, key="ix_seed")
        submitted = st.form_submit_button("Launch interaction run", type="primary")
    if submitted:
        with explained_errors("Launching the interaction run"):
            request = InteractionRequest(
                parent=fingerprint, top=int(top), method=method, cost=float(cost), seed=int(seed)
            )
            submit_job(request, ("success", "Interaction run launched."), remember=JOBS)
    show_notice()


def progress_panel() -> None:
    """Progress of this session's interaction runs, polled every second while one is queued or
    running."""
    launched = st.session_state.get(JOBS, [])
    if not launched:
        return
    with explained_errors("Reading the progress"):
        polling = any(jobs().status(key).state in ("queued", "running") for key in launched)

    @st.fragment(run_every=1.0 if polling else None)
    def panel() -> None:
        active = False
        for key in launched:
            status = jobs().status(key)
            if status.state in ("failed", "cancelled"):
                st.error(f"Interaction run `{key[:11]}` {status.state}: {status.error}")
                continue
            active = active or status.state in ("queued", "running")
            fraction = min(1.0, status.done / status.total) if status.total else 0.0
            eta = (
                ""
                if status.state == "done"
                else f" · about {format_seconds(status.eta_seconds)} left"
            )
            st.progress(
                fraction, text=f"`{key[:11]}` · {status.state} · {status.done:,} evaluations{eta}"
            )
        if polling and not active:
            st.rerun(scope="app")

    panel()


def interaction_label(entry: dict) -> str:
    """A short readable name of a stored interaction run."""
    return (
        f"{entry['n_units']} units · {entry['method']} · {entry['n_evaluations']:,} evals "
        f"({entry['cost_ratio']:.1f}x the run) · seed {entry['request']['seed']} · "
        f"{entry['key'][3:11]}"
    )


def pick_interactions(fingerprint: str) -> InteractionResult | None:
    """A select box over the picked run's stored interaction runs; the chosen result, or None."""
    entries = list_interactions(store(), fingerprint)
    if not entries:
        st.info(
            "No interaction run of this run yet. Launch one above: with the default budget it "
            "costs about twice the run."
        )
        return None
    labels = {entry["key"]: interaction_label(entry) for entry in entries}
    key = st.selectbox(
        "Interaction run", list(labels), format_func=labels.__getitem__, key="ix_result"
    )
    if deployment().allows_deletion and st.button("Delete this interaction run", key="ix_delete"):
        delete_interactions(store(), key)
        st.rerun()
    try:
        return interaction_result(str(store().directory), key)
    except LookupError:
        st.warning("This interaction run is no longer in the store; launch it again.")
        return None


def element_picker(result: InteractionResult) -> tuple[int, ...] | None:
    """None for the sum over outputs, else one index per output axis."""
    shape = result.output_shape
    if not shape:
        return None
    what = st.radio(
        "Matrix of", (SUMMED, "one output element"), horizontal=True, key="ix_element_mode"
    )
    if what == SUMMED:
        return None
    cols = st.columns(len(shape))
    return tuple(
        int(
            col.number_input(
                f"output axis {axis} (0..{size - 1})",
                min_value=0,
                max_value=size - 1,
                value=0,
                key=f"ix_axis_{axis}",
            )
        )
        for axis, (col, size) in enumerate(zip(cols, shape, strict=True))
    )


def pair_picker(result: InteractionResult, clicked: tuple[str, str] | None) -> tuple[int, int]:
    """Positions of the shown pair: the clicked cell, else the two select boxes (default: the
    strongest pair)."""
    names = result.player_names
    if clicked is not None and clicked[0] != clicked[1] and set(clicked) <= set(names):
        st.session_state["ix_unit_a"], st.session_state["ix_unit_b"] = clicked
    elif (
        st.session_state.get("ix_unit_a") not in names
        or st.session_state.get("ix_unit_b") not in names
    ):
        best = strongest_pairs(result, 1)[0]
        st.session_state["ix_unit_a"], st.session_state["ix_unit_b"] = (
            best["unit a"],
            best["unit b"],
        )
    left, right = st.columns(2)
    a = left.selectbox("Unit A", names, key="ix_unit_a")
    b = right.selectbox("Unit B", names, key="ix_unit_b")
    return names.index(a), names.index(b)


def clicked_cell(event) -> tuple[str, str] | None:
    """The (row, column) unit names of a clicked matrix cell, or None."""
    points = (event or {}).get("selection", {}).get("points", [])
    if not points or "x" not in points[0] or "y" not in points[0]:
        return None
    return str(points[0]["y"]), str(points[0]["x"])


def pair_panel(result: InteractionResult, parent, a: int, b: int) -> None:
    """The pair's interaction mode beside the two units' modes, in the output's form, and its
    numbers."""
    if a == b:
        st.info("Pick two different units.")
        return
    trio = pair_and_units(result, parent, a, b)
    cols = st.columns(3)
    cols[0].metric(
        "Interaction summed over outputs",
        f"{pair_values(result)[a, b]:+.4g}",
        help="Positive: the pair does more together than the two apart (synergy); negative: less "
        "(redundancy: each can stand in for the other).",
    )
    cols[1].metric("Strength (sum of |interaction|)", f"{strength(result)[a, b]:.4g}")
    cols[2].metric(
        "Standard error of the sum",
        f"{result.summed_stderr[a, b]:.3g}",
        help="Zero for exact runs. Each output element's own standard error is in the export.",
    )
    if is_image(result.output_shape):
        st.plotly_chart(image_figure(trio), key="ix_pair_images")
        st.caption(
            "Left: the pair's interaction mode (mean over samples); then each unit's Shapley "
            "mode, on one scale. Red: raises the pixel; blue: lowers it."
        )
        return
    labels = labels_of(parent)
    views = available_views(trio, labels)
    view = st.radio("View", views, format_func=VIEW_NAMES.get, horizontal=True, key="ix_view")
    st.plotly_chart(
        heatmap_figure(view_of(trio, view, labels), title="Interaction mode and the units' modes"),
        key="ix_pair_heatmap",
    )
    st.caption(
        "First row: the pair's interaction mode; then the two units' Shapley modes (same scale)."
    )


def lesion_links(result: InteractionResult, fingerprint: str, a: int, b: int) -> None:
    """Lesion the pair: the non-additive effect at once, and a link to the Lesion lab with both
    units lesioned."""
    names = [result.player_names[a], result.player_names[b]]
    st.page_link(
        "pages/lesion_lab.py",
        label=f"Open the Lesion lab with {names[0]} and {names[1]} lesioned",
        icon=":material/toggle_on:",
        query_params=[("run", fingerprint[:RUN_ID_LENGTH]), *(("off", name) for name in names)],
    )
    if st.button(
        "Lesion the pair here",
        key="ix_lesion_pair",
        help="Four evaluations: intact, without A, without B, without both.",
    ):
        request = result.meta.get("parent_request", {})
        with explained_errors("Lesioning the pair"):
            game = model(request["model"]).game(
                request["units"], request["output"], request["lesion"]
            )
            coalitions = np.ones((4, game.n_players), dtype=bool)
            units = result.players[[a, b]]
            coalitions[1, units[0]] = coalitions[2, units[1]] = False
            coalitions[3, units] = False
            values = game(coalitions)
            values = (
                values.detach().cpu().double().numpy()
                if hasattr(values, "detach")
                else np.asarray(values)
            )
            flat = values.reshape(4, -1)
            both = flat[0] - flat[3]
            apart = (flat[0] - flat[1]) + (flat[0] - flat[2])
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "effect of lesioning both (sum over outputs)": both.sum(),
                            "sum of the single lesions' effects": apart.sum(),
                            "non-additive part": (apart - both).sum(),
                        }
                    ]
                ),
                hide_index=True,
            )
            st.caption(
                "An effect is intact minus lesioned. The non-additive part, the single effects' "
                "sum minus "
                "the pair's effect, is v(all) - v(without A) - v(without B) + v(without both): "
                "the pair's "
                "interaction at the full coalition, one of the terms the interaction index "
                "averages "
                "(positive: the two lesions overlap, as when each unit needs the other)."
            )


st.title("Interaction modes")
st.markdown(
    "Which pairs of units only work together (positive, red: synergy) or stand in for each other "
    "(negative, blue: redundancy)? The **interaction mode** of two units is the Shapley "
    "interaction index "
    "of the pair: the weighted mean, over coalitions without both, of what the two add together "
    "minus "
    "what each adds alone, an array shaped like the output."
)
fingerprint, parent = chosen_result("ix_run", "refine with interactions")
noise_banner(parent)
top_line(unit_ranking(parent), k=DEFAULT_TOP)
with explained_errors("Preparing the launch form"):
    launch_form(fingerprint, parent.n_players)
progress_panel()
with explained_errors("Showing the interaction run"):
    result = pick_interactions(fingerprint)
    if result is not None:
        cols = st.columns(4)
        cols[0].metric("Units", result.n_units)
        cols[1].metric("Pairs", len(result.pairs()))
        cols[2].metric("Method", result.meta.get("method", "?"))
        cols[3].metric(
            "Evaluations",
            f"{result.n_evaluations:,}",
            delta=f"{result.meta.get('cost_ratio', 0):.2f}x the run",
            delta_color="off",
        )
        element = element_picker(result)
        order = st.selectbox(
            "Unit order",
            ORDERS,
            index=ORDERS.index("cluster"),
            format_func=ORDER_NAMES.get,
            key="ix_order",
        )
        values = pair_values(result, element)
        what = "summed over outputs" if element is None else f"output {list(element)}"
        event = st.plotly_chart(
            interaction_matrix_figure(
                result,
                values,
                order,
                title=f"Interaction matrix, {what}",
                stderr=pair_stderr(result, element),
            ),
            key="ix_matrix",
            on_select="rerun",
            selection_mode="points",
        )
        st.caption("Click a cell to show that pair below. " + MARKS_CAPTION)
        a, b = pair_picker(result, clicked_cell(event))
        pair_panel(result, parent, a, b)
        lesion_links(result, fingerprint, a, b)
        network, table = st.tabs(["Network of the strongest pairs", "Strongest pairs"])
        with network:
            n_edges = st.slider(
                "Pairs shown", 1, len(result.pairs()), min(20, len(result.pairs())), key="ix_edges"
            )
            st.plotly_chart(network_figure(result, n_edges), key="ix_network")
        with table:
            st.dataframe(
                pd.DataFrame(strongest_pairs(result, 20)), hide_index=True, width="stretch"
            )

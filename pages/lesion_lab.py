"""Lesion lab: switch units off and see the model's output change at once; top-k by Shapley mode vs random."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from msa_core.analysis.modes import available_views, classification, lesion_sets, unit_scores, view_of
from msa_core.lesion import ModelGame
from msa_core.zoo import list_models
from pages.common import CURRENT_RUN, explained_errors, labels_of, model, result, run_label, runs

N_RANDOM = 5  # random draws of k units in the top-k comparison
GALLERY = 12  # changed samples shown


@st.cache_resource(show_spinner=False)
def game(name: str, granularity: str, output: str) -> ModelGame:
    """The model's game over the units of ``granularity`` (built once per process)."""
    return model(name).game(granularity, output)


@st.cache_resource(show_spinner=False)
def intact_values(name: str, granularity: str, output: str) -> np.ndarray:
    """The output with every unit intact ``[1, B, ...]`` (computed once per process)."""
    g = game(name, granularity, output)
    return values_of(g, np.ones((1, g.n_players), dtype=bool))


def values_of(g: ModelGame, coalitions: np.ndarray) -> np.ndarray:
    """The game's values for coalitions ``[C, N]`` as a numpy array ``[C, B, ...]``."""
    values = g(coalitions)
    return values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)


def restore_all(key: str) -> None:
    st.session_state[key] = []


def apply_lesion(key: str, units: list[str]) -> None:
    st.session_state[key] = units


def class_accuracy_figure(per_class: np.ndarray) -> go.Figure:
    """Grouped bars of per-class accuracy ``[2, n_classes]``: intact vs lesioned."""
    classes = [str(c) for c in range(per_class.shape[1])]
    figure = go.Figure([go.Bar(x=classes, y=per_class[0], name="intact", marker_color="#9aa5b1"),
                        go.Bar(x=classes, y=per_class[1], name="lesioned", marker_color="#d6604d")])
    figure.update_layout(barmode="group", title="Accuracy per class", xaxis_title="class", yaxis_title="accuracy",
                         yaxis_range=[0, 1.05], height=320, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                         legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"})
    return figure


def digit_images(inputs: np.ndarray) -> list[np.ndarray] | None:
    """Square grayscale pictures of flat inputs ``[B, side*side]`` (upscaled for display), else None."""
    side = int(round(np.sqrt(inputs.shape[-1]))) if inputs.ndim == 2 else 0
    if side * side != inputs.shape[-1] or side == 0:
        return None
    scale = max(1, 48 // side)
    pictures = inputs.reshape(-1, side, side)
    pictures = (pictures - pictures.min()) / (np.ptp(pictures) or 1.0)
    return [np.kron(p, np.ones((scale, scale))) for p in pictures]


def classifier_view(name: str, granularity: str, coalition: np.ndarray) -> None:
    """Predictions and accuracy with every unit intact vs with the toggled units lesioned."""
    loaded = model(name)
    labels = loaded.labels.cpu().numpy()
    values = np.concatenate([intact_values(name, granularity, "logits"),
                             values_of(game(name, granularity, "logits"), coalition[None])])
    predictions, accuracy, per_class = classification(values, labels)
    changed = np.flatnonzero(predictions[0] != predictions[1])
    cols = st.columns(4)
    cols[0].metric("Units lesioned", f"{int((~coalition).sum())} / {len(coalition)}")
    cols[1].metric("Accuracy, intact", f"{accuracy[0]:.1%}")
    cols[2].metric("Accuracy, lesioned", f"{accuracy[1]:.1%}", delta=f"{accuracy[1] - accuracy[0]:+.1%}")
    cols[3].metric("Predictions changed", f"{len(changed)} / {len(labels)}")
    left, right = st.columns([3, 2])
    left.plotly_chart(class_accuracy_figure(per_class), key="lesion_class_accuracy")
    pictures = digit_images(loaded.inputs.cpu().numpy()) if hasattr(loaded.inputs, "cpu") else None
    with right:
        st.markdown("**Samples whose prediction changed**")
        if not len(changed):
            st.caption("None: every prediction is the same as with all units intact.")
        elif pictures is not None:
            shown = changed[:GALLERY]
            st.image([pictures[i] for i in shown], width=56, clamp=True,
                     caption=[f"{labels[i]}: {predictions[0, i]}→{predictions[1, i]}" for i in shown])
            st.caption("Caption: true label: prediction intact → lesioned.")
        else:
            st.caption(", ".join(f"#{i}: {predictions[0, i]}→{predictions[1, i]}" for i in changed[:GALLERY]))


def image_view(name: str, granularity: str, coalition: np.ndarray) -> None:
    """Generated images with every unit intact vs with the toggled units lesioned."""
    values = np.concatenate([intact_values(name, granularity, "image"),
                             values_of(game(name, granularity, "image"), coalition[None])])
    images = values[:, :4]
    if images.ndim == 5:  # [2, n, C, H, W] -> channels last
        images = images.transpose(0, 1, 3, 4, 2)
    images = np.clip((images - images.min()) / (np.ptp(images) or 1.0), 0, 1)
    for row, title in enumerate(("Intact", "Lesioned")):
        st.markdown(f"**{title}**")
        st.image(list(images[row]), width=128, clamp=True)


def top_k_section(name: str, granularity: str) -> None:
    """Lesion the top-k units of a stored run's ranking against k random units (classifiers)."""
    st.subheader("Top-k by Shapley mode vs k random units")
    entries = [e for e in runs() if e["request"]["model"] == name and e["request"]["units"] == granularity]
    if not entries:
        st.info("No stored run of this model and granularity yet, so there is no ranking of its units. "
                "Launch one on the Run page.")
        return
    labels_by_fp = {e["fingerprint"]: run_label(e) for e in entries}
    fingerprint = st.selectbox("Rank units by the run", list(labels_by_fp), format_func=labels_by_fp.get,
                               key="lesion_rank_run")
    res = result(fingerprint)
    if res is None:
        st.warning("That run is no longer in the store.")
        return
    g = game(name, granularity, "logits")
    k = st.slider("k", 1, g.n_players, max(1, g.n_players // 5), key="lesion_k")
    labels = labels_of(res)
    view = view_of(res, "class" if "class" in available_views(res, labels) else None, labels)
    scores = unit_scores(view)
    if st.button(f"Lesion the top {k} vs {k} random units", type="primary"):
        coalitions = lesion_sets(scores, k, N_RANDOM, seed=0)
        keep_only = ~coalitions[:1]  # only the top k intact
        _, accuracy, _ = classification(values_of(g, np.concatenate([coalitions, keep_only])),
                                        model(name).labels)
        st.session_state["lesion_rank"] = {"key": (fingerprint, k), "top": accuracy[0],
                                           "random": accuracy[1:-1], "keep": accuracy[-1]}
    outcome = st.session_state.get("lesion_rank")
    if outcome and outcome["key"] == (fingerprint, k):
        intact = classification(intact_values(name, granularity, "logits"), model(name).labels)[1][0]
        cols = st.columns(4)
        cols[0].metric("Intact", f"{intact:.1%}")
        cols[1].metric(f"Top {k} lesioned", f"{outcome['top']:.1%}", delta=f"{outcome['top'] - intact:+.1%}")
        cols[2].metric(f"{k} random lesioned", f"{outcome['random'].mean():.1%}",
                       delta=f"{outcome['random'].mean() - intact:+.1%}",
                       help=f"mean of {N_RANDOM} random draws (sd {outcome['random'].std():.1%})")
        cols[3].metric(f"Only top {k} kept", f"{outcome['keep']:.1%}", delta=f"{outcome['keep'] - intact:+.1%}")
    top = [g.player_names[i] for i in np.argsort(-scores, kind="stable")[:k]]
    st.button(f"Set the toggles to the top {k} lesion", on_click=apply_lesion, args=(toggles_key(name, granularity), top))


def toggles_key(name: str, granularity: str) -> str:
    return f"lesioned::{name}::{granularity}"


st.title("Lesion lab")
st.markdown("Click units to lesion them (zeroed) or restore them; the output updates at once.")
names = [card.name for card in list_models()]
if not names:
    st.info("No bundled model is available.")
    st.stop()
current = result(st.session_state[CURRENT_RUN]) if st.session_state.get(CURRENT_RUN) else None
current_model = current.meta.get("request", {}).get("model") if current is not None else None
left, right = st.columns(2)
name = left.selectbox("Model", names, index=names.index(current_model) if current_model in names else 0,
                      key="lesion_model", help="Defaults to the model of the run you opened last.")
with explained_errors(f"Loading {name}"):
    loaded = model(name)
    granularity = right.selectbox("Unit granularity", list(loaded.card.granularities), key="lesion_granularity")
    g = game(name, granularity, loaded.card.outputs[0])
    key = toggles_key(name, granularity)
    lesioned = st.pills(f"Lesioned units (of {g.n_players})", g.player_names, selection_mode="multi", key=key,
                        help="Highlighted units are lesioned.")
    st.button("Restore all units", on_click=restore_all, args=(key,), disabled=not lesioned)
    coalition = ~np.isin(g.player_names, lesioned)
    outputs = loaded.card.outputs
    if "logits" in outputs and loaded.labels is not None and loaded.labels.ndim == 1:
        classifier_view(name, granularity, coalition)
        top_k_section(name, granularity)
    elif "image" in outputs:
        image_view(name, granularity, coalition)
    else:
        st.info(f"The lesion lab shows classifiers and image generators; {name} produces "
                f"{', '.join(outputs)}. Use the Experts page for language models.")

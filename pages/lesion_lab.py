"""Lesion lab: switch units off and see the model's output change at once; top-k by Shapley mode vs random."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from PIL import Image, ImageDraw, ImageFont

from msa_core.analysis import study2
from msa_core.analysis.lesions import lesion_sets
from msa_core.analysis.modes import available_views, classification, unit_scores, view_of
from msa_core.lesion import ModelGame
from msa_core.zoo import LoadedModel, list_models, moe
from pages.common import CURRENT_RUN, explained_errors, labels_of, model, result, run_label, runs

N_RANDOM = 5  # random draws of k units in the top-k comparison
GALLERY = 8  # changed samples shown


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
                         xaxis_type="category",
                         yaxis_range=[0, 1.05], height=320, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                         legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"})
    return figure


def digit_gallery(inputs: np.ndarray, indices: np.ndarray, captions: list[str], per_row: int = 4) -> Image.Image | None:
    """One picture of the flat square inputs ``[B, side*side]`` at ``indices``, each over its caption, ``per_row``
    to a row (one image keeps a rerun to a single download); None when the inputs are not square pictures."""
    side = int(round(np.sqrt(inputs.shape[-1]))) if inputs.ndim == 2 else 0
    if side == 0 or side * side != inputs.shape[-1]:
        return None
    scale, caption_height, gap = max(1, 56 // side), 18, 10
    tile = side * scale
    font = ImageFont.load_default(size=14)
    pictures = (inputs[indices].reshape(-1, side, side) - inputs.min()) / (np.ptp(inputs) or 1.0)
    rows = -(-len(indices) // per_row)
    gallery = Image.new("L", (min(len(indices), per_row) * (tile + gap), rows * (tile + caption_height + gap)), 255)
    draw = ImageDraw.Draw(gallery)
    for position, (picture, caption) in enumerate(zip(pictures, captions)):
        left, top = (position % per_row) * (tile + gap), (position // per_row) * (tile + caption_height + gap)
        pixels = Image.fromarray(np.uint8(255 * (1 - picture))).resize((tile, tile), Image.Resampling.NEAREST)
        gallery.paste(pixels, (left, top))
        draw.text((left + tile // 2, top + tile + 2), caption, fill=0, font=font, anchor="mt")
    return gallery


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
    with right:
        st.markdown("**Samples whose prediction changed**")
        shown = changed[:GALLERY]
        captions = [f"{predictions[0, i]}->{predictions[1, i]}" + (f" ({labels[i]})" if labels[i] != predictions[0, i] else "")
                    for i in shown]
        gallery = digit_gallery(loaded.inputs.cpu().numpy(), shown, captions) \
            if len(shown) and isinstance(loaded.inputs, torch.Tensor) else None
        if not len(changed):
            st.caption("None: every prediction is the same as with all units intact.")
        elif gallery is not None:
            st.image(gallery)
            st.caption(f"{len(changed)} changed; the first {len(shown)} shown as prediction intact -> lesioned "
                       "(the true label in brackets where the intact model was wrong).")
        else:
            st.caption(", ".join(f"#{i} {caption}" for i, caption in zip(shown, captions)))


def image_grid(rows: np.ndarray, scale: int = 3, gap: int = 4) -> Image.Image:
    """One picture of image rows ``[R, n, C, H, W]`` (C = 1 or 3, values in [0, 1]), upscaled ``scale`` times."""
    r, n, c, h, w = rows.shape
    tiles = np.clip(rows, 0.0, 1.0).transpose(0, 1, 3, 4, 2)  # [R, n, H, W, C]
    tiles = np.repeat(np.repeat(tiles, scale, axis=2), scale, axis=3)
    grid = np.ones((r * (h * scale + gap), n * (w * scale + gap), c))
    for i in range(r):
        for j in range(n):
            top, left = i * (h * scale + gap), j * (w * scale + gap)
            grid[top:top + h * scale, left:left + w * scale] = tiles[i, j]
    pixels = np.uint8(255 * grid)
    return Image.fromarray(pixels[..., 0] if c == 1 else pixels)


def image_view(name: str, granularity: str, coalition: np.ndarray, shown: int = 8) -> None:
    """Generated images with every unit intact, with the toggled units lesioned, and their difference."""
    values = np.concatenate([intact_values(name, granularity, "image"),
                             values_of(game(name, granularity, "image"), coalition[None])])[:, :shown]
    if values.ndim != 5 or values.shape[2] not in (1, 3):
        st.info(f"The generator's output {list(values.shape[1:])} is not a batch of images to show.")
        return
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / ((high - low) or 1.0)
    difference = np.abs(scaled[1] - scaled[0])
    rows = np.stack([scaled[0], scaled[1], difference / (difference.max() or 1.0)])
    change = float(np.abs(values[1] - values[0]).mean())
    st.metric("Mean |pixel change|", f"{change:.4f}")
    st.image(image_grid(rows), caption="Rows: intact, lesioned, |difference| (scaled to its maximum).")


def token_change_figure(change: np.ndarray, labels: list[str]) -> go.Figure:
    """Bars of each next byte's log-prob change ``[T]`` (lesioned minus intact), readable byte labels on the axis."""
    positions = list(range(len(labels)))
    figure = go.Figure(go.Bar(x=positions, y=change, marker_color=np.where(change < 0, "#d6604d", "#4393c3"),
                              hovertext=labels, hovertemplate="%{hovertext}: %{y:+.3f}<extra></extra>"))
    figure.update_layout(title="Change of each next byte's log-prob (lesioned - intact)", yaxis_title="nats",
                         xaxis={"tickmode": "array", "tickvals": positions, "ticktext": labels, "tickangle": 0},
                         height=300, margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return figure


@st.cache_data(show_spinner="Generating…", max_entries=64)
def continuation(name: str, granularity: str, prompt: str, lesioned: tuple[str, ...], n_bytes: int = 40) -> str:
    """Greedy continuation of ``prompt`` with the ``lesioned`` units removed (cached per lesion and prompt)."""
    loaded = model(name)
    keep = ~np.isin(game(name, granularity, "target_logprob").player_names, lesioned)
    generated = study2.greedy_continuation(loaded.model, moe.encode(prompt), n_bytes, keep=keep,
                                           units=list(loaded.units(granularity)))
    return generated.decode("utf-8", errors="replace")


def language_model_view(name: str, granularity: str, coalition: np.ndarray, lesioned: list[str]) -> None:
    """Per-token log-probs of the held-out sentences intact vs lesioned, and greedy continuations."""
    ids = model(name).inputs["input_ids"]
    values = np.concatenate([intact_values(name, granularity, "target_logprob"),
                             values_of(game(name, granularity, "target_logprob"), coalition[None])])  # [2, B, T-1]
    means = values.mean(axis=(1, 2))
    cols = st.columns(3)
    cols[0].metric("Units lesioned", f"{int((~coalition).sum())} / {len(coalition)}")
    cols[1].metric("Mean log-prob per byte, intact", f"{means[0]:.3f}")
    cols[2].metric("Lesioned", f"{means[1]:.3f}", delta=f"{means[1] - means[0]:+.3f}")
    texts = [bytes(int(t) for t in row[1:]).decode("utf-8", errors="replace") for row in ids]
    row = st.selectbox("Sentence", range(len(texts)), format_func=lambda i: texts[i], key="lesion_sentence")
    st.plotly_chart(token_change_figure(values[1, row] - values[0, row], moe.token_labels(ids[row, 1:])),
                    key="lesion_tokens")
    prompt = st.text_input("Prompt for a greedy continuation", value=texts[row][:16], key="lesion_prompt")
    if prompt:
        left, right = st.columns(2)
        left.markdown(f"**Intact**: {prompt}**{continuation(name, granularity, prompt, ())}**")
        right.markdown(f"**Lesioned**: {prompt}**{continuation(name, granularity, prompt, tuple(sorted(lesioned)))}**")


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


def is_classifier(loaded: LoadedModel) -> bool:
    """A model with logits and one class label per input (predictions and accuracy make sense)."""
    return "logits" in loaded.card.outputs and loaded.labels is not None and loaded.labels.ndim == 1


@st.fragment
def lesion_panel(name: str, granularity: str) -> None:
    """The unit toggles and the output they give; a toggle reruns only this panel."""
    loaded = model(name)
    g = game(name, granularity, loaded.card.outputs[0])
    key = toggles_key(name, granularity)
    lesioned = st.pills(f"Lesioned units (of {g.n_players})", g.player_names, selection_mode="multi", key=key,
                        help="Highlighted units are lesioned.")
    st.button("Restore all units", on_click=restore_all, args=(key,), disabled=not lesioned)
    coalition = ~np.isin(g.player_names, lesioned)
    outputs = loaded.card.outputs
    with explained_errors("Running the lesioned model"):
        if is_classifier(loaded):
            classifier_view(name, granularity, coalition)
        elif "image" in outputs:
            image_view(name, granularity, coalition)
        elif loaded.card.family == "moe":
            language_model_view(name, granularity, coalition, lesioned)
        else:
            st.info(f"The lesion lab shows classifiers, image generators and the bundled byte-level LM; {name} "
                    f"produces {', '.join(outputs)}.")


def toggles_key(name: str, granularity: str) -> str:
    return f"lesioned::{name}::{granularity}"


def follow_link() -> None:
    """``?run=<fingerprint>&lesion=a,b`` (the Interactions page's shortcut): open the run's model
    and units with those units lesioned, once."""
    params = st.query_params
    if "run" in params and "lesion" in params:
        linked = result(params["run"])
        if linked is not None and "request" in linked.meta:
            request = linked.meta["request"]
            st.session_state[CURRENT_RUN] = params["run"]
            st.session_state["lesion_granularity"] = request["units"]
            lesioned = params["lesion"].split(",")
            st.session_state[toggles_key(request["model"], request["units"])] = lesioned
        st.query_params.clear()


st.title("Lesion lab")
st.markdown("Click units to lesion them (zeroed) or restore them; the output updates at once.")
follow_link()
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
    lesion_panel(name, granularity)
    if is_classifier(loaded):
        top_k_section(name, granularity)

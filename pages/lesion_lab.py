"""Lesion lab: switch units off and see the model's output change at once; units ranked by a run's
Shapley values, and the score after lesioning the top, random or bottom k units for every k.

It opens on the current run (the URL's ``run``, else the session's): its model, units and lesion
kind.
The model, units, lesion kind, lesioned units, ranking run and k live in the URL.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from PIL import Image, ImageDraw, ImageFont

from msa_core.analysis import study2
from msa_core.analysis.lesion_curves import KCurves, k_curve_figure, k_curves, k_grid
from msa_core.analysis.lesion_scores import lesion_score, lesion_view
from msa_core.analysis.modes import classification
from msa_core.analysis.ranking import STATISTIC, unit_ranking
from msa_core.lesion import ModelGame
from msa_core.names import LESION_HELP, LESIONS, lesion_label, lesions_help
from msa_core.zoo import list_models, moe
from pages.common import (
    CURRENT_RUN,
    RUN_ID_LENGTH,
    explained_errors,
    model,
    plain,
    result,
    run_label,
    runs,
    seed_from_url,
    share_in_url,
    url_run,
    url_value,
)
from pages.uncertainty import noise_banner, ranking_table

N_RANDOM = 5  # random draws of k units per k on the lesion curve
GALLERY = 8  # changed samples shown


@st.cache_resource(show_spinner=False)
def game(name: str, granularity: str, output: str, lesion: str = "zero") -> ModelGame:
    """The model's game over the units of ``granularity`` with ``lesion`` (built once)."""
    return model(name).game(granularity, output, lesion=lesion)


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
    figure = go.Figure(
        [
            go.Bar(x=classes, y=per_class[0], name="intact", marker_color="#9aa5b1"),
            go.Bar(x=classes, y=per_class[1], name="lesioned", marker_color="#d6604d"),
        ]
    )
    figure.update_layout(
        barmode="group",
        title="Accuracy per class",
        xaxis_title="class",
        yaxis_title="accuracy",
        xaxis_type="category",
        yaxis_range=[0, 1.05],
        height=320,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
    )
    return figure


def digit_gallery(
    inputs: np.ndarray, indices: np.ndarray, captions: list[str], per_row: int = 4
) -> Image.Image | None:
    """One picture of the flat square inputs ``[B, side*side]`` at ``indices``, each over its
    caption, ``per_row`` to a row (one image keeps a rerun to a single download); None when the
    inputs are not square pictures."""
    side = int(round(np.sqrt(inputs.shape[-1]))) if inputs.ndim == 2 else 0
    if side == 0 or side * side != inputs.shape[-1]:
        return None
    scale, caption_height, gap = max(1, 56 // side), 18, 10
    tile = side * scale
    font = ImageFont.load_default(size=14)
    pictures = (inputs[indices].reshape(-1, side, side) - inputs.min()) / (np.ptp(inputs) or 1.0)
    rows = -(-len(indices) // per_row)
    gallery = Image.new(
        "L", (min(len(indices), per_row) * (tile + gap), rows * (tile + caption_height + gap)), 255
    )
    draw = ImageDraw.Draw(gallery)
    for position, (picture, caption) in enumerate(zip(pictures, captions, strict=False)):
        left, top = (
            (position % per_row) * (tile + gap),
            (position // per_row) * (tile + caption_height + gap),
        )
        pixels = Image.fromarray(np.uint8(255 * (1 - picture))).resize(
            (tile, tile), Image.Resampling.NEAREST
        )
        gallery.paste(pixels, (left, top))
        draw.text((left + tile // 2, top + tile + 2), caption, fill=0, font=font, anchor="mt")
    return gallery


def classifier_view(name: str, granularity: str, coalition: np.ndarray, lesion: str) -> None:
    """Predictions and accuracy with every unit intact vs with the toggled units lesioned."""
    loaded = model(name)
    labels = loaded.labels.cpu().numpy()
    values = np.concatenate(
        [
            intact_values(name, granularity, "logits"),
            values_of(game(name, granularity, "logits", lesion), coalition[None]),
        ]
    )
    predictions, accuracy, per_class = classification(values, labels)
    changed = np.flatnonzero(predictions[0] != predictions[1])
    cols = st.columns(4)
    cols[0].metric("Units lesioned", f"{int((~coalition).sum())} / {len(coalition)}")
    cols[1].metric("Accuracy, intact", f"{accuracy[0]:.1%}")
    cols[2].metric(
        "Accuracy, lesioned", f"{accuracy[1]:.1%}", delta=f"{accuracy[1] - accuracy[0]:+.1%}"
    )
    cols[3].metric("Predictions changed", f"{len(changed)} / {len(labels)}")
    left, right = st.columns([3, 2])
    left.plotly_chart(class_accuracy_figure(per_class), key="lesion_class_accuracy")
    with right:
        st.markdown("**Samples whose prediction changed**")
        shown = changed[:GALLERY]
        captions = [
            f"{predictions[0, i]}->{predictions[1, i]}"
            + (f" ({labels[i]})" if labels[i] != predictions[0, i] else "")
            for i in shown
        ]
        gallery = (
            digit_gallery(loaded.inputs.cpu().numpy(), shown, captions)
            if len(shown) and isinstance(loaded.inputs, torch.Tensor)
            else None
        )
        if not len(changed):
            st.caption("None: every prediction is the same as with all units intact.")
        elif gallery is not None:
            st.image(gallery)
            st.caption(
                f"{len(changed)} changed; the first {len(shown)} shown as prediction intact -> "
                "lesioned (the true label in brackets where the intact model was wrong)."
            )
        else:
            st.caption(
                ", ".join(f"#{i} {caption}" for i, caption in zip(shown, captions, strict=True))
            )


def image_grid(rows: np.ndarray, scale: int = 3, gap: int = 4) -> Image.Image:
    """One picture of image rows ``[R, n, C, H, W]`` (C = 1 or 3, values in [0, 1]), upscaled
    ``scale`` times.
    """
    r, n, c, h, w = rows.shape
    tiles = np.clip(rows, 0.0, 1.0).transpose(0, 1, 3, 4, 2)  # [R, n, H, W, C]
    tiles = np.repeat(np.repeat(tiles, scale, axis=2), scale, axis=3)
    grid = np.ones((r * (h * scale + gap), n * (w * scale + gap), c))
    for i in range(r):
        for j in range(n):
            top, left = i * (h * scale + gap), j * (w * scale + gap)
            grid[top : top + h * scale, left : left + w * scale] = tiles[i, j]
    pixels = np.uint8(255 * grid)
    return Image.fromarray(pixels[..., 0] if c == 1 else pixels)


def image_view(
    name: str, granularity: str, coalition: np.ndarray, lesion: str, shown: int = 8
) -> None:
    """Generated images with every unit intact, with the toggled units lesioned, and their
    difference.
    """
    values = np.concatenate(
        [
            intact_values(name, granularity, "image"),
            values_of(game(name, granularity, "image", lesion), coalition[None]),
        ]
    )[:, :shown]
    if values.ndim != 5 or values.shape[2] not in (1, 3):
        st.info(
            f"The generator's output {list(values.shape[1:])} is not a batch of images to show."
        )
        return
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / ((high - low) or 1.0)
    difference = np.abs(scaled[1] - scaled[0])
    rows = np.stack([scaled[0], scaled[1], difference / (difference.max() or 1.0)])
    change = float(np.abs(values[1] - values[0]).mean())
    st.metric("Mean |pixel change|", f"{change:.4f}")
    st.image(
        image_grid(rows), caption="Rows: intact, lesioned, |difference| (scaled to its maximum)."
    )


def token_change_figure(change: np.ndarray, labels: list[str]) -> go.Figure:
    """Bars of each next byte's log-prob change ``[T]`` (lesioned minus intact), readable byte
    labels on the axis.
    """
    positions = list(range(len(labels)))
    figure = go.Figure(
        go.Bar(
            x=positions,
            y=change,
            marker_color=np.where(change < 0, "#d6604d", "#4393c3"),
            hovertext=labels,
            hovertemplate="%{hovertext}: %{y:+.3f}<extra></extra>",
        )
    )
    figure.update_layout(
        title="Change of each next byte's log-prob (lesioned - intact)",
        yaxis_title="nats",
        xaxis={"tickmode": "array", "tickvals": positions, "ticktext": labels, "tickangle": 0},
        height=300,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return figure


@st.cache_data(show_spinner="Generating…", max_entries=64)
def continuation(
    name: str, granularity: str, prompt: str, lesioned: tuple[str, ...], n_bytes: int = 40
) -> str:
    """Greedy continuation of ``prompt`` with the ``lesioned`` units removed (cached per lesion and
    prompt).
    """
    loaded = model(name)
    keep = ~np.isin(game(name, granularity, "target_logprob").player_names, lesioned)
    generated = study2.greedy_continuation(
        loaded.model, moe.encode(prompt), n_bytes, keep=keep, units=list(loaded.units(granularity))
    )
    return generated.decode("utf-8", errors="replace")


def language_model_view(
    name: str, granularity: str, coalition: np.ndarray, lesioned: list[str], lesion: str
) -> None:
    """Per-token log-probs of the held-out sentences intact vs lesioned, and greedy
    continuations."""
    ids = model(name).inputs["input_ids"]
    values = np.concatenate(
        [
            intact_values(name, granularity, "target_logprob"),
            values_of(game(name, granularity, "target_logprob", lesion), coalition[None]),
        ]
    )  # [2, B, T-1]
    means = values.mean(axis=(1, 2))
    cols = st.columns(3)
    cols[0].metric("Units lesioned", f"{int((~coalition).sum())} / {len(coalition)}")
    cols[1].metric("Mean log-prob per byte, intact", f"{means[0]:.3f}")
    cols[2].metric("Lesioned", f"{means[1]:.3f}", delta=f"{means[1] - means[0]:+.3f}")
    texts = [bytes(int(t) for t in row[1:]).decode("utf-8", errors="replace") for row in ids]
    row = st.selectbox(
        "Sentence", range(len(texts)), format_func=lambda i: texts[i], key="lesion_sentence"
    )
    st.plotly_chart(
        token_change_figure(values[1, row] - values[0, row], moe.token_labels(ids[row, 1:])),
        key="lesion_tokens",
    )
    prompt = st.text_input(
        "Prompt for a greedy continuation", value=texts[row][:16], key="lesion_prompt"
    )
    if prompt:
        left, right = st.columns(2)
        intact = continuation(name, granularity, prompt, ())
        lesioned_text = continuation(name, granularity, prompt, tuple(sorted(lesioned)))
        left.markdown(f"**Intact**: {plain(prompt)}**{plain(intact)}**")  # typed text: plain
        right.markdown(f"**Lesioned**: {plain(prompt)}**{plain(lesioned_text)}**")


@st.cache_data(show_spinner="Lesioning k units for every k…", max_entries=32)
def lesion_curves(
    name: str, granularity: str, lesion: str, fingerprint: str, ranking: tuple[float, ...]
):
    """The top / random / bottom k curves of the model's score (cached per run, lesion, model)."""
    loaded = model(name)
    score = lesion_score(loaded)
    g = game(name, granularity, score.output, lesion)
    intact = intact_values(name, granularity, score.output)

    def evaluate(coalitions: np.ndarray) -> np.ndarray:
        return score.evaluate(values_of(g, coalitions), intact, loaded.labels)

    return k_curves(evaluate, np.asarray(ranking), n_random=N_RANDOM, seed=0)


def ranking_section(
    name: str, granularity: str, lesion: str, wanted_run: str | None
) -> dict[str, str]:
    """Rank the units by a stored run (``ranking.unit_ranking``, the ranking every page shows) and
    draw the lesion curves; returns {unit: its label "#rank unit (value ± stderr)"} (empty without
    a run of this model and granularity)."""
    st.subheader(f"Units ranked by {STATISTIC}; lesion curves")
    entries = [
        e for e in runs() if e["request"]["model"] == name and e["request"]["units"] == granularity
    ]
    if not entries:
        st.info(
            "No stored run of this model and granularity yet, so there is no ranking of its units. "
            "Launch one on the Run page."
        )
        return {}
    labels_by_fp = {e["fingerprint"]: run_label(e) for e in entries}
    if st.session_state.get("lesion_rank_run") not in labels_by_fp:
        st.session_state["lesion_rank_run"] = (
            wanted_run if wanted_run in labels_by_fp else next(iter(labels_by_fp))
        )
    fingerprint = st.selectbox(
        "Rank units by the run",
        list(labels_by_fp),
        format_func=labels_by_fp.get,
        key="lesion_rank_run",
    )
    share_in_url(run=fingerprint[:RUN_ID_LENGTH])
    res = result(fingerprint)
    if res is None:
        st.warning("That run is no longer in the store.")
        return {}
    noise_banner(res)
    ranked = unit_ranking(res)
    scores = ranked.scores
    ranks = ranked.labels()
    loaded = model(name)
    score_name = lesion_score(loaded).name
    left, right = st.columns([2, 3])
    with left:
        ranking_table(ranked, key="lesion_ranking")
    drawn = lesion_view(loaded) == "classifier" or st.session_state.get("lesion_curves_for") == (
        name,
        granularity,
        lesion,
    )
    with right:
        if not drawn:  # the LM and generators take seconds: on request
            st.caption(
                f"The lesion curves run the model "
                f"{(2 + N_RANDOM) * len(k_grid(len(scores)))} times."
            )
            if st.button("Draw the lesion curves", key="lesion_draw_curves"):
                st.session_state["lesion_curves_for"] = (name, granularity, lesion)
                drawn = True
        if drawn:
            curves = lesion_curves(name, granularity, lesion, fingerprint, tuple(scores.tolist()))
            st.plotly_chart(k_curve_figure(curves, score_name, len(scores)), key="lesion_curve")
    seed_from_url("lesion_k", "k", range(1, len(scores) + 1), cast=int)
    if "lesion_k" not in st.session_state:
        st.session_state["lesion_k"] = max(1, len(scores) // 5)
    k = st.slider("k", 1, len(scores), key="lesion_k")
    share_in_url(k=k)
    if drawn:
        k_metrics(curves, k, lesion, score_name)
    top = ranked.top(k)
    if not ranked.top_resolved(k):
        st.warning(
            f"This top {k} is not resolved: the run's 95% intervals do not separate all of its "
            f"units from the unit ranked {k + 1}, so the lesion may not be the run's true top k.",
            icon=":material/help:",
        )
    st.button(
        f"Set the toggles to the top {k} lesion",
        on_click=apply_lesion,
        args=(toggles_key(name, granularity), top),
    )
    return ranks


def k_metrics(curves: KCurves, k: int, lesion: str, score_name: str) -> None:
    """The curves' scores at the grid's k nearest ``k``."""
    at = int(np.argmin(np.abs(curves.ks - k)))
    shown = (
        (lambda value: f"{value:.1%}")
        if score_name == "accuracy"
        else (lambda value: f"{value:.4g}")
    )
    cols = st.columns(4)
    cols[0].metric("Intact", shown(curves.top[0]) if curves.ks[0] == 0 else "?")
    cols[1].metric(f"Top {curves.ks[at]} lesioned", shown(curves.top[at]))
    cols[2].metric(
        f"{curves.ks[at]} random lesioned",
        shown(curves.random_mean[at]),
        help=f"mean of {N_RANDOM} random draws (range {shown(curves.random_low[at])} to "
        f"{shown(curves.random_high[at])})",
    )
    cols[3].metric(f"Bottom {curves.ks[at]} lesioned", shown(curves.bottom[at]))
    st.caption(
        f"{score_name.capitalize()} with {lesion} lesions (a lesioned unit {LESION_HELP[lesion]}). "
        "The curve's points are "
        "every k "
        "up to 16 units, else an even grid (the metrics show the grid's k nearest the slider)."
    )


@st.fragment
def lesion_panel(name: str, granularity: str, lesion: str, ranks: dict[str, str]) -> None:
    """The unit toggles (by rank when a run ranks them) and the output they give; a toggle reruns
    only
    this panel."""
    loaded = model(name)
    g = game(name, granularity, loaded.card.outputs[0], lesion)
    key = toggles_key(name, granularity)
    units = (
        sorted(g.player_names, key=list(ranks).index)
        if set(ranks) == set(g.player_names)
        else list(g.player_names)
    )
    seed_from_url(key, "off", units, many=True)
    shown = ranks.get if ranks else str
    lesioned = st.pills(
        f"Lesioned units (of {g.n_players})",
        units,
        selection_mode="multi",
        key=key,
        format_func=shown,
        help="Highlighted units are lesioned. With a ranking run, units are in the order of "
        f"their {STATISTIC}: #rank (a range where not resolved), name (value ± stderr).",
    )
    share_in_url(off=list(lesioned))
    st.button("Restore all units", on_click=restore_all, args=(key,), disabled=not lesioned)
    coalition = ~np.isin(g.player_names, lesioned)
    view = lesion_view(loaded)
    with explained_errors("Running the lesioned model"):
        if view == "classifier":
            classifier_view(name, granularity, coalition, lesion)
        elif view == "image":
            image_view(name, granularity, coalition, lesion)
        elif view == "language model":
            language_model_view(name, granularity, coalition, lesioned, lesion)
        else:
            st.info(
                "The lesion lab shows classifiers, image generators and the bundled byte-level "
                f"LM; {name} produces {', '.join(loaded.card.outputs)}."
            )


def toggles_key(name: str, granularity: str) -> str:
    return f"lesioned::{name}::{granularity}"


st.title("Lesion lab")
st.markdown("Click units to lesion them or restore them; the output updates at once.")
names = [card.name for card in list_models()]
if not names:
    st.info("No bundled model is available.")
    st.stop()
entries = runs()
opened = (
    url_run([e["fingerprint"] for e in entries])
    or st.session_state.get(CURRENT_RUN)
    or (entries[0]["fingerprint"] if entries else None)
)
current = next((e["request"] for e in entries if e["fingerprint"] == opened), {})
seed_from_url("lesion_model", "model", names)
if st.session_state.get("lesion_follows") != opened:  # a run viewed elsewhere since: open on it
    st.session_state["lesion_follows"] = opened
    if current.get("model") in names and url_value("model", names) is None:
        for key in ("lesion_model", "lesion_granularity", "lesion_kind", "lesion_rank_run"):
            st.session_state.pop(key, None)
        st.session_state["lesion_model"] = current["model"]
if "lesion_model" not in st.session_state:  # no run at all: a classifier, not the generator
    st.session_state["lesion_model"] = next(
        (card.name for card in list_models() if card.family == "mlp"), names[0]
    )
left, middle, right = st.columns(3)
name = left.selectbox(
    "Model", names, key="lesion_model", help="Opens on the model of the run you opened last."
)
with explained_errors(f"Loading {name}"):
    loaded = model(name)
    granularities = list(loaded.card.granularities)
    seed_from_url("lesion_granularity", "units", granularities)
    if st.session_state.get("lesion_granularity") not in granularities:
        st.session_state["lesion_granularity"] = (
            current.get("units")
            if current.get("model") == name and current.get("units") in granularities
            else granularities[0]
        )
    granularity = middle.selectbox("Unit granularity", granularities, key="lesion_granularity")
    seed_from_url("lesion_kind", "lesion", LESIONS)
    if "lesion_kind" not in st.session_state:
        st.session_state["lesion_kind"] = (
            current.get("lesion") if current.get("lesion") in LESIONS else LESIONS[0]
        )
    lesion = right.radio(
        "Lesion",
        LESIONS,
        key="lesion_kind",
        horizontal=True,
        format_func=lesion_label,
        help=lesions_help(),
    )
    share_in_url(model=name, units=granularity, lesion=lesion)
    panel = st.container()  # drawn first, filled last: its toggles show the ranking's ranks
    ranks = ranking_section(
        name, granularity, lesion, opened if current.get("model") == name else None
    )
    if not ranks:
        share_in_url(run=None, k=None)
    with panel:
        lesion_panel(name, granularity, lesion, ranks)

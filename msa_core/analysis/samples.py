"""What a per-sample view is about: the sample's input in its own form, and one unit's mode in the
output's own form.

``sample_input`` gives a model's input ``index`` as a picture (a flat square input such as a digit,
or a generator's image, or a photograph), or as text (a byte-level LM's sentence, a task's prompt
and target, a sentence pair, a masked sentence), with its label or group and the intact model's
prediction. ``run_model`` is the model of a stored run with the inputs that run scored (its task's
examples, pairs or images, not the model's defaults); ``input_table`` lists a text run's inputs
with their groups. ``unit_mode_figure`` shows one unit's mode as an image for image outputs
``[N, B, C, H, W]`` and as bars with stderr over the view's outputs (classes, tokens) otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from msa_core.analysis.modes import ModesView
from msa_core.errors import MSAInputError
from msa_core.lesion.outputs import logits_of
from msa_core.result import ModesResult
from msa_core.zoo import LoadedModel


@dataclass
class SampleInput:
    """One input of a model: ``image [H, W]`` (in [0, 1], 1 = ink) or ``text``, and its names."""

    index: int
    label: str | None = None
    prediction: str | None = None
    image: np.ndarray | None = None
    photo: np.ndarray | None = None  # a photograph, uint8 [H, W, 3] (image classifiers)
    text: str | None = None
    tokens: list[str] = field(default_factory=list)  # readable label of each scored next token


def _batch_size(inputs: object) -> int:
    if isinstance(inputs, dict):
        return int(next(iter(inputs.values())).shape[0])
    return int(inputs.shape[0])  # type: ignore[attr-defined]


def run_model(meta: dict[str, Any]) -> LoadedModel:
    """The model of a stored run (its result's ``meta``) with the inputs it scored: the task
    examples stored with an LLM task run, else its request's task (pairs, masked sentences,
    images), else the model's default inputs.

    Raises:
        MSAInputError: the run's model or task cannot be loaded here.
    """
    from msa_core.runs.request import RunRequest
    from msa_core.tasks import task_of_run, with_task
    from msa_core.zoo import load_model

    request = RunRequest.from_dict(meta["request"])
    if "task" in meta:
        return with_task(load_model(request.model), task_of_run(meta)[0])
    return request.load()


def input_table(loaded: LoadedModel) -> list[dict[str, str]] | None:
    """One row per input (``index``, ``group``, ``input``) of a model whose inputs are text (a task,
    sentence pairs, masked sentences); None for other inputs."""
    if loaded.task is None and loaded.card.family != "encoder":
        return None
    rows = []
    for index in range(_batch_size(loaded.inputs)):
        shown = sample_input(loaded, index)
        rows.append({"index": str(index), "group": shown.label or "", "input": shown.text or ""})
    return rows


def sample_input(loaded: LoadedModel, index: int) -> SampleInput:
    """The model's default input ``index`` in its own form (see the module docstring).

    Raises:
        MSAInputError: ``index`` is not a sample of the model's inputs.
    """
    n = _batch_size(loaded.inputs)
    if not 0 <= index < n:
        raise MSAInputError(f"sample {index} is out of range; {loaded.card.name} has {n} inputs")
    labels = loaded.labels
    label = str(int(labels[index])) if labels is not None and labels.ndim == 1 else None
    inputs = loaded.inputs
    if loaded.task is not None:  # a language model on a task: the example, by its group
        example = loaded.task.task.examples[index]
        return SampleInput(
            index, example.group, text=f"Prompt: {example.prompt}\nTarget: {example.target}"
        )
    if loaded.card.family in ("vision", "encoder"):
        return _checkpoint_sample(loaded, index)
    if isinstance(inputs, dict) and "input_ids" in inputs:  # a byte-level LM: BOS, then UTF-8 bytes
        from msa_core.zoo import moe

        ids = inputs["input_ids"][index]
        data = bytes(int(t) for t in ids[1:] if 0 <= int(t) < 256)
        language = (
            moe.LANGUAGES[int(label)]
            if label is not None and loaded.card.family == "moe"
            else label
        )
        return SampleInput(
            index,
            language,
            text=data.decode("utf-8", errors="replace"),
            tokens=moe.token_labels(ids[1:]),
        )
    with torch.no_grad():
        output = loaded.model(inputs[index : index + 1].to(next(loaded.model.parameters()).device))
    output = output.detach().float().cpu()
    if output.ndim == 4:  # a generator: the picture it makes of this latent
        picture = output[0].mean(0).numpy()
        low, high = float(picture.min()), float(picture.max())
        return SampleInput(index, label, image=(picture - low) / ((high - low) or 1.0))
    prediction = str(int(output.argmax(-1)[0])) if output.ndim == 2 else None
    flat = inputs[index].detach().float().cpu().numpy().ravel()
    side = int(round(np.sqrt(flat.size)))
    image = None
    if side * side == flat.size:
        image = (flat.reshape(side, side) - flat.min()) / (float(np.ptp(flat)) or 1.0)
    return SampleInput(index, label, prediction, image=image)


def _checkpoint_sample(loaded: LoadedModel, index: int) -> SampleInput:
    """A photograph with its class and the intact prediction, or a sentence pair."""
    if loaded.card.family == "encoder":
        groups = loaded.card.facts.get("row_groups") or []
        group = str(groups[index]) if index < len(groups) else None
        ids = loaded.inputs["input_ids"][index]
        mask = loaded.inputs["attention_mask"][index].bool()
        tokenizer = loaded.tokenizer
        answers = loaded.labels
        if "mask_index" in loaded.inputs and answers is not None:  # [MASK] kept, CLS/SEP not
            special = set(tokenizer.all_special_ids) - {tokenizer.mask_token_id}
            kept = [int(t) for t in ids[mask] if int(t) not in special]
            sentence = tokenizer.decode(kept)
            answer = tokenizer.decode([int(answers[index])]).strip()
            return SampleInput(index, group, text=f"Sentence: {sentence}\nAnswer: {answer}")
        a, b = (
            tokenizer.decode(row[keep], skip_special_tokens=True)
            for row, keep in zip(ids, mask, strict=True)
        )
        return SampleInput(index, group, text=f"A: {a}\nB: {b}")
    from msa_core.zoo.vision import class_name, picture_of, pixels_of

    image = loaded.inputs[index : index + 1]
    with torch.no_grad():
        predicted = int(logits_of(loaded.model(image)).argmax(-1)[0])
    label = class_name(int(loaded.labels[index])) if loaded.labels is not None else None
    photo = picture_of(image[0], pixels_of(loaded.card))
    return SampleInput(index, label, class_name(predicted), photo=photo)


def unit_mode_figure(
    result: ModesResult, view: ModesView, unit: str, sample: int | None = None
) -> go.Figure:
    """One unit's mode in the output's own form: for image outputs ``[N, B, C, H, W]`` the pixel
    map of sample ``sample`` (default the mean over samples, channels averaged); else bars over the
    view's outputs with their standard errors.

    Raises:
        MSAInputError: ``unit`` is not one of the view's units.
    """
    if unit not in view.units:
        raise MSAInputError(
            f"unknown unit {unit!r}; the run's units are {', '.join(view.units[:5])}..."
        )
    suffix = f" ({view.value_unit})" if view.value_unit else ""
    modes = np.asarray(result.modes)
    if modes.ndim == 5:
        row = modes[result.player_names.index(unit)]
        pixels = (row[sample] if sample is not None else row.mean(0)).mean(0)  # [H, W]
        limit = float(np.abs(pixels).max()) or 1.0
        figure = go.Figure(
            go.Heatmap(
                z=pixels,
                colorscale="RdBu_r",
                zmin=-limit,
                zmax=limit,
                zmid=0.0,
                colorbar={"title": {"text": f"mode{suffix}"}},
                hovertemplate="row %{y}, column %{x}: %{z:.3g}<extra></extra>",
            )
        )
        where = f"sample {sample}" if sample is not None else "mean over samples"
        figure.update_layout(
            title=f"{unit}: its mode on each pixel, {where}",
            yaxis={"autorange": "reversed", "scaleanchor": "x", "visible": False},
            xaxis={"visible": False},
            height=420,
            plot_bgcolor="white",
        )
        return figure
    row = view.units.index(unit)
    values, errors = view.values[row], view.stderr[row]
    figure = go.Figure(
        go.Bar(
            x=view.outputs,
            y=values,
            error_y={"type": "data", "array": errors},
            marker_color=np.where(values < 0, "#4393c3", "#d6604d"),
            hovertemplate="%{x}: %{y:.4g}<extra></extra>",
        )
    )
    figure.update_layout(
        title=f"{unit}: its mode on each output, {view.title}",
        yaxis_title=f"mode{suffix}",
        xaxis={
            "type": "category",
            "tickmode": "array",
            "tickvals": view.outputs,
            "ticktext": view.outputs,
            "title": "output",
            "automargin": True,
        },
        height=340,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return figure

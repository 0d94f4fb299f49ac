"""Study 2: language-specific experts in a mixture-of-experts LM (PAPER.md "Study 2").

Numbers first, figures from them. A result's players are experts named ``L<layer>.E<index>``; its
game is either per-token log-probs (``target_logprob``, modes ``[N, B, T-1]``) or the per-language
mean log-prob vector (``language_logprob``, modes ``[N, B, L]`` whose mean over B is the language's
mode). By linearity both give the same language x expert matrix ``[L, N]`` (``language_matrix``).

- ``layer_shares``: each language's share of |contribution| per layer;
- ``selectivity``: contribution to one language minus the mean contribution to the others, so
  universal hubs (which help every language) rank low; ``largest_hub``: the expert with the largest
  |contribution| and its share of each language's total;
- ``selective_lesion``: a language's top experts by selectivity removed; every language's loss (mean
  negative log-prob per byte) before and after, and a greedy continuation of a prompt;
- ``removal_curves``: loss vs k experts removed, highest-Shapley-first and lowest-first;
- ``pruning``: keep only the top-k experts by Shapley value vs k random experts;
- ``task_correlation``: language x language correlation of contribution vectors.

Losses come from a ``ModelGame`` on sentences other than the game's (the shipped held-out set).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Self

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

from msa_core.analysis import lesions
from msa_core.analysis.lesions import rank_order, top_k_count
from msa_core.errors import MSAInputError
from msa_core.lesion import ModelGame
from msa_core.lesion.inputs import model_device
from msa_core.result import ModesResult
from msa_core.units import Experts, UnitSpec

Progress = Callable[[int, int], None]  # told (done, total) as long work goes on

EXPERT_NAME = re.compile(r"^L(\d+)\.E(\d+)$")
EXPERT_UNITS = Experts("model.layers.*.mlp")
LESION_SIZE = 2  # experts per selective lesion ("at most 2" in the pass criteria)
SELECTIVE_RATIO = 3.0  # target rise vs the others' mean rise
REMOVAL_FRACTION = 0.1  # "k = 10% of experts"


# ---------------------------------------------------------------- matrices from results


def expert_layers(player_names: Sequence[str]) -> np.ndarray:
    """Layer index ``[N]`` of each expert player ``L<layer>.E<i>``."""
    layers = []
    for name in player_names:
        match = EXPERT_NAME.match(name)
        if match is None:
            raise MSAInputError(
                f"player {name!r} is not a routed expert named 'L<layer>.E<index>'; "
                "Study 2 needs a result over experts"
            )
        layers.append(int(match.group(1)))
    return np.array(layers)


def language_matrix(
    result: ModesResult, languages: np.ndarray, n_languages: int, output: str = "target_logprob"
) -> np.ndarray:
    """The language x expert matrix ``[L, N]``: each expert's mode of each language's mean log-prob.

    ``languages [B]``: the language index of each input row. ``target_logprob`` modes ``[N, B, T]``
    are averaged over the language's rows and tokens; ``language_logprob`` modes ``[N, B, L]`` over
    rows.
    """
    return _language_means(result.modes, languages, n_languages, output)


def language_matrix_stderr(
    result: ModesResult, languages: np.ndarray, n_languages: int, output: str = "target_logprob"
) -> np.ndarray:
    """``[L, N]``: standard errors of ``language_matrix``, the same means of the result's stderr
    (an upper bound: the errors of the averaged outputs are correlated in an unknown way)."""
    return _language_means(result.stderr, languages, n_languages, output)


def selectivity_stderr(errors: np.ndarray) -> np.ndarray:
    """``[L, N]``: an upper bound on the standard errors of ``selectivity`` from the matrix's
    ``errors [L, N]`` (its own error plus the mean of the others')."""
    errors = np.asarray(errors, dtype=float)
    n_languages = len(errors)
    return errors + (errors.sum(0, keepdims=True) - errors) / max(n_languages - 1, 1)


def _language_means(
    array: np.ndarray, languages: np.ndarray, n_languages: int, output: str
) -> np.ndarray:
    """``language_matrix`` of ``array [N, B, T | L]`` (modes or their stderr)."""
    if output not in ("target_logprob", "language_logprob"):
        raise MSAInputError(
            f"Study 2 needs output 'target_logprob' or 'language_logprob'; got {output!r}"
        )
    modes = np.asarray(array, dtype=np.float64)
    languages = np.asarray(languages)
    if modes.ndim != 3 or modes.shape[1] != len(languages):
        raise MSAInputError(
            f"expected modes [N, B, T] or [N, B, L] with B = {len(languages)} input rows; "
            f"got {list(modes.shape)}"
        )
    if output == "language_logprob":
        if modes.shape[2] != n_languages:
            raise MSAInputError(
                f"language_logprob modes need {n_languages} columns; got {modes.shape[2]}"
            )
        return modes.mean(axis=1).T
    return np.stack(
        [modes[:, languages == index].mean(axis=(1, 2)) for index in range(n_languages)]
    )


def layer_shares(matrix: np.ndarray, layers: np.ndarray) -> np.ndarray:
    """``[L, n_layers]``: each language's share of its total |contribution| held by each layer's
    experts."""
    absolute = np.abs(matrix)
    per_layer = np.stack(
        [absolute[:, layers == layer].sum(axis=1) for layer in np.unique(layers)], axis=1
    )
    return per_layer / per_layer.sum(axis=1, keepdims=True)


def selectivity(matrix: np.ndarray) -> np.ndarray:
    """``[L, N]``: contribution to a language minus the mean contribution to the other languages."""
    n_languages = len(matrix)
    if n_languages < 2:
        raise MSAInputError("selectivity needs at least two languages")
    others = (matrix.sum(axis=0, keepdims=True) - matrix) / (n_languages - 1)
    return matrix - others


def largest_hub(matrix: np.ndarray) -> tuple[int, np.ndarray]:
    """The expert with the largest total |contribution| and its share of each language's
    |contribution| ``[L]``."""
    absolute = np.abs(matrix)
    hub = int(np.argmax(absolute.sum(axis=0)))
    return hub, absolute[:, hub] / absolute.sum(axis=1)


def task_correlation(matrix: np.ndarray) -> np.ndarray:
    """``[L, L]`` Pearson correlation of the languages' contribution vectors over experts."""
    return np.corrcoef(matrix)


# ---------------------------------------------------------------- lesions on a model


def _on_device(inputs: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    device = model_device(model)
    return {key: value.to(device) for key, value in inputs.items()}


def language_losses(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    languages: torch.Tensor,
    coalitions: np.ndarray,
    units: UnitSpec = EXPERT_UNITS,
    progress: Progress | None = None,
) -> np.ndarray:
    """``[C, L]``: mean negative log-prob per byte of each language's rows under each coalition
    ``[C, N]``; ``progress(done, C)`` is told after each coalition (then they run one at a time).
    """
    inputs = _on_device(inputs, model)
    game = ModelGame(model, inputs, units, output="target_logprob")
    coalitions = np.asarray(coalitions, dtype=bool)
    if coalitions.ndim != 2 or coalitions.shape[1] != game.n_players:
        raise MSAInputError(
            f"coalitions must be [C, {game.n_players}] (one column per expert); "
            f"got {list(coalitions.shape)}"
        )
    if progress is None:
        per_row = -game(coalitions).double().mean(dim=-1).cpu().numpy()  # [C, B]
    else:
        rows = []
        for done in range(1, len(coalitions) + 1):
            rows.append(-game(coalitions[done - 1 : done]).double().mean(dim=-1).cpu().numpy())
            progress(done, len(coalitions))
        per_row = np.concatenate(rows)
    row_language = np.asarray(languages)
    return np.stack(
        [per_row[:, row_language == index].mean(axis=1) for index in range(row_language.max() + 1)],
        axis=1,
    )


def greedy_continuation(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    n_bytes: int,
    keep: np.ndarray | None = None,
    units: UnitSpec = EXPERT_UNITS,
    progress: Progress | None = None,
) -> bytes:
    """The next ``n_bytes`` bytes picked greedily after ``prompt_ids [T]`` with the experts where
    ``keep [N]`` is False removed; ``progress(done, n_bytes)`` is told after each byte.
    """
    ids = prompt_ids.to(model_device(model))
    generated = []
    for done in range(1, n_bytes + 1):
        game = ModelGame(model, {"input_ids": ids[None]}, units, output="logits")
        row = np.ones((1, game.n_players), bool) if keep is None else np.asarray(keep, bool)[None]
        token = int(game(row)[0, 0, -1, :256].argmax())
        generated.append(token)
        ids = torch.cat([ids, ids.new_tensor([token])])
        if progress is not None:
            progress(done, n_bytes)
    return bytes(generated)


@dataclass
class SelectiveLesion:
    """One language's top experts by selectivity removed: every language's loss before and after."""

    language: int
    experts: list[int]  # player indices removed
    loss_before: np.ndarray  # [L]
    loss_after: np.ndarray  # [L]
    continuation_before: str = ""
    continuation_after: str = ""

    @property
    def rise(self) -> np.ndarray:
        """``[L]`` loss after minus before."""
        return self.loss_after - self.loss_before

    @property
    def ratio(self) -> float:
        """The target language's rise over the mean rise of the others (inf when theirs is <= 0 and
        its own > 0)."""
        own = self.rise[self.language]
        others = np.delete(self.rise, self.language).mean()
        if others <= 0:
            return float("inf") if own > 0 else float("nan")
        return float(own / others)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (``from_dict`` reads them back)."""
        return {
            "language": self.language,
            "experts": list(self.experts),
            "loss_before": self.loss_before.tolist(),
            "loss_after": self.loss_after.tolist(),
            "continuation_before": self.continuation_before,
            "continuation_after": self.continuation_after,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelectiveLesion:
        return cls(
            int(data["language"]),
            [int(e) for e in data["experts"]],
            np.asarray(data["loss_before"], dtype=np.float64),
            np.asarray(data["loss_after"], dtype=np.float64),
            str(data.get("continuation_before", "")),
            str(data.get("continuation_after", "")),
        )


def selective_lesions(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    languages: torch.Tensor,
    matrix: np.ndarray,
    k: int = LESION_SIZE,
    prompts: Sequence[torch.Tensor] | None = None,
    n_bytes: int = 40,
    progress: Progress | None = None,
) -> list[SelectiveLesion]:
    """For each language, remove its top-``k`` experts by ``selectivity(matrix)``; losses on
    ``inputs``.

    prompts: one id sequence per language (optional): its greedy continuation before and after.
    progress: told ``(done, total)`` after each of the L + 1 lesioned passes.
    """
    n_languages, n = matrix.shape
    if not 1 <= k <= n:
        raise MSAInputError(f"k must be between 1 and {n} experts; got {k}")
    picks = [list(rank_order(row)[:k]) for row in selectivity(matrix)]
    coalitions = np.ones((n_languages + 1, n), bool)
    for language, experts in enumerate(picks):
        coalitions[language + 1, experts] = False
    losses = language_losses(model, inputs, languages, coalitions, progress=progress)
    lesions = []
    for language, experts in enumerate(picks):
        lesion = SelectiveLesion(
            language, [int(e) for e in experts], losses[0], losses[language + 1]
        )
        if prompts is not None:
            before = greedy_continuation(model, prompts[language], n_bytes)
            after = greedy_continuation(model, prompts[language], n_bytes, coalitions[language + 1])
            lesion.continuation_before = before.decode("utf-8", errors="replace")
            lesion.continuation_after = after.decode("utf-8", errors="replace")
        lesions.append(lesion)
    return lesions


@dataclass
class ArrayRecord:
    """A dataclass of numpy arrays that a run keeps as JSON (``RunStore.keep_analysis``).

    >>> curves = RemovalCurves(np.array([0, 1]), np.array([1.0, 2.0]), np.array([1.0, 1.5]))
    >>> RemovalCurves.from_dict(curves.to_dict()).lowest_first.tolist()
    [1.0, 1.5]
    """

    def to_dict(self) -> dict[str, list]:
        return {item.name: np.asarray(getattr(self, item.name)).tolist() for item in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> Self:
        return cls(**{item.name: np.asarray(data[item.name]) for item in fields(cls)})


@dataclass
class RemovalCurves(ArrayRecord):
    """Mean loss over languages after removing k experts, highest-Shapley-first and lowest-first."""

    ks: np.ndarray  # [M]
    highest_first: np.ndarray  # [M]
    lowest_first: np.ndarray  # [M]

    def rises(self) -> tuple[np.ndarray, np.ndarray]:
        """Loss rises over intact (k = 0 must be in ``ks``): (highest-first, lowest-first)."""
        intact = self.highest_first[self.ks == 0][0]
        return self.highest_first - intact, self.lowest_first - intact


def expert_scores(matrix: np.ndarray) -> np.ndarray:
    """``[N]`` each expert's Shapley value for the mean log-prob over languages (each language
    weighted equally)."""
    return matrix.mean(axis=0)


def removal_curves(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    languages: torch.Tensor,
    scores: np.ndarray,
    ks: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> RemovalCurves:
    """Removal curves over ``ks`` (default 0..N); loss is the mean over languages of their mean
    loss; ``progress(done, total)`` after each lesioned pass."""
    counts, curves = lesions.rank_curves(
        scores,
        ks,
        lambda removed: language_losses(model, inputs, languages, removed, progress=progress).mean(
            axis=1
        ),
        ("lesion_top", "lesion_bottom"),
        "expert",
    )
    return RemovalCurves(counts, curves["lesion_top"], curves["lesion_bottom"])


@dataclass
class Pruning(ArrayRecord):
    """Mean loss keeping only k experts: the top-k by Shapley value vs k chosen at random."""

    ks: np.ndarray  # [M]
    shapley: np.ndarray  # [M]
    random_mean: np.ndarray  # [M]
    random_std: np.ndarray  # [M]


def pruning(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    languages: torch.Tensor,
    scores: np.ndarray,
    fractions: Sequence[float] = (0.25, 0.5, 0.75, 0.9),
    n_random: int = 10,
    seed: int = 0,
    progress: Progress | None = None,
) -> Pruning:
    """Keep-only-k losses for k = ``fractions`` of N: the top-k by ``scores`` vs ``n_random`` random
    sets; ``progress(done, total)`` after each pass."""
    ks, (shapley,), random = lesions.pruning_curves(
        [scores],
        fractions,
        lambda kept: language_losses(model, inputs, languages, kept, progress=progress).mean(
            axis=1
        ),
        n_random,
        seed,
    )
    return Pruning(ks, shapley, random.mean(axis=1), random.std(axis=1))


# ---------------------------------------------------------------- pass criteria and a summary


def selective_verdict(
    lesions: Sequence[SelectiveLesion], latin: Sequence[int], ratio: float = SELECTIVE_RATIO
) -> dict[str, Any]:
    """The selective-lesion criterion: >= ``ratio`` for >= 3 languages (one in ``latin``), > 1 for
    all."""
    ratios = np.array([lesion.ratio for lesion in lesions])
    strong = [lesion.language for lesion in lesions if lesion.ratio >= ratio]
    return {
        "ratios": ratios,
        "strong": strong,
        "passes": len(strong) >= 3 and any(i in latin for i in strong) and bool((ratios > 1).all()),
    }


def removal_verdict(
    curves: RemovalCurves, n_experts: int, fraction: float = REMOVAL_FRACTION
) -> dict[str, Any]:
    """Top-k removal hurts more than bottom-k at every 0 < k < N, and at least 2x more at k =
    ``fraction`` of N."""
    top, bottom = curves.rises()
    k = top_k_count(n_experts, fraction)
    at_k = curves.ks == k
    if not at_k.any():
        raise MSAInputError(
            f"the removal curves need k = {k} ({fraction:.0%} of {n_experts} experts)"
        )
    top_k, bottom_k = float(top[at_k][0]), float(bottom[at_k][0])
    # k = N removes every expert on both curves
    positive = (curves.ks > 0) & (curves.ks < n_experts)
    ratio = top_k / bottom_k if bottom_k > 0 else float("inf")
    return {
        "k": k,
        "top_rise": top_k,
        "bottom_rise": bottom_k,
        "ratio": ratio,
        "passes": bool((top[positive] > bottom[positive]).all())
        and top_k >= 2 * max(bottom_k, 0.0)
        and top_k > 0,
    }


# ---------------------------------------------------------------- figures


def layer_share_figure(shares: np.ndarray, language_names: Sequence[str]) -> go.Figure:
    """Stacked bars: each language's share of |contribution| per layer."""
    figure = go.Figure(
        [
            go.Bar(name=f"layer {layer}", x=list(language_names), y=shares[:, layer])
            for layer in range(shares.shape[1])
        ]
    )
    figure.update_layout(
        barmode="stack",
        title="Share of |contribution| per layer",
        yaxis_title="share",
        yaxis_range=[0, 1],
    )
    return figure


def correlation_figure(
    correlation: np.ndarray,
    language_names: Sequence[str],
    title: str = "Correlation of languages' expert contributions",
) -> go.Figure:
    """Language x language (or any task x task) correlation of contribution vectors."""
    figure = go.Figure(
        go.Heatmap(
            z=correlation,
            x=list(language_names),
            y=list(language_names),
            zmin=-1,
            zmax=1,
            colorscale="RdBu_r",
            text=np.round(correlation, 2),
            texttemplate="%{text}",
        )
    )
    figure.update_layout(title=title)
    return figure


def lesion_figure(
    lesion: SelectiveLesion,
    language_names: Sequence[str],
    player_names: Sequence[str] | None = None,
    loss_unit: str = "nats per byte",
) -> go.Figure:
    """Every language's (group's) loss before and after removing one language's selective units,
    named by ``player_names`` (None: counted)."""
    removed = (
        ", ".join(player_names[e] for e in lesion.experts)
        if player_names is not None
        else f"{len(lesion.experts)} units"
    )
    figure = go.Figure(
        [
            go.Bar(name="intact", x=list(language_names), y=lesion.loss_before),
            go.Bar(name=f"without {removed}", x=list(language_names), y=lesion.loss_after),
        ]
    )
    figure.update_layout(
        barmode="group",
        yaxis_title=f"loss ({loss_unit})",
        title=f"Selective lesion for {language_names[lesion.language]}: ratio {lesion.ratio:.1f}x",
    )
    return figure


def removal_figure(
    curves: RemovalCurves, units: str = "experts", loss_unit: str = "nats per byte"
) -> go.Figure:
    """Loss vs k ``units`` removed, highest-Shapley-first and lowest-first."""
    figure = go.Figure(
        [
            go.Scatter(x=curves.ks, y=y, name=f"{order} Shapley first", mode="lines+markers")
            for order, y in (("highest", curves.highest_first), ("lowest", curves.lowest_first))
        ]
    )
    figure.update_layout(
        title="Removal curves",
        xaxis_title=f"{units} removed",
        yaxis_title=f"mean loss ({loss_unit})",
    )
    return figure


def pruning_figure(result: Pruning) -> go.Figure:
    """Loss keeping only k experts: Shapley-guided vs random (mean +- std)."""
    figure = go.Figure(
        [
            go.Scatter(
                x=result.ks, y=result.shapley, name="top-k by Shapley", mode="lines+markers"
            ),
            go.Scatter(
                x=result.ks,
                y=result.random_mean,
                name="random k",
                mode="lines+markers",
                error_y=dict(type="data", array=result.random_std),
            ),
        ]
    )
    figure.update_layout(
        title="Pruning: keep only k experts",
        xaxis_title="experts kept",
        yaxis_title="mean loss (nats per byte)",
    )
    return figure


def token_figure(
    token_modes: np.ndarray, token_labels: Sequence[str], player_names: Sequence[str]
) -> go.Figure:
    """Per-token contributions ``[N, T]``: each expert's mode of the log-prob of each next byte (x:
    that byte)."""
    limit = float(np.abs(token_modes).max()) or 1.0
    x = [f"{i}:{label}" for i, label in enumerate(token_labels)]
    figure = go.Figure(
        go.Heatmap(
            z=token_modes,
            x=x,
            y=list(player_names),
            zmid=0,
            zmin=-limit,
            zmax=limit,
            colorscale="RdBu_r",
            colorbar=dict(title="mode"),
        )
    )
    figure.update_layout(
        title="Expert contribution to each next byte's log-prob",
        xaxis_title="predicted byte",
        yaxis_title="expert",
        yaxis_autorange="reversed",
        height=max(400, 14 * len(player_names)),
    )
    return figure


# ---------------------------------------------------------------- everything at once


@dataclass
class Findings:
    """Study 2's numbers for one expert result of a multilingual LM."""

    language_names: list[str]
    player_names: list[str]
    matrix: np.ndarray  # [L, N] language x expert
    layers: np.ndarray  # [N]
    shares: np.ndarray  # [L, n_layers]
    selectivity: np.ndarray  # [L, N]
    hub: int
    hub_share: np.ndarray  # [L]
    correlation: np.ndarray  # [L, L]
    lesions: list[SelectiveLesion]
    selective: dict[str, Any]
    curves: RemovalCurves
    removal: dict[str, Any]
    pruning: Pruning | None
    efficiency_gap: float


def analyse(
    model: nn.Module,
    result: ModesResult,
    game_languages: np.ndarray,
    language_names: Sequence[str],
    eval_inputs: dict[str, torch.Tensor],
    eval_languages: torch.Tensor,
    latin: Sequence[int],
    output: str = "target_logprob",
    prompts: Sequence[torch.Tensor] | None = None,
    with_pruning: bool = True,
) -> Findings:
    """All of Study 2 for ``result`` (experts of ``model`` on rows of ``game_languages``); lesions
    on ``eval_inputs``."""
    names = list(result.player_names)
    layers = expert_layers(names)
    matrix = language_matrix(result, game_languages, len(language_names), output)
    hub, hub_share = largest_hub(matrix)
    lesions = selective_lesions(model, eval_inputs, eval_languages, matrix, prompts=prompts)
    curves = removal_curves(model, eval_inputs, eval_languages, expert_scores(matrix))
    return Findings(
        language_names=list(language_names),
        player_names=names,
        matrix=matrix,
        layers=layers,
        shares=layer_shares(matrix, layers),
        selectivity=selectivity(matrix),
        hub=hub,
        hub_share=hub_share,
        correlation=task_correlation(matrix),
        lesions=lesions,
        selective=selective_verdict(lesions, latin),
        curves=curves,
        removal=removal_verdict(curves, len(names)),
        pruning=pruning(model, eval_inputs, eval_languages, expert_scores(matrix))
        if with_pruning
        else None,
        efficiency_gap=result.efficiency_gap(),
    )

"""The paper's task x unit study on a real LLM: a game whose values are per-example task scores.

A result of a task game (``msa_core.tasks``, output ``task_logprob``) has modes ``[N, B]``: each
unit's Shapley value for each example's target log-prob. By linearity the mean over a group's
examples is the unit's value for the group's mean score, giving the group x unit matrix ``[G, N]``
(``group_matrix``). Units are named ``L<layer>.<unit>``, so the matrix groups by layer.

Losses here are the negative target log-prob (nats per example, averaged over a group), so that the
numeric helpers and records of Study 2 (``layer_shares``, ``selectivity``, ``task_correlation``,
``SelectiveLesion``, ``RemovalCurves``) apply unchanged: a lesion hurting a group raises its loss.

- ``top_vs_random``: each group's loss with its top fraction of units (by Shapley value for that
  group) removed, against the same number of random units (mean of several draws);
- ``selective_lesions``: each group's top-k units by selectivity (its contribution minus the mean
  of the others) removed; every group's loss before and after, and greedy continuations;
- ``removal_curves``: mean loss vs k units removed, highest-Shapley-first and lowest-first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch

from msa_core.analysis import study2
from msa_core.analysis.group_heatmap import unit_layers
from msa_core.analysis.lesions import (
    keep_only,
    random_keep_only,
    rank_order,
    top_k_count,
    unit_counts,
)
from msa_core.analysis.study2 import (
    RemovalCurves,
    SelectiveLesion,
    layer_shares,
    selectivity,
    task_correlation,
)
from msa_core.errors import MSAInputError
from msa_core.lesion import ModelGame
from msa_core.lesion.hooks import attached
from msa_core.result import ModesResult
from msa_core.tasks import Task, group_means

TOP_FRACTION, RANDOM_DRAWS = 0.1, 5


def group_matrix(result: ModesResult, task: Task) -> np.ndarray:
    """``[G, N]``: each unit's mean mode over a group's examples (its value for the group's mean).

    Raises:
        MSAInputError: the result's outputs are not one value per example of ``task``.
    """
    if result.output_shape != (len(task.examples),):
        raise MSAInputError(
            f"the result has outputs {list(result.output_shape)}; a task game over "
            f"{len(task.examples)} examples has [{len(task.examples)}]"
        )
    return group_means(result.modes, task.group_index(), len(task.groups)).T


def group_matrix_stderr(result: ModesResult, task: Task) -> np.ndarray:
    """``[G, N]``: standard errors of ``group_matrix``, the group means of the result's stderr (an
    upper bound: the examples' errors are correlated in an unknown way)."""
    group_matrix(result, task)  # the same checks
    return group_means(result.stderr, task.group_index(), len(task.groups)).T


def group_losses(game: ModelGame, task: Task, coalitions: np.ndarray) -> np.ndarray:
    """``[C, G]``: each group's mean loss (negative task log-prob) per coalition ``[C, N]``."""
    coalitions = np.asarray(coalitions, dtype=bool)
    if coalitions.ndim != 2 or coalitions.shape[1] != game.n_players:
        raise MSAInputError(
            f"coalitions must be [C, {game.n_players}]; got {list(coalitions.shape)}"
        )
    values = -game(coalitions).double().cpu().numpy()  # [C, B]
    return group_means(values, task.group_index(), len(task.groups))


@dataclass
class TopVsRandom:
    """Per group: its loss intact, without its top units, and without as many random units."""

    k: int
    intact: np.ndarray  # [G]
    top: np.ndarray  # [G]
    random: np.ndarray  # [G, draws]

    def passed(self) -> np.ndarray:
        """``[G]`` bool: removing the top units raised the loss more than the random mean did."""
        return self.top > self.random.mean(axis=1)


def top_vs_random(
    game: ModelGame,
    task: Task,
    matrix: np.ndarray,
    fraction: float = TOP_FRACTION,
    draws: int = RANDOM_DRAWS,
    seed: int = 0,
) -> TopVsRandom:
    """Each group's top ``fraction`` of units by its Shapley value removed vs random units.

    Args:
        game: the task game (values ``[C, B]``); matrix: ``[G, N]`` from ``group_matrix``.
    Returns:
        losses of all groups' lesions, evaluated in one call of ``game``.
    """
    n_groups, n = matrix.shape
    k = top_k_count(n, fraction)
    rows = [np.ones(n, bool)]
    for scores in matrix:
        rows.append(~keep_only(rank_order(scores), [k], n)[0])
    rows += list(~random_keep_only(np.array([k]), n, draws, seed))
    losses = group_losses(game, task, np.stack(rows))
    random = losses[1 + n_groups :]  # [draws, G]: the same random sets for every group
    return TopVsRandom(k, losses[0], losses[np.arange(n_groups) + 1, np.arange(n_groups)], random.T)


def greedy_continuation(
    game: ModelGame, tokenizer, prompt: str, keep: np.ndarray | None = None, max_new_tokens: int = 8
) -> str:
    """The greedy continuation of ``prompt`` with the units where ``keep [N]`` is False lesioned."""
    keep_row = np.ones(game.n_players, bool) if keep is None else np.asarray(keep, bool)
    mask = torch.from_numpy(keep_row[None]).to(game.device)
    hooks = [hook for site in game.sites for hook in site.lesion_hooks(site.own(mask))]
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(game.device)
    with torch.inference_mode(), attached(hooks):
        out = game.model.generate(  # type: ignore[operator]
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def selective_lesions(
    game: ModelGame, task: Task, matrix: np.ndarray, k: int, tokenizer=None, max_new_tokens: int = 8
) -> list[SelectiveLesion]:
    """For each group, remove its top-``k`` units by ``selectivity(matrix)``; every group's loss
    before and after, and (with a tokenizer) the greedy continuation of the group's first prompt."""
    n_groups, n = matrix.shape
    if not 1 <= k <= n:
        raise MSAInputError(f"k must be between 1 and {n} units; got {k}")
    picks = [rank_order(row)[:k] for row in selectivity(matrix)]
    coalitions = np.ones((n_groups + 1, n), bool)
    for group, units in enumerate(picks):
        coalitions[group + 1, units] = False
    losses = group_losses(game, task, coalitions)
    lesions = []
    for group, units in enumerate(picks):
        lesion = SelectiveLesion(group, [int(u) for u in units], losses[0], losses[group + 1])
        if tokenizer is not None:
            prompt = next(e.prompt for e in task.examples if e.group == task.groups[group])
            lesion.continuation_before = greedy_continuation(
                game, tokenizer, prompt, None, max_new_tokens
            )
            lesion.continuation_after = greedy_continuation(
                game, tokenizer, prompt, coalitions[group + 1], max_new_tokens
            )
        lesions.append(lesion)
    return lesions


def removal_curves(
    game: ModelGame, task: Task, scores: np.ndarray, ks: Sequence[int] | None = None
) -> RemovalCurves:
    """Mean loss over groups after removing k units, highest-Shapley-first and lowest-first.

    scores: ``[N]`` (e.g. ``matrix.mean(0)``: the value for the mean of the groups' scores).
    """
    n = len(scores)
    counts = unit_counts(ks, n)
    order = rank_order(scores)
    steps = counts.tolist()
    removed = np.concatenate([~keep_only(order, steps, n), ~keep_only(order[::-1], steps, n)])
    loss = group_losses(game, task, removed).mean(axis=1)
    return RemovalCurves(counts, loss[: len(counts)], loss[len(counts) :])


# ---------------------------------------------------------------- figures


def layer_share_figure(shares: np.ndarray, groups: Sequence[str]) -> go.Figure:
    """Lines: each group's share of |contribution| per layer."""
    figure = go.Figure(
        [
            go.Scatter(x=np.arange(shares.shape[1]), y=row, name=group, mode="lines+markers")
            for group, row in zip(groups, shares, strict=True)
        ]
    )
    figure.update_layout(
        title="Share of |contribution| per layer", xaxis_title="layer", yaxis_title="share"
    )
    return figure


def correlation_figure(correlation: np.ndarray, groups: Sequence[str]) -> go.Figure:
    """Group x group correlation of contribution vectors (study 2's figure, titled for groups)."""
    return study2.correlation_figure(
        correlation, groups, title="Correlation of groups' contribution vectors"
    )


def lesion_figure(lesion: SelectiveLesion, groups: Sequence[str]) -> go.Figure:
    """Every group's loss before and after removing one group's selective units."""
    return study2.lesion_figure(lesion, groups, loss_unit="nats per example")


def removal_figure(curves: RemovalCurves) -> go.Figure:
    """Mean loss vs units removed, highest-Shapley-first and lowest-first."""
    return study2.removal_figure(curves, units="units", loss_unit="nats")


# ---------------------------------------------------------------- the whole study

SELECTIVE_RATIO, SELECTIVE_GROUPS = 2.0, 2  # pass: at least 2 groups whose lesion is 2x selective


@dataclass
class Findings:
    """The study's numbers for one task result (lesions evaluated on the game's own examples)."""

    groups: list[str]
    player_names: list[str]
    accuracy: np.ndarray  # [G] intact greedy accuracy per group
    matrix: np.ndarray  # [G, N]
    shares: np.ndarray  # [G, n_layers]
    correlation: np.ndarray  # [G, G]
    top_vs_random: TopVsRandom
    lesions: list[SelectiveLesion]
    curves: RemovalCurves
    efficiency_gap: float  # largest |sum of modes - (v_full - v_empty)| over examples

    def verdicts(self) -> dict[str, bool]:
        """The issue's pass criteria: top beats random for every group; >= 2 groups 2x selective."""
        ratios = [lesion.ratio for lesion in self.lesions]
        return {
            "top 10% beats random, every group": bool(self.top_vs_random.passed().all()),
            f"{SELECTIVE_GROUPS}+ groups selective {SELECTIVE_RATIO:g}x": sum(
                r >= SELECTIVE_RATIO for r in ratios
            )
            >= SELECTIVE_GROUPS,
        }


def analyse(
    loaded,
    result: ModesResult,
    k: int = 4,
    ks: Sequence[int] | None = None,
    fraction: float = TOP_FRACTION,
    draws: int = RANDOM_DRAWS,
    seed: int = 0,
    max_new_tokens: int = 8,
) -> Findings:
    """Every number of the study for ``result``, a ``task_logprob`` run of task model ``loaded``.

    Args:
        loaded: the ``LoadedModel`` with the task as inputs (``msa_core.tasks.with_task``).
        k: units removed per selective lesion; ks: unit counts of the removal curves.
    Raises:
        MSAInputError: the model has no task, or the result does not fit it.
    """
    if loaded.task is None:
        raise MSAInputError(
            "the LLM study needs a model whose inputs are a task (msa_core.tasks.with_task)"
        )
    task = loaded.task.task
    units = result.meta.get("units") or next(iter(loaded.card.granularities))
    game = loaded.game(units, "task_logprob")
    if game.player_names != list(result.player_names):
        raise MSAInputError(f"the result's units are not the {units!r} of {loaded.card.name!r}")
    matrix = group_matrix(result, task)
    n = matrix.shape[1]
    accuracy = loaded.game(units, "task_accuracy")(np.ones((1, n), bool))[0].double().cpu().numpy()
    layers = unit_layers(result.player_names)
    ks = (
        ks
        if ks is not None
        else sorted({int(round(f * n)) for f in (0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)})
    )
    return Findings(
        groups=list(task.groups),
        player_names=list(result.player_names),
        accuracy=group_means(accuracy, task.group_index(), len(task.groups)),
        matrix=matrix,
        shares=layer_shares(matrix, layers),
        correlation=task_correlation(matrix),
        top_vs_random=top_vs_random(game, task, matrix, fraction, draws, seed),
        lesions=selective_lesions(game, task, matrix, k, loaded.tokenizer, max_new_tokens),
        curves=removal_curves(game, task, matrix.mean(axis=0), ks),
        efficiency_gap=result.efficiency_gap(),
    )

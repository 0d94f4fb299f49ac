"""Before launching an LLM task run: can the model do each group, what will the requested budget
cost, and what budget would resolve each group's top units.

- ``group_checks``: one forward of the intact model on the task gives, per group, the mean target
  log-prob and the accuracy (share of examples that greedy decoding reproduces). A group is flagged
  when the model cannot do it: no example right, or a mean log-prob below ``LOW_LOGPROB`` (the
  target gets less than about 5% probability): its units' Shapley values would explain noise.
- ``top_k_budget``: a small probe run (a few permutations of the run's own game, values averaged
  per group) gives each unit's group score and its standard error; standard errors shrink as
  1 / sqrt(permutations), so the permutations after which the stop rule's boundary rule
  (``stopping.top_k_decision``: signed scores, highest first, normal intervals at ``level`` with
  Bonferroni over the units) resolves a group's top k follow from them. Near ties at that boundary
  need many permutations; past ``MAX_PERMUTATIONS`` the estimate says so instead of a number. It is
  an estimate from a noisy probe (a few samples per unit), for sizing a run, not a guarantee.
- ``llm_preflight``: both, with the time of the requested budget from a timing probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from msa_core.checks import check_positive_int
from msa_core.errors import MSAInputError
from msa_core.games import Game
from msa_core.lesion.hooks import eval_mode
from msa_core.lesion.inputs import call_model
from msa_core.tasks import EncodedTask, group_means, task_values

LOW_LOGPROB = -3.0  # nats: a mean target log-prob below this (p < ~5%) flags the group
MAX_PERMUTATIONS = 100_000  # needed permutations beyond this are reported as "more than"
PROBE_PERMUTATIONS = 2  # default permutations of the probe run (each costs N - 1 evaluations)


@dataclass(frozen=True)
class GroupCheck:
    """One group of the task on the intact model: ``logprob`` (mean target log-prob, nats),
    ``accuracy`` (share of its examples greedy decoding reproduces), ``examples``."""

    group: str
    examples: int
    logprob: float
    accuracy: float

    @property
    def problem(self) -> str | None:
        """Why the model cannot do this group, in words; None when it can."""
        if self.accuracy == 0:
            return f"greedy decoding gets none of its {self.examples} examples right"
        if self.logprob < LOW_LOGPROB:
            return (
                f"its targets get {math.exp(self.logprob):.1%} probability on average "
                f"(mean log-prob {self.logprob:.2f} nats)"
            )
        return None


def group_checks(model: torch.nn.Module, encoded: EncodedTask) -> list[GroupCheck]:
    """Per group, the intact model's mean target log-prob and accuracy, from one forward pass."""
    with torch.inference_mode(), eval_mode(model):
        raw = call_model(model, encoded.inputs)
    logprob = task_values(raw, encoded, "task_logprob").cpu().numpy()
    accuracy = task_values(raw, encoded, "task_accuracy").cpu().numpy()
    task = encoded.task
    index, groups = task.group_index(), task.groups
    means = [group_means(values, index, len(groups)) for values in (logprob, accuracy)]
    counts = np.bincount(index, minlength=len(groups))
    return [
        GroupCheck(group, int(counts[g]), float(means[0][g]), float(means[1][g]))
        for g, group in enumerate(groups)
    ]


class GroupMeanGame(Game):
    """A task game's values averaged over each group's examples: ``[C, B] -> [C, G]``."""

    def __init__(self, game: Game, group_index: np.ndarray, n_groups: int):
        self.game, self.n_players, self.player_names = game, game.n_players, game.player_names
        self.output_shape = (n_groups,)
        onehot = np.eye(n_groups)[group_index]  # [B, G]
        self.weights = torch.from_numpy(onehot / onehot.sum(0)).float()

    def evaluate(self, coalitions: np.ndarray) -> torch.Tensor:
        values = torch.as_tensor(self.game(coalitions)).float()
        return values @ self.weights.to(values.device)


@dataclass(frozen=True)
class TopKBudget:
    """Permutations a run needs to resolve each group's ``k`` highest-scoring units (``groups``
    ``[G]``; ``math.inf`` past ``MAX_PERMUTATIONS``), estimated from ``probe_permutations``;
    ``evaluations`` and ``seconds`` are those of the largest (one run serves every group)."""

    k: int
    level: float
    probe_permutations: int
    permutations: tuple[float, ...]
    n_players: int
    seconds_per_evaluation: float

    @property
    def needed_permutations(self) -> float:
        return max(self.permutations)

    @property
    def evaluations(self) -> float:
        return 2 + self.needed_permutations * (self.n_players - 1)

    @property
    def seconds(self) -> float:
        return self.evaluations * self.seconds_per_evaluation


def needed_permutations(
    scores: np.ndarray, stderr: np.ndarray, probe: int, k: int, level: float
) -> np.ndarray:
    """Per group, the fewest permutations after which ``stopping.top_k_decision`` resolves the
    top k, were the scores as in the probe and the standard errors shrunk as 1/sqrt(permutations).

    Args:
        scores, stderr: ``[N, G]`` the probe's group scores and their standard errors.
        probe: permutations of the probe (stderr scales as ``sqrt(probe / permutations)``).
        k: top units per group; ``level``: joint confidence (Bonferroni over the N units).
    Returns:
        ``[G]`` permutations (at least ``probe``; ``inf`` past ``MAX_PERMUTATIONS``; ``probe``
        when there are at most k units).
    """
    from msa_core.estimators.stopping import top_k_decision

    need = np.full(scores.shape[1], float(probe))
    if scores.shape[0] <= k:
        return need

    def resolved(g: int, permutations: int) -> bool:
        shrunk = stderr[:, g] * math.sqrt(probe / permutations)
        return len(top_k_decision(scores[:, g], shrunk, k, alpha=1 - level).top) == k

    for g in range(scores.shape[1]):
        if resolved(g, probe):
            continue
        if not resolved(g, MAX_PERMUTATIONS):
            need[g] = math.inf
            continue
        low, high = probe, MAX_PERMUTATIONS  # unresolved at low, resolved at high
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if resolved(g, middle) else (middle, high)
        need[g] = float(high)
    return need


def top_k_budget(
    game: Game,
    encoded: EncodedTask,
    k: int = 10,
    probe_permutations: int = PROBE_PERMUTATIONS,
    level: float = 0.95,
    seed: int = 0,
) -> TopKBudget:
    """Estimate, from a probe run of ``probe_permutations`` on ``game`` (a task game, values
    ``[C, B]``), the permutations that resolve each group's top ``k`` units (see the module
    docstring). Costs ``probe_permutations * (N - 1) + 2`` evaluations of the game.

    Raises:
        MSAInputError: ``k`` or ``probe_permutations`` not a positive integer, or fewer than 2
            probe permutations (a standard error needs two samples).
    """
    import time

    from msa_core import shapley_modes

    check_positive_int(k, "k")
    check_positive_int(probe_permutations, "probe_permutations")
    if probe_permutations < 2:
        raise MSAInputError("probe_permutations must be at least 2: a standard error needs two")
    task = encoded.task
    grouped = GroupMeanGame(game, task.group_index(), len(task.groups))
    start = time.perf_counter()
    result = shapley_modes(
        grouped, method="permutation", n_permutations=probe_permutations, seed=seed
    )
    seconds = (time.perf_counter() - start) / max(1, result.n_evaluations)
    need = needed_permutations(result.modes, result.stderr, probe_permutations, k, level)
    return TopKBudget(
        k, level, probe_permutations, tuple(float(p) for p in need), game.n_players, seconds
    )


def permutations_in_words(permutations: float) -> str:
    """``"1,234"``, or ``"more than 100,000"`` past ``MAX_PERMUTATIONS``."""
    if math.isinf(permutations):
        return f"more than {MAX_PERMUTATIONS:,}"
    return f"{permutations:,.0f}"


@dataclass(frozen=True)
class LLMPreflight:
    """What ``llm_preflight`` found: per-group checks, the requested budget's time, and (when
    asked for) the top-k budget estimate."""

    groups: list[GroupCheck]
    evaluations: int
    seconds_per_evaluation: float
    top_k: TopKBudget | None

    @property
    def seconds(self) -> float:
        """Time of the requested evaluations."""
        return self.evaluations * self.seconds_per_evaluation

    @property
    def flagged(self) -> list[GroupCheck]:
        """Groups the model cannot do."""
        return [check for check in self.groups if check.problem]

    def lines(self) -> list[str]:
        """The findings in words (markdown), one line each: groups, budget time, top-k budget."""
        from msa_core.runs.preflight import describe_seconds

        lines = [
            f"**{c.group}** ({c.examples} examples): intact target log-prob {c.logprob:.2f} "
            f"nats, accuracy {c.accuracy:.0%}"
            + (f" — **the model cannot do this group**: {c.problem}" if c.problem else "")
            for c in self.groups
        ]
        lines.append(
            f"The requested budget, {self.evaluations:,} evaluations, takes about "
            f"{describe_seconds(self.seconds)} here."
        )
        budget = self.top_k
        if budget is not None:
            per_group = ", ".join(
                f"{c.group} {permutations_in_words(p)}"
                for c, p in zip(self.groups, budget.permutations, strict=True)
            )
            need = (
                f"about {budget.needed_permutations:,.0f} permutations "
                f"({budget.evaluations:,.0f} evaluations, {describe_seconds(budget.seconds)})"
                if math.isfinite(budget.needed_permutations)
                else f"more than {MAX_PERMUTATIONS:,} permutations: units next to a group's top-"
                f"{budget.k} boundary are nearly tied"
            )
            lines.append(
                f"Resolving each group's top {budget.k} units ({budget.level:.0%} confidence) "
                f"needs {need}; per group: {per_group}. Estimated from a "
                f"{budget.probe_permutations}-permutation probe (standard errors shrink as "
                "1/sqrt(permutations)); a rough guide."
            )
        return lines


def llm_preflight(
    model: torch.nn.Module,
    encoded: EncodedTask,
    game: Game,
    evaluations: int,
    k: int | None = 10,
    probe_permutations: int = PROBE_PERMUTATIONS,
) -> LLMPreflight:
    """Checks before an LLM task run of ``evaluations`` on ``game`` (the run's own task game).

    Args:
        model, encoded: the language model and its encoded task (``LoadedModel.model`` / ``.task``).
        game: the run's game (values ``[C, B]``, one per example).
        evaluations: the run's budget in evaluations.
        k: top units per group to size a run for (None: no probe run, only the quick checks).
        probe_permutations: permutations of that probe run.
    Returns:
        ``LLMPreflight``; the time per evaluation comes from the probe run when there is one,
        else from timing a few evaluations (``msa_core.runs.budget.probe_game``).
    """
    from msa_core.runs.budget import probe_game

    checks = group_checks(model, encoded)
    if k is None:
        return LLMPreflight(checks, evaluations, probe_game(game).seconds_per_evaluation, None)
    budget = top_k_budget(game, encoded, k, probe_permutations)
    return LLMPreflight(checks, evaluations, budget.seconds_per_evaluation, budget)

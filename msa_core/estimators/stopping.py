"""What a run aims at besides its budget, and the rule that stops it there.

Two targets, checked after whole blocks only (so the block protocol's determinism and resumability
are untouched: the same seed stops at the same block whatever the batch size, and a resumed run
stops where an uninterrupted one does):

- ``StderrTarget(tolerance)``: every standard error at most ``tolerance`` (``target_stderr``).
- ``TopK(k, per_group, level)``: the k units of highest score known with confidence ``level``.

Scores. A unit's score in a group is the mean of its modes over the group's outputs (``per_group``:
each index of the first output axis is a group, e.g. a task's rows; otherwise one group of all
outputs): its Shapley value for the group's mean output. The top k are the k highest scores,
signed (as ``msa_core.analysis.ranking`` ranks units): a unit that lowers the output when present
ranks last, not first. Permutation samplers keep every sample's scores
(``PermutationEstimator.track_scores``), so a score's standard error is that of its own samples
(Student-t, samples - 1 degrees of freedom). A result without them (``top_k_status`` of
an untargeted run) uses the run's recorded ``score_stderr`` for one group of all outputs, and
otherwise bounds it by the mean of the elements' standard errors (the standard deviation of a mean
is at most the mean of the standard deviations): wider, never too narrow.

Decision (``top_k_decision``, the one rule every "top k resolved" of the package calls: this stop
rule, ``UnitRanking.top_resolved`` and the LLM preflight's ``needed_permutations``), per group, from
intervals ``[L, U]`` of the score: unit u is *in* the top k when at most k - 1 other units have
``U_v >= L_u``, *out* when at least k have ``L_v > U_u``, unresolved otherwise; the group is
resolved when k units are in, i.e. the k-th highest interval clears the (k+1)-th. The claim holds
with probability at least ``level`` when all intervals hold together: each unit's interval is at
``1 - alpha_j / N`` (Bonferroni over the N units), and the rule is only checked at *looks*, the
first block after which the samples reach ``16 x 1.5^j``, look j spending
``alpha_j = alpha / ((j + 1)(j + 2))`` (they sum to alpha), so stopping at the first resolved look
keeps its error below alpha despite the repeated looks (Neuron Shapley's bandit stops the same
way, with Hoeffding bounds instead of t intervals). A run that ends without a look reports its
status at the next unused look's level.

>>> scores = np.array([[5.0], [4.0], [1.0], [0.9]])
>>> status = TopK(2).decide(scores, np.full((4, 1), 0.1), dof=100, alpha=0.05)
>>> status.groups[0].top, status.groups[0].out, status.resolved
([0, 1], [2, 3], True)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from msa_core.errors import MSAInputError
from msa_core.estimators.base import Estimator, ScoreEstimate

if TYPE_CHECKING:
    from msa_core.result import ModesResult

FIRST_LOOK = 16  # samples before the first look
LOOK_GROWTH = 1.5  # samples grow by this factor between looks


class StopRule(Protocol):
    """Decides after an absorbed block whether a run has reached its target."""

    def reached(self, estimator: Estimator) -> bool: ...


@dataclass(frozen=True)
class StderrTarget:
    """Every standard error at most ``tolerance`` (checked after every block)."""

    tolerance: float

    def reached(self, estimator: Estimator) -> bool:
        stderr = estimator.max_stderr()
        return stderr is not None and stderr <= self.tolerance


@dataclass(frozen=True)
class BothTargets:
    """Stop when every one of ``rules`` is reached."""

    rules: tuple[StopRule, ...]

    def reached(self, estimator: Estimator) -> bool:
        return all(rule.reached(estimator) for rule in self.rules)


def stop_rule(
    target_stderr: float | StopRule | None, target: TopK | None = None
) -> StopRule | None:
    """The rule of a run with ``target_stderr`` (a tolerance or a rule) and a ``TopK`` target (each
    None when absent); with both, the run stops when both are reached."""
    rules: list[StopRule] = []
    if isinstance(target_stderr, (int, float)):
        rules.append(StderrTarget(float(target_stderr)))
    elif target_stderr is not None:
        rules.append(target_stderr)
    if target is not None:
        rules.append(target)
    return None if not rules else rules[0] if len(rules) == 1 else BothTargets(tuple(rules))


@dataclass
class GroupStatus:
    """One group's decision: unit indices confidently in the top k, confidently out, and
    unresolved (each highest score first)."""

    top: list[int]
    out: list[int]
    unresolved: list[int]


@dataclass
class TopKStatus:
    """What a run resolved about its top k units, per group (``groups[g]``).

    ``unit_level``: the confidence of each unit's interval (``1 - alpha_look / N``); ``look``: the
    look index whose alpha was spent (None for a single look of a finished result).
    """

    k: int
    per_group: bool
    level: float
    unit_level: float
    look: int | None
    groups: list[GroupStatus]
    scores: list[list[float]] = field(default_factory=list)  # [N][G]
    score_stderr: list[list[float]] = field(default_factory=list)  # [N][G]

    @property
    def resolved(self) -> bool:
        """Whether every group's top k is known at ``level``."""
        return all(len(group.top) == self.k for group in self.groups)

    def to_meta(self) -> dict[str, Any]:
        """A JSON-ready dict (``ModesResult.meta["target"]``), read back by ``from_meta``."""
        return {"kind": "top_k", "resolved": self.resolved, **asdict(self)}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> TopKStatus:
        fields = {key: value for key, value in meta.items() if key not in ("kind", "resolved")}
        fields["groups"] = [GroupStatus(**group) for group in fields["groups"]]
        return cls(**fields)


@dataclass(frozen=True)
class TopK:
    """Target: the ``k`` units of highest score (signed, see the module) resolved at ``level``.

    Args:
        k: units to resolve, 1 <= k < N.
        per_group: one top k per index of the first output axis (else one over all outputs).
        level: the confidence of the claim, 0 < level < 1.
    """

    k: int
    per_group: bool = False
    level: float = 0.95

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise MSAInputError(f"the top-k target's k must be a whole number >= 1; got {self.k!r}")
        if not isinstance(self.per_group, bool):
            raise MSAInputError(f"per_group must be True or False; got {self.per_group!r}")
        if not (isinstance(self.level, float) and 0 < self.level < 1):
            raise MSAInputError(
                f"the target's level must lie strictly between 0 and 1; got {self.level!r}"
            )
        object.__setattr__(self, "k", int(self.k))

    def check_players(self, n_players: int) -> None:
        """Raises ``MSAInputError`` unless ``k < n_players``."""
        if self.k >= n_players:
            raise MSAInputError(
                f"a top-{self.k} target needs more than {self.k} players; the game has {n_players}"
            )

    def n_groups(self, output_shape: tuple[int, ...]) -> int:
        """Groups of a coalition's value of shape ``output_shape``.

        Raises:
            MSAInputError: ``per_group`` with a scalar output (no first axis to group by).
        """
        if not self.per_group:
            return 1
        if not output_shape:
            raise MSAInputError(
                "per_group needs outputs with at least one axis; this game's value is a scalar"
            )
        return output_shape[0]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TopK:
        return cls(**json.loads(text))

    def reached(self, estimator: Estimator) -> bool:
        """At a look (see the module), whether every group's top k is resolved."""
        tracked = estimator.score_estimate()
        if tracked is None or not is_look(tracked):
            return False
        look = looks_reached(tracked.count)
        return self._decide_tracked(tracked, look).resolved

    def final_status(self, estimator: Estimator, output_shape: tuple[int, ...]) -> TopKStatus:
        """The status a finished (or stopped) run reports: at its last look, or at the next unused
        look's level when its last block was no look (``output_shape``: of one coalition's value).
        """
        tracked = estimator.score_estimate()
        if tracked is None:  # an exact run (standard errors 0): one look
            modes, stderr = (
                part.reshape(estimator.n_players, *output_shape) for part in estimator.estimate()
            )
            return self.decide(*group_scores(modes, stderr, self), math.inf, alpha=1 - self.level)
        look = looks_reached(tracked.count) + (0 if is_look(tracked) else 1)
        return self._decide_tracked(tracked, look)

    def _decide_tracked(self, tracked: ScoreEstimate, look: int) -> TopKStatus:
        return self.decide(
            tracked.mean,
            tracked.stderr,
            tracked.dof,
            alpha=look_alpha(1 - self.level, look),
            look=look,
        )

    def decide(
        self,
        scores: np.ndarray,
        stderr: np.ndarray,
        dof: float,
        alpha: float,
        look: int | None = None,
    ) -> TopKStatus:
        """The decision from scores and standard errors ``[N, G]`` with ``dof`` degrees of freedom,
        spending ``alpha`` on all N units together (Bonferroni)."""
        groups = [
            top_k_decision(scores[:, g], stderr[:, g], self.k, alpha, dof)
            for g in range(scores.shape[1])
        ]
        return TopKStatus(
            self.k,
            self.per_group,
            self.level,
            1 - alpha / scores.shape[0],
            look,
            groups,
            scores.tolist(),
            stderr.tolist(),
        )


def top_k_decision(
    scores: np.ndarray, stderr: np.ndarray, k: int, alpha: float, dof: float = math.inf
) -> GroupStatus:
    """Which units are surely among the ``k`` highest scores, surely not, or unresolved (see the
    module): the one boundary rule of every "top k resolved" in the package.

    Args:
        scores, stderr: ``[N]`` signed scores (highest first) and their standard errors (NaN:
            unknown, an unbounded interval).
        k: units in the top, 1 <= k.
        alpha: error spent on all N intervals together (each at ``1 - alpha / N``).
        dof: degrees of freedom of the standard errors (``inf``: normal quantiles).
    Returns:
        ``GroupStatus`` of unit indices, highest score first; resolved when ``len(top) == k``.

    >>> top_k_decision(np.array([5.0, 4.0, -6.0, 1.0]), np.full(4, 0.1), 2, 0.05)
    GroupStatus(top=[0, 1], out=[3, 2], unresolved=[])
    """
    from scipy.stats import t

    n = scores.shape[0]
    quantile = float(t.ppf(1 - alpha / n / 2, dof))
    half = quantile * np.nan_to_num(np.asarray(stderr, dtype=float), nan=np.inf)
    low, high = scores - half, scores + half
    sorted_high, sorted_low = np.sort(high), np.sort(low)
    # others that may reach me: upper bound at or above my lower bound (a tie is not resolved;
    # my own bound counts and is taken off)
    above = n - np.searchsorted(sorted_high, low, side="left") - 1
    # others surely above me: lower bound strictly above my upper bound (never myself)
    surely_above = n - np.searchsorted(sorted_low, high, side="right")
    by_score = np.argsort(-scores, kind="stable")
    top = [int(u) for u in by_score if above[u] <= k - 1]
    out = [int(u) for u in by_score if surely_above[u] >= k]
    unresolved = [int(u) for u in by_score if above[u] > k - 1 and surely_above[u] < k]
    return GroupStatus(top, out, unresolved)


def looks_reached(count: int) -> int:
    """Index of the last look threshold ``FIRST_LOOK x LOOK_GROWTH^j`` that ``count`` samples reach
    (-1 below the first)."""
    if count < FIRST_LOOK:
        return -1
    j = int(math.floor(math.log(count / FIRST_LOOK) / math.log(LOOK_GROWTH)))
    # guard the float log at exact thresholds
    while FIRST_LOOK * LOOK_GROWTH ** (j + 1) <= count:
        j += 1
    while j >= 0 and FIRST_LOOK * LOOK_GROWTH**j > count:
        j -= 1
    return j


def is_look(tracked: ScoreEstimate) -> bool:
    """Whether the block just absorbed is a look: its samples reached a new look threshold (every
    block holds ``per_block`` samples but the last, so the count before it follows from the count).
    """
    before = (-(-tracked.count // tracked.per_block) - 1) * tracked.per_block
    return looks_reached(tracked.count) > looks_reached(before)


def look_alpha(alpha: float, look: int) -> float:
    """The share of ``alpha`` look ``look`` spends: ``alpha / ((look + 1)(look + 2))``."""
    return alpha / ((look + 1) * (look + 2))


def group_scores(
    modes: np.ndarray, stderr: np.ndarray, target: TopK
) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``[N, G]`` (mean modes over each group's outputs) and a bound on their standard
    errors (the mean of the elements' standard errors) from ``modes``/``stderr`` ``[N, *out]``."""
    n = modes.shape[0]
    groups = target.n_groups(modes.shape[1:])
    return (
        modes.reshape(n, groups, -1).mean(axis=2),
        stderr.reshape(n, groups, -1).mean(axis=2),
    )


def top_k_status(
    result: ModesResult,
    k: int | None = None,
    per_group: bool | None = None,
    level: float | None = None,
) -> TopKStatus:
    """Which units of ``result`` are confidently in or out of the top k by score (signed), per
    group, and which are unresolved.

    A targeted run's own status (``meta["target"]``: its scores' own standard errors, at the
    look it stopped at) when ``k``, ``per_group`` and ``level`` match it or are None; otherwise
    one look at this result, each score's standard error the recorded ``score_stderr`` for one
    group of all outputs, else bounded by the mean of its elements' (wider, never too
    narrow).

    Args:
        result: a finished run.
        k: units in the top (required unless the run had a target); 1 <= k < N.
        per_group: one top k per index of the first output axis (None: the target's, or False).
        level: confidence of the claim about all units together (None: the target's, or
            0.95).

    Raises:
        MSAInputError: no ``k`` and no target, ``k`` out of range, or ``per_group`` with a
            scalar output.
    """
    saved = result.meta.get("target")
    if isinstance(saved, dict) and saved.get("kind") == "top_k":
        status = TopKStatus.from_meta(saved)
        if (
            k in (None, status.k)
            and per_group in (None, status.per_group)
            and level in (None, status.level)
        ):
            return status
    if k is None:
        raise MSAInputError("k is required: this result was not run with a top-k target")
    target = TopK(k, bool(per_group), 0.95 if level is None else level)
    target.check_players(result.n_players)
    dof = result.meta.get("stderr_dof")
    scores, bound = group_scores(np.asarray(result.modes), np.asarray(result.stderr), target)
    if scores.shape[1] == 1:
        bound = result.score_stderr_or_bound()[0][:, None]
    return target.decide(scores, bound, math.inf if dof is None else dof, alpha=1 - target.level)

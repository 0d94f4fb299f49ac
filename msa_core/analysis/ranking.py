"""The one ranking of a run's units and the rules that say which numbers are noise.

Every page ranks units by one named statistic, ``STATISTIC``: a unit's Shapley value for the mean
of the run's outputs, which by linearity is its mode averaged over every output element. Its
standard error is the one the estimator recorded for that mean (``ModesResult.score_stderr``: the
spread of each sample's mean contribution, or the jackknife / batch means of the mean); a result
stored before runs recorded it (or an interaction run's) falls back to the mean of the elements'
standard errors, an upper bound (the errors of a run's outputs are correlated in an unknown way,
and the standard error of a mean is at most the mean of the standard errors), and says so
(``UnitRanking.stderr_is_bound``).

Two rules read the uncertainty, for every page and the report alike:

- a value is *within noise* when it lies within ``NOISE_Z`` (2) standard errors of zero;
- two ranks are *resolved* when their scores' difference is more than ``RANK_Z`` (1.96) standard
  errors of that difference; a unit's rank is shown as the range of ranks it could take
  (``rank_low``..``rank_high``), one number when it is resolved from every other unit;
- the *top k are resolved* (``UnitRanking.top_resolved``) by the stop rule's boundary rule,
  ``msa_core.estimators.stopping.top_k_decision`` (signed scores, highest first; intervals at 95%
  for all units together), the same rule that stops a run with a top-k target.

``noise_verdict`` says in words when a run's noise exceeds its signal.

>>> import numpy as np
>>> from msa_core.result import ModesResult
>>> res = ModesResult(np.array([[3.0], [1.0], [0.9]]), np.array([[0.1], [0.2], [0.2]]),
...                   np.array([4.9]), np.array([0.0]), 10, 5, ["a", "b", "c"])
>>> ranked = unit_ranking(res)
>>> [ranked.units[i] for i in ranked.order], ranked.rank_text()
(['a', 'b', 'c'], ['1', '2-3', '2-3'])
>>> noise_verdict(res) is None
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from msa_core.result import ModesResult

STATISTIC = "Shapley value"  # the name every page gives the ranking's score
STATISTIC_HELP = (
    "The unit's Shapley value for the mean of the run's outputs (its mode averaged over every "
    "output); ± its standard error, as the run estimated it (for runs stored before runs recorded "
    "it, an upper bound: the mean of the elements' standard errors)."
)
NOISE_Z = 2.0  # a value within this many standard errors of zero is within noise
RANK_Z = 1.96  # two scores further apart than this many stderr of their difference are ordered
NOISE_LEGEND = f"within {NOISE_Z:g} stderr of 0"  # the figures' legend entry for marked cells


def within_noise(values: np.ndarray, stderr: np.ndarray) -> np.ndarray:
    """Where ``|values| < NOISE_Z * stderr`` (same shape; exact zeros with zero error are not).

    >>> within_noise(np.array([1.0, 0.1, 0.0]), np.array([0.1, 0.1, 0.0])).tolist()
    [False, True, False]
    """
    return np.abs(np.asarray(values, dtype=float)) < NOISE_Z * np.asarray(stderr, dtype=float)


@dataclass(frozen=True)
class UnitRanking:
    """Units ranked by ``STATISTIC`` (highest first).

    Attributes:
        units: names ``[N]`` in the run's order.
        scores, stderr: the statistic and its standard error ``[N]`` (run order).
        order: unit indices ``[N]``, rank 1 first.
        rank_low, rank_high: per unit ``[N]`` (run order), the best and worst rank its interval
            allows (1-based); equal when its rank is resolved.
        noise: per unit ``[N]``: its score is within noise (``within_noise``).
        stderr_is_bound: ``stderr`` is an upper bound, not the estimator's own (see the module).
    """

    units: list[str]
    scores: np.ndarray
    stderr: np.ndarray
    order: np.ndarray
    rank_low: np.ndarray
    rank_high: np.ndarray
    noise: np.ndarray
    stderr_is_bound: bool = False

    @property
    def resolved(self) -> np.ndarray:
        """``[N]`` (run order): the unit's rank is resolved from every other unit's."""
        return self.rank_low == self.rank_high

    def rank_of(self) -> np.ndarray:
        """``[N]`` (run order): each unit's rank, 1 = highest score."""
        ranks = np.empty(len(self.order), dtype=np.int64)
        ranks[self.order] = np.arange(1, len(self.order) + 1)
        return ranks

    def rank_text(self) -> list[str]:
        """``[N]`` in rank order: ``"3"`` for a resolved rank, ``"2-5"`` for the ranks it could
        take."""
        return [
            str(self.rank_low[i])
            if self.rank_low[i] == self.rank_high[i]
            else f"{self.rank_low[i]}-{self.rank_high[i]}"
            for i in self.order
        ]

    def top(self, k: int) -> list[str]:
        """The names of the first ``k`` units."""
        return [self.units[i] for i in self.order[:k]]

    def top_resolved(self, k: int, level: float = 0.95) -> bool:
        """Whether the first ``k`` units are surely the top k at ``level`` for all units together
        (``stopping.top_k_decision``, the stop rule's boundary rule; normal intervals)."""
        from msa_core.estimators.stopping import top_k_decision

        if k >= len(self.units):
            return True
        return len(top_k_decision(self.scores, self.stderr, k, alpha=1 - level).top) == k

    def labels(self) -> dict[str, str]:
        """``{unit: "#3 n5 (+0.12 ± 0.01)"}`` in rank order: rank (or range), name, score and
        stderr."""
        return {
            self.units[i]: f"#{text} {self.units[i]} ({self.scores[i]:+.3g} ± {self.stderr[i]:.2g})"
            for text, i in zip(self.rank_text(), self.order, strict=True)
        }

    def rows(self, k: int | None = None) -> list[dict[str, Any]]:
        """Table rows of the first ``k`` units (all for None): rank (a range where unresolved),
        unit, score, stderr and whether it is within noise."""
        texts = self.rank_text()
        return [
            {
                "rank": texts[position],
                "unit": self.units[i],
                STATISTIC: float(self.scores[i]),
                "stderr": float(self.stderr[i]),
                "within noise": bool(self.noise[i]),
            }
            for position, i in enumerate(self.order[: len(self.order) if k is None else k])
        ]


def unit_statistic(result: ModesResult) -> tuple[np.ndarray, np.ndarray]:
    """``(scores [N], stderr [N])``: each unit's mode averaged over every output element and its
    standard error (recorded by the run, else the bound of the module docstring)."""
    modes = np.asarray(result.modes, dtype=float).reshape(result.n_players, -1)
    return modes.mean(1), result.score_stderr_or_bound()[0]


def ranking_of(
    scores: np.ndarray, stderr: np.ndarray, units: Sequence[str], stderr_is_bound: bool = False
) -> UnitRanking:
    """Rank ``scores [N]`` with their standard errors ``[N]`` (highest first, ties in run order;
    ``stderr_is_bound``: they are upper bounds).

    Unit i is surely above unit j when ``s_i - s_j > RANK_Z * sqrt(se_i^2 + se_j^2)``; its best
    rank is 1 + the number of units surely above it, its worst N - the number surely below.
    """
    scores, stderr = np.asarray(scores, dtype=float), np.asarray(stderr, dtype=float)
    order = np.argsort(-scores, kind="stable")
    gap = scores[:, None] - scores[None, :]  # [i, j] = s_i - s_j
    above = gap > RANK_Z * np.sqrt(stderr[:, None] ** 2 + stderr[None, :] ** 2)  # i surely > j
    if not np.any(stderr):  # exact: the order is the order, ties included
        above = gap > 0
        tied = ~above & ~above.T
        rank = np.empty(len(scores), dtype=np.int64)
        rank[order] = np.arange(1, len(scores) + 1)
        low = rank - (tied & (rank[None, :] < rank[:, None])).sum(1)
        high = rank + (tied & (rank[None, :] > rank[:, None])).sum(1)
    else:
        low = 1 + above.sum(0)
        high = len(scores) - above.sum(1)
    return UnitRanking(
        list(units),
        scores,
        stderr,
        order,
        low.astype(np.int64),
        high.astype(np.int64),
        within_noise(scores, stderr),
        stderr_is_bound,
    )


def unit_ranking(result: ModesResult) -> UnitRanking:
    """The run's one ranking of its units (``STATISTIC``, highest first)."""
    scores, stderr = unit_statistic(result)
    return ranking_of(scores, stderr, result.player_names, result.score_stderr_or_bound()[1])


def noise_verdict(result: ModesResult) -> str | None:
    """A sentence saying that the run's noise exceeds its signal, or None when it does not.

    It does when the largest standard error is at least the largest |mode|, or when every unit's
    ``STATISTIC`` lies within noise (none is resolved from zero).
    """
    modes, errors = np.abs(np.asarray(result.modes, dtype=float)), np.asarray(result.stderr)
    largest_error = float(np.max(errors, initial=0.0))
    largest_mode = float(np.max(modes, initial=0.0))
    if largest_error == 0.0:
        return None
    ranked = unit_ranking(result)
    share = float(ranked.noise.mean())
    reasons = []
    if largest_error >= largest_mode:
        reasons.append(
            f"its largest standard error ({largest_error:.3g}) is at least its largest |mode| "
            f"({largest_mode:.3g})"
        )
    if ranked.noise.all():
        reasons.append(f"every unit's {STATISTIC} lies within {NOISE_Z:g} standard errors of zero")
    if not reasons:
        return None
    return (
        "Noise exceeds signal in this run: "
        + " and ".join(reasons)
        + f". {share:.0%} of the units are within noise and "
        f"{int((~ranked.resolved).sum())} of {len(ranked.units)} ranks are not resolved; "
        "read the maps and rankings as unresolved, or extend the run with a larger budget."
    )


def noise_summary(result: ModesResult) -> str:
    """One line on the run's uncertainty: units within noise and ranks resolved."""
    ranked = unit_ranking(result)
    if not np.any(ranked.stderr):
        return "Exact run: no sampling error; every rank is resolved."
    return (
        f"{int(ranked.noise.sum())} of {len(ranked.units)} units' {STATISTIC} within "
        f"{NOISE_Z:g} stderr of 0; {int(ranked.resolved.sum())} of {len(ranked.units)} ranks "
        "resolved (95%)"
        + (
            " (from upper bounds on the standard errors: the run was stored before runs recorded "
            "them, so more may be resolved)."
            if ranked.stderr_is_bound
            else "."
        )
    )


MAX_MARKS = 20_000  # cells; a larger map is marked in its hover text only


def noise_marks(
    x: Sequence[Any], y: Sequence[Any], values: np.ndarray, stderr: np.ndarray, **axes: str
) -> go.Scatter | None:
    """A trace of small grey dots on the cells of a heatmap ``values [len(y), len(x)]`` that are
    within noise (legend entry ``NOISE_LEGEND``); None when no cell is or there are too many
    cells. ``axes``: ``xaxis`` / ``yaxis`` of the heatmap in a figure with subplots."""
    values, stderr = np.asarray(values, dtype=float), np.asarray(stderr, dtype=float)
    if values.size > MAX_MARKS:
        return None
    rows, columns = np.nonzero(within_noise(values, stderr))
    if not len(rows):
        return None
    return go.Scatter(
        x=[x[int(c)] for c in columns],
        y=[y[int(r)] for r in rows],
        mode="markers",
        marker={"size": 4, "color": "rgba(40,40,40,0.55)", "symbol": "circle"},
        name=NOISE_LEGEND,
        showlegend=True,
        hoverinfo="skip",
        **axes,
    )

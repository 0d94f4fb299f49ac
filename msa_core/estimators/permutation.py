"""Permutation sampling, the estimator of the MSA paper and of msapy.

Each sampled order adds units one by one; unit i's marginal contribution in that order is
``v(units before i, and i) - v(units before i)``. The mean over orders is unbiased, and the
contributions of one order telescope to ``v(full) - v(empty)``, so efficiency holds.

Streaming: each unit's contribution in each order of a block, the difference of two consecutive
prefix values, is folded straight into the per-unit shifted sums and squared sums
(``RunningMoments``) that give both the modes (their mean) and the variance, in one compiled pass
over the block's values (``fold_orders``, numba), never forming the ``[P, N, D]`` array. Differences
run in the values' own precision (float32 games stay float32 there: a difference of two float32
values is exact or within 2^-24 of itself, and the same whatever the batch or backend), the sums in
float64.

Scores: each sample's contributions averaged over all outputs (the ranking's score, a unit's
Shapley value for the mean output) are kept as their own moments (``unit_scores``), so
``score_stderr`` is that mean's own standard error (Student-t, samples - 1 degrees of freedom),
not a bound; with a top-k target, the same per group (``scores``). By linearity they are the
contributions of the values' (group) means, one number per coalition.

Standard error: from the explicit contributions of every permutation, per output element, with the
variance moderated by empirical Bayes (Smyth 2004, as in limma): a prior variance per element,
the product of the unit's mean variance over its outputs and the output's mean over the units
(normalised by the grand mean), enters worth ``PRIOR_SHARE`` of the samples,
``var = (d0 * prior + d * sample_var) / (d0 + d)`` with ``d = samples - 1``,
``d0 = PRIOR_SHARE * samples``, and intervals use Student-t quantiles with ``d + d0`` degrees of
freedom. Without the prior, an element whose contributions are rare events (a neuron that
changes one class's accuracy in a few orders in a thousand) often shows no spread at all in 100
permutations, and its interval has width 0: measured on mlp-digits-h16-none-s0's per-class
accuracy, 89% of elements were covered at the nominal 95%, 93-94% with the prior; on the other
bench games it moves coverage from 94-96% to 95-97% (bench/bench_estimators.py). A unit that never
changes any output (a null player) keeps a standard error of exactly 0.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import numpy as np

from msa_core.coalitions import from_ranks
from msa_core.estimators.base import (
    Estimator,
    RunningMoments,
    ScoreEstimate,
    block_rng,
    samples_per_block,
)

PRIOR_SHARE = 0.1  # weight of the prior variance (unit mean x output mean), a share of the samples


class PermutationEstimator(Estimator):
    """Plain Monte-Carlo over uniformly random permutations; one sample = one permutation."""

    name = "permutation"
    stderr_kind = (
        "standard error over permutations, variance moderated toward the unit's mean "
        "(t, 1.1 x samples - 1 degrees of freedom)"
    )
    permutations_per_sample = 1
    state_fields: ClassVar[tuple[str, ...]] = ("n_permutations", "moments", "unit_scores", "scores")
    optional_state: ClassVar[tuple[str, ...]] = (
        "unit_scores",
    )  # checkpoints written before it existed lack it
    extendable = True  # block k holds the same orders whatever the budget

    def __init__(
        self, n_players: int, v_full: np.ndarray, v_empty: np.ndarray, seed: int, budget: int
    ) -> None:
        super().__init__(n_players, v_full, v_empty, seed, budget)
        rows_per_sample = self.permutations_per_sample * (n_players - 1)
        self.n_samples = budget // rows_per_sample
        self.per_block = samples_per_block(rows_per_sample, self.values_per_coalition())
        self.n_blocks = -(-self.n_samples // self.per_block)
        self.moments = RunningMoments((n_players, self.n_outputs))  # mean = modes, and variance
        # every sample's contributions averaged over all outputs: the ranking's score
        self.unit_scores = RunningMoments((n_players,))
        self.scores: RunningMoments | None = None  # kept for a top-k target (track_scores)
        self._ranks: dict[int, np.ndarray] = {}
        self._ends_by_dtype: dict[np.dtype, tuple[np.ndarray, np.ndarray]] = {}
        self._weights: dict[np.dtype, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def values_per_coalition(self) -> int:
        """Numbers each evaluated coalition brings (what bounds a block's size): its outputs."""
        return self.n_outputs

    def planned_evaluations(self) -> int:
        return self.n_samples * self.permutations_per_sample * (self.n_players - 1)

    @classmethod
    def min_budget(cls, n_players: int) -> int:
        return 2 * cls.permutations_per_sample * (n_players - 1)

    def sample_ranks(self, rng: np.random.Generator, n_samples: int) -> np.ndarray:
        """Ranks ``[n_samples * permutations_per_sample, N]``: row p gives each unit's position in
        order p.
        """
        return rng.random((n_samples, self.n_players)).argsort(axis=1).argsort(axis=1)

    def combine(self, contributions: np.ndarray) -> np.ndarray:
        """Samples ``[m, N, D]`` from per-permutation contributions
        ``[m * permutations_per_sample, N, D]``.
        """
        return contributions

    def block(self, k: int) -> np.ndarray:
        n_samples = min(self.per_block, self.n_samples - k * self.per_block)
        ranks = self.sample_ranks(block_rng(self.seed, k), n_samples)
        self._ranks[k] = ranks
        return from_ranks(ranks, np.arange(1, self.n_players))

    def track_scores(self, n_groups: int) -> None:
        """Also keep every sample's scores ``[N, G]``, its mean modes over each of ``n_groups``
        equal consecutive slices of the outputs (the groups of a ``stopping.TopK`` target)."""
        self.scores = RunningMoments((self.n_players, n_groups))
        self._weights.clear()  # the groups changed

    def score_estimate(self) -> ScoreEstimate | None:
        if self.scores is None or self.scores.count < 2:
            return None
        return ScoreEstimate(
            self.scores.mean,
            self.scores.stderr(),
            float(self.scores.count - 1),
            self.scores.count,
            self.per_block,
        )

    def score_stderr(self) -> np.ndarray | None:
        """Over the samples' mean contributions; None for a run resumed from a checkpoint written
        before they were kept (it lacks the samples before it)."""
        if self.unit_scores.count != self.moments.count:
            return None
        return self.unit_scores.stderr()

    def absorb(self, k: int, values: np.ndarray) -> None:
        ranks = self._ranks.pop(k)
        self.n_permutations += ranks.shape[0]
        # a sample's contributions averaged over each group's outputs are the contributions of
        # the values averaged so (linearity): [m, N, G] from values [rows, G]
        weights, full, empty = self._group_weights(values.dtype)
        n_groups = full.shape[0]
        group_means = (values.reshape(-1, weights.shape[0]) @ weights).astype(np.float64)
        group_means = group_means.reshape(-1, n_groups)  # [rows, G]
        if self.scores is not None:
            self.scores.add(self.combine(marginal_contributions(ranks, group_means, full, empty)))
        if n_groups > 1:  # the mean over all outputs is the mean of the equal groups' means
            group_means, full, empty = (
                x.mean(axis=-1, keepdims=True) for x in (group_means, full, empty)
            )
        per_sample = self.permutations_per_sample
        fold_orders(ranks, group_means, full, empty, per_sample, self.unit_scores)
        v_full, v_empty = self._ends(values.dtype)
        fold_orders(ranks, values, v_full, v_empty, per_sample, self.moments)

    def _group_weights(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``1/size`` weights ``[D / G]`` in ``dtype`` and the end values' group means ``[G]``
        (float64) for the G groups of a target (1 without): the means are BLAS matrix-vector
        products, several times faster than a reduction, taken the same way for the ends as for
        every row."""
        if dtype not in self._weights:
            groups = 1 if self.scores is None else self.scores.shift.shape[1]
            size = self.n_outputs // groups
            weights = np.full(size, 1 / size, dtype)
            ends = np.stack(self._ends(dtype)).reshape(2, groups, size)
            full, empty = (ends @ weights).astype(np.float64)
            self._weights[dtype] = (weights, full, empty)
        return self._weights[dtype]

    def _ends(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """The end values ``[D]`` in the values' ``dtype`` (a game's float32 stays float32)."""
        if dtype not in self._ends_by_dtype:
            self._ends_by_dtype[dtype] = (self.v_full.astype(dtype), self.v_empty.astype(dtype))
        return self._ends_by_dtype[dtype]

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        modes = self.moments.mean
        count = self.moments.count
        if count < 2:
            return modes, np.full_like(modes, np.nan)
        variance = self.moments.stderr() ** 2 * count  # sample variance per element
        by_unit = variance.mean(axis=1, keepdims=True)
        by_output = variance.mean(axis=0, keepdims=True)
        prior = by_unit * by_output / max(float(by_output.mean()), 1e-300)  # rank one
        d, d0 = count - 1, PRIOR_SHARE * count
        return modes, np.sqrt((d0 * prior + d * variance) / ((d0 + d) * count))

    def stderr_dof(self) -> float:
        return float(max((1 + PRIOR_SHARE) * self.moments.count - 1, 1))

    def max_stderr(self) -> float | None:
        return float(self.estimate()[1].max()) if self.moments.count >= 2 else None


def marginal_contributions(
    ranks: np.ndarray,
    values: np.ndarray,
    v_full: np.ndarray,
    v_empty: np.ndarray,
    by_position: np.ndarray | None = None,
    by_unit: np.ndarray | None = None,
) -> np.ndarray:
    """Each unit's marginal contribution in each order.

    Args:
        ranks: ``[P, N]`` each unit's position in each order.
        values: ``[P * (N-1), D]`` the prefix values of each order, in position order.
        v_full, v_empty: ``[D]`` the end values, in ``values``' dtype.
        by_position, by_unit: scratch of at least ``P * N`` rows ``[rows, D]`` (None: fresh).
    Returns:
        ``[P, N, D]`` in ``values``' dtype, unit order (a view of ``by_unit``).
    """
    n_perm, n = ranks.shape
    d = values.shape[1]
    if by_position is None or by_unit is None:
        by_position, by_unit = (np.empty((n_perm * n, d), values.dtype) for _ in range(2))
    prefixes = values.reshape(n_perm, n - 1, d)
    position = by_position[: n_perm * n].reshape(n_perm, n, d)
    np.subtract(prefixes[:, 0], v_empty, out=position[:, 0])
    np.subtract(prefixes[:, 1:], prefixes[:, :-1], out=position[:, 1:-1])
    np.subtract(v_full, prefixes[:, -1], out=position[:, -1])
    rows = (np.arange(n_perm)[:, None] * n + ranks).ravel()
    # 'clip' writes straight to out; 'raise' would buffer
    gathered = np.take(
        position.reshape(n_perm * n, d), rows, axis=0, out=by_unit[: n_perm * n], mode="clip"
    )
    return gathered.reshape(n_perm, n, d)


def fold_orders(
    ranks: np.ndarray,
    values: np.ndarray,
    v_full: np.ndarray,
    v_empty: np.ndarray,
    per_sample: int,
    moments: RunningMoments,
) -> None:
    """Fold a block's samples into ``moments`` in one pass over its prefix values.

    A sample is the mean contribution ``[N, D]`` over ``per_sample`` consecutive orders (1 for
    permutation sampling, 2 for an antithetic pair), as ``marginal_contributions`` and ``combine``
    give it, added as ``moments.add`` adds it (shifted float64 sums and squared sums; the shift is
    the first sample), without the ``[P, N, D]`` array: the block's five passes over it
    (differences, gather, shift, sum, squares) become one, in a numba kernel compiled on first use
    and cached with the package.

    Args:
        ranks: ``[P, N]`` each unit's position in each order.
        values: ``[P * (N-1), D]`` the prefix values of each order, in position order.
        v_full, v_empty: ``[D]`` the end values, in ``values``' dtype.
        per_sample: consecutive orders per sample (P is a multiple of it).
        moments: ``RunningMoments`` of shape ``(N, D)``, or ``(N,)`` when D is 1.
    """
    n = ranks.shape[1]
    _fold_kernel()(
        ranks,
        values,
        v_full,
        v_empty,
        per_sample,
        moments.count == 0,
        *(state.reshape(n, -1) for state in (moments.shift, moments.sum, moments.sum_sq)),
    )
    moments.count += ranks.shape[0] // per_sample


@cache
def _fold_kernel() -> Any:
    """``_fold`` compiled (numba is imported only when a run first needs it)."""
    import numba

    return numba.njit(cache=True, nogil=True, error_model="numpy")(_fold)


def _fold(ranks, values, v_full, v_empty, per_sample, first, shift, total, total_sq):  # type: ignore[no-untyped-def]
    """The kernel of ``fold_orders`` (plain loops, for numba): unit by unit, so that a unit's
    rows of ``shift``, ``total`` and ``total_sq`` stay in cache while every sample's contribution
    of it is added; differences in the values' dtype, as ``marginal_contributions`` takes them,
    then float64."""
    n_orders, n = ranks.shape
    d = values.shape[1]
    if per_sample == 1:  # a sample is one order: each difference is folded as it is taken
        for unit in range(n):
            centre, summed, squared = shift[unit], total[unit], total_sq[unit]
            for p in range(n_orders):
                k = ranks[p, unit]  # the unit joins prefix k, making prefix k + 1
                high = v_full if k == n - 1 else values[p * (n - 1) + k]
                low = v_empty if k == 0 else values[p * (n - 1) + k - 1]
                if first and p == 0:
                    for j in range(d):
                        centre[j] = high[j] - low[j]
                for j in range(d):
                    x = (high[j] - low[j]) - centre[j]
                    summed[j] += x
                    squared[j] += x * x
        return
    row = np.empty(d)  # one sample's mean contribution of one unit
    for unit in range(n):
        for s in range(n_orders // per_sample):
            row[:] = 0.0
            for q in range(per_sample):
                p = s * per_sample + q
                k = ranks[p, unit]  # the unit joins prefix k, making prefix k + 1
                high = v_full if k == n - 1 else values[p * (n - 1) + k]
                low = v_empty if k == 0 else values[p * (n - 1) + k - 1]
                for j in range(d):
                    row[j] += high[j] - low[j]
            if per_sample > 1:
                row /= per_sample
            if first and s == 0:
                shift[unit] = row
            for j in range(d):
                x = row[j] - shift[unit, j]
                total[unit, j] += x
                total_sq[unit, j] += x * x

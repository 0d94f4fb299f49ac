"""Regression-adjusted Monte Carlo (Witter, Liu & Musco, NeurIPS 2025) for vector-valued games.

A surrogate ``f`` with closed-form Shapley values (``surrogate.OddFeatures``: the odd part of the
size curve, size-dependent unit effects, pairwise interactions that follow the size, optionally
triples) is fitted to the sampled values by weighted ridge least squares; the modes are
``phi(f) + phi(v - f)``, the first exact, the second a Monte Carlo estimate on the residual.
Shapley values are linear, so this is unbiased whatever ``f`` is, as long as ``f`` was not fitted
on the samples that estimate its residual: the sampled pairs are dealt into G groups, and group g's
residual is estimated with the surrogate fitted on every other group (cross-fitting). The result
is the mean of the G group estimates.

Which surrogate: the orders 1..K that fit in memory (``OddFeatures.levels``), each with a ridge
from ``RIDGES``, are scored by their cross-fitted held-out error (group g's weighted squared
residual under the fit on the other groups, from the same sums), and the least wins. The choice
uses every group, so it is not independent of any one group's residual; over the few candidates
the effect on the intervals is within the coverage tests' tolerance.

Monte Carlo part ("maximum sample reuse"): every coalition feeds every unit. The Shapley value is
``sum_S v(S) w_i(S)`` with ``w_i(S) = p(|S|-1)`` for i in S and ``-p(|S|)`` otherwise (``p`` the
Shapley weights of ``exact.py``); sizes that the sampler would draw at least exhaustively are summed
exactly (as in ``kernel.py``), the full and empty coalitions too; for the other sizes, complement
pairs ``(S, N \\ S)`` are drawn with the size uniform over the sampled sizes (leverage-score
proportions, ``leverage.py``) and S uniform of that size, and each pair adds its importance-weighted
terms. Since ``sum_i w_i(S) = 0`` for every coalition between the ends, each group's estimate
sums to ``v(full) - v(empty)`` exactly: efficiency holds to float precision.

Streaming: only sums are kept, per group ``[F, F]``, ``[F, D]``, ``[D]`` (the fit and its held-out
error) and ``[N, D]``, ``[N, F]`` (the residual terms of the values and of each feature); the fits
are solved at ``estimate()``. Standard error: batch means over the G cross-fitted group estimates,
Student-t with G-1 degrees of freedom.
"""

from __future__ import annotations

from math import comb

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from threadpoolctl import threadpool_limits

from msa_core.estimators.base import GroupedEstimator, block_rng, samples_per_block
from msa_core.estimators.exact import shapley_weights
from msa_core.estimators.kernel import border_sizes, coalitions_of_size
from msa_core.estimators.surrogate import ORDERS, OddFeatures

GROUPS = 16  # cross-fitting groups (and batch-means groups of the standard error)
GROUP_VALUES = 1 << 26  # numbers held by all groups' sums together, at most (about 512 MB)
MAX_VALUES = 1 << 20  # features x outputs per coalition's update, at most, for orders above 1
MAX_FEATURES = 800  # features of the highest order kept, at most (the fits solve F x F systems)
# ridge on the fit, relative to the mean diagonal of the normal equations: candidates scored by
# their held-out error (the least, 1e-8, only guards against exactly collinear features)
RIDGES = (1e-8, 0.03, 0.1, 0.3, 1.0)
SCORED_OUTPUTS = 64  # outputs the held-out error is scored on (evenly spaced), at most


class RegressionAdjustedEstimator(GroupedEstimator):
    """Exactly summed border sizes first (blocks of rows), then blocks of sampled pairs."""

    name = "regression_adjusted"
    stderr_kind = (
        "batch means over cross-fitted groups of sampled pairs (t, groups - 1 degrees of freedom)"
    )
    state_fields = (
        "gram_shared",
        "xv_shared",
        "exact_v",
        "exact_x",
        "gram",
        "xv",
        "yy",
        "rv",
        "rx",
        "pairs",
        "sampled_blocks_done",
    )

    def __init__(
        self, n_players: int, v_full: np.ndarray, v_empty: np.ndarray, seed: int, budget: int
    ) -> None:
        super().__init__(n_players, v_full, v_empty, seed, budget)
        self._chosen: np.ndarray | None = None  # group estimates of the sums as they are now
        n, d = n_players, self.n_outputs
        enumerated = border_sizes(n, budget, power=0.0)
        self.sampled_sizes = np.array(
            [s for s in range(1, n // 2 + 1) if s not in enumerated], dtype=np.int64
        )
        n_sizes = sum(1 for s in range(1, n) if s not in enumerated)  # sizes drawn, both halves
        self.n_pairs = (budget - sum(comb(n, s) for s in enumerated)) // 2 if n_sizes else 0
        # a pair class {s, N-s} is drawn in proportion to its number of sizes (1 when s = N-s)
        classes = np.array([1.0 if 2 * s == n else 2.0 for s in self.sampled_sizes])
        self.class_probability = classes / classes.sum() if classes.size else classes
        self.features = OddFeatures(n, self.highest_order(n, d))
        f = self.features.n_features
        self.n_groups = int(np.clip(GROUP_VALUES // _group_values(f, n, d), 2, GROUPS))

        sizes = np.arange(n + 1)
        p = np.append(shapley_weights(n), 0.0)  # p[s], s = 0..N (p[N] unused)
        self.p_in = np.concatenate(
            [[0.0], p[:-1]]
        )  # weight of a unit inside a coalition of size s: p(s-1)
        self.p_out = p  # weight of a unit outside it: p(s)
        # a sampled pair's terms, scaled by 1 / probability of its first coalition: C(N, s) / q,
        # halved for s = N/2, where both coalitions of a pair are of the class's one size
        self.pair_scale = np.zeros(n + 1)
        for s, q in zip(self.sampled_sizes, self.class_probability, strict=True):
            self.pair_scale[s] = comb(n, int(s)) / q / (2.0 if 2 * s == n else 1.0)
        # fit weights ~ sum_i w_i(S)^2 / D(S)^2: the residual's weight in the Monte Carlo variance
        spread = sizes * self.p_in**2 + (n - sizes) * self.p_out**2
        self.fit_weight = np.zeros(n + 1)
        self.fit_weight[1:-1] = spread[1:-1] * np.array([comb(n, s) for s in range(1, n)]) ** 2.0
        self.fit_weight[1:-1] /= self.fit_weight[1:-1].mean()

        rows = samples_per_block(1, d)
        self.segments = [
            (s, start, min(start + rows, comb(n, s)))
            for s in enumerated
            for start in range(0, comb(n, s), rows)
        ]
        self.pairs_per_block = max(
            1, min(samples_per_block(2, d), -(-self.n_pairs // (8 * self.n_groups)))
        )
        self.n_blocks = len(self.segments) + -(-self.n_pairs // self.pairs_per_block)

        ends = self.features(np.array([[True] * n, [False] * n]))
        self.gram_shared = np.zeros((f, f))
        self.xv_shared = np.zeros((f, d))
        self.exact_v = np.tile(
            (v_full - v_empty) / n, (n, 1)
        )  # the two ends: +-p(N-1) = +-p(0) = 1/N
        self.exact_x = np.tile((ends[0] - ends[1]) / n, (n, 1))
        g = self.n_groups
        self.gram, self.xv, self.yy = np.zeros((g, f, f)), np.zeros((g, f, d)), np.zeros((g, d))
        self.rv, self.rx = np.zeros((g, n, d)), np.zeros((g, n, f))
        self.pairs = np.zeros(g, dtype=np.int64)
        self.sampled_blocks_done = 0

    @staticmethod
    def highest_order(n_players: int, n_outputs: int) -> int:
        """The highest surrogate order whose fit fits: at most ``MAX_FEATURES`` features, and for
        orders above 1 at most ``MAX_VALUES`` numbers per update and room for ``GROUPS`` groups."""
        order = ORDERS[0]
        for k in ORDERS[1:]:
            f = sum(OddFeatures.counts(n_players, k))
            room = GROUP_VALUES // _group_values(f, n_players, n_outputs)
            if f > MAX_FEATURES or f * n_outputs > MAX_VALUES or room < GROUPS:
                break
            order = k
        return order

    def planned_evaluations(self) -> int:
        return sum(stop - start for _, start, stop in self.segments) + 2 * self.n_pairs

    @classmethod
    def min_budget(cls, n_players: int) -> int:
        return min(2 * n_players, 2**n_players - 2)

    def block(self, k: int) -> np.ndarray:
        if k < len(self.segments):
            return coalitions_of_size(self.n_players, *self.segments[k])
        first = (k - len(self.segments)) * self.pairs_per_block
        count = min(self.pairs_per_block, self.n_pairs - first)
        rng = block_rng(self.seed, k)
        sizes = rng.choice(self.sampled_sizes, size=count, p=self.class_probability)
        ranks = rng.random((count, self.n_players)).argsort(axis=1).argsort(axis=1)
        chosen = ranks < sizes[:, None]
        return np.stack([chosen, ~chosen], axis=1).reshape(-1, self.n_players)

    def _weights(self, z: np.ndarray) -> np.ndarray:
        """Shapley weights ``w_i(S)`` of every unit in every coalition, ``[C, N]``."""
        sizes = z.sum(axis=1)
        return np.where(z, self.p_in[sizes, None], -self.p_out[sizes, None])

    def absorb(self, k: int, values: np.ndarray) -> None:
        self._chosen = None
        z = self.block(k)
        x = self.features(z)
        y = values.astype(np.float64, copy=False)
        sizes = z.sum(axis=1)
        xw = x * self.fit_weight[sizes, None]
        w = self._weights(z)
        if k < len(self.segments):
            self.gram_shared += xw.T @ x
            self.xv_shared += xw.T @ y
            self.exact_v += w.T @ y
            self.exact_x += w.T @ x
            return
        g = (k - len(self.segments)) % self.n_groups
        w *= self.pair_scale[np.minimum(sizes, self.n_players - sizes), None]
        self.gram[g] += xw.T @ x
        self.xv[g] += xw.T @ y
        self.yy[g] += self.fit_weight[sizes] @ (y * y)
        self.rv[g] += w.T @ y
        self.rx[g] += w.T @ x
        self.pairs[g] += z.shape[0] // 2
        self.sampled_blocks_done += 1

    def _fit(self, gram: np.ndarray, xv: np.ndarray, ridge: float) -> np.ndarray:
        """Surrogate coefficients ``[F, D]`` from the weighted normal equations.

        The features above order 1 get the ridge ``ridge`` relative to the mean diagonal, those of
        order 1 only ``RIDGES[0]`` (against exactly collinear features).
        """
        f = gram.shape[0]
        penalty = np.full(f, RIDGES[0])
        penalty[self.features.levels[0] :] = max(ridge, RIDGES[0])
        scale = float(np.trace(gram)) / f or 1.0  # no rows yet: coefficients 0
        matrix = gram.copy()
        matrix[np.diag_indices(f)] += penalty * scale
        factor = cho_factor(matrix, overwrite_a=True, check_finite=False)
        return cho_solve(factor, xv, check_finite=False)

    def _candidates(self) -> list[tuple[int, float]]:
        """Surrogates scored: (columns, ridge above order 1)."""
        first, *higher = self.features.levels
        return [(first, RIDGES[0])] + [(level, r) for level in higher for r in RIDGES]

    def _choose(self) -> list[tuple[int, float, np.ndarray]]:
        """The surrogate of least cross-fitted held-out error, per output where there are at most
        ``SCORED_OUTPUTS`` outputs, else one for all outputs (scored on ``SCORED_OUTPUTS`` evenly
        spaced ones): (columns, ridge, the outputs it serves).

        Group g's held-out error under coefficients b fitted without it is
        ``yy_g - 2 <b, xv_g> + <b, gram_g b>`` (its weighted squared residual, from its sums).
        """
        groups = np.flatnonzero(self.pairs)
        candidates = self._candidates()
        all_outputs = np.arange(self.n_outputs)
        if groups.size < 2:  # nothing held out yet: unit effects only
            return [(*candidates[0], all_outputs)]
        per_output = self.n_outputs <= SCORED_OUTPUTS
        outputs = (
            all_outputs
            if per_output
            else np.unique(np.linspace(0, self.n_outputs - 1, SCORED_OUTPUTS).astype(np.int64))
        )
        gram_total = self.gram_shared + self.gram.sum(axis=0)
        xv_total = (self.xv_shared + self.xv.sum(axis=0))[:, outputs]
        errors = np.zeros((len(candidates), outputs.size))
        for c, (level, ridge) in enumerate(candidates):
            for g in groups:
                gram_g, xv_g = self.gram[g][:level, :level], self.xv[g][:level, outputs]
                beta = self._fit(
                    gram_total[:level, :level] - gram_g, xv_total[:level] - xv_g, ridge
                )
                errors[c] += (
                    self.yy[g][outputs]
                    - 2.0 * np.sum(beta * xv_g, axis=0)
                    + np.sum(beta * (gram_g @ beta), axis=0)
                )
        if not per_output:
            return [(*candidates[int(np.argmin(errors.sum(axis=1)))], all_outputs)]
        best = np.argmin(errors, axis=0)
        return [(*candidates[c], np.flatnonzero(best == c)) for c in np.unique(best)]

    def _group_estimates(self, level: int, ridge: float, outputs: np.ndarray) -> np.ndarray:
        """Cross-fitted estimates ``[G', N, D']`` of groups with pairs, for ``outputs`` (surrogate
        on the first ``level`` columns)."""
        columns = slice(0, level)
        gram_total = (self.gram_shared + self.gram.sum(axis=0))[columns, columns]
        xv_total = (self.xv_shared + self.xv.sum(axis=0))[columns, outputs]
        shapley, exact_x = self.features.shapley[columns], self.exact_x[:, columns]
        exact_v = self.exact_v[:, outputs]
        estimates = []
        for g in np.flatnonzero(self.pairs):
            beta = self._fit(
                gram_total - self.gram[g][columns, columns],
                xv_total - self.xv[g][columns, outputs],
                ridge,
            )
            residual = (self.rv[g][:, outputs] - self.rx[g][:, columns] @ beta) / self.pairs[g]
            estimates.append(shapley.T @ beta + exact_v - exact_x @ beta + residual)
        return np.stack(estimates) if estimates else np.zeros((0, self.n_players, outputs.size))

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        self._chosen = None

    def _chosen_group_estimates(self) -> np.ndarray:
        """Group estimates ``[G', N, D]`` with the surrogate (order and ridge) of least held-out
        error, per output; computed once per state of the sums (``estimate`` and
        ``score_stderr`` share them)."""
        if self._chosen is None:
            # hundreds of small solves: BLAS threads only wait on each other (7x slower on 2 cores)
            with threadpool_limits(1, user_api="blas"):
                self._chosen = self._compute_group_estimates()
        return self._chosen

    def _compute_group_estimates(self) -> np.ndarray:
        chosen = self._choose()
        groups = np.zeros((int(np.count_nonzero(self.pairs)), self.n_players, self.n_outputs))
        for level, ridge, outputs in chosen:
            groups[:, :, outputs] = self._group_estimates(level, ridge, outputs)
        return groups

    def score_stderr(self) -> np.ndarray:
        """Batch means of the group estimates' mean over the outputs (NaN before two groups)."""
        groups = self._chosen_group_estimates()
        if groups.shape[0] < 2:
            exact = groups.shape[0] == 0 and self.sampled_sizes.size == 0
            return np.zeros(self.n_players) if exact else np.full(self.n_players, np.nan)
        return groups.mean(axis=2).std(axis=0, ddof=1) / np.sqrt(groups.shape[0])

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        """The estimate with the surrogate (order and ridge) of least held-out error."""
        groups = self._chosen_group_estimates()
        if groups.shape[0] >= 2:
            return groups.mean(axis=0), groups.std(axis=0, ddof=1) / np.sqrt(groups.shape[0])
        if groups.shape[0] == 1:
            return groups[0].copy(), np.full_like(groups[0], np.nan)
        if self.sampled_sizes.size == 0:  # every coalition summed exactly
            return self.exact_v.copy(), np.zeros_like(self.exact_v)
        # no pair yet: the surrogate of order 1 fitted on the exact sizes fills the sizes left
        level, ridge, _ = self._choose()[0]
        beta = self._fit(self.gram_shared[:level, :level], self.xv_shared[:level], ridge)
        modes = self.features.shapley[:level].T @ beta + self.exact_v
        return modes - self.exact_x[:, :level] @ beta, np.full_like(modes, np.nan)

    def group_counts(self) -> np.ndarray:
        return self.pairs


def _group_values(n_features: int, n_players: int, n_outputs: int) -> int:
    """Numbers one cross-fitting group's sums hold."""
    f, n, d = n_features, n_players, n_outputs
    return f * f + (f + n) * d + n * f + d

"""Regression-adjusted Monte Carlo (Witter, Liu & Musco, NeurIPS 2025) for vector-valued games.

A surrogate ``f`` with closed-form Shapley values (``surrogate.CoalitionFeatures``: size curve,
size-dependent unit effects, pairwise products) is fitted to the sampled values by weighted least
squares; the modes are ``phi(f) + phi(v - f)``, the first exact, the second a Monte Carlo
estimate on the residual. Shapley values are linear, so this is unbiased whatever ``f`` is, as
long as ``f`` was not fitted on the samples that estimate its residual: the sampled pairs are
dealt into G groups, and group g's residual is estimated with the surrogate fitted on every other
group (cross-fitting). The result is the mean of the G group estimates.

Monte Carlo part ("maximum sample reuse"): every coalition feeds every unit. The Shapley value is
``sum_S v(S) w_i(S)`` with ``w_i(S) = p(|S|-1)`` for i in S and ``-p(|S|)`` otherwise (``p`` the
Shapley weights of ``exact.py``); sizes that the sampler would draw at least exhaustively are summed
exactly (as in ``kernel.py``), the full and empty coalitions too; for the other sizes, complement
pairs ``(S, N \\ S)`` are drawn with the size uniform over the sampled sizes (leverage-score
proportions, ``leverage.py``) and S uniform of that size, and each pair adds its importance-weighted
terms. Since ``sum_i w_i(S) = 0`` for every coalition between the ends, each group's estimate
sums to ``v(full) - v(empty)`` exactly: efficiency holds to float precision.

Streaming: only sums are kept, per group ``[F, F]``, ``[F, D]`` (the fit) and ``[N, D]``, ``[N, F]``
(the residual terms of the values and of each feature); the fits are solved at ``estimate()``.
Standard error: batch means over the G cross-fitted group estimates, Student-t with G-1 degrees of
freedom.
"""

from __future__ import annotations

from math import comb

import numpy as np

from msa_core.estimators.base import Estimator, block_rng, samples_per_block
from msa_core.estimators.exact import shapley_weights
from msa_core.estimators.kernel import border_sizes, coalitions_of_size
from msa_core.estimators.surrogate import CoalitionFeatures

GROUPS = 16  # cross-fitting groups (and batch-means groups of the standard error)
GROUP_VALUES = 1 << 26  # numbers held by all groups' sums together, at most (about 512 MB)
PAIR_ROWS = 4  # pairwise features only with at least this many fitted coalitions per feature,
PAIR_MAX_VALUES = (
    1 << 20
)  # and at most this many numbers (features x outputs) per coalition's update
RIDGE = 1e-8  # relative ridge on the fit, only against exactly collinear features


class RegressionAdjustedEstimator(Estimator):
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
        "rv",
        "rx",
        "pairs",
        "sampled_blocks_done",
    )

    def __init__(self, n_players, v_full, v_empty, seed, budget):
        super().__init__(n_players, v_full, v_empty, seed, budget)
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
        with_pairs = CoalitionFeatures.count(n, pairs=True)
        pairs = budget - 2 >= PAIR_ROWS * with_pairs and with_pairs * d <= PAIR_MAX_VALUES
        per_group = lambda f: f * f + (f + n) * d + n * f  # noqa: E731
        if pairs and GROUP_VALUES // per_group(with_pairs) < GROUPS:
            pairs = False  # wide outputs: no room for the pairwise fit in every group
        self.features = CoalitionFeatures(n, pairs)
        f = self.features.n_features
        self.n_groups = int(np.clip(GROUP_VALUES // per_group(f), 2, GROUPS))

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
        self.gram, self.xv = np.zeros((g, f, f)), np.zeros((g, f, d))
        self.rv, self.rx = np.zeros((g, n, d)), np.zeros((g, n, f))
        self.pairs = np.zeros(g, dtype=np.int64)
        self.sampled_blocks_done = 0

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
        self.rv[g] += w.T @ y
        self.rx[g] += w.T @ x
        self.pairs[g] += z.shape[0] // 2
        self.sampled_blocks_done += 1

    def _fit(self, gram: np.ndarray, xv: np.ndarray) -> np.ndarray:
        """Surrogate coefficients ``[F, D]`` from the weighted normal equations (tiny ridge)."""
        ridge = RIDGE * max(float(np.trace(gram)) / gram.shape[0], 1e-300)
        return np.linalg.solve(gram + ridge * np.eye(gram.shape[0]), xv)

    def _group_estimates(self, columns: np.ndarray) -> np.ndarray:
        """Cross-fitted estimates ``[G', N, D]`` of groups with pairs (surrogate on ``columns``)."""
        gram_total = (self.gram_shared + self.gram.sum(axis=0))[np.ix_(columns, columns)]
        xv_total = (self.xv_shared + self.xv.sum(axis=0))[columns]
        shapley, exact_x = self.features.shapley[columns], self.exact_x[:, columns]
        estimates = []
        for g in np.flatnonzero(self.pairs):
            beta = self._fit(
                gram_total - self.gram[g][np.ix_(columns, columns)], xv_total - self.xv[g][columns]
            )
            residual = (self.rv[g] - self.rx[g][:, columns] @ beta) / self.pairs[g]
            estimates.append(shapley.T @ beta + self.exact_v - exact_x @ beta + residual)
        return np.stack(estimates) if estimates else np.zeros((0, self.n_players, self.n_outputs))

    def _chosen_group_estimates(self) -> np.ndarray:
        """Group estimates ``[G', N, D]`` with or without the pairwise surrogate features,
        whichever vary less."""
        candidates = [np.arange(self.features.n_features)]
        if self.features.pairs:
            candidates.append(np.arange(self.features.n_features - self.features.n_pairs))
        return min(
            (self._group_estimates(columns) for columns in candidates),
            key=lambda g: float(np.sum(g.var(axis=0, ddof=1))) if g.shape[0] > 1 else 0.0,
        )

    def score_stderr(self) -> np.ndarray:
        """Batch means of the group estimates' mean over the outputs (NaN before two groups)."""
        groups = self._chosen_group_estimates()
        if groups.shape[0] < 2:
            exact = groups.shape[0] == 0 and self.sampled_sizes.size == 0
            return np.zeros(self.n_players) if exact else np.full(self.n_players, np.nan)
        return groups.mean(axis=2).std(axis=0, ddof=1) / np.sqrt(groups.shape[0])

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        """The estimate with or without the pairwise surrogate features, whichever varies less."""
        groups = self._chosen_group_estimates()
        if groups.shape[0] >= 2:
            return groups.mean(axis=0), groups.std(axis=0, ddof=1) / np.sqrt(groups.shape[0])
        if groups.shape[0] == 1:
            return groups[0], np.full_like(groups[0], np.nan)
        if self.sampled_sizes.size == 0:  # every coalition summed exactly
            return self.exact_v.copy(), np.zeros_like(self.exact_v)
        beta = self._fit(
            self.gram_shared, self.xv_shared
        )  # no pair yet: the surrogate fills the sizes left
        modes = self.features.shapley.T @ beta + self.exact_v - self.exact_x @ beta
        return modes, np.full_like(modes, np.nan)

    def stderr_dof(self) -> float:
        return float(max(int(np.count_nonzero(self.pairs)) - 1, 1))

    def max_stderr(self) -> float | None:
        """Told after each full round of sampled blocks over the groups."""
        done = self.sampled_blocks_done
        if done < self.n_groups or done % self.n_groups:
            return None
        return float(self.estimate()[1].max())

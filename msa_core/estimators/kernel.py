"""Kernel regression with paired sampling (KernelSHAP for vector-valued games).

The Shapley modes are the solution of a weighted least-squares problem over coalitions,
``min sum_S mu(S) ||v(S) - v(empty) - sum_{i in S} phi_i||^2`` subject to efficiency
``sum_i phi_i = v(full) - v(empty)``, with the Shapley kernel ``mu(S) = (N-1) / (C(N,|S|) |S| (N-|S|))``
(Lundberg & Lee 2017). One regression matrix serves every output element.

Sampling (as shapiq's KernelSHAP does): coalition sizes whose expected number of draws would
exceed the number of coalitions of that size are enumerated completely ("border trick"); the rest
are sampled with probability proportional to the kernel, each together with its complement
(paired sampling, Covert & Lee 2021). Efficiency is imposed exactly by solving in the subspace of
vectors that sum to zero.

Standard error: batch means. Sampled pairs are dealt round-robin into interleaved groups; each group
with the enumerated part gives its own estimate, and the standard error is the standard deviation of
the group estimates over sqrt(groups). It is zero when every coalition is enumerated (then the
result is exact).
"""

from __future__ import annotations

from itertools import chain, combinations
from math import comb

import numpy as np

from msa_core.estimators.base import BLOCK_VALUES, Estimator, block_rng

GROUPS = 8  # batch-means groups for the standard error
GROUP_VALUES = 1 << 27  # numbers held by all groups' accumulators together, at most (about 1 GB)


def kernel_mass(n_players: int) -> np.ndarray:
    """Total Shapley-kernel weight of each coalition size s = 0..N: ``(N-1) / (s (N-s))``, 0 at the ends."""
    sizes = np.arange(n_players + 1)
    mass = np.zeros(n_players + 1)
    mass[1:-1] = (n_players - 1) / (sizes[1:-1] * (n_players - sizes[1:-1]))
    return mass


def border_sizes(n_players: int, budget: int) -> list[int]:
    """Sizes whose coalitions are all enumerated: those the kernel would sample at least exhaustively.

    Sizes are taken in pairs (s, N-s), most heavily weighted first, while the budget left for
    sampling would draw each coalition of the pair at least once in expectation.

    >>> border_sizes(10, 100)
    [1, 9]
    """
    mass = kernel_mass(n_players)
    left, enumerated = budget, []
    for s in range(1, n_players // 2 + 1):
        pair = sorted({s, n_players - s})
        rest = [r for r in range(1, n_players) if r not in enumerated]
        count = sum(comb(n_players, r) for r in pair)
        if count > left or left * mass[pair].sum() / mass[rest].sum() < count:
            break
        enumerated += pair
        left -= count
    return sorted(enumerated)


def sum_zero_basis(n_players: int) -> np.ndarray:
    """Orthonormal basis ``[N, N-1]`` of the vectors whose entries sum to zero."""
    projector = np.eye(n_players) - 1.0 / n_players
    return np.linalg.qr(projector)[0][:, : n_players - 1]


def solve_constrained(a: np.ndarray, b: np.ndarray, delta: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Weighted least squares with efficiency imposed exactly.

    a: ``[N, N]`` = sum_S w_S z_S z_S^T; b: ``[N, D]`` = sum_S w_S z_S (v(S) - v(empty));
    delta: ``[D]`` = v(full) - v(empty). Returns modes ``[N, D]`` summing to ``delta``.
    """
    n_players = a.shape[0]
    base = delta / n_players  # [D]: the equal split, corrected inside the sum-zero subspace
    rhs = basis.T @ (b - a.sum(axis=1)[:, None] * base[None, :])
    beta = np.linalg.lstsq(basis.T @ a @ basis, rhs, rcond=None)[0]
    return base[None, :] + basis @ beta


class KernelEstimator(Estimator):
    """Paired kernel sampling with the border trick; enumerated blocks first, then sampled pairs."""

    name = "kernel"
    stderr_kind = "batch means over interleaved groups of sampled pairs"

    def __init__(self, n_players, v_full, v_empty, seed, budget):
        super().__init__(n_players, v_full, v_empty, seed, budget)
        n, d = n_players, self.n_outputs
        mass = kernel_mass(n)
        self.enumerated = border_sizes(n, budget)
        self.sampled_sizes = np.array([s for s in range(1, n) if s not in self.enumerated], dtype=np.int64)
        n_enumerated = sum(comb(n, s) for s in self.enumerated)
        self.n_pairs = (budget - n_enumerated) // 2 if self.sampled_sizes.size else 0
        self.size_probs = mass[self.sampled_sizes] / mass[self.sampled_sizes].sum() if self.n_pairs else None
        self.sampled_mass = float(mass[self.sampled_sizes].sum())

        rows = int(np.clip(BLOCK_VALUES // max(1, d), 1, 4096))
        self.segments = [(s, start, min(start + rows, comb(n, s)))
                         for s in self.enumerated for start in range(0, comb(n, s), rows)]
        self.pairs_per_block = int(np.clip(min(BLOCK_VALUES // max(1, 2 * d), -(-self.n_pairs // GROUPS)), 1, 64))
        n_sample_blocks = -(-self.n_pairs // self.pairs_per_block)
        self.n_blocks = len(self.segments) + n_sample_blocks
        self.n_groups = int(np.clip(GROUP_VALUES // max(1, n * (n + d)), 2, GROUPS))

        self.basis = sum_zero_basis(n)
        self.delta = v_full - v_empty
        self.a_enumerated = np.zeros((n, n))
        self.b_enumerated = np.zeros((n, d))
        self.a_groups = np.zeros((self.n_groups, n, n))
        self.b_groups = np.zeros((self.n_groups, n, d))
        self.group_rows = np.zeros(self.n_groups, dtype=np.int64)
        self.sampled_blocks_done = 0
        self._combos: tuple[int, np.ndarray] | None = None

    def planned_evaluations(self) -> int:
        return sum(stop - start for _, start, stop in self.segments) + 2 * self.n_pairs

    @classmethod
    def min_budget(cls, n_players: int) -> int:
        return min(2 * n_players, 2**n_players - 2)

    def _size_combinations(self, size: int) -> np.ndarray:
        """All index sets of one size, ``[C(N, size), size]``, cached for the size in use."""
        if self._combos is None or self._combos[0] != size:
            flat = np.fromiter(chain.from_iterable(combinations(range(self.n_players), size)), dtype=np.int64)
            self._combos = (size, flat.reshape(-1, size))
        return self._combos[1]

    def block(self, k: int) -> np.ndarray:
        if k < len(self.segments):
            size, start, stop = self.segments[k]
            members = self._size_combinations(size)[start:stop]
            rows = np.zeros((stop - start, self.n_players), dtype=bool)
            np.put_along_axis(rows, members, True, axis=1)
            return rows
        first = (k - len(self.segments)) * self.pairs_per_block
        n_pairs = min(self.pairs_per_block, self.n_pairs - first)
        rng = block_rng(self.seed, k)
        sizes = rng.choice(self.sampled_sizes, size=n_pairs, p=self.size_probs)
        ranks = rng.random((n_pairs, self.n_players)).argsort(axis=1).argsort(axis=1)
        chosen = ranks < sizes[:, None]
        return np.stack([chosen, ~chosen], axis=1).reshape(-1, self.n_players)

    def absorb(self, k: int, values: np.ndarray) -> None:
        z = self.block(k).astype(np.float64)
        y = values - self.v_empty
        if k < len(self.segments):
            size = self.segments[k][0]
            zw = z * (kernel_mass(self.n_players)[size] / comb(self.n_players, size))
            self.a_enumerated += zw.T @ z
            self.b_enumerated += zw.T @ y
            return
        group = (k - len(self.segments)) % self.n_groups
        self.a_groups[group] += z.T @ z
        self.b_groups[group] += z.T @ y
        self.group_rows[group] += z.shape[0]
        self.sampled_blocks_done += 1

    def _solve(self, a_sampled: np.ndarray, b_sampled: np.ndarray, rows: int) -> np.ndarray:
        scale = self.sampled_mass / rows if rows else 0.0
        a = self.a_enumerated + scale * a_sampled
        b = self.b_enumerated + scale * b_sampled
        return solve_constrained(a, b, self.delta, self.basis)

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        modes = self._solve(self.a_groups.sum(axis=0), self.b_groups.sum(axis=0), int(self.group_rows.sum()))
        filled = np.flatnonzero(self.group_rows)
        if self.group_rows.sum() == 0:
            return modes, np.zeros_like(modes)
        if filled.size < 2:
            return modes, np.full_like(modes, np.nan)
        per_group = np.stack([self._solve(self.a_groups[g], self.b_groups[g], int(self.group_rows[g]))
                              for g in filled])
        return modes, per_group.std(axis=0, ddof=1) / np.sqrt(filled.size)

    def max_stderr(self) -> float | None:
        """Told after each full round of sampled blocks over the groups."""
        done = self.sampled_blocks_done
        if done < self.n_groups or done % self.n_groups:
            return None
        return float(self.estimate()[1].max())

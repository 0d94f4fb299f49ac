"""Exact Shapley modes from all 2^N coalitions, streamed in blocks (memory O(N x |out|)).

Each coalition S adds ``w(|S|-1) v(S)`` to every intact unit and ``-w(|S|) v(S)`` to every
lesioned unit, with ``w(s) = s! (N-s-1)! / N!``; summed over all S this is the Shapley formula.
"""

from __future__ import annotations

from math import comb

import numpy as np

from msa_core.coalitions import from_indices
from msa_core.estimators.base import Estimator, samples_per_block

EXACT_MAX_PLAYERS = 20  # 2^20 ~ one million evaluations; beyond that use a sampled method


def shapley_weights(n_players: int) -> np.ndarray:
    """``w[s] = s! (N-s-1)! / N!`` for s = 0..N-1: weight of a marginal contribution to a coalition
    of size s.
    """
    return np.array([1.0 / (n_players * comb(n_players - 1, s)) for s in range(n_players)])


class EnumeratedBlocks:
    """Blocks of all 2^N - 2 coalitions but the two ends, in consecutive integer indices: the block
    schedule of the exact estimators (of modes and of interaction modes)."""

    n_players: int
    n_outputs: int
    n_middle: int
    rows: int
    n_blocks: int

    def enumerate_coalitions(self) -> None:
        """Fix the schedule: one coalition per row, block sizes as every estimator's (checkpoints
        fall between blocks)."""
        self.n_middle = 2**self.n_players - 2
        self.rows = samples_per_block(1, self.n_outputs)
        self.n_blocks = -(-self.n_middle // self.rows)

    def planned_evaluations(self) -> int:
        return self.n_middle

    @classmethod
    def min_budget(cls, n_players: int) -> int:
        return 2**n_players - 2

    def block(self, k: int) -> np.ndarray:
        start = 1 + k * self.rows
        return from_indices(
            np.arange(start, min(start + self.rows, 1 + self.n_middle), dtype=np.int64),
            self.n_players,
        )


class ExactEstimator(EnumeratedBlocks, Estimator):
    """All coalitions except the two ends, in blocks of consecutive integer indices."""

    name = "exact"
    stderr_kind = "exact (zero)"
    state_fields = ("modes",)

    def __init__(self, n_players, v_full, v_empty, seed, budget):
        super().__init__(n_players, v_full, v_empty, seed, budget)
        self.enumerate_coalitions()
        self.weights = shapley_weights(n_players)
        # the two ends: full gives every unit +w(N-1) v_full, empty gives -w(0) v_empty
        self.modes = np.tile(self.weights[-1] * v_full - self.weights[0] * v_empty, (n_players, 1))

    def absorb(self, k: int, values: np.ndarray) -> None:
        coalitions = self.block(k)
        sizes = coalitions.sum(axis=1)
        # an intact unit gains w(|S|-1) v(S), a lesioned one loses w(|S|) v(S); 1 <= |S| <= N-1 here
        # [C, N]
        coef = np.where(coalitions, self.weights[sizes - 1, None], -self.weights[sizes, None])
        self.modes += coef.T @ values

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        return self.modes.copy(), np.zeros_like(self.modes)

    def score_stderr(self) -> np.ndarray:
        return np.zeros(self.n_players)

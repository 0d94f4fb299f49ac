"""Permutation sampling, the estimator of the MSA paper and of msapy.

Each sampled order adds units one by one; unit i's marginal contribution in that order is
``v(units before i, and i) - v(units before i)``. The mean over orders is unbiased, and the
contributions of one order telescope to ``v(full) - v(empty)``, so efficiency holds exactly.
Standard error: the sample standard error over permutations, per output element.
"""

from __future__ import annotations

import numpy as np

from msa_core.coalitions import from_ranks
from msa_core.estimators.base import Estimator, RunningMoments, block_rng, rows_per_block


class PermutationEstimator(Estimator):
    """Plain Monte-Carlo over uniformly random permutations; one sample = one permutation."""

    name = "permutation"
    stderr_kind = "sample standard error over permutations"
    permutations_per_sample = 1

    def __init__(self, n_players, v_full, v_empty, seed, budget):
        super().__init__(n_players, v_full, v_empty, seed, budget)
        rows_per_sample = self.permutations_per_sample * (n_players - 1)
        self.n_samples = budget // rows_per_sample
        self.per_block = rows_per_block(rows_per_sample, self.n_outputs)
        self.n_blocks = -(-self.n_samples // self.per_block)
        self.moments = RunningMoments((n_players, self.n_outputs))
        self._ranks: dict[int, np.ndarray] = {}

    def planned_evaluations(self) -> int:
        return self.n_samples * self.permutations_per_sample * (self.n_players - 1)

    @classmethod
    def min_budget(cls, n_players: int) -> int:
        return 2 * cls.permutations_per_sample * (n_players - 1)

    def sample_ranks(self, rng: np.random.Generator, n_samples: int) -> np.ndarray:
        """Ranks ``[n_samples * permutations_per_sample, N]``: row p gives each unit's position in order p."""
        return rng.random((n_samples, self.n_players)).argsort(axis=1).argsort(axis=1)

    def combine(self, contributions: np.ndarray) -> np.ndarray:
        """Samples ``[m, N, D]`` from per-permutation contributions ``[m * permutations_per_sample, N, D]``."""
        return contributions

    def block(self, k: int) -> np.ndarray:
        n_samples = min(self.per_block, self.n_samples - k * self.per_block)
        ranks = self.sample_ranks(block_rng(self.seed, k), n_samples)
        self._ranks[k] = ranks
        return from_ranks(ranks, np.arange(1, self.n_players))

    def absorb(self, k: int, values: np.ndarray) -> None:
        ranks = self._ranks.pop(k)
        n_perm = ranks.shape[0]
        chain = np.concatenate([  # [P, N+1, D]: v of the prefixes of sizes 0..N of each order
            np.broadcast_to(self.v_empty, (n_perm, 1, self.n_outputs)),
            values.reshape(n_perm, self.n_players - 1, self.n_outputs),
            np.broadcast_to(self.v_full, (n_perm, 1, self.n_outputs)),
        ], axis=1)
        by_position = np.diff(chain, axis=1)  # [P, N, D]: contribution of the unit at each position
        by_unit = np.take_along_axis(by_position, ranks[:, :, None], axis=1)
        self.moments.add(self.combine(by_unit))
        self.n_permutations += n_perm

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        return self.moments.mean.copy(), self.moments.stderr()

    def max_stderr(self) -> float | None:
        return float(self.moments.stderr().max()) if self.moments.count >= 2 else None

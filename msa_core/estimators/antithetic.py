"""Antithetic permutation sampling: every sampled order is paired with its reverse.

A unit early in one order is late in its reverse, so the pair's mean contribution varies less
than two independent orders' whenever contributions depend monotonically on coalition size.
Standard error: over pairs, moderated as in ``permutation.py``.
"""

from __future__ import annotations

import numpy as np

from msa_core.estimators.permutation import PermutationEstimator


class AntitheticEstimator(PermutationEstimator):
    """Permutation sampling over (order, reversed order) pairs; one sample = one pair."""

    name = "antithetic"
    stderr_kind = (
        "standard error over antithetic pairs, variance moderated toward the unit's "
        "mean (t, 1.1 x pairs - 1 degrees of freedom)"
    )
    permutations_per_sample = 2

    def sample_ranks(self, rng: np.random.Generator, n_samples: int) -> np.ndarray:
        ranks = super().sample_ranks(rng, n_samples)
        return np.stack([ranks, self.n_players - 1 - ranks], axis=1).reshape(-1, self.n_players)

    def combine(self, contributions: np.ndarray) -> np.ndarray:
        return contributions.reshape(-1, 2, *contributions.shape[1:]).mean(axis=1)

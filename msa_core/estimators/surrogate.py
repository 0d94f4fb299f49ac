"""Surrogate games with closed-form Shapley values, for the regression-adjusted estimator.

A surrogate is ``f(S) = x(S) @ beta`` with a fixed feature map ``x`` of the coalition and
coefficients ``beta [F, D]`` fitted to the sampled values. Every feature's Shapley values are known
(``shapley [F, N]``), so the surrogate's modes are ``shapley.T @ beta``, exactly. With
``t = |S| / N`` and ``z_A`` = 1 when every unit of the set A is intact, the features are

- ``1[|S| = s]`` for s = 1..N-1: the mean value at each coalition size (Shapley value 0: a
  function of the size alone splits ``g(N) - g(0)`` equally, and these vanish at both ends);
- ``z_i t^k`` for k = 0, 1, 2: each unit's own effect, changing smoothly with how many units are
  intact;
- optionally ``z_i z_j t`` for i < j: pairwise interactions that grow with the coalition.

Why not plain ``z_i z_j``: the estimator samples complement pairs, and its Monte Carlo estimate is
already exact for any game of order at most 2 (the odd part ``(f(S) - f(N \\ S)) / 2`` of such a
game is linear), so a pairwise product as control variate cancels out (measured: the same
estimates to 1e-7). ``z_i z_j t`` has a third-order odd part, which the sampling does not resolve.

Shapley values of ``z_A h(|S|)``, |A| = a (the Shapley weight of a coalition of size s that excludes
a unit is ``1 / (N C(N-1, s))``): a unit of A gets ``sum_s C(N-a, s-a+1) h(s+1) / (N C(N-1, s))``
(its marginal contribution is ``h(s+1)`` where the rest of A is in S), a unit outside A gets
``sum_s C(N-a-1, s-a) (h(s+1) - h(s)) / (N C(N-1, s))``.

>>> features = CoalitionFeatures(4, pairs=True)
>>> features.n_features, features(np.ones((1, 4), dtype=bool)).shape
(21, (1, 21))
>>> ends = features(np.array([[True] * 4, [False] * 4]))
>>> bool(np.allclose(features.shapley.sum(axis=1), ends[0] - ends[1]))
True
"""

from __future__ import annotations

from math import comb

import numpy as np

POWERS = (
    0,
    1,
    2,
)  # z_i t^k: unit effects that are constant, linear and quadratic in the share intact
PAIR_POWER = 1  # z_i z_j t^PAIR_POWER


def product_shapley(n_players: int, order: int, h: np.ndarray) -> tuple[float, float]:
    """Shapley values of ``z_A h(|S|)``, A a set of ``order`` units: (a unit in A, one outside A).

    h: ``[N + 1]``, the factor at each coalition size 0..N.

    >>> product_shapley(3, 1, np.ones(4))  # v(S) = z_0: unit 0 gets 1, the others 0
    (1.0, 0.0)
    """
    n, a = n_players, order
    inside = sum(comb(n - a, s - a + 1) * h[s + 1] / (n * comb(n - 1, s)) for s in range(a - 1, n))
    outside = sum(
        comb(n - a - 1, s - a) * (h[s + 1] - h[s]) / (n * comb(n - 1, s)) for s in range(a, n)
    )
    return float(inside), float(outside)


class CoalitionFeatures:
    """The feature map ``x(S)`` of a surrogate and its features' Shapley values.

    n_players: N; pairs: whether to include the N (N-1) / 2 features ``z_i z_j t``.
    """

    def __init__(self, n_players: int, pairs: bool):
        self.n_players = n = n_players
        self.pairs = pairs
        empty = np.zeros(0, dtype=np.int64)
        self._first, self._second = np.triu_indices(n, k=1) if pairs else (empty, empty)
        self.n_pairs = self._first.size  # the pairwise features come last
        self.n_features = self.count(n, pairs)
        self.shapley = self._shapley()

    @staticmethod
    def count(n_players: int, pairs: bool) -> int:
        """Number of features of ``CoalitionFeatures(n_players, pairs)``, without building it."""
        return (
            (n_players - 1)
            + n_players * len(POWERS)
            + (n_players * (n_players - 1) // 2 if pairs else 0)
        )

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        """Features ``[C, F]`` (float64) of bool coalitions ``[C, N]``."""
        z = coalitions.astype(np.float64)
        sizes = coalitions.sum(axis=1)
        by_size = (sizes[:, None] == np.arange(1, self.n_players)).astype(np.float64)
        share = (sizes / self.n_players)[:, None]
        units = [z * share**k for k in POWERS]
        pairs = z[:, self._first] * z[:, self._second] * share**PAIR_POWER
        return np.concatenate([by_size, *units, pairs], axis=1)

    def _shapley(self) -> np.ndarray:
        """Shapley values of every feature, ``[F, N]``."""
        n = self.n_players
        share = np.arange(n + 1) / n
        blocks = [np.zeros((n - 1, n))]  # functions of the size alone that vanish at both ends
        for k in POWERS:
            inside, outside = product_shapley(n, 1, share**k)
            blocks.append(np.full((n, n), outside) + np.eye(n) * (inside - outside))
        inside, outside = product_shapley(n, 2, share**PAIR_POWER) if self.pairs else (0.0, 0.0)
        pairs = np.full((self._first.size, n), outside)
        pairs[np.arange(self._first.size), self._first] = inside
        pairs[np.arange(self._first.size), self._second] = inside
        return np.concatenate([*blocks, pairs])

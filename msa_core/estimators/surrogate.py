"""Surrogate games with closed-form Shapley values, for the regression-adjusted estimator.

A surrogate is ``f(S) = x(S) @ beta`` with a fixed feature map ``x`` of the coalition and
coefficients ``beta [F, D]`` fitted to the sampled values. Every feature's Shapley values are known
(``shapley [F, N]``), so the surrogate's modes are ``shapley.T @ beta``, exactly. Features, with
``t = |S| / N``:

- ``1[|S| = s]`` for s = 1..N-1: the mean value at each coalition size (Shapley value 0: a
  function of the size alone splits ``g(N) - g(0)`` equally, and these vanish at both ends);
- ``z_i t^k`` for k = 0, 1, 2: unit i's own effect, changing smoothly with how many units are intact.
  Unit i gets ``mean_{s=1..N} h(s)``, every other unit ``sum_{s=1..N-1} s (h(s+1) - h(s)) / (N (N-1))``
  (each unit's marginal contribution averaged over the Shapley weights of the sizes);
- optionally ``z_i z_j`` for i < j: pairwise interactions (Shapley value 1/2 to each of i and j).

>>> features = CoalitionFeatures(4, pairs=True)
>>> features.n_features, features(np.ones((1, 4), dtype=bool)).shape
(21, (1, 21))
>>> bool(np.allclose(features.shapley.sum(axis=1), features(np.ones((1, 4), bool))[0]
...                  - features(np.zeros((1, 4), bool))[0]))
True
"""

from __future__ import annotations

import numpy as np

POWERS = (0, 1, 2)  # z_i t^k: unit effects that are constant, linear and quadratic in the share intact


class CoalitionFeatures:
    """The feature map ``x(S)`` of a surrogate and its features' Shapley values.

    n_players: N; pairs: whether to include the N (N-1) / 2 pairwise products ``z_i z_j``.
    """

    def __init__(self, n_players: int, pairs: bool):
        self.n_players = n = n_players
        self.pairs = pairs
        self._pair_index = np.triu_indices(n, k=1) if pairs else (np.zeros(0, int), np.zeros(0, int))
        self.n_features = (n - 1) + n * len(POWERS) + self._pair_index[0].size
        self.shapley = self._shapley()

    @staticmethod
    def count(n_players: int, pairs: bool) -> int:
        """Number of features of ``CoalitionFeatures(n_players, pairs)``, without building it."""
        return (n_players - 1) + n_players * len(POWERS) + (n_players * (n_players - 1) // 2 if pairs else 0)

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        """Features ``[C, F]`` (float64) of bool coalitions ``[C, N]``."""
        z = coalitions.astype(np.float64)
        sizes = coalitions.sum(axis=1)
        n = self.n_players
        by_size = (sizes[:, None] == np.arange(1, n)).astype(np.float64)
        share = sizes / n
        units = [z * share[:, None] ** k for k in POWERS]
        pair = z[:, self._pair_index[0]] * z[:, self._pair_index[1]]
        return np.concatenate([by_size, *units, pair], axis=1)

    def _shapley(self) -> np.ndarray:
        """Shapley values of every feature, ``[F, N]``."""
        n = self.n_players
        blocks = [np.zeros((n - 1, n))]  # functions of the size alone that vanish at both ends
        sizes = np.arange(n + 1)
        for k in POWERS:
            h = (sizes / n) ** k  # h(s), s = 0..N
            own = h[1:].mean()
            other = float(np.sum(sizes[1:n] * (h[2:] - h[1:n]))) / (n * (n - 1))
            blocks.append(np.full((n, n), other) + np.eye(n) * (own - other))
        pair = np.zeros((self._pair_index[0].size, n))
        pair[np.arange(pair.shape[0]), self._pair_index[0]] = 0.5
        pair[np.arange(pair.shape[0]), self._pair_index[1]] = 0.5
        return np.concatenate([*blocks, pair])

"""Surrogate games with closed-form Shapley values, for the regression-adjusted estimator.

A surrogate is ``f(S) = x(S) @ beta`` with a fixed feature map ``x`` of the coalition and
coefficients ``beta [F, D]`` fitted to the sampled values. Every feature's Shapley values are known
(``shapley [F, N]``), so the surrogate's modes are ``shapley.T @ beta``, exactly.

Only the odd part of a game, ``(v(S) - v(N \\ S)) / 2``, has Shapley values (an even game's units
get 0, the ends aside), and the estimator samples complement pairs, whose Monte Carlo terms see the
odd part alone. So every feature is odd under complement: in the signs ``x_i = 2 z_i - 1``
(``z_i`` = 1 when unit i is intact) and the size ``u = (2 |S| - N) / N`` in [-1, 1],

- order 1: ``1[|S| = s] - 1[|S| = N - s]`` for s < N/2 (the odd part of the size curve,
  Shapley value 0); ``x_i`` and ``x_i u^2``: each unit's own effect, changing with the number of
  units intact;
- order 2: ``x_i x_j u`` for i < j: pairwise interactions whose sign follows the coalition's size
  (a pairwise product alone, ``z_i z_j`` or ``x_i x_j``, has an odd part of order 1, which order 1
  already spans: an order-2 k-additive surrogate adds nothing to complement-pair sampling);
- order 3: ``x_i x_j x_k`` for i < j < k.

Each order's features come after the lower orders', so ``levels[k - 1]`` columns are the surrogate
of order k. Shapley values of ``x_A h(|S|)``: expand ``x_A = sum_{B in A} 2^|B| (-1)^(|A|-|B|) z_B``
and use those of ``z_B h(|S|)`` (``product_shapley``).

>>> features = OddFeatures(4, order=2)
>>> features.n_features, features.levels, features(np.ones((1, 4), dtype=bool)).shape
(15, (9, 15), (1, 15))
>>> ends = features(np.array([[True] * 4, [False] * 4]))
>>> bool(np.allclose(features.shapley.sum(axis=1), ends[0] - ends[1]))
True
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np

from msa_core.errors import MSAInputError

ORDERS = (1, 2, 3)
UNIT_POWERS = (0, 2)  # x_i u^k: a unit's effect, constant and quadratic in the size
PAIR_POWER = 1  # x_i x_j u^PAIR_POWER (odd: the power is odd)


def product_shapley(n_players: int, order: int, h: np.ndarray) -> tuple[float, float]:
    """Shapley values of ``z_A h(|S|)``, A a set of ``order`` units: (a unit in A, one outside A).

    A unit of A gets ``sum_s C(N-a, s-a+1) h(s+1) / (N C(N-1, s))`` (its marginal contribution is
    ``h(s+1)`` where the rest of A is in S; ``1 / (N C(N-1, s))`` is the Shapley weight of a
    coalition of size s without it), a unit outside A ``sum_s C(N-a-1, s-a) (h(s+1) - h(s)) /
    (N C(N-1, s))``.

    h: ``[N + 1]``, the factor at each coalition size 0..N.

    >>> product_shapley(3, 1, np.ones(4))  # v(S) = z_0: unit 0 gets 1, the others 0
    (1.0, 0.0)
    """
    n, a = n_players, order
    inside = sum(
        comb(n - a, s - a + 1) * h[s + 1] / (n * comb(n - 1, s)) for s in range(max(a - 1, 0), n)
    )
    outside = sum(
        comb(n - a - 1, s - a) * (h[s + 1] - h[s]) / (n * comb(n - 1, s)) for s in range(a, n)
    )
    return float(inside), float(outside)


def sign_product_shapley(n_players: int, order: int, h: np.ndarray) -> tuple[float, float]:
    """Shapley values of ``x_A h(|S|)`` with ``x_a = 2 z_a - 1``: (a unit in A, one outside A).

    >>> [round(v, 12) for v in sign_product_shapley(5, 3, np.ones(6))]  # x_0 x_1 x_2: -1 to 1
    [0.666666666667, 0.0]
    """
    a = order
    inside = outside = 0.0
    for b in range(a + 1):
        coefficient = 2.0**b * (-1.0) ** (a - b)
        member, other = product_shapley(n_players, b, h)
        # a unit of A is in C(a-1, b-1) of the sets B of size b, outside C(a-1, b) of them
        inside += coefficient * (comb(a - 1, b - 1) * member if b else 0.0)
        inside += coefficient * comb(a - 1, b) * other
        outside += coefficient * comb(a, b) * other
    return inside, outside


def check_order(order: int) -> int:
    """The surrogate order, or MSAInputError naming the allowed ones."""
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order not in ORDERS:
        raise MSAInputError(
            f"the surrogate's order must be one of {ORDERS} (1: unit effects; 2: plus pairwise "
            f"interactions; 3: plus triples), got {order!r}"
        )
    return int(order)


class OddFeatures:
    """The odd feature map ``x(S)`` of a surrogate of order 1-3 and its features' Shapley values.

    n_players: N; order: the highest order of features included (see the module).
    """

    def __init__(self, n_players: int, order: int):
        self.n_players = n = n_players
        self.order = check_order(order)
        self._sizes = np.arange(1, (n + 1) // 2)  # s < N/2
        self._sets = [
            np.array(list(combinations(range(n), k)), dtype=np.int64).reshape(-1, k)
            for k in range(2, self.order + 1)
        ]
        self.levels = tuple(int(v) for v in np.cumsum(self.counts(n, self.order)))
        self.n_features = self.levels[-1]
        self.shapley = self._shapley()

    @staticmethod
    def counts(n_players: int, order: int) -> list[int]:
        """Features added by each order 1..``order``, without building them."""
        first = (n_players - 1) // 2 + n_players * len(UNIT_POWERS)
        return [first] + [comb(n_players, k) for k in range(2, order + 1)]

    def _size_factor(self, sizes: np.ndarray, k: int) -> np.ndarray:
        """The factor ``u^p`` of an order-k feature at coalition sizes ``sizes``."""
        u = (2.0 * sizes - self.n_players) / self.n_players
        return u**PAIR_POWER if k == 2 else np.ones_like(u)

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        """Features ``[C, F]`` (float64) of bool coalitions ``[C, N]``."""
        x = 2.0 * coalitions - 1.0
        sizes = coalitions.sum(axis=1)
        by_size = (sizes[:, None] == self._sizes).astype(np.float64)
        by_size -= sizes[:, None] == self.n_players - self._sizes
        u = ((2.0 * sizes - self.n_players) / self.n_players)[:, None]
        blocks = [by_size, *(x * u**k for k in UNIT_POWERS)]
        for k, sets in enumerate(self._sets, start=2):
            blocks.append(np.prod(x[:, sets], axis=2) * self._size_factor(sizes, k)[:, None])
        return np.concatenate(blocks, axis=1)

    def _shapley(self) -> np.ndarray:
        """Shapley values of every feature, ``[F, N]``."""
        n = self.n_players
        u = (2.0 * np.arange(n + 1) - n) / n
        blocks = [np.zeros((self._sizes.size, n))]  # odd functions of the size: 0 at both ends
        for k in UNIT_POWERS:
            inside, outside = sign_product_shapley(n, 1, u**k)
            blocks.append(np.full((n, n), outside) + np.eye(n) * (inside - outside))
        for k, sets in enumerate(self._sets, start=2):
            inside, outside = sign_product_shapley(n, k, self._size_factor(np.arange(n + 1), k))
            values = np.full((len(sets), n), outside)
            np.put_along_axis(values, sets, inside, axis=1)
            blocks.append(values)
        return np.concatenate(blocks)

"""Ground truth for the tests: brute-force Shapley values and small non-linear vector games."""

from __future__ import annotations

from itertools import permutations
from math import comb

import numpy as np

from msa_core.games import FunctionGame, Game


def shapley_by_permutations(game, n_players: int) -> np.ndarray:
    """Shapley values ``[N, *out]`` as the mean marginal contribution over all N! orders (N <=
    7)."""
    cache: dict[frozenset, np.ndarray] = {}

    def value(members: frozenset) -> np.ndarray:
        if members not in cache:
            row = np.zeros((1, n_players), dtype=bool)
            row[0, list(members)] = True
            cache[members] = np.asarray(game(row), dtype=np.float64)[0]
        return cache[members]

    orders = list(permutations(range(n_players)))
    phi = [0.0] * n_players
    for order in orders:
        before: frozenset = frozenset()
        for unit in order:
            after = before | {unit}
            phi[unit] = phi[unit] + (value(after) - value(before))
            before = after
    return np.stack([p / len(orders) for p in phi])


def shapley_by_subsets(game, n_players: int) -> np.ndarray:
    """Shapley values by the subset formula with explicit weights, one coalition per call (N <=
    12)."""
    values = {}
    for index in range(2**n_players):
        row = np.array([[(index >> i) & 1 for i in range(n_players)]], dtype=bool)
        values[index] = np.asarray(game(row), dtype=np.float64)[0]
    phi = []
    for unit in range(n_players):
        acc = 0.0
        for index in range(2**n_players):
            if index >> unit & 1:
                continue
            size = bin(index).count("1")
            weight = 1.0 / (n_players * comb(n_players - 1, size))
            acc = acc + weight * (values[index | 1 << unit] - values[index])
        phi.append(acc)
    return np.stack(phi)


class RandomNonlinearGame:
    """A random smooth non-linear vector game with interactions of every order.

    v(S) = tanh(z W1 + b1) W2 + (z A z^T) c, z = the 0/1 coalition vector; output shape ``out``.
    """

    def __init__(self, n_players: int, out: tuple[int, ...] = (3, 2), seed: int = 0):
        rng = np.random.default_rng(seed)
        size = int(np.prod(out))
        self.n_players, self.out = n_players, out
        self.w1 = rng.normal(size=(n_players, 8))
        self.b1 = rng.normal(size=8)
        self.w2 = rng.normal(size=(8, size))
        self.a = rng.normal(size=(n_players, n_players))
        self.c = rng.normal(size=size)

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        z = coalitions.astype(np.float64)
        quad = np.einsum("ci,ij,cj->c", z, self.a, z)
        flat = np.tanh(z @ self.w1 + self.b1) @ self.w2 + quad[:, None] * self.c
        return flat.reshape(-1, *self.out)

    def gradients(self, coalitions: np.ndarray) -> np.ndarray:
        """The derivative of every value in each player's coordinate of ``z`` (the game read as a
        function of a continuous z, as a model of its units' gates): ``[C, N, *out]``."""
        z = coalitions.astype(np.float64)
        slope = 1 - np.tanh(z @ self.w1 + self.b1) ** 2  # [C, 8]
        smooth = np.einsum("ch,ih,hd->cid", slope, self.w1, self.w2)
        quad = z @ (self.a + self.a.T)  # [C, N]
        return (smooth + quad[:, :, None] * self.c).reshape(len(z), self.n_players, *self.out)


class WithGradients(Game):
    """A game whose ``with_gradients()`` gives what ``msa_core.lesion.gradients`` gives for a
    model: ``[C, N + 1, *out]``, its values then their derivative in each player's gate.

    ``gradients(coalitions) -> [C, N, *out]``; default: the multilinear extension's, unit i's
    ``v(S + i) - v(S - i)`` (an exact linearisation, the best a control variate can get).
    """

    def __init__(self, game, n_players: int, gradients=None):
        self.game, self.n_players = game, n_players
        self.player_names = [f"p{i}" for i in range(n_players)]
        self.gradients = gradients or self.multilinear

    def evaluate(self, coalitions: np.ndarray) -> np.ndarray:
        return np.asarray(self.game(coalitions), dtype=np.float64)

    def multilinear(self, coalitions: np.ndarray) -> np.ndarray:
        rows = []
        for i in range(self.n_players):
            with_i, without_i = coalitions.copy(), coalitions.copy()
            with_i[:, i], without_i[:, i] = True, False
            rows.append(self.evaluate(with_i) - self.evaluate(without_i))
        return np.stack(rows, 1)

    def with_gradients(self) -> Game:
        return FunctionGame(
            lambda c: np.concatenate([self.evaluate(c)[:, None], self.gradients(c)], 1),
            self.n_players,
        )


class CountingGame:
    """Wraps a game; records every call's coalition matrix."""

    def __init__(self, game):
        self.game = game
        self.calls: list[np.ndarray] = []

    def __call__(self, coalitions: np.ndarray):
        self.calls.append(coalitions.copy())
        return self.game(coalitions)

    @property
    def rows(self) -> np.ndarray:
        return np.concatenate(self.calls)


def interactions_by_subsets(game, n_players: int) -> np.ndarray:
    """Shapley interaction modes ``[N, N, *out]`` (zero diagonal) by the subset formula, one
    coalition per call (N <= 10): the sum over S without i, j of
    ``|S|! (N-|S|-2)! / (N-1)! (v(S+i+j) - v(S+i) - v(S+j) + v(S))``."""
    values = {}
    for index in range(2**n_players):
        row = np.array([[(index >> i) & 1 for i in range(n_players)]], dtype=bool)
        values[index] = np.asarray(game(row), dtype=np.float64)[0]
    out = np.zeros((n_players, n_players, *values[0].shape))
    for i in range(n_players):
        for j in range(i + 1, n_players):
            for index in range(2**n_players):
                if index >> i & 1 or index >> j & 1:
                    continue
                size = bin(index).count("1")
                weight = 1.0 / ((n_players - 1) * comb(n_players - 2, size))
                pi, pj = index | 1 << i, index | 1 << j
                out[i, j] += weight * (values[pi | pj] - values[pi] - values[pj] + values[index])
            out[j, i] = out[i, j]
    return out

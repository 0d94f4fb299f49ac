"""Permutation sampling with a gradient control variate (attribution patching), for model games.

Along a sampled order the prefixes ``S_0 = {} .. S_N = all`` are evaluated as in permutation
sampling, each with its derivatives ``g_k [N, D]`` in every unit's gate (``lesion.gradients``: one
backward pass per coalition gives all N). Unit j enters at position r (``S_{r+1} = S_r + j``); its
marginal contribution ``delta_j = v(S_{r+1}) - v(S_r)`` is paired with its linearisation over the
same step, ``c_j = (g_r[j] + g_{r+1}[j]) / 2`` (trapezoid), and with an unbiased estimate, from the
same order, of what ``c_j`` is on average:

    m_j = 1/2 sum_{k <= r} g_k[j] / (N - k)  +  1/2 sum_{k > r} g_k[j] / k

(the prefix of size k lacks j with probability (N - k) / N and holds it with probability k / N, and
Shapley's weights give every size 1 / N). So ``d_j = c_j - m_j`` has mean exactly 0, and each order
gives the sample

    y_j = delta_j - beta_j d_j + (1/N) sum_l beta_l d_l

whose mean is unit j's Shapley mode, whatever the linearisation's quality. The last term makes an
order's samples sum to ``v(all) - v(none)`` (efficiency, per order). ``beta`` is the regression
coefficient of ``delta`` on ``d`` (one, pooled over units and outputs: per-unit coefficients from a
few orders added more noise than they removed), taken from the blocks before this one
and, within a block, from the other half of its orders (cross-fitting; 0 before any), so it never
depends on the samples it corrects: the estimate stays unbiased and
the samples' spread gives its standard error as in permutation sampling (same moderated variance,
same Student-t degrees of freedom). Where the linearisation is poor, beta goes to 0 and the
estimator becomes permutation sampling at the cost of the backward passes.

Cost: each evaluation is a forward and a backward pass through the whole model (no layer reuse),
about 3-4x a lesioned evaluation with reuse on an LM; the variance must fall by more than that to
pay, which ``bench/bench_gradient.py`` measures.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from msa_core.estimators.permutation import PermutationEstimator, marginal_contributions


class GradientControlEstimator(PermutationEstimator):
    """Permutation sampling whose samples are corrected by their linearisation; values of each
    coalition arrive as ``[N + 1, D]`` (the values, then their derivative in each unit's gate)."""

    name = "gradient"
    stderr_kind = (
        "standard error over permutations of gradient-corrected contributions, variance "
        "moderated toward the unit's mean (t, 1.1 x samples - 1 degrees of freedom)"
    )
    needs_gradients: ClassVar[bool] = True
    state_fields: ClassVar[tuple[str, ...]] = (
        "n_permutations",
        "moments",
        "unit_scores",
        "scores",
        "products",
        "squares",
    )
    optional_state: ClassVar[tuple[str, ...]] = ()
    extendable = True

    def __init__(
        self, n_players: int, v_full: np.ndarray, v_empty: np.ndarray, seed: int, budget: int
    ) -> None:
        rows = n_players + 1  # a coalition's values [N + 1, D]
        outputs = v_full.size // rows
        ends = np.stack([v_full, v_empty]).reshape(2, rows, outputs)
        super().__init__(n_players, ends[0, 0].copy(), ends[1, 0].copy(), seed, budget)
        self.end_gradients = ends[:, 1:].astype(np.float64)  # [2 (full, empty), N, D]
        # sums over absorbed samples of delta_j d_j and d_j^2 per unit (pooled over outputs)
        self.products = np.zeros(n_players)
        self.squares = np.zeros(n_players)

    def values_per_coalition(self) -> int:
        """A coalition brings its values and their derivatives: ``(N + 1) x D`` numbers."""
        return (self.n_players + 1) * self.n_outputs

    @classmethod
    def modes_shape(cls, output_shape: tuple[int, ...]) -> tuple[int, ...]:
        """A coalition's values are ``[N + 1, *out]``; the modes have ``out``."""
        return output_shape[1:]

    def absorb(self, k: int, values: np.ndarray) -> None:
        ranks = self._ranks.pop(k)
        n, d = self.n_players, self.n_outputs
        rows = values.reshape(values.shape[0], n + 1, d)
        v_full, v_empty = self._ends(values.dtype)
        deltas = marginal_contributions(
            ranks, np.ascontiguousarray(rows[:, 0]), v_full, v_empty
        ).astype(np.float64)  # [P, N, D]
        centred = self.centred_linearisation(ranks, rows[:, 1:])  # [P, N, D]
        products = np.einsum("pjd,pjd->pj", deltas, centred)
        squares = np.einsum("pjd,pjd->pj", centred, centred)
        halves = np.arange(ranks.shape[0]) % 2  # cross-fitting: each half's beta from the other
        beta = np.empty((ranks.shape[0], n))
        for half in (0, 1):
            other = halves != half
            beta[halves == half] = coefficient(
                self.products + products[other].sum(0), self.squares + squares[other].sum(0)
            )
        weighted = beta[:, :, None] * centred
        samples = deltas - weighted + weighted.mean(axis=1, keepdims=True)
        self.products += products.sum(0)
        self.squares += squares.sum(0)
        self.n_permutations += ranks.shape[0]
        self.unit_scores.add(samples.mean(axis=2))
        self.moments.add(samples)

    def centred_linearisation(self, ranks: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        """``d = c - m`` per order and unit, ``[P, N, D]`` float64 (module docstring).

        Args:
            ranks: ``[P, N]`` each unit's position in each order.
            gradients: ``[P * (N - 1), N, D]`` the derivatives at the prefixes ``S_1 .. S_{N-1}``
                of each order, in position order.
        """
        n_perm, n = ranks.shape
        d = self.n_outputs
        full, empty = self.end_gradients
        prefixes = np.empty((n_perm, n + 1, n, d))  # g_k at S_0 .. S_N: [P, k, unit, D]
        prefixes[:, 0], prefixes[:, n] = empty, full
        prefixes[:, 1:n] = gradients.reshape(n_perm, n - 1, n, d)
        by_unit = prefixes.transpose(0, 2, 1, 3)  # [P, unit, k, D]
        sizes = np.arange(n + 1, dtype=np.float64)
        # out[r] = sum_{k <= r} g_k / (N - k); into[r] = sum_{1 <= k <= r} g_k / k
        out = np.cumsum(by_unit[:, :, :n] / (n - sizes[:n])[:, None], axis=2)
        into = np.zeros_like(by_unit)
        np.cumsum(by_unit[:, :, 1:] / sizes[1:, None], axis=2, out=into[:, :, 1:])
        at = ranks[:, :, None, None]  # each unit's position r
        step = (
            np.take_along_axis(by_unit, at, 2)[:, :, 0]
            + np.take_along_axis(by_unit, at + 1, 2)[:, :, 0]
        )
        mean = (
            np.take_along_axis(out, at, 2)[:, :, 0]
            + into[:, :, n]
            - np.take_along_axis(into, at, 2)[:, :, 0]
        )
        return (step - mean) / 2


def coefficient(products: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """The regression coefficient of the contributions on their centred linearisation, pooled
    over units (``products``, ``squares``: sums ``[N]`` over samples it will not correct), for
    every unit ``[N]``; 0 (plain permutation sampling) where there are none yet."""
    total = squares.sum()
    return np.full_like(products, products.sum() / total if total > 0 else 0.0)

"""The estimators of pairwise Shapley interaction modes (``interaction_modes`` runs them).

For units i, j of an N-unit game the Shapley interaction index is
``I_ij = sum over S without i, j of w(|S|) [v(S+i+j) - v(S+i) - v(S+j) + v(S)]`` with
``w(s) = s! (N-s-2)! / (N-1)!``, an array with the output's shape. Only the pairs among K chosen
units are computed (all N by default).

- ``exact``: every coalition T adds ``+-w(|T \\ {i,j}|) v(T)`` to each pair (+ when T holds both or
  neither, - when one), streamed in blocks of all 2^N coalitions (N <= 20), memory O(K^2 x |out|).
- ``sampled``: ``w`` is the distribution of the units before the merged pair {i,j} in a random order
  of the other N-2 units and the pair. One sample draws an order of all N units and a size t uniform
  in 0..N-2; pair (i, j) gets S = the first t units of the order other than i and j. Each pair's S
  has exactly the distribution ``w`` (so the mean of its differences is unbiased), and pairs
  share most coalitions (S is the same prefix for every pair behind position t), which are
  evaluated once per block. Standard error: the sample standard error over samples, per pair
  and output element.

Blocks are fixed by the seed and block index, so batching never changes the result and checkpoints
(``msa_core.estimators.checkpoint``) resume to exactly the uninterrupted result.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

import numpy as np

from msa_core.errors import MSAInputError
from msa_core.estimators.base import Estimator, RunningMoments, block_rng
from msa_core.estimators.exact import EnumeratedBlocks

DEFAULT_SAMPLES = 200  # samples per pair when no budget is given
MIN_SAMPLES = 2  # a standard error needs two
SAMPLE_VALUES = 1 << 22  # a block's pair differences [m, P, |out|] stay below this many numbers
SAMPLE_ROWS = 1024  # and its coalitions (before deduplication) below this many rows
PROBE_SAMPLES = 32  # samples whose distinct coalitions estimate the cost of one sample


def pair_weights(n_players: int) -> np.ndarray:
    """``w[s] = s! (N-s-2)! / (N-1)!``, s = 0..N-2: weight of a pair's difference at size s."""
    return np.array(
        [1.0 / ((n_players - 1) * comb(n_players - 2, s)) for s in range(n_players - 1)]
    )


class PairEstimator(Estimator):
    """An estimator of the pairs among ``players`` (``[K]`` indices into the N players)."""

    def __init__(
        self,
        n_players: int,
        v_full: np.ndarray,
        v_empty: np.ndarray,
        seed: int,
        budget: int,
        players: np.ndarray,
    ):
        super().__init__(n_players, v_full, v_empty, seed, budget)
        self.players = np.asarray(players, dtype=np.int64)
        rows, cols = np.triu_indices(len(self.players), 1)
        self.first, self.second = (
            self.players[rows],
            self.players[cols],
        )  # [P] unit indices of each pair
        self.n_pairs = len(rows)

    def extra_arguments(self) -> tuple[np.ndarray, ...]:
        """``(players,)``: what the constructor takes beyond ``Estimator``'s."""
        return (self.players,)

    def summed_stderr(self) -> np.ndarray:
        """``[P]`` standard error of each pair's interaction summed over outputs."""
        raise NotImplementedError


class ExactInteractions(EnumeratedBlocks, PairEstimator):
    """All 2^N coalitions but the ends, in blocks of consecutive indices; ``budget`` is unused."""

    name = "exact"
    stderr_kind = "exact (zero)"
    state_fields = ("sums",)

    def __init__(self, n_players, v_full, v_empty, seed, budget, players):
        super().__init__(n_players, v_full, v_empty, seed, budget, players)
        self.weights = pair_weights(n_players)
        self.enumerate_coalitions()
        # the full coalition holds both units of each pair, the empty one neither: both enter with +
        self.sums = np.tile(
            self.weights[-1] * v_full + self.weights[0] * v_empty, (self.n_pairs, 1)
        )

    def absorb(self, k: int, values: np.ndarray) -> None:
        coalitions = self.block(k)
        inside = (
            coalitions[:, self.first].astype(np.int64) + coalitions[:, self.second]
        )  # [C, P]: 0, 1 or 2
        sizes = coalitions.sum(axis=1)[:, None] - inside  # |T without i, j|
        coef = np.where(inside == 1, -1.0, 1.0) * self.weights[sizes]
        self.sums += coef.T @ values

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        return self.sums.copy(), np.zeros_like(self.sums)

    def summed_stderr(self) -> np.ndarray:
        """``[P]`` standard error of each pair's interaction summed over outputs (zero here)."""
        return np.zeros(self.n_pairs)


class SampledInteractions(PairEstimator):
    """The shared-prefix sampler of the module docstring; ``budget`` is the number of samples."""

    name = "sampled"
    stderr_kind = "sample standard error over samples, per pair"
    state_fields = ("moments", "summed")
    extendable = True  # block k holds the same samples whatever the budget

    def __init__(self, n_players, v_full, v_empty, seed, budget, players):
        super().__init__(n_players, v_full, v_empty, seed, budget, players)
        self.n_samples = budget
        self.per_block = max(
            1,
            min(
                SAMPLE_ROWS // (4 * self.n_pairs), SAMPLE_VALUES // (self.n_pairs * self.n_outputs)
            ),
        )
        self.n_blocks = -(-self.n_samples // self.per_block)
        self.moments = RunningMoments((self.n_pairs, self.n_outputs))
        self.summed = RunningMoments(
            (self.n_pairs,)
        )  # of each sample's sum over outputs: its stderr
        self._pending: dict[int, np.ndarray] = {}  # block -> rows of its terms (see _coalitions)
        # scratch reused by every block: fresh arrays of this size would cost page faults each time
        self._diffs = np.empty((self.per_block * self.n_pairs, self.n_outputs))
        self._term = np.empty_like(self._diffs)

    @classmethod
    def min_budget(cls, n_players: int) -> int:
        return MIN_SAMPLES

    def planned_evaluations(self) -> int:
        """An estimate: distinct coalitions per sample (``rows_per_sample``) times the samples."""
        return int(round(self.rows_per_sample() * self.n_samples))

    def rows_per_sample(self) -> float:
        """Distinct coalitions per sample, measured on the first ``PROBE_SAMPLES`` (seeded)."""
        rows, samples, k = 0, 0, 0
        while samples < PROBE_SAMPLES:
            coalitions, terms = self._coalitions(k)
            rows += coalitions.shape[0]
            samples += terms.shape[0]
            k += 1
        return rows / samples

    def _coalitions(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Block ``k``'s distinct coalitions ``[c, N]`` (the ends left out) and, for every sample,
        pair and term S, S+i, S+j, S+i+j, the row of its value in ``[v_full, v_empty, values...]``:
        ``[m, P, 4]``."""
        m = (
            min(self.per_block, self.n_samples - k * self.per_block)
            if k < self.n_blocks
            else self.per_block
        )
        rng = block_rng(self.seed, k)
        n, pairs = self.n_players, np.arange(self.n_pairs)
        ranks = rng.random((m, n)).argsort(axis=1).argsort(axis=1)  # [m, N]: each unit's position
        sizes = rng.integers(0, n - 1, size=m)  # t, uniform in 0..N-2
        first, second = ranks[:, self.first], ranks[:, self.second]  # [m, P]
        # a unit's position among the units other than i, j: its rank less those of i, j before it
        others = (
            ranks[:, None, :]
            - (first[:, :, None] < ranks[:, None, :])
            - (second[:, :, None] < ranks[:, None, :])
        )  # [m, P, N]
        base = others < sizes[:, None, None]
        base[:, pairs, self.first] = False
        base[:, pairs, self.second] = False
        terms = np.repeat(base[:, :, None, :], 4, axis=2)  # [m, P, 4, N]: S, S+i, S+j, S+i+j
        terms[:, pairs, 1, self.first] = terms[:, pairs, 3, self.first] = True
        terms[:, pairs, 2, self.second] = terms[:, pairs, 3, self.second] = True
        flat = terms.reshape(-1, n)
        packed = np.packbits(flat, axis=1)
        keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
        unique, first_row, inverse = np.unique(keys, return_index=True, return_inverse=True)
        distinct = flat[first_row]
        counts = distinct.sum(axis=1)
        ends = (counts == n) | (counts == 0)
        # rows of [v_full, v_empty, middle values...]: the ends map to 0 and 1, the others follow
        position = np.where(counts == n, 0, np.where(counts == 0, 1, 2 + np.cumsum(~ends) - 1))
        return distinct[~ends], position[inverse.ravel()].reshape(m, self.n_pairs, 4)

    def block(self, k: int) -> np.ndarray:
        coalitions, rows = self._coalitions(k)
        self._pending[k] = rows
        return coalitions

    def absorb(self, k: int, values: np.ndarray) -> None:
        rows = self._pending.pop(k)
        table = np.concatenate([self.v_full[None], self.v_empty[None], values], dtype=np.float64)
        size = rows.shape[0] * self.n_pairs
        diffs, term = self._diffs[:size], self._term[:size]
        # v(S+i+j) - v(S+i) - v(S+j) + v(S) into reused buffers ('clip' writes straight to out)
        np.take(table, rows[..., 3].ravel(), axis=0, out=diffs, mode="clip")
        for column, sign in ((1, -1.0), (2, -1.0), (0, 1.0)):
            np.take(table, rows[..., column].ravel(), axis=0, out=term, mode="clip")
            if sign > 0:
                diffs += term
            else:
                diffs -= term
        samples = diffs.reshape(rows.shape[0], self.n_pairs, self.n_outputs)  # [m, P, D]
        self.summed.add(samples.sum(axis=2))
        self.moments.add(samples)  # (overwrites samples)

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        return self.moments.mean.copy(), self.moments.stderr()

    def max_stderr(self) -> float | None:
        return float(self.moments.stderr().max()) if self.moments.count >= 2 else None

    def summed_stderr(self) -> np.ndarray:
        """``[P]`` standard error of each pair's interaction summed over outputs (sample standard
        error of the per-sample sums: exact where the elements' errors are correlated)."""
        return self.summed.stderr()


INTERACTION_ESTIMATORS: dict[str, type[PairEstimator]] = {
    "exact": ExactInteractions,
    "sampled": SampledInteractions,
}


def check_players(players: Sequence[int] | None, n_players: int) -> np.ndarray:
    """``players`` as int64 ``[K]`` (K >= 2 distinct indices below N; default all N).

    Raises:
        MSAInputError: anything else.
    """
    if players is None:
        chosen = np.arange(n_players)
    else:
        try:
            chosen = np.asarray(players)
        except (TypeError, ValueError) as err:
            raise MSAInputError(f"players must be a list of unit indices; got {players!r}") from err
        if chosen.ndim != 1 or chosen.dtype.kind not in "iu":
            raise MSAInputError(
                f"players must be a 1-D list of integer unit indices; got {players!r}"
            )
        chosen = chosen.astype(np.int64)
    if (
        len(chosen) < 2
        or len(np.unique(chosen)) != len(chosen)
        or chosen.min() < 0
        or chosen.max() >= n_players
    ):
        raise MSAInputError(
            f"players must be at least 2 distinct unit indices in 0..{n_players - 1}; "
            f"got {chosen.tolist()}"
        )
    return chosen

"""Pairwise Shapley interaction modes of vector-valued games: ``interaction_modes``.

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

import time
from collections.abc import Sequence
from math import comb
from typing import Any

import numpy as np

from msa_core.coalitions import full_and_empty
from msa_core.errors import MSAInputError
from msa_core.estimators.base import (
    Estimator,
    RunningMoments,
    block_rng,
)
from msa_core.estimators.checkpoint import Checkpoint, State
from msa_core.estimators.dispatch import BATCH_VALUES
from msa_core.estimators.exact import EXACT_MAX_PLAYERS, EnumeratedBlocks
from msa_core.estimators.plan import CheckpointSummary, RunPlan
from msa_core.estimators.runner import BlockRunner, Progress, TimedGame
from msa_core.games import as_game
from msa_core.interaction_result import InteractionResult
from msa_core.version import __version__

INTERACTION_METHODS = ("auto", "exact", "sampled")
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


class _PairEstimator(Estimator):
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

    def summed_stderr(self) -> np.ndarray:
        """``[P]`` standard error of each pair's interaction summed over outputs."""
        raise NotImplementedError


class ExactInteractions(EnumeratedBlocks, _PairEstimator):
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


class SampledInteractions(_PairEstimator):
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


INTERACTION_ESTIMATORS: dict[str, type[_PairEstimator]] = {
    "exact": ExactInteractions,
    "sampled": SampledInteractions,
}


def interaction_modes(
    game: Any,
    players: Sequence[int] | None = None,
    n_players: int | None = None,
    method: str = "auto",
    n_samples: int | None = None,
    max_evaluations: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    target_stderr: float | None = None,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
) -> InteractionResult:
    """Pairwise Shapley interaction modes of the pairs among ``players`` of a vector-valued game.

    Args:
        game: ``Game`` or callable mapping bool coalitions ``[C, N]`` (True = intact) to values
            ``[C, *out]``.
        players: K >= 2 distinct unit indices whose pairs are computed (default: all N units),
            e.g. the top-K units of a finished ``shapley_modes`` run
            (``msa_core.analysis.interactions.top_players``).
        n_players: N, required when ``game`` is a bare callable.
        method: ``"exact"`` (all 2^N coalitions, N <= 20), ``"sampled"``, or ``"auto"``: exact when
           2^N
            evaluations fit the budget, else sampled.
        n_samples: sampled budget, samples per pair (default 200). One sample costs about P + K + 1
            distinct coalitions for P = K(K-1)/2 pairs (shared between pairs).
        max_evaluations: budget in evaluations instead (full and empty included); the sampler takes
            as many samples as fit, at the cost per sample measured on its first samples (so the
            count is close to, not exactly, this number). The smaller of the two budgets wins.
        seed: same seed, same result, whatever ``batch_size``.
        batch_size: coalitions per game call.
        target_stderr: stop once the largest standard error is at most this (sampled only).
        progress: ``progress(done, total)`` in evaluations.
        checkpoint: where the running state is saved; a run with the same arguments resumes from it.

    Returns:
        ``InteractionResult`` with ``interactions`` and ``stderr`` ``[K, K, *out]``.

    Raises:
        MSAInputError: bad players, method, budget or options (before any evaluation).

    >>> import numpy as np
    >>> game = lambda c: c.all(1, keepdims=True) * 6.0
    >>> res = interaction_modes(game, n_players=4, method="exact")
    >>> res.interactions[0, 1].round(6).tolist()  # a unanimity game of 4 units: 6 / (4 - 1)
    [2.0]
    """
    wall_start = time.perf_counter()
    game = as_game(game, n_players)
    n = game.n_players
    chosen_players = check_players(players, n)
    _check_options(method, seed, batch_size, target_stderr, progress)
    samples = _sample_budget(n_samples, max_evaluations)
    chosen = method
    if method == "auto":
        exact_fits = (
            n <= EXACT_MAX_PLAYERS
            and (max_evaluations is None or 2**n <= max_evaluations)
            and (
                n_samples is None
                or 2**n <= 2 + samples * (len(chosen_players) * (len(chosen_players) + 1) // 2)
            )
        )
        chosen = "exact" if exact_fits else "sampled"
    if chosen == "exact" and n > EXACT_MAX_PLAYERS:
        raise MSAInputError(
            f"method='exact' enumerates all 2^N coalitions and is limited to "
            f"N <= {EXACT_MAX_PLAYERS} "
            f"units; this game has {n}. Use method='sampled' (or 'auto')"
        )
    if chosen == "exact" and max_evaluations is not None and max_evaluations < 2**n:
        raise MSAInputError(
            f"method='exact' needs 2^{n} = {2**n} evaluations but "
            f"max_evaluations={max_evaluations}; "
            "raise it or use method='sampled'"
        )

    timed = TimedGame(game)
    state = checkpoint.load() if checkpoint is not None else None
    summary = CheckpointSummary.of(state) if state is not None else None
    if summary is not None:
        v_full, v_empty = summary.v_full, summary.v_empty
        timed.output_shape = summary.output_shape
        timed.tally.evaluated = timed.tally.used = summary.used
        timed.tally.game_seconds = summary.game_seconds
    else:
        ends = full_and_empty(n)
        step = batch_size or 2
        v_full, v_empty = np.concatenate(
            [timed(ends[i : i + step]) for i in range(0, 2, step)], dtype=np.float64
        )
        timed.tally.used = 2
    cls = INTERACTION_ESTIMATORS[chosen]
    if chosen == "sampled" and n_samples is None and max_evaluations is not None:
        probe = SampledInteractions(n, v_full, v_empty, seed, PROBE_SAMPLES, chosen_players)
        samples = int((max_evaluations - 2) // probe.rows_per_sample())
        if samples < MIN_SAMPLES:
            raise MSAInputError(
                f"max_evaluations={max_evaluations} buys {samples} samples of the "
                f"{probe.n_pairs} pairs (about {probe.rows_per_sample():.0f} evaluations each); "
                f"at least {MIN_SAMPLES} are needed"
            )
    budget = 2**n if chosen == "exact" else samples
    estimator = cls(n, v_full, v_empty, seed, budget, chosen_players)
    start = 0
    if state is not None and summary is not None:
        saved = summary.plan
        if (saved.method, saved.n_players, saved.seed, saved.budget) != (chosen, n, seed, budget):
            raise MSAInputError(
                f"the checkpoint belongs to another run (method {saved.method!r}, "
                f"{saved.n_players} units, seed {saved.seed}, budget {saved.budget}); this run is "
                f"method {chosen!r}, {n} units, seed {seed}, budget {budget}"
            )
        if not np.array_equal(state.get("run.players", np.zeros(0)), chosen_players):
            raise MSAInputError(
                f"the checkpoint belongs to a run of units {state.get('run.players')}; "
                f"this run is of units {chosen_players.tolist()}"
            )
        estimator.load_state_dict(summary.estimator_state)
        start = summary.next_block

    def save(next_block: int) -> None:
        assert checkpoint is not None
        checkpoint.save(_state(estimator, chosen, budget, next_block, timed, v_full, v_empty))

    rows = batch_size or int(np.clip(BATCH_VALUES // v_full.size, 1, 1024))
    BlockRunner(
        timed,
        estimator,
        rows,
        target_stderr if chosen == "sampled" else None,
        progress,
        start_block=start,
        save=save if checkpoint is not None else None,
        save_seconds=checkpoint.every_seconds if checkpoint is not None else 0.0,
    ).run()
    pairs, stderr = estimator.estimate()
    out = timed.output_shape or ()
    tally = timed.tally
    absorbed = estimator.moments.count if isinstance(estimator, SampledInteractions) else 0
    meta = {
        "method": chosen,
        "requested_method": method,
        "seed": seed,
        "n_players": n,
        "output_shape": list(out),
        "n_pairs": estimator.n_pairs,
        "target_stderr": target_stderr,
        "stopped_early": tally.stopped_early,
        "stderr_kind": cls.stderr_kind,
        "game_seconds": tally.game_seconds,
        "wall_seconds": time.perf_counter() - wall_start,
        "versions": {"msa_core": __version__, "numpy": np.__version__},
    }
    names = list(game.player_names)
    return InteractionResult(
        interactions=pair_matrix(pairs, len(chosen_players), out),
        stderr=pair_matrix(stderr, len(chosen_players), out),
        summed_stderr=pair_matrix(estimator.summed_stderr()[:, None], len(chosen_players), ()),
        players=chosen_players,
        player_names=[names[i] for i in chosen_players],
        v_full=v_full.reshape(out),
        v_empty=v_empty.reshape(out),
        n_evaluations=tally.used,
        n_samples=absorbed,
        meta=meta,
    )


def pair_matrix(pairs: np.ndarray, k: int, out: tuple[int, ...]) -> np.ndarray:
    """Symmetric ``[K, K, *out]`` (zero diagonal) from per-pair values ``[P, D]`` (in the order of
    ``np.triu_indices(k, 1)``)."""
    matrix = np.zeros((k, k, pairs.shape[1]))
    rows, cols = np.triu_indices(k, 1)
    matrix[rows, cols] = matrix[cols, rows] = pairs
    return matrix.reshape(k, k, *out)


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


def _check_options(
    method: str, seed: Any, batch_size: Any, target_stderr: Any, progress: Any
) -> None:
    if method not in INTERACTION_METHODS:
        raise MSAInputError(
            f"unknown interaction method {method!r}; allowed: {', '.join(INTERACTION_METHODS)}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MSAInputError(f"seed must be a non-negative integer; got {seed!r}")
    if batch_size is not None and (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise MSAInputError(
            f"batch_size must be a positive integer (coalitions per game call) or None; "
            f"got {batch_size!r}"
        )
    if target_stderr is not None and not (
        isinstance(target_stderr, (int, float)) and target_stderr > 0
    ):
        raise MSAInputError(
            f"target_stderr must be a positive number or None; got {target_stderr!r}"
        )
    if progress is not None and not callable(progress):
        raise MSAInputError("progress must be a callable progress(done, total) or None")


def _sample_budget(n_samples: Any, max_evaluations: Any) -> int:
    """Samples per pair asked for (default ``DEFAULT_SAMPLES``); both budgets checked."""
    for name, value, least in (
        ("n_samples", n_samples, MIN_SAMPLES),
        ("max_evaluations", max_evaluations, 2),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least
        ):
            raise MSAInputError(f"{name} must be an integer >= {least} or None; got {value!r}")
    return int(n_samples) if n_samples is not None else DEFAULT_SAMPLES


def _state(
    estimator: _PairEstimator,
    method: str,
    budget: int,
    next_block: int,
    timed: TimedGame,
    v_full: np.ndarray,
    v_empty: np.ndarray,
) -> State:
    """A checkpoint: ``shapley_modes``'s ``run.*`` entries, ``run.players`` and the sums."""
    return {
        **RunPlan(method, method, estimator.n_players, budget, estimator.seed).identity(),
        "run.players": estimator.players,
        **{f"est.{key}": value for key, value in estimator.state_dict().items()},
        "run.next_block": np.array(next_block),
        "run.used": np.array(timed.tally.used),
        "run.game_seconds": np.array(timed.tally.game_seconds),
        "run.v_full": v_full,
        "run.v_empty": v_empty,
        "run.output_shape": np.array(timed.output_shape, dtype=np.int64),
    }


def checkpoint_max_stderr(state: State) -> float | None:
    """Largest standard error of a saved interaction run (None before any sample).

    Args:
        state: a checkpoint state written by ``interaction_modes``.
    """
    summary = CheckpointSummary.of(state)
    saved = summary.plan
    estimator = INTERACTION_ESTIMATORS[saved.method](
        saved.n_players,
        summary.v_full.ravel(),
        summary.v_empty.ravel(),
        saved.seed,
        saved.budget,
        state["run.players"],
    )
    estimator.load_state_dict(summary.estimator_state)
    with np.errstate(all="ignore"):
        value = estimator.max_stderr()
    return value if value is not None and np.isfinite(value) else None

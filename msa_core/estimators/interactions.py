"""Pairwise Shapley interaction modes of vector-valued games: ``interaction_modes``.

For units i, j of an N-unit game the Shapley interaction index is
``I_ij = sum over S without i, j of w(|S|) [v(S+i+j) - v(S+i) - v(S+j) + v(S)]`` with
``w(s) = s! (N-s-2)! / (N-1)!``, an array with the output's shape. Only the pairs among K chosen
units are computed (all N by default). The estimators (exact and sampled) are in
``estimators.pairs``; a run of them goes through the pipeline of ``shapley_modes``
(``estimators.dispatch``): the same plan (``RunPlan.make_interactions``), memory checks, start or
resume, checkpoints, backends (``"ray"`` included), only the result differs.

Blocks are fixed by the seed and block index, so batching never changes the result and checkpoints
(``msa_core.estimators.checkpoint``) resume to exactly the uninterrupted result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from msa_core.estimators.checkpoint import Checkpoint
from msa_core.estimators.dispatch import (
    Play,
    Started,
    check_run_options,
    run_meta,
    run_request,
)
from msa_core.estimators.pairs import (
    INTERACTION_ESTIMATORS,
    ExactInteractions,
    PairEstimator,
    SampledInteractions,
    check_players,
    pair_weights,
)
from msa_core.estimators.plan import RunPlan
from msa_core.estimators.runner import Backend, Progress
from msa_core.games import Game
from msa_core.interaction_result import InteractionResult
from msa_core.names import INTERACTION_METHODS

__all__ = [
    "INTERACTION_ESTIMATORS",
    "INTERACTION_METHODS",
    "ExactInteractions",
    "SampledInteractions",
    "check_players",
    "interaction_modes",
    "pair_weights",
]


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
    backend: object = None,
) -> InteractionResult:
    """Pairwise Shapley interaction modes of the pairs among ``players`` of a vector-valued game.

    Args:
        game: ``Game`` or callable mapping bool coalitions ``[C, N]`` (True = intact) to values
            ``[C, *out]``; with ``backend="ray"`` also a ``msa_core.backends.GameFactory``.
        players: K >= 2 distinct unit indices whose pairs are computed (default: all N units),
            e.g. the top-K units of a finished ``shapley_modes`` run
            (``msa_core.analysis.interactions.top_players``).
        n_players: N, required when ``game`` is a bare callable.
        method: ``"exact"`` (all 2^N coalitions, N <= 20), ``"sampled"``, or ``"auto"``: exact
            when 2^N evaluations fit the budget, else sampled.
        n_samples: sampled budget, samples per pair (default 200). One sample costs about P + K + 1
            distinct coalitions for P = K(K-1)/2 pairs (shared between pairs).
        max_evaluations: budget in evaluations instead (full and empty included); the sampler takes
            as many samples as fit, at the cost per sample measured on its first samples (so the
            count is close to, not exactly, this number). The smaller of the two budgets wins.
        seed: same seed, same result, whatever ``batch_size`` or backend.
        batch_size: coalitions per game call.
        target_stderr: stop once the largest standard error is at most this (sampled only).
        progress: ``progress(done, total)`` in evaluations.
        checkpoint: where the running state is saved; a run with the same arguments resumes from it.
        backend: None / ``"local"``, ``"ray"`` or a backend object, as in ``shapley_modes``.

    Returns:
        ``InteractionResult`` with ``interactions`` and ``stderr`` ``[K, K, *out]``.

    Raises:
        MSAInputError: bad players, method, budget or options, or an estimate that cannot fit in
            memory (before any evaluation where the game tells its output shape).

    >>> import numpy as np
    >>> game = lambda c: c.all(1, keepdims=True) * 6.0
    >>> res = interaction_modes(game, n_players=4, method="exact")
    >>> res.interactions[0, 1].round(6).tolist()  # a unanimity game of 4 units: 6 / (4 - 1)
    [2.0]
    """
    wall_start = time.perf_counter()
    options = Play(batch_size, target_stderr, progress, checkpoint)
    check_run_options(method, INTERACTION_METHODS, seed, options)

    def plan(n: int) -> RunPlan:
        return RunPlan.make_interactions(method, n, players, n_samples, max_evaluations, seed)

    return run_request(game, n_players, backend, plan, interaction_result, options, wall_start)


def interaction_result(
    started: Started, game: Game, backend: Backend, target_stderr: float | None, wall_start: float
) -> InteractionResult:
    """The ``InteractionResult`` of a played interaction run (``[K, K, *out]``)."""
    estimator, out = started.estimator, started.timed.output_shape
    assert isinstance(estimator, PairEstimator) and out is not None
    pairs, stderr = estimator.estimate()
    k = len(estimator.players)
    names = list(game.player_names)
    return InteractionResult(
        interactions=pair_matrix(pairs, k, out),
        stderr=pair_matrix(stderr, k, out),
        summed_stderr=pair_matrix(estimator.summed_stderr()[:, None], k, ()),
        players=estimator.players,
        player_names=[names[i] for i in estimator.players],
        v_full=started.v_full.reshape(out),
        v_empty=started.v_empty.reshape(out),
        n_evaluations=started.timed.tally.used,
        n_samples=estimator.moments.count if isinstance(estimator, SampledInteractions) else 0,
        meta={
            **run_meta(started, game, backend, target_stderr, wall_start),
            "n_pairs": estimator.n_pairs,
        },
    )


def pair_matrix(pairs: np.ndarray, k: int, out: tuple[int, ...]) -> np.ndarray:
    """Symmetric ``[K, K, *out]`` (zero diagonal) from per-pair values ``[P, D]`` (in the order of
    ``np.triu_indices(k, 1)``)."""
    matrix = np.zeros((k, k, pairs.shape[1]))
    rows, cols = np.triu_indices(k, 1)
    matrix[rows, cols] = matrix[cols, rows] = pairs
    return matrix.reshape(k, k, *out)

"""Chunks of blocks evaluated apart and merged: the partial sums a distributed worker sends back.

A chunk is a run of consecutive blocks ``[first, stop)`` of an estimator. A worker evaluates it on
its own copy of the estimator (same class and arguments, so the same blocks from the same seeds)
and returns only what the chunk added to the running sums (``chunk_delta``), never the values of
its coalitions. The driver folds deltas into its estimator in chunk order (``merge_delta``); that
gives the state of a local run over the same blocks, up to the order of float additions.

Every state field is a sum over blocks except ``RunningMoments``, whose shifted sums are merged by
moving them to one shift.

>>> import numpy as np
>>> from msa_core import UnanimityGame
>>> from msa_core.estimators.permutation import PermutationEstimator
>>> game = UnanimityGame.random(6, 8, 3, output_shape=(3,), seed=0)
>>> ends = np.asarray(game(np.array([[True] * 6, [False] * 6])), dtype=np.float64)
>>> make = lambda: PermutationEstimator(6, ends[0], ends[1], seed=1, budget=5 * 400)
>>> whole, merged = make(), make()
>>> whole.n_blocks
8
>>> for k in range(whole.n_blocks):
...     whole.absorb(k, np.asarray(game(whole.block(k)), dtype=np.float64))
>>> for first, stop in chunk_bounds(0, merged.n_blocks, 3):
...     delta = evaluate_chunk(game, make(), first, stop, 64).delta
...     merged.load_state_dict(merge_delta(merged.state_dict(), delta))
>>> [np.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(whole.estimate(), merged.estimate())]
[True, True]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msa_core.estimators.base import Estimator
from msa_core.estimators.checkpoint import State
from msa_core.estimators.runner import BlockRunner, TimedGame
from msa_core.games import Game

MOMENT_PARTS = ("count", "shift", "sum", "sum_sq")


@dataclass
class ChunkResult:
    """What one chunk adds (``delta``: state fields, each ``[N, D]``-sized at most) and what it
    cost.
    """

    first: int
    stop: int
    delta: State
    evaluated: int  # coalitions evaluated
    game_seconds: float


def chunk_bounds(start: int, n_blocks: int, blocks_per_chunk: int) -> list[tuple[int, int]]:
    """Consecutive ``(first, stop)`` block ranges covering ``[start, n_blocks)``.

    >>> chunk_bounds(2, 9, 3)
    [(2, 5), (5, 8), (8, 9)]
    """
    return [
        (first, min(first + blocks_per_chunk, n_blocks))
        for first in range(start, n_blocks, blocks_per_chunk)
    ]


def moment_names(state: State) -> list[str]:
    """Names of the ``RunningMoments`` fields in a state (``name.count``, ``name.sum``, ...)."""
    return [key[: -len(".sum_sq")] for key in state if key.endswith(".sum_sq")]


def chunk_delta(after: State, before: State) -> State:
    """What a chunk added: ``after - before`` per summed field; moments of the chunk's own
    samples."""
    delta = {key: after[key] - before[key] for key in after}
    for name in moment_names(after):
        delta[f"{name}.shift"] = after[f"{name}.shift"]
        delta[f"{name}.sum"], delta[f"{name}.sum_sq"] = (
            after[f"{name}.sum"],
            after[f"{name}.sum_sq"],
        )
    return delta


def merge_moments(total: State, part: State) -> State:
    """Moments of two disjoint sample sets (``MOMENT_PARTS`` dicts), kept at ``total``'s shift.

    >>> from msa_core.estimators.base import RunningMoments
    >>> a, b, both = RunningMoments((1,)), RunningMoments((1,)), RunningMoments((1,))
    >>> a.add(np.array([[1.0], [2.0]])); b.add(np.array([[7.0]]))
    >>> both.add(np.array([[1.0], [2.0], [7.0]]))
    >>> merged = merge_moments(a.state_dict(), b.state_dict())
    >>> [bool(np.allclose(merged[key], value)) for key, value in both.state_dict().items()]
    [True, True, True, True]
    """
    if int(total["count"]) == 0:
        return {key: np.array(part[key], copy=True) for key in MOMENT_PARTS}
    # samples of `part` are (x - part.shift); add gap for (x - total.shift)
    gap = part["shift"] - total["shift"]
    count = part["count"]
    return {
        "count": total["count"] + count,
        "shift": total["shift"],
        "sum": total["sum"] + part["sum"] + count * gap,
        "sum_sq": total["sum_sq"] + part["sum_sq"] + 2 * gap * part["sum"] + count * gap**2,
    }


def merge_delta(total: State, delta: State) -> State:
    """``total`` (an estimator's ``state_dict``) with a chunk's ``delta`` folded in."""
    merged = {key: total[key] + delta[key] for key in total}
    for name in moment_names(total):
        parts = merge_moments(
            {part: total[f"{name}.{part}"] for part in MOMENT_PARTS},
            {part: delta[f"{name}.{part}"] for part in MOMENT_PARTS},
        )
        merged.update({f"{name}.{part}": value for part, value in parts.items()})
    return merged


def evaluate_chunk(
    game: Game,
    estimator: Estimator,
    first: int,
    stop: int,
    batch_size: int,
    output_shape: tuple[int, ...] | None = None,
) -> ChunkResult:
    """Run blocks ``[first, stop)`` of a fresh ``estimator`` on ``game`` in batches; return what
    they add.

    ``output_shape``: the per-coalition value shape the run has seen (checked on every call).
    """
    estimator.n_blocks = stop  # this copy's run ends with the chunk
    before = estimator.state_dict()
    timed = TimedGame(game)
    timed.output_shape = output_shape
    tally = BlockRunner(timed, estimator, batch_size, start_block=first).run()
    return ChunkResult(
        first,
        stop,
        chunk_delta(estimator.state_dict(), before),
        tally.evaluated,
        tally.game_seconds,
    )

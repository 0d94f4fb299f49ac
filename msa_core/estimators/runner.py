"""Evaluate an estimator's blocks in batches of coalitions and feed them back in block order."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from msa_core.estimators.base import Estimator
from msa_core.games import Game, values_as_array

Progress = Callable[[int, int], None]


@dataclass
class Tally:
    """What a run cost: coalitions evaluated, those whose values entered the result, seconds in the game."""

    evaluated: int = 0
    used: int = 0
    game_seconds: float = 0.0
    stopped_early: bool = False


class TimedGame:
    """Calls a game, times the call and checks its values (``[C, *out]`` -> float32/64 ``[C, D]``)."""

    def __init__(self, game: Game):
        self.game = game
        self.output_shape: tuple[int, ...] | None = None
        self.tally = Tally()

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        raw = self.game(coalitions)
        self.tally.game_seconds += time.perf_counter() - start
        values = values_as_array(raw, coalitions.shape[0], self.output_shape)
        self.tally.evaluated += coalitions.shape[0]
        self.output_shape = values.shape[1:]
        return values.reshape(coalitions.shape[0], -1)


class BlockRunner:
    """Queues blocks' coalitions into game calls of at most ``batch_size`` rows.

    A call holds whole blocks where they fit and splits only blocks larger than a batch; finished
    blocks are absorbed strictly in order, so results never depend on ``batch_size``. With
    ``target_stderr`` the run stops at the first block after which the estimator's largest standard
    error is at most that. ``save(next_block)`` is called every ``save_seconds`` of work, before the
    last block, and when the game raises, each time at a block boundary.
    """

    def __init__(self, game: TimedGame, estimator: Estimator, batch_size: int,
                 target_stderr: float | None = None, progress: Progress | None = None, start_block: int = 0,
                 save: Callable[[int], None] | None = None, save_seconds: float = 5.0):
        self.game = game
        self.estimator = estimator
        self.batch_size = batch_size
        self.target_stderr = target_stderr
        self.progress = progress
        self.save = save
        self.save_seconds = save_seconds
        self.total = 2 + estimator.planned_evaluations()  # the full and empty coalitions, then every block
        self._queue: list[tuple[int, np.ndarray]] = []
        self._queued = 0
        self._parts: dict[int, list[np.ndarray]] = {}
        self._missing: dict[int, int] = {}
        self._next = start_block
        self._absorbing = False
        self._saved_at = time.perf_counter()

    def run(self) -> Tally:
        try:
            return self._run()
        except BaseException:
            if self.save is not None and self._next < self.estimator.n_blocks and not self._absorbing:
                self.save(self._next)  # the game raised or the run was interrupted: keep what is absorbed
            raise

    def _run(self) -> Tally:
        for k in range(self._next, self.estimator.n_blocks):
            rows = self.estimator.block(k)
            self._missing[k] = rows.shape[0]
            if self._queued and self._queued + rows.shape[0] > self.batch_size and self._flush():
                return self.game.tally  # whole blocks per call where they fit: no block split needlessly
            while rows.shape[0]:
                take = self.batch_size - self._queued
                self._queue.append((k, rows[:take]))
                self._queued += min(take, rows.shape[0])
                rows = rows[take:]
                if self._queued == self.batch_size and self._flush():
                    return self.game.tally
        if self._queue:
            self._flush()
        return self.game.tally

    def _flush(self) -> bool:
        """Evaluate the queue, absorb finished blocks; True when the stopping rule is met."""
        values = self.game(np.concatenate([rows for _, rows in self._queue]))
        offset = 0
        for k, rows in self._queue:
            self._parts.setdefault(k, []).append(values[offset: offset + rows.shape[0]])
            self._missing[k] -= rows.shape[0]
            offset += rows.shape[0]
        self._queue, self._queued = [], 0
        if self.progress is not None:
            self.progress(self.game.tally.evaluated, self.total)
        while self._missing.get(self._next) == 0:
            parts = self._parts.pop(self._next)
            self._absorbing = True
            self.estimator.absorb(self._next, np.concatenate(parts) if len(parts) > 1 else parts[0])
            self._absorbing = False
            self.game.tally.used += sum(part.shape[0] for part in parts)
            del self._missing[self._next]
            self._next += 1
            self._maybe_save()
            if self.target_stderr is not None:
                stderr = self.estimator.max_stderr()
                if stderr is not None and stderr <= self.target_stderr:
                    self.game.tally.stopped_early = self._next < self.estimator.n_blocks
                    return True
        return False

    def _maybe_save(self) -> None:
        if self.save is None or self._next >= self.estimator.n_blocks:
            return
        now = time.perf_counter()
        if now - self._saved_at >= self.save_seconds or self._next == self.estimator.n_blocks - 1:
            self.save(self._next)
            self._saved_at = time.perf_counter()

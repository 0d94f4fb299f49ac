"""Runners play an estimator's blocks on a game and feed the values back in block order; backends
say which runner plays a run and which game it plays.

``Runner`` is the base every runner derives from (saving, stopping, progress); ``BlockRunner`` plays
blocks in this process. A ``Backend`` (``LocalBackend`` here, ``msa_core.backends.RayBackend`` on
Ray) pairs a game with its runner class; ``resolve_backend`` turns ``shapley_modes``' ``backend``
argument into one, from the names in ``BACKENDS``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import import_module
from typing import Any, Protocol

import numpy as np

from msa_core.errors import MSAInputError
from msa_core.estimators.base import Estimator
from msa_core.estimators.stopping import StopRule, stop_rule
from msa_core.games import Game, as_game, values_as_array

Progress = Callable[
    [int, int], None
]  # progress(evaluated, planned): evaluations done and planned so far


@dataclass
class Tally:
    """What a run cost: coalitions evaluated, those whose values entered the result, seconds in the
    game.
    """

    evaluated: int = 0
    used: int = 0
    game_seconds: float = 0.0
    stopped_early: bool = False


class TimedGame:
    """Calls a game, times the call and checks its values (``[C, *out]`` -> float32/64
    ``[C, D]``)."""

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


@dataclass
class Finished:
    """A finished unit of work (a block, or a chunk of blocks) ready to be absorbed: ``absorb()``
    puts ``used`` evaluations (``game_seconds`` of game time not yet in the tally) into the
    estimate, after which the run continues at block ``stop``."""

    absorb: Callable[[], None]
    stop: int
    used: int
    game_seconds: float = 0.0


class Runner(ABC):
    """Plays an estimator's blocks on a game and absorbs them strictly in block order.

    The base owns what every runner shares: ``save(next_block)`` every ``save_seconds`` of work and
    before the last unit of work, and once more when the run raises or is interrupted (never in the
    middle of absorbing: see ``_commit``); the stop rule (with ``target_stderr``, stop at the first
    absorbed block after which the estimator's largest standard error is at most that);
    ``progress(done, total)`` reports. A subclass plays the blocks (``_play``) and says where its
    last unit of work starts (``last_start``).

    Args:
        game: the run's ``TimedGame`` (its tally counts what the run costs).
        estimator: the estimator whose blocks are played (fresh, or loaded from a checkpoint).
        batch_size: coalitions per game call, at most.
        target_stderr: stop once the largest standard error is at most this, or once a
        ``stopping.StopRule`` is reached (None: play every block).
        progress: ``progress(evaluated, planned)`` after each game call or merged chunk.
        start_block: the first block to play (a resumed run's ``next_block``).
        save: ``save(next_block)`` writes a checkpoint (None: no checkpoints).
        save_seconds: seconds of work between saves.
    """

    def __init__(
        self,
        game: TimedGame,
        estimator: Estimator,
        batch_size: int,
        target_stderr: float | StopRule | None = None,
        progress: Progress | None = None,
        start_block: int = 0,
        save: Callable[[int], None] | None = None,
        save_seconds: float = 5.0,
    ):
        self.game = game
        self.estimator = estimator
        self.batch_size = batch_size
        self.target_stderr = target_stderr
        self.progress = progress
        self.save = save
        self.save_seconds = save_seconds
        # the full and empty coalitions, then every block
        self.total = 2 + estimator.planned_evaluations()
        self.next_block = start_block
        self._consistent = True  # estimator, next_block and tally agree (see ``_commit``)
        self._saved_at = time.perf_counter()

    def run(self) -> Tally:
        """Play the blocks from ``start_block`` on; returns the game's tally (``stopped_early``
        set).
        """
        try:
            return self._play()
        except BaseException:
            if (
                self.save is not None
                and self.next_block < self.estimator.n_blocks
                and self._consistent
            ):
                # the game raised or the run was interrupted: keep what is absorbed
                self.save(self.next_block)
            raise

    @abstractmethod
    def _play(self) -> Tally:
        """Evaluate and absorb blocks from ``next_block`` on until the last or until
        ``_stop_now()``.
        """

    @property
    @abstractmethod
    def last_start(self) -> int:
        """The block where the run's last unit of work (block or chunk) starts: saved before it."""

    def _commit(
        self, absorb: Callable[[], None], next_block: int, used: int, game_seconds: float = 0.0
    ) -> None:
        """Absorb values and advance the run past them as one step: the estimator's sums, the
        block counter and the tally that a save records always agree.

        ``_consistent`` is false from before ``absorb()`` until the last counter is advanced (each
        a single assignment, so an interrupt lands before, inside or after, never half way
        through a flag): an interrupt or error inside leaves it false and ``run`` saves nothing,
        the last saved checkpoint stands.

        Args:
            absorb: updates the estimator with the values of the blocks before ``next_block``.
            next_block: the first block not absorbed after this step.
            used: evaluations whose values ``absorb`` puts into the estimate.
            game_seconds: game time of those evaluations not yet in the tally (a merged chunk's).
        """
        self._consistent = False
        absorb()
        tally = self.game.tally
        tally.used, tally.game_seconds = tally.used + used, tally.game_seconds + game_seconds
        self.next_block = next_block
        self._consistent = True

    def _absorb_ready(self, finished: Callable[[int], Finished | None]) -> bool:
        """The loop of every runner: absorb, in block order, each finished unit of work that
        starts at ``next_block`` (``finished(next_block)``, None while it is not done), saving
        when due and checking the stop rule after each.

        Returns:
            True when the stop rule ends the run.
        """
        while (unit := finished(self.next_block)) is not None:
            self._commit(unit.absorb, unit.stop, unit.used, unit.game_seconds)
            self._maybe_save()
            if self._stop_now():
                return True
        return False

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.game.tally.evaluated, self.total)

    def _maybe_save(self) -> None:
        """Save after ``save_seconds`` of work since the last save, and before the last unit of
        work.
        """
        if self.save is None or self.next_block >= self.estimator.n_blocks:
            return
        if (
            time.perf_counter() - self._saved_at >= self.save_seconds
            or self.next_block == self.last_start
        ):
            self.save(self.next_block)
            self._saved_at = time.perf_counter()

    def _stop_now(self) -> bool:
        """The stop rule after an absorbed block; sets ``tally.stopped_early`` when it stops the
        run.
        """
        rule = stop_rule(self.target_stderr)
        if rule is None or not rule.reached(self.estimator):
            return False
        self.game.tally.stopped_early = self.next_block < self.estimator.n_blocks
        return True


class BlockRunner(Runner):
    """Plays blocks in this process, queueing their coalitions into game calls of at most
    ``batch_size`` rows.

    A call holds whole blocks where they fit and splits only blocks larger than a batch; finished
    blocks are absorbed strictly in order, so results never depend on ``batch_size``.
    """

    _queue: list[tuple[int, np.ndarray]]  # (block, rows) waiting for the next game call
    _queued: int  # rows in ``_queue``
    _parts: dict[int, list[np.ndarray]]  # values of blocks split across calls, so far
    _missing: dict[int, int]  # rows of each unfinished block not evaluated yet

    @property
    def last_start(self) -> int:
        return self.estimator.n_blocks - 1

    def _play(self) -> Tally:
        self._queue, self._queued, self._parts, self._missing = [], 0, {}, {}
        for k in range(self.next_block, self.estimator.n_blocks):
            rows = self.estimator.block(k)
            self._missing[k] = rows.shape[0]
            if self._queued and self._queued + rows.shape[0] > self.batch_size and self._flush():
                # whole blocks per call where they fit: no block split needlessly
                return self.game.tally
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
            self._parts.setdefault(k, []).append(values[offset : offset + rows.shape[0]])
            self._missing[k] -= rows.shape[0]
            offset += rows.shape[0]
        self._queue, self._queued = [], 0
        self._report()
        return self._absorb_ready(self._finished_block)

    def _finished_block(self, k: int) -> Finished | None:
        """Block ``k`` once all its rows are evaluated (its values taken off the queue's parts)."""
        if self._missing.get(k) != 0:
            return None
        parts = self._parts.pop(k)
        del self._missing[k]
        values = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return Finished(partial(self.estimator.absorb, k, values), k + 1, values.shape[0])


class Backend(Protocol):
    """Where a run's coalitions are evaluated: the game the run plays and the runner that plays
    it."""

    def game(self, game: Any, n_players: int | None) -> Game:
        """The game as this backend plays it (``game``: a ``Game``, a callable, or what the backend
        builds from).
        """
        ...

    def runner(self) -> type[Runner]:
        """The runner class for ``game``'s blocks (``Runner``'s constructor)."""
        ...

    def meta(self, game: Game) -> dict[str, Any] | None:
        """What a result records about the backend (None: nothing)."""
        ...


class LocalBackend:
    """This process: the game is called directly, blocks are batched by ``BlockRunner``."""

    def game(self, game: Any, n_players: int | None) -> Game:
        return as_game(game, n_players)

    def runner(self) -> type[Runner]:
        return BlockRunner

    def meta(self, game: Game) -> dict[str, Any] | None:
        return None


BACKENDS: dict[str, Callable[[], Backend]] = {
    "local": LocalBackend
}  # more register with register_backend


# backends outside this package, by the module that registers them when imported: naming one imports
# it, so ``import msa_core`` stays free of Ray and torch and estimators has no import of backends
BACKEND_MODULES = {"ray": "msa_core.backends"}


def register_backend(name: str, make: Callable[[], Backend]) -> None:
    """Let ``shapley_modes(backend=name)`` run on ``make()`` (e.g. ``msa_core.backends`` registers
    "ray").
    """
    BACKENDS[name] = make


def resolve_backend(backend: Any) -> Backend:
    """The backend of a run: None or a registered name, or a backend object as is.

    Raises:
        MSAInputError: an unknown name, or an object that is not a ``Backend``.
    """
    if backend is None:
        return LocalBackend()
    if isinstance(backend, str) and backend not in BACKENDS and backend in BACKEND_MODULES:
        import_module(BACKEND_MODULES[backend])  # registers itself (imported only when named)
    if isinstance(backend, str) and backend in BACKENDS:
        return BACKENDS[backend]()
    if not isinstance(backend, str) and all(
        callable(getattr(backend, name, None)) for name in ("game", "runner", "meta")
    ):
        return backend
    names = ", ".join(repr(name) for name in {**BACKENDS, **BACKEND_MODULES})
    raise MSAInputError(
        f"unknown backend {backend!r}; allowed: None, {names} or a backend object "
        "(e.g. msa_core.backends.RayBackend(...))"
    )

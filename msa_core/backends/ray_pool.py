"""Ray actors that hold a game, and the runner that streams chunks of blocks to them.

Each actor (``GameWorker``) builds its game once, then plays chunks: it runs blocks ``[first,
stop)`` of its own copy of the estimator and returns the partial sums (``chunks.ChunkResult``).
The driver (``RayBlockRunner``) keeps every actor busy with two chunks, folds results in chunk
order into its estimator, checkpoints between chunks, and re-queues the chunks of an actor that
dies on the other actors (starting a replacement). Blocks are fixed by the seed and chunks are
merged in order, so the result is the local one up to the order of float additions.
"""

from __future__ import annotations

import heapq
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from msa_core.backends.chunks import ChunkResult, chunk_bounds, evaluate_chunk, merge_delta
from msa_core.errors import MSAInputError
from msa_core.estimators.base import Estimator
from msa_core.estimators.runner import Finished, Progress, Runner, Tally, TimedGame
from msa_core.games import Game, GameFactory, as_game, values_as_array

if TYPE_CHECKING:
    from msa_core.backends import RayBackend

DEPTH = 2  # chunks queued per actor: the next one is already there when one finishes
CHUNKS_PER_WORKER = 4  # default chunking: about this many chunks per worker (load balance, retries)
MAX_BLOCKS_PER_CHUNK = 64  # at most 16k coalitions redone when an actor dies
MAX_ATTEMPTS = 3  # a chunk whose actor died this many times is not tried again


@dataclass(frozen=True)
class ChunkPlan:
    """What every chunk of one run shares: the estimator's arguments, the batch size, the output
    shape.
    """

    estimator_class: type[Estimator]
    n_players: int
    v_full: np.ndarray
    v_empty: np.ndarray
    seed: int
    budget: int
    batch_size: int
    output_shape: tuple[int, ...]
    extra_arguments: tuple[np.ndarray, ...] = ()  # Estimator.extra_arguments (an interaction
    # run's players)

    def estimator(self) -> Estimator:
        """A fresh estimator of the run (its blocks are those of the driver's)."""
        return self.estimator_class(  # type: ignore[call-arg]
            self.n_players, self.v_full, self.v_empty, self.seed, self.budget, *self.extra_arguments
        )


class GameWorker:
    """A Ray actor's game, built on first use (so a failing build reaches the driver as its own
    error).
    """

    def __init__(self, source: Any, n_players: int | None):
        self._source, self._n_players = source, n_players
        self._game: Game | None = None

    @property
    def game(self) -> Game:
        if self._game is None:
            built = self._source.build() if isinstance(self._source, GameFactory) else self._source
            self._game = as_game(built, self._n_players)
        return self._game

    def describe(self) -> tuple[int, list[str]]:
        """The game's players: ``(n_players, player_names)``."""
        return self.game.n_players, list(self.game.player_names)

    def evaluate(self, coalitions: np.ndarray) -> np.ndarray:
        """Values ``[C, *out]`` of a few coalitions (the run's full and empty ones)."""
        # a writable copy: arguments arrive read-only from the object store
        coalitions = np.array(coalitions)
        return values_as_array(self.game(coalitions), coalitions.shape[0], None)

    def run_chunk(self, plan: ChunkPlan, first: int, stop: int) -> ChunkResult:
        """Partial sums of blocks ``[first, stop)``."""
        return evaluate_chunk(
            self.game, plan.estimator(), first, stop, plan.batch_size, plan.output_shape
        )


def connect(ray: ModuleType, address: str | None) -> None:
    """Join the Ray cluster at ``address``, or start a local instance; no-op when already
    connected."""
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, include_dashboard=False) if address else ray.init(
            include_dashboard=False
        )
    except ValueError as err:  # Ray's "Invalid address format"
        raise MSAInputError(
            f"{address!r} is not a Ray cluster address ({err}); allowed: HOST:PORT, "
            "ray://HOST:PORT, 'auto' (a cluster started here with `ray start --head`) or 'local'"
        ) from err
    except (ConnectionError, RuntimeError) as err:
        raise MSAInputError(
            f"cannot reach the Ray cluster at {address!r} ({err}); start one with "
            "`ray start --head` and set RAY_ADDRESS to the address it prints"
        ) from err


def kill_actors(ray: ModuleType, actors: list) -> None:
    for actor in actors:
        ray.kill(actor)
    actors.clear()


def worker_error(err: Exception) -> BaseException:
    """The exception a game raised on a worker (e.g. ``MSAInputError``), else Ray's own."""
    cause = getattr(err, "cause", None)
    return cause if isinstance(cause, BaseException) else err


class WorkerPool:
    """The run's actors: started together, replaced when one dies, killed when the run ends."""

    def __init__(self, ray: ModuleType, backend: RayBackend, source: Any, n_players: int | None):
        self.ray = ray
        resources = ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 1.0)), float(resources.get("GPU", 0.0))
        self.workers = backend.workers or (2 * int(gpus) if gpus >= 1 else max(1, int(cpus)))
        self.gpus_per_worker = (
            backend.gpus_per_worker
            if backend.gpus_per_worker is not None
            else min(1.0, gpus / self.workers)
        )
        self.blocks_per_chunk = backend.blocks_per_chunk
        try:
            self._source = ray.put(source)
        except (
            Exception
        ) as err:  # any serialisation failure: the message says what could not be pickled
            raise MSAInputError(
                f"the game cannot be sent to Ray workers ({type(err).__name__}: {err}); pass a "
                "msa_core.backends.GameFactory that builds it on each worker (e.g. ZooGame(name, "
                "granularity))"
            ) from err
        self._n_players = n_players
        self._class = ray.remote(GameWorker)
        self._resources = {
            "num_cpus": min(1.0, cpus / self.workers),
            "num_gpus": self.gpus_per_worker,
        }
        self._run_id = uuid.uuid4().hex[:8]
        self.actors: list = []
        self.started = self.replaced = self.retried_chunks = 0
        self._finalizer = weakref.finalize(self, kill_actors, ray, self.actors)
        for _ in range(self.workers):
            self._start()

    def _start(self) -> None:
        name = f"msa-worker-{self._run_id}-{self.started}"
        self.actors.append(
            self._class.options(name=name, **self._resources).remote(self._source, self._n_players)
        )
        self.started += 1

    def lost(self, actor: Any, err: Exception) -> None:
        """An actor died: drop it and start a replacement (unless workers keep dying)."""
        if actor not in self.actors:
            return  # already replaced (it had several chunks in flight)
        self.actors.remove(actor)
        self.replaced += 1
        if self.replaced > 2 * self.workers + 2:
            raise RuntimeError(
                f"Ray workers keep dying ({self.replaced} lost); the last one: {err}"
            ) from err
        self._start()

    def call(self, method: str, *args: Any) -> Any:
        """Call ``method`` on one live actor and wait, retrying on another if it dies."""
        failures = 0
        while True:
            actor = self.actors[0]
            try:
                return self.ray.get(getattr(actor, method).remote(*args))
            except self.ray.exceptions.RayTaskError as err:
                raise worker_error(err) from err
            except (
                self.ray.exceptions.RayActorError,
                self.ray.exceptions.WorkerCrashedError,
            ) as err:
                self.lost(actor, err)
                failures += 1
                if failures == MAX_ATTEMPTS:
                    raise RuntimeError(
                        f"{method} failed on {MAX_ATTEMPTS} Ray workers; the last error: {err}"
                    ) from err

    def meta(self) -> dict[str, Any]:
        """What the run's result records about the backend."""
        return {
            "name": "ray",
            "workers": self.workers,
            "gpus_per_worker": self.gpus_per_worker,
            "workers_replaced": self.replaced,
            "chunks_retried": self.retried_chunks,
        }

    def shutdown(self) -> None:
        self._finalizer()


class RayGame(Game):
    """A game evaluated by Ray actors; ``pool`` holds them (``RayBlockRunner`` plays the run's
    blocks there).
    """

    def __init__(self, pool: WorkerPool, n_players: int, player_names: list[str]):
        self.pool, self.n_players, self.player_names = pool, n_players, player_names

    @classmethod
    def start(
        cls,
        ray: ModuleType,
        backend: RayBackend,
        source: Any,
        n_players: int | None,
        address: str | None,
    ) -> RayGame:
        """Connect, start the actors and ask one for the game's players."""
        connect(ray, address)
        pool = WorkerPool(ray, backend, source, n_players)
        try:
            n, names = ray.get(pool.actors[0].describe.remote())
        except ray.exceptions.RayTaskError as err:
            pool.shutdown()
            raise worker_error(err) from err
        except ray.exceptions.RayActorError as err:
            pool.shutdown()
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            raise MSAInputError(
                f"a Ray worker could not load the game ({lines[-1] if lines else err}); the game "
                "must be importable on the workers: define it in an installed module, or pass a "
                "msa_core.backends.GameFactory"
            ) from err
        return cls(pool, n, names)

    def evaluate(self, coalitions: np.ndarray) -> np.ndarray:
        return self.pool.call("evaluate", coalitions)

    def meta(self) -> dict[str, Any]:
        return self.pool.meta()


class RayBlockRunner(Runner):
    """The ``Runner`` of a ``RayGame``: chunks of ``blocks_per_chunk`` blocks go to the actors.

    Finished chunks are merged strictly in order. With ``target_stderr`` a chunk is one block and
    the rule is checked after each, so the run stops at the block a local run stops at. Saves
    (``Runner``) fall at chunk boundaries, the last one before the last chunk. The actors are shut
    down when the run ends, however it ends.
    """

    def __init__(
        self,
        game: TimedGame,
        estimator: Estimator,
        batch_size: int,
        target_stderr: float | None = None,
        progress: Progress | None = None,
        start_block: int = 0,
        save: Callable[[int], None] | None = None,
        save_seconds: float = 5.0,
    ):
        if not isinstance(game.game, RayGame):
            raise TypeError("RayBlockRunner plays a RayGame (from RayBackend.game)")
        super().__init__(
            game, estimator, batch_size, target_stderr, progress, start_block, save, save_seconds
        )
        self.pool = game.game.pool
        assert game.output_shape is not None  # the ends are evaluated before the blocks
        self.plan = ChunkPlan(
            type(estimator),
            estimator.n_players,
            estimator.v_full,
            estimator.v_empty,
            estimator.seed,
            estimator.budget,
            batch_size,
            game.output_shape,
            estimator.extra_arguments(),
        )
        remaining = estimator.n_blocks - start_block
        per_chunk = (
            1
            if target_stderr is not None
            else self.pool.blocks_per_chunk
            or int(
                np.clip(
                    -(-remaining // (CHUNKS_PER_WORKER * self.pool.workers)),
                    1,
                    MAX_BLOCKS_PER_CHUNK,
                )
            )
        )
        self.chunks = chunk_bounds(start_block, estimator.n_blocks, per_chunk)

    @property
    def last_start(self) -> int:
        return self.chunks[-1][0]

    def run(self) -> Tally:
        try:
            return super().run()
        finally:
            self.pool.shutdown()

    def _play(self) -> Tally:
        ray, tally = self.pool.ray, self.game.tally
        lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError)
        plan = ray.put(self.plan)
        pending = list(range(len(self.chunks)))  # a heap: the earliest chunk goes out first
        attempts = [0] * len(self.chunks)
        in_flight: dict[Any, tuple[int, Any]] = {}
        done: dict[int, ChunkResult] = {}  # by first block
        while self.next_block < self.estimator.n_blocks:
            self._submit(pending, in_flight, plan)
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            index, actor = in_flight.pop(ref)
            try:
                done[self.chunks[index][0]] = ray.get(ref)
            except ray.exceptions.RayTaskError as err:
                raise worker_error(err) from err
            except lost as err:
                attempts[index] += 1
                if attempts[index] == MAX_ATTEMPTS:
                    raise RuntimeError(
                        f"blocks {self.chunks[index]} failed on {MAX_ATTEMPTS} Ray workers; "
                        f"the last error: {err}"
                    ) from err
                self.pool.lost(actor, err)
                self.pool.retried_chunks += 1
                heapq.heappush(pending, index)
                continue
            if self._absorb_ready(lambda first: self._merged(done.pop(first, None))):
                # evaluated, not used
                tally.evaluated += sum(result.evaluated for result in done.values())
                return tally
        return tally

    def _submit(self, pending: list[int], in_flight: dict[Any, tuple[int, Any]], plan: Any) -> None:
        """Queue pending chunks on the actors with fewer than ``DEPTH`` in flight, earliest chunk
        first.
        """
        load = {id(actor): 0 for actor in self.pool.actors}
        for _, actor in in_flight.values():
            if id(actor) in load:
                load[id(actor)] += 1
        for _ in range(DEPTH):  # round robin: consecutive chunks go to different actors
            for actor in self.pool.actors:
                if pending and load[id(actor)] < DEPTH:
                    index = heapq.heappop(pending)
                    first, stop = self.chunks[index]
                    in_flight[actor.run_chunk.remote(plan, first, stop)] = (index, actor)
                    load[id(actor)] += 1

    def _merged(self, result: ChunkResult | None) -> Finished | None:
        """A finished chunk (None: not back yet), its evaluations counted and reported."""
        if result is None:
            return None

        def absorb() -> None:
            self.estimator.load_state_dict(merge_delta(self.estimator.state_dict(), result.delta))

        self.game.tally.evaluated += result.evaluated
        self._report()
        return Finished(absorb, result.stop, result.evaluated, result.game_seconds)

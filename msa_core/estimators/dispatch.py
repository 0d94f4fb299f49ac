"""The run pipeline: plan a run, start or resume it, play its blocks, return its result.

``shapley_modes`` (a ``ModesResult``) and ``estimators.interactions.interaction_modes`` (an
``InteractionResult``) are two kinds of run through the same stages; only their ``RunPlan`` and the
last step, the result, differ. The stages are separate functions so that a caller with its own
checkpoint policy (``runs.execute``) composes them without repeating any: ``check_run_options``,
``RunPlan.make`` / ``RunPlan.make_interactions`` (plan), ``check_known_fits`` (memory, before any
evaluation), ``saved_resume`` / ``RunPlan.resume`` (whether a saved state continues this run),
``run_plan`` (start or resume -> play -> ``finish``: ``modes_result`` or
``interactions.interaction_result``); ``run_request`` chains them for both entry points.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from msa_core.checks import check_method, check_positive_int, check_seed
from msa_core.coalitions import full_and_empty
from msa_core.errors import MSAInputError
from msa_core.estimators.base import Estimator
from msa_core.estimators.checkpoint import Checkpoint
from msa_core.estimators.plan import METHODS, CheckpointSummary, RunPlan
from msa_core.estimators.runner import (
    Backend,
    LocalBackend,
    Progress,
    TimedGame,
    resolve_backend,
)
from msa_core.estimators.stopping import TopK, stop_rule
from msa_core.games import Game
from msa_core.result import ModesResult
from msa_core.version import __version__

__all__ = ["METHODS", "run_plan", "shapley_modes"]
Json = dict[str, Any]

# default batch: coalitions x outputs per game call (4-8 MB: few calls, values still in cache)
BATCH_VALUES = 1 << 20
PROGRESS_PASSES = (
    16  # default batch of a ModelGame: at most max(this, its coalitions per forward pass)
)


def shapley_modes(
    game: Any,
    n_players: int | None = None,
    method: str = "auto",
    n_permutations: int | None = None,
    max_evaluations: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    target_stderr: float | None = None,
    backend: Any = None,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
    target: TopK | None = None,
) -> ModesResult:
    """Shapley mode of every player of a vector-valued game.

    Args:
        game: a ``Game``, or a callable mapping bool coalitions ``[C, N]`` (True = intact) to values
            ``[C, *out]`` (numpy or torch); with ``backend="ray"`` also a
            ``msa_core.backends.GameFactory`` (built on each worker).
        n_players: N; required for a bare callable, checked against a ``Game``.
        method: ``"exact"`` (all 2^N coalitions, N <= 20), ``"permutation"``, ``"antithetic"``,
            ``"kernel"`` (paired kernel regression), ``"leverage"`` (the regression on
            leverage-score samples), ``"regression_adjusted"`` (a fitted surrogate plus Monte Carlo
            on its residual), or ``"auto"``: exact when 2^N fits the budget, else
            regression_adjusted, or permutation when N x |out| exceeds ``plan.KERNEL_MAX_VALUES``
            (2^20).
        n_permutations: budget in permutations (one costs N-1 evaluations; samplers that do not draw
            permutations get the same number of evaluations).
        max_evaluations: hard cap on evaluations, full and empty coalitions included. With both
            budgets the smaller wins; with neither, 1000 permutations.
        seed: the estimator's seed (a non-negative integer); the result depends on nothing else.
        batch_size: coalitions per game call (default: about 2^20 values per call, 1 to 1024 rows).
        target_stderr: stop early once the largest standard error is at most this.
        backend: None / ``"local"`` (this process), ``"ray"`` or
            ``msa_core.backends.RayBackend(...)`` (blocks played by Ray actors, ``RAY_ADDRESS``
            or a local instance; same result for the same seed), or any object with
            ``Backend``'s methods.
        progress: ``progress(evaluated, planned)`` after each game call.
        checkpoint: where the running state is saved every few seconds; a run with the same
            arguments resumes from it and gives exactly the uninterrupted result
            (``FileCheckpoint``, or the run store's).
        target: ``TopK(k, per_group=False, level=0.95)``: stop once the k highest-scoring units
            (of each group) are known at ``level`` (``stopping``: checked at looks over whole
            blocks, so the same seed stops at the same block and a resumed run where it would have);
            the budget is the most it may use. ``meta["target"]`` says which units are confidently
            in or out and which are unresolved (``top_k_status(result)``). With
            ``target_stderr`` too, the run stops when both hold. Local backend only.

    Returns:
        A ``ModesResult``: ``modes`` and ``stderr`` ``[N, *out]`` with
        ``modes.sum(0) == v_full - v_empty``, ``v_full``/``v_empty`` ``[*out]``, evaluation counts
        and ``meta`` (method, budget, timings, versions).

    Raises:
        MSAInputError: bad arguments or game values (before any expensive work where they can be
            told), or a checkpoint that belongs to another run.

    >>> import numpy as np
    >>> res = shapley_modes(lambda c: c.sum(1, keepdims=True) ** 2.0, n_players=3, method="exact")
    >>> res.modes.ravel().round(6).tolist()
    [3.0, 3.0, 3.0]
    """
    wall_start = time.perf_counter()
    options = Play(batch_size, target_stderr, progress, checkpoint)
    check_run_options(method, METHODS, seed, options)
    if target is not None and not isinstance(target, TopK):
        raise MSAInputError(f"target must be a TopK(k, ...) or None; got {target!r}")
    where = resolve_backend(backend)
    check_target_backend(target, where)  # before a Ray backend starts its workers

    def plan(n: int) -> RunPlan:
        return RunPlan.make(method, n, n_permutations, max_evaluations, seed, target)

    return run_request(game, n_players, where, plan, modes_result, options, wall_start)


@dataclass(frozen=True)
class Play:
    """How a run of either kind is played, not what it computes (as in ``shapley_modes``):
    coalitions per game call, early stop, progress callback, checkpoint."""

    batch_size: int | None = None
    target_stderr: float | None = None
    progress: Progress | None = None
    checkpoint: Checkpoint | None = None


def check_run_options(method: str, methods: tuple[str, ...], seed: int, options: Play) -> None:
    """Refuse bad options of a run (``methods``: those of its kind) before any game is built or
    called.

    Raises:
        MSAInputError: naming the option and what it allows.
    """
    check_method(method, methods)
    check_seed(seed)
    check_positive_int(
        options.batch_size, "batch_size", " (coalitions per game call)", optional=True
    )
    target_stderr = options.target_stderr
    if target_stderr is not None and not (
        isinstance(target_stderr, (int, float)) and target_stderr > 0
    ):
        raise MSAInputError(
            f"target_stderr must be a positive number or None; got {target_stderr!r}"
        )
    if options.progress is not None and not callable(options.progress):
        raise MSAInputError("progress must be a callable progress(done, total) or None")


def check_known_fits(plan: RunPlan, game: Game) -> None:
    """Before the first evaluation, where ``game`` tells its ``output_shape``: refuse an estimate
    that cannot fit in memory (``RunPlan.check_fits``) or a target that does not fit the outputs.
    Other games are checked once the ends are evaluated (``start_or_resume``)."""
    known_shape = getattr(game, "output_shape", None)
    if known_shape is not None:
        plan.check_fits(math.prod(known_shape))
        if plan.target is not None:
            plan.target.n_groups(tuple(known_shape))


def saved_resume(
    plan: RunPlan, checkpoint: Checkpoint | None
) -> tuple[RunPlan, CheckpointSummary] | None:
    """``plan.resume`` of ``checkpoint``'s saved state, or None where there is none.

    Raises:
        MSAInputError: the saved state belongs to another run.
    """
    state = checkpoint.load() if checkpoint is not None else None
    return plan.resume(state) if state is not None else None


def check_target_backend(target: TopK | None, backend: Backend) -> None:
    """Refuse a top-k target on a backend other than this process (its workers' copies of the
    estimator would not keep the target's scores)."""
    if target is not None and not isinstance(backend, LocalBackend):
        raise MSAInputError("a top-k target runs on the local backend only (backend=None)")


@dataclass
class Started:
    """A run ready to play: its settled plan, end values ``[D]``, estimator and first block."""

    plan: RunPlan
    timed: TimedGame
    v_full: np.ndarray
    v_empty: np.ndarray
    estimator: Estimator | None  # None for one player: nothing to estimate
    start_block: int

    @property
    def modes_shape(self) -> tuple[int, ...]:
        """One player's modes' shape (the game's output, without the rows of its derivatives where
        the estimator takes them)."""
        assert self.timed.output_shape is not None
        return self.plan.estimator_class.modes_shape(self.timed.output_shape)

    def ends(self) -> tuple[np.ndarray, np.ndarray]:
        """The game's values ``[D]`` at the full and empty coalitions (without derivatives)."""
        size = math.prod(self.modes_shape)
        return self.v_full[:size], self.v_empty[:size]


R = TypeVar("R")
# the last stage, the result of a played run: (played run, game, backend, target_stderr, wall_start)
Finish = Callable[[Started, Game, Backend, "float | None", float], R]


def run_request(
    game: object,
    n_players: int | None,
    backend: object,
    make_plan: Callable[[int], RunPlan],
    finish: Finish[R],
    options: Play,
    wall_start: float,
) -> R:
    """The pipeline of both kinds of run, after their options are checked: the game on its
    backend, the plan (``make_plan(n_players)``), the memory check, resume from the checkpoint,
    ``run_plan``.

    Args:
        game, n_players, backend: as in ``shapley_modes``.
        make_plan: the run's plan for the game's number of players (``RunPlan.make`` or
            ``RunPlan.make_interactions``).
        finish: the result of the played run (``modes_result`` or ``interaction_result``).
        options: how to play it (checked by ``check_run_options``).
        wall_start: ``time.perf_counter()`` when the request began.
    """
    where = resolve_backend(backend)
    played = where.game(game, n_players)
    plan = make_plan(played.n_players)
    check_known_fits(plan, played)
    resume = saved_resume(plan, options.checkpoint)
    return run_plan(plan, played, where, finish, resume, options, wall_start)


def run_plan(
    plan: RunPlan,
    game: Game,
    backend: Backend,
    finish: Finish[R],
    resume: tuple[RunPlan, CheckpointSummary] | None = None,
    options: Play = Play(),
    wall_start: float | None = None,
) -> R:
    """Start (or resume) a planned run of either kind, play its blocks and return its result.

    Args:
        plan: from ``RunPlan.make`` (or ``make_interactions``) for ``game``'s players.
        game: the game as ``backend`` plays it (``backend.game(...)``).
        backend: where the blocks are played.
        finish: the result of the played run: ``modes_result`` (a ``ModesResult``) or
            ``interactions.interaction_result`` (an ``InteractionResult``).
        resume: ``plan.resume(state)`` of a checked saved state, or None to start afresh.
        options: how to play it (checked where the request came in).
        wall_start: ``time.perf_counter()`` when the request began (default: now).

    Returns:
        ``finish``'s result.
    """
    wall_start = time.perf_counter() if wall_start is None else wall_start
    check_target_backend(plan.target, backend)
    played = with_gradients(game, backend) if plan.estimator_class.needs_gradients else game
    started = start_or_resume(plan, TimedGame(played), resume, options.batch_size)
    if started.estimator is not None:
        play(started, backend, options)
    return finish(started, game, backend, options.target_stderr, wall_start)


def with_gradients(game: Game, backend: Backend) -> Game:
    """``game`` with its values' derivatives in every unit's gate, for an estimator that
    ``needs_gradients`` (``ModelGame.with_gradients``).

    Raises:
        MSAInputError: a game with no gradients (not a model game) or a backend other than this
            process (before anything is evaluated).
    """
    make = getattr(game, "with_gradients", None)
    if make is None:
        raise MSAInputError(
            "method='gradient' needs a model game whose lesions have derivatives (a bundled or "
            f"Hugging Face model, or a ModelGame); got {type(game).__name__}. Use another method"
        )
    if not isinstance(backend, LocalBackend):
        raise MSAInputError("method='gradient' runs on the local backend only (backend=None)")
    gradients: Game = make()
    return gradients


def start_or_resume(
    plan: RunPlan,
    timed: TimedGame,
    resume: tuple[RunPlan, CheckpointSummary] | None,
    batch_size: int | None,
) -> Started:
    """Evaluate the full and empty coalitions (or take them from the saved state) and build the
    estimator.
    """
    if resume is not None:
        plan, summary = resume
        v_full, v_empty = summary.v_full, summary.v_empty
        timed.output_shape = summary.output_shape
        timed.tally.evaluated = timed.tally.used = summary.used
        timed.tally.game_seconds = summary.game_seconds
    else:
        ends = full_and_empty(plan.n_players)
        step = batch_size or 2
        v_full, v_empty = np.concatenate(
            [timed(ends[i : i + step]) for i in range(0, 2, step)], dtype=np.float64
        )
        timed.tally.used = 2
        plan.check_fits(v_full.size)
        plan = plan.for_outputs(v_full.size)
    if plan.n_players == 1:
        return Started(plan, timed, v_full, v_empty, None, 0)
    assert timed.output_shape is not None
    estimator = plan.estimator(v_full, v_empty, timed.output_shape)
    if resume is not None:
        estimator.load_state_dict(resume[1].estimator_state)
    return Started(
        plan, timed, v_full, v_empty, estimator, resume[1].next_block if resume is not None else 0
    )


def play(started: Started, backend: Backend, options: Play) -> None:
    """Play the run's blocks on ``backend``'s runner, saving to ``options.checkpoint`` as it
    goes."""
    plan, timed, estimator = started.plan, started.timed, started.estimator
    assert estimator is not None
    assert timed.output_shape is not None

    def save(next_block: int) -> None:
        assert timed.output_shape is not None
        assert options.checkpoint is not None
        options.checkpoint.save(
            plan.state(
                estimator,
                next_block,
                timed.tally,
                started.v_full,
                started.v_empty,
                timed.output_shape,
            )
        )

    rows = options.batch_size or int(np.clip(BATCH_VALUES // started.v_full.size, 1, 1024))
    passes = getattr(timed.game, "coalitions_per_pass", None)
    if options.batch_size is None and isinstance(passes, int):
        # a model whose passes hold few coalitions (an LLM: one) reports progress every few passes
        rows = min(rows, max(PROGRESS_PASSES, passes))
    backend.runner()(
        timed,
        estimator,
        rows,
        stop_rule(options.target_stderr, plan.target),
        options.progress,
        start_block=started.start_block,
        save=save if options.checkpoint is not None else None,
        save_seconds=options.checkpoint.every_seconds if options.checkpoint is not None else 0.0,
    ).run()


def run_meta(
    started: Started, game: Game, backend: Backend, target_stderr: float | None, wall_start: float
) -> Json:
    """What the result of a played run of either kind records about how it ran."""
    plan, tally, out = started.plan, started.timed.tally, started.modes_shape
    backend_meta = backend.meta(game)
    return {
        "method": plan.method,
        "requested_method": plan.requested,
        "seed": plan.seed,
        "n_players": plan.n_players,
        "output_shape": list(out),
        "target_stderr": target_stderr,
        "stopped_early": tally.stopped_early,
        "evaluations_discarded": tally.evaluated - tally.used,
        "stderr_kind": plan.estimator_class.stderr_kind,
        "game_seconds": tally.game_seconds,
        "wall_seconds": time.perf_counter() - wall_start,
        "versions": {"msa_core": __version__, "numpy": np.__version__},
        **({} if backend_meta is None else {"backend": backend_meta}),
    }


def modes_result(
    started: Started, game: Game, backend: Backend, target_stderr: float | None, wall_start: float
) -> ModesResult:
    """The ``ModesResult`` of a played run."""
    plan, timed, n = started.plan, started.timed, started.plan.n_players
    v_full, v_empty = started.ends()
    score_stderr: np.ndarray | None  # [N]; None where the estimator cannot tell
    if started.estimator is None:
        modes, stderr, n_perm = (v_full - v_empty)[None, :], np.zeros((1, v_full.size)), 0
        dof, score_stderr = np.inf, np.zeros(1)  # one player: exact
    else:
        modes, stderr = started.estimator.estimate()
        n_perm, dof = started.estimator.n_permutations, started.estimator.stderr_dof()
        score_stderr = started.estimator.score_stderr()
    out = started.modes_shape
    tally = timed.tally
    meta = {
        **run_meta(started, game, backend, target_stderr, wall_start),
        "max_evaluations": plan.budget,
        **(
            {}
            if plan.target is None or started.estimator is None
            else {"target": plan.target.final_status(started.estimator, out).to_meta()}
        ),
        # None: the normal quantile (ModesResult.interval)
        "stderr_dof": None if np.isinf(dof) else dof,
    }
    return ModesResult(
        modes=modes.reshape(n, *out),
        stderr=stderr.reshape(n, *out),
        v_full=v_full.reshape(out),
        v_empty=v_empty.reshape(out),
        n_evaluations=tally.used,
        n_permutations=n_perm,
        player_names=list(game.player_names),
        meta=meta,
        score_stderr=score_stderr,
    )

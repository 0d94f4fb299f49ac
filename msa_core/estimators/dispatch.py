"""``shapley_modes``: pick an estimator, check the arguments, run it, return a ``ModesResult``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from msa_core import __version__
from msa_core.backends import resolve_backend
from msa_core.coalitions import full_and_empty
from msa_core.errors import MSAInputError
from msa_core.estimators.antithetic import AntitheticEstimator
from msa_core.estimators.base import Estimator
from msa_core.estimators.checkpoint import Checkpoint, check_resumable, run_identity
from msa_core.estimators.exact import EXACT_MAX_PLAYERS, ExactEstimator
from msa_core.estimators.kernel import KernelEstimator
from msa_core.estimators.permutation import PermutationEstimator
from msa_core.estimators.runner import BlockRunner, Progress, TimedGame
from msa_core.games import as_game
from msa_core.result import ModesResult

ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls for cls in (ExactEstimator, PermutationEstimator, AntitheticEstimator, KernelEstimator)
}
METHODS = ("auto", *ESTIMATORS)
SAMPLED_METHODS = tuple(name for name in ESTIMATORS if name != "exact")
BEST_SAMPLER = "kernel"  # lowest error per evaluation in bench/bench_estimators.py
KERNEL_MAX_VALUES = 1 << 20  # auto: above N x |out| values, kernel's per-coalition regression update
#   (O(N x |out|), against O(|out|) for permutation) costs more wall time than its lower error saves
#   (measured: 113 GAN channels x 32,768 pixels, kernel 3.3x slower at equal evaluations)
DEFAULT_PERMUTATIONS = 1000  # the paper's budget, used when neither budget is given
BATCH_VALUES = 1 << 18  # default batch: coalitions x outputs per game call (cache-sized on CPU)
PROGRESS_PASSES = 16  # default batch of a ModelGame: at most max(this, its coalitions per forward pass)


def shapley_modes(game: Any, n_players: int | None = None, method: str = "auto",
                  n_permutations: int | None = None, max_evaluations: int | None = None, seed: int = 0,
                  batch_size: int | None = None, target_stderr: float | None = None,
                  backend: str | None = None, progress: Progress | None = None,
                  checkpoint: Checkpoint | None = None) -> ModesResult:
    """Shapley mode of every player of a vector-valued game.

    game: ``Game`` or callable mapping bool coalitions ``[C, N]`` (True = intact) to values ``[C, *out]``.
    method: ``"exact"`` (all 2^N coalitions, N <= 20), ``"permutation"``, ``"antithetic"``, ``"kernel"``
    (paired kernel regression), or ``"auto"``: exact when 2^N fits the budget, else kernel, or
    permutation when N x |out| exceeds ``KERNEL_MAX_VALUES`` (2^20).
    Budget: ``n_permutations`` (a permutation costs N-1 evaluations; samplers that do not draw
    permutations get the same number of evaluations) and/or ``max_evaluations`` (hard cap, full and
    empty coalitions included); the smaller wins; default 1000 permutations.
    backend: None / ``"local"`` (this process), or ``"ray"`` / ``msa_core.backends.RayBackend(...)``: the
    blocks are played by Ray actors (``RAY_ADDRESS`` or a local instance), same result for the same seed;
    the game may then be a ``msa_core.backends.GameFactory`` (built on each worker).
    checkpoint: where the running state is saved every few seconds; a run with the same arguments
    resumes from it and gives exactly the uninterrupted result (``FileCheckpoint``, or the run store).

    Returns modes ``[N, *out]`` with ``modes.sum(0) == v_full - v_empty``.

    >>> import numpy as np
    >>> res = shapley_modes(lambda c: c.sum(1, keepdims=True) ** 2.0, n_players=3, method="exact")
    >>> res.modes.ravel().round(6).tolist()
    [3.0, 3.0, 3.0]
    """
    wall_start = time.perf_counter()
    _check_options(method, seed, batch_size, target_stderr, progress)
    remote = resolve_backend(backend)  # None: this process
    game = as_game(game, n_players) if remote is None else remote.game(game, n_players)
    n = game.n_players
    budget = evaluation_budget(n, n_permutations, max_evaluations)
    chosen = _resolve_method(method, n, budget, n_permutations, max_evaluations)
    if chosen == "exact":
        budget = 2**n
    cls = ESTIMATORS[chosen]
    _check_budget(cls, n, budget, n_permutations)

    timed = TimedGame(game)
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None:
        v_full, v_empty = state["run.v_full"], state["run.v_empty"]
        timed.output_shape = tuple(int(size) for size in state["run.output_shape"])
        timed.tally.evaluated = timed.tally.used = int(state["run.used"])
        timed.tally.game_seconds = float(state["run.game_seconds"])
    else:
        ends = full_and_empty(n)
        v_full, v_empty = np.concatenate([timed(ends[i: i + (batch_size or 2)]) for i in range(0, 2, batch_size or 2)],
                                         dtype=np.float64)
        timed.tally.used = 2
    if method == "auto" and chosen == BEST_SAMPLER and n * v_full.size > KERNEL_MAX_VALUES:
        chosen, cls = "permutation", PermutationEstimator  # the regression's O(N x out) per coalition would dominate
    if state is not None:
        check_resumable(state, chosen, n, seed, budget, cls.extendable)
    if n == 1:
        modes, stderr, n_perm = (v_full - v_empty)[None, :], np.zeros((1, v_full.size)), 0
    else:
        estimator = cls(n, v_full, v_empty, seed, budget - 2)
        start = 0
        if state is not None:
            estimator.load_state_dict({key[4:]: value for key, value in state.items() if key.startswith("est.")})
            start = int(state["run.next_block"])

        def save(next_block: int) -> None:
            checkpoint.save({
                **run_identity(chosen, n, seed, budget), **{f"est.{k}": v for k, v in estimator.state_dict().items()},
                "run.next_block": np.array(next_block), "run.used": np.array(timed.tally.used),
                "run.game_seconds": np.array(timed.tally.game_seconds), "run.v_full": v_full,
                "run.v_empty": v_empty, "run.output_shape": np.array(timed.output_shape, dtype=np.int64),
            })

        rows = batch_size or int(np.clip(BATCH_VALUES // v_full.size, 1, 1024))
        if batch_size is None and isinstance(getattr(game, "coalitions_per_pass", None), int):
            # a model whose passes hold few coalitions (an LLM: one) reports progress every few passes
            rows = min(rows, max(PROGRESS_PASSES, game.coalitions_per_pass))
        runner = BlockRunner if remote is None else remote.runner()
        runner(timed, estimator, rows, target_stderr, progress, start_block=start,
               save=save if checkpoint is not None else None,
               save_seconds=checkpoint.every_seconds if checkpoint is not None else 0.0).run()
        modes, stderr = estimator.estimate()
        n_perm = estimator.n_permutations
    out = timed.output_shape
    tally = timed.tally
    meta = {
        "method": chosen, "requested_method": method, "seed": seed, "n_players": n, "output_shape": list(out),
        "max_evaluations": budget, "target_stderr": target_stderr, "stopped_early": tally.stopped_early,
        "evaluations_discarded": tally.evaluated - tally.used, "stderr_kind": cls.stderr_kind,
        "game_seconds": tally.game_seconds, "wall_seconds": time.perf_counter() - wall_start,
        "versions": {"msa_core": __version__, "numpy": np.__version__},
        **({} if remote is None else {"backend": game.meta()}),
    }
    return ModesResult(
        modes=modes.reshape(n, *out), stderr=stderr.reshape(n, *out), v_full=v_full.reshape(out),
        v_empty=v_empty.reshape(out), n_evaluations=tally.used, n_permutations=n_perm,
        player_names=list(game.player_names), meta=meta,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_options(method: str, seed: Any, batch_size: Any, target_stderr: Any, progress: Any) -> None:
    if method not in METHODS:
        raise MSAInputError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if not _is_int(seed) or seed < 0:
        raise MSAInputError(f"seed must be a non-negative integer; got {seed!r}")
    if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
        raise MSAInputError(f"batch_size must be a positive integer (coalitions per game call) or None; got {batch_size!r}")
    if target_stderr is not None and not (isinstance(target_stderr, (int, float)) and target_stderr > 0):
        raise MSAInputError(f"target_stderr must be a positive number or None; got {target_stderr!r}")
    if progress is not None and not callable(progress):
        raise MSAInputError("progress must be a callable progress(done, total) or None")


def evaluation_budget(n: int, n_permutations: Any, max_evaluations: Any) -> int:
    """Total evaluations allowed, full and empty coalitions included."""
    for name, value in (("n_permutations", n_permutations), ("max_evaluations", max_evaluations)):
        if value is not None and (not _is_int(value) or value < 1):
            raise MSAInputError(f"{name} must be a positive integer or None; got {value!r}")
    caps = [2 + n_permutations * (n - 1)] if n_permutations is not None else []
    caps += [max_evaluations] if max_evaluations is not None else []
    return int(min(caps)) if caps else 2 + DEFAULT_PERMUTATIONS * (n - 1)


def _resolve_method(method: str, n: int, budget: int, n_permutations: Any, max_evaluations: Any) -> str:
    if n == 1:
        return "exact"
    if method == "auto":
        return "exact" if n <= EXACT_MAX_PLAYERS and 2**n <= budget else BEST_SAMPLER
    if method == "exact":
        if n > EXACT_MAX_PLAYERS:
            raise MSAInputError(
                f"method='exact' enumerates all 2^N coalitions and is limited to N <= {EXACT_MAX_PLAYERS} players; "
                f"this game has {n}. Use a sampled method: {', '.join(SAMPLED_METHODS)} (or 'auto')"
            )
        if n_permutations is not None:
            raise MSAInputError("n_permutations does not apply to method='exact'; give max_evaluations or neither")
        if max_evaluations is not None and max_evaluations < 2**n:
            raise MSAInputError(
                f"method='exact' needs 2^{n} = {2**n} evaluations but max_evaluations={max_evaluations}; "
                f"raise the budget or use a sampled method: {', '.join(SAMPLED_METHODS)}"
            )
    return method


def _check_budget(cls: type[Estimator], n: int, budget: int, n_permutations: Any) -> None:
    if cls is AntitheticEstimator and n_permutations is not None and n_permutations % 2:
        raise MSAInputError(f"method='antithetic' samples permutations in pairs; n_permutations must be even, got {n_permutations}")
    needed = 2 + cls.min_budget(n) if n > 1 else 2
    if budget < needed:
        raise MSAInputError(
            f"a budget of {budget} evaluations is too small for method={cls.name!r} with {n} players; "
            f"it needs at least {needed} (full and empty coalitions included)"
        )

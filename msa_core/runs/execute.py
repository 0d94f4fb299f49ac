"""Run a request through the store: return the stored result, or compute it once, resumably."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from msa_core.backends.factory import ZooGame
from msa_core.errors import MSAInputError
from msa_core.estimators import shapley_modes
from msa_core.estimators.checkpoint import State, check_resumable
from msa_core.estimators.dispatch import ESTIMATORS
from msa_core.result import ModesResult
from msa_core.runs.request import RunRequest
from msa_core.runs.store import RunStore
from msa_core.tasks import task_meta

Progress = Callable[[int, int], None]
DEFAULT_CHECKPOINT_SECONDS = 5.0
PROGRESS_WRITE_SECONDS = 0.25  # progress records are written at most this often (and at the end)


def fingerprint_of(request: RunRequest) -> str:
    """The fingerprint of a request (loads its model, cached per process)."""
    return request.fingerprint(request.load())


def checkpoint_seconds_default() -> float:
    """Seconds of work between checkpoints: ``$MSA_CHECKPOINT_SECONDS``, else 5."""
    raw = os.environ.get("MSA_CHECKPOINT_SECONDS")
    if raw is None:
        return DEFAULT_CHECKPOINT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise MSAInputError(f"MSA_CHECKPOINT_SECONDS must be a positive number of seconds; got {raw!r}")
    return seconds


def max_stderr_of(state: State) -> float | None:
    """Largest standard error of the estimate a checkpoint holds (None where the estimator cannot tell yet)."""
    cls = ESTIMATORS[str(state["run.method"])]
    estimator = cls(int(state["run.n_players"]), state["run.v_full"].ravel(), state["run.v_empty"].ravel(),
                    int(state["run.seed"]), int(state["run.budget"]) - 2)
    estimator.load_state_dict({key[4:]: value for key, value in state.items() if key.startswith("est.")})
    with np.errstate(all="ignore"):
        value = estimator.max_stderr()
    return value if value is not None and np.isfinite(value) else None


def _resumable(state: State, request: RunRequest, n_players: int) -> bool:
    """Whether ``request`` can resume from ``state``; if not, say why in a warning (the run starts over)."""
    try:
        method = request.method if request.method != "auto" else str(state["run.method"])
        budget = 2**n_players if method == "exact" else request.budget(n_players)
        check_resumable(state, method, n_players, request.seed, budget, ESTIMATORS[method].extendable)
        max_stderr_of(state)
    except (MSAInputError, KeyError, ValueError) as err:
        warnings.warn(f"the checkpoint of this run cannot be used ({err}); the run starts over", stacklevel=3)
        return False
    return True


class ProgressRecorder:
    """Writes a run's progress to the store (throttled) and forwards ``(done, total)`` to a callback.

    The record holds ``state``, ``done``/``total`` evaluations, ``resumed_from`` (evaluations a
    checkpoint already held), ``max_stderr`` (as of the last checkpoint; the result's at the end),
    ``eta_seconds``, ``pid``.
    """

    def __init__(self, store: RunStore, fingerprint: str, callback: Progress | None):
        self.store, self.fingerprint, self.callback = store, fingerprint, callback
        self.fields: dict = {"state": "running", "done": 0, "total": None, "resumed_from": 0, "max_stderr": None,
                             "eta_seconds": None, "error": None, "pid": os.getpid(), "started": time.time()}
        self._first_done: int | None = None
        self._written = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.time()
        if self._first_done is None:
            self._first_done, self._first_at = done, now
        elif done > self._first_done:
            rate = (done - self._first_done) / max(now - self._first_at, 1e-9)
            self.fields["eta_seconds"] = (total - done) / rate
        self.fields.update(done=done, total=total)
        if now - self._written >= PROGRESS_WRITE_SECONDS or done >= total:
            self.write()
        if self.callback is not None:
            self.callback(done, total)

    def resumed(self, state: State) -> None:
        """Note the checkpoint the run starts from."""
        self.fields.update(resumed_from=int(state["run.used"]), done=int(state["run.used"]),
                           total=int(state["run.budget"]), max_stderr=max_stderr_of(state))
        self.write()

    def checkpointed(self, state: State) -> None:
        self.fields["max_stderr"] = max_stderr_of(state)
        self.write()

    def finish(self, state: str, **fields) -> None:
        self.fields.update(state=state, eta_seconds=None if state != "done" else 0.0, **fields)
        self.write()

    def write(self) -> None:
        self.store.set_progress(self.fingerprint, **self.fields)
        self._written = time.time()


def execute(request: RunRequest, store: RunStore, progress: Progress | None = None,
            checkpoint_seconds: float | None = None, backend: str | None = None) -> ModesResult:
    """The result of ``request``: from the store at once, or computed with checkpoints and stored.

    Concurrent callers of the same request (other threads or processes) wait for one computation.
    A run killed at any point resumes from its last checkpoint (saved every ``checkpoint_seconds``
    of work, default ``$MSA_CHECKPOINT_SECONDS`` or 5) to exactly the uninterrupted result. A request
    that only raises the budget of a stored permutation-type run starts from that run's last checkpoint.
    ``progress(done, total)`` gets evaluations done and planned; ``store.progress(fingerprint)`` has more.
    """
    loaded = request.load()
    request = request.resolved(loaded)
    fingerprint = request.fingerprint(loaded)
    result = store.get(fingerprint)
    if result is not None:
        return result
    seconds = checkpoint_seconds if checkpoint_seconds is not None else checkpoint_seconds_default()
    with store.lock(fingerprint):
        result = store.get(fingerprint)
        if result is not None:
            return result
        recipe = ZooGame(request.model, request.units, request.output, request.lesion, request.task)
        game = recipe.build()  # on the GPU when there is one
        family = request.family().fingerprint(loaded)
        extendable = request.method in ESTIMATORS and ESTIMATORS[request.method].extendable
        if extendable:
            store.seed_from_base(fingerprint, family, request.budget(game.n_players))
        recorder = ProgressRecorder(store, fingerprint, progress)
        checkpoint = store.checkpoint(fingerprint, seconds, on_save=recorder.checkpointed)
        state = checkpoint.load()
        if state is not None and not _resumable(state, request, game.n_players):
            store.drop_checkpoint(fingerprint)
            state = None
        if state is not None:
            recorder.resumed(state)
        else:
            recorder.write()
        try:
            result = shapley_modes(  # Ray workers build the game themselves from the recipe
                recipe if backend == "ray" else game, method=request.method, n_permutations=request.n_permutations,
                max_evaluations=request.max_evaluations, seed=request.seed, backend=backend, progress=recorder,
                checkpoint=checkpoint,
            )
        except Exception as err:
            recorder.finish("failed", error=str(err) or type(err).__name__)
            raise
        except BaseException:
            recorder.finish("cancelled", error="interrupted; the run resumes from its last checkpoint")
            raise
        result.meta.update(model=request.model, model_digest=loaded.digest, units=request.units,
                           output=request.output, lesion=request.lesion, device=str(game.device))
        if loaded.task is not None:
            result.meta["task"] = task_meta(loaded.task.task)
        result.meta["versions"] = {**result.meta.get("versions", {}), "torch": torch.__version__}
        store.put(fingerprint, result, request)
        if extendable:
            store.keep_as_base(fingerprint, family)
        else:
            store.drop_checkpoint(fingerprint)
        finite = result.stderr[np.isfinite(result.stderr)]
        final_stderr = float(finite.max()) if finite.size else None
        recorder.finish("done", done=result.n_evaluations, total=result.n_evaluations, max_stderr=final_stderr)
    return result

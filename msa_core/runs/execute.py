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
from msa_core.runs.budget import probe_game, progress_batch_size
from msa_core.runs.request import RunRequest
from msa_core.runs.store import RunStore
from msa_core.zoo import load_model

Progress = Callable[[int, int], None]
DEFAULT_CHECKPOINT_SECONDS = 5.0
PROGRESS_WRITE_SECONDS = 0.25  # progress records are written at most this often (and at the end)


def fingerprint_of(request: RunRequest) -> str:
    """The fingerprint of a request (loads its model, cached per process)."""
    return request.fingerprint(load_model(request.model))


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


def planned_total(request: RunRequest, n_players: int) -> int:
    """Evaluations a fresh run of ``request`` on ``n_players`` plans, before the estimator reports its own."""
    if request.method == "exact":
        return 2**n_players
    budget = request.budget(n_players)
    return min(budget, 2**n_players) if request.method == "auto" and n_players <= 20 else budget


class ProgressRecorder:
    """Writes a run's progress to the store (throttled) and forwards ``(done, total)`` to a callback.

    The record holds ``state``, ``done``/``total`` evaluations, ``resumed_from`` (evaluations a
    checkpoint already held), ``max_stderr`` (as of the last checkpoint; the result's at the end),
    ``eta_seconds``, ``pid``.
    """

    def __init__(self, store: RunStore, fingerprint: str, callback: Progress | None,
                 request: RunRequest | None = None):
        self.store, self.fingerprint, self.callback = store, fingerprint, callback
        previous = store.progress(fingerprint) or {}
        self.fields: dict = {"state": "running", "done": 0, "total": None, "resumed_from": 0, "max_stderr": None,
                             "eta_seconds": None, "error": None, "pid": os.getpid(), "started": time.time(),
                             "request": request.to_dict() if request is not None else previous.get("request"),
                             "submitted": previous.get("submitted", time.time())}
        self._start_done, self._start_at = 0, time.time()
        self._written = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.time()
        done = max(done, int(self.fields["done"] or 0))  # monotone, whatever order blocks report in
        if done > self._start_done:  # the rate since the estimation started: an ETA from the first block on
            rate = (done - self._start_done) / max(now - self._start_at, 1e-9)
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
        self.estimating()

    def estimating(self, total: int | None = None) -> None:
        """Note that the game is built and the estimation starts now (the ETA counts from here)."""
        self.fields["total"] = self.fields["total"] or total
        self._start_done, self._start_at = int(self.fields["done"] or 0), time.time()
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
    loaded = load_model(request.model)
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
        recorder = ProgressRecorder(store, fingerprint, progress, request)
        recorder.write()  # running, total unknown: loading the model and building the game
        recipe = ZooGame(request.model, request.units, request.output, request.lesion)
        game = recipe.build()  # on the GPU when there is one
        family = request.family().fingerprint(loaded)
        extendable = request.method in ESTIMATORS and ESTIMATORS[request.method].extendable
        if extendable:
            store.seed_from_base(fingerprint, family, request.budget(game.n_players))
        checkpoint = store.checkpoint(fingerprint, seconds, on_save=recorder.checkpointed)
        state = checkpoint.load()
        if state is not None and not _resumable(state, request, game.n_players):
            store.drop_checkpoint(fingerprint)
            state = None
        if state is not None:
            recorder.resumed(state)
        else:
            recorder.estimating(planned_total(request, game.n_players))
        try:
            # game calls of about a second each, so progress is reported that often (results do not change)
            batch = progress_batch_size(probe_game(game, 4, repeats=1)) if backend != "ray" else None
            result = shapley_modes(  # Ray workers build the game themselves from the recipe
                recipe if backend == "ray" else game, method=request.method, n_permutations=request.n_permutations,
                max_evaluations=request.max_evaluations, seed=request.seed, backend=backend, progress=recorder,
                checkpoint=checkpoint, batch_size=batch,
            )
        except Exception as err:
            recorder.finish("failed", error=str(err) or type(err).__name__)
            raise
        except BaseException:
            recorder.finish("cancelled", error="interrupted; the run resumes from its last checkpoint")
            raise
        result.meta.update(model=request.model, model_digest=loaded.digest, units=request.units,
                           output=request.output, lesion=request.lesion, device=str(game.device))
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

"""Run a request through the store: return the stored result, or compute it once, resumably."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from msa_core.errors import MSAInputError
from msa_core.estimators.checkpoint import Checkpoint, State
from msa_core.estimators.dispatch import Play, modes_result, run_plan
from msa_core.estimators.plan import CheckpointSummary, RunPlan
from msa_core.estimators.runner import Progress
from msa_core.result import ModesResult
from msa_core.runs.budget import probe_game, progress_batch_size
from msa_core.runs.preflight import check_run
from msa_core.runs.prepared import PreparedRun
from msa_core.runs.request import RunRequest
from msa_core.runs.store import FULL_DISK_ADVICE, RunStore
from msa_core.runs.store.problems import WRITE_ERRORS
from msa_core.tasks import task_meta

DEFAULT_CHECKPOINT_SECONDS = 5.0
PROGRESS_WRITE_SECONDS = 0.25  # progress records are written at most this often (and at the end)


def fingerprint_of(request: RunRequest) -> str:
    """The fingerprint of a request (loads its model, cached per process, and its task)."""
    return PreparedRun.of(request).fingerprint


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
        raise MSAInputError(
            f"MSA_CHECKPOINT_SECONDS must be a positive number of seconds; got {raw!r}"
        )
    return seconds


def max_stderr_of(state: State) -> float | None:
    """Largest standard error of the estimate a checkpoint holds (None where the estimator cannot
    tell yet)."""
    return CheckpointSummary.of(state).max_stderr()


def resume_or_restart(
    plan: RunPlan, state: State | None
) -> tuple[RunPlan, CheckpointSummary] | None:
    """``plan.resume(state)``, or None when there is no state or it cannot continue this run (then a
    warning says why and the run starts over)."""
    if state is None:
        return None
    try:
        resume = plan.resume(state)
        resume[1].max_stderr()  # its sums must load into the estimator
    except MSAInputError as err:
        warnings.warn(
            f"the checkpoint of this run cannot be used ({err}); the run starts over", stacklevel=3
        )
        return None
    return resume


def stored_resume(
    store: RunStore, key: str, plan: RunPlan, seconds: float, recorder: ProgressRecorder
) -> tuple[Checkpoint, tuple[RunPlan, CheckpointSummary] | None]:
    """The store's checkpoint of run ``key`` (saved every ``seconds``, each save noted by
    ``recorder``) and where the run resumes from it (``resume_or_restart``; None: it starts afresh,
    its unusable checkpoint dropped), noted in the progress record."""
    checkpoint = store.checkpoint(key, seconds, on_save=recorder.checkpointed)
    resume = resume_or_restart(plan, checkpoint.load())
    if resume is None:
        store.drop_checkpoint(key)
        recorder.estimating(plan.evaluations)
    else:
        recorder.resumed(resume[1])
    return checkpoint, resume


class ProgressRecorder:
    """Writes a run's progress to the store (throttled) and forwards ``(done, total)`` to a
    callback.

    The record holds ``state``, ``done``/``total`` evaluations, ``resumed_from`` (evaluations a
    checkpoint already held), ``max_stderr`` (as of the last checkpoint; the result's at the end),
    ``eta_seconds``, ``pid``.
    """

    def __init__(
        self,
        store: RunStore,
        fingerprint: str,
        callback: Progress | None,
        request: RunRequest | None = None,
    ):
        self.store, self.fingerprint, self.callback = store, fingerprint, callback
        previous = store.progress(fingerprint) or {}
        self.fields: dict[str, Any] = {
            "state": "running",
            "done": 0,
            "total": None,
            "resumed_from": 0,
            "max_stderr": None,
            "eta_seconds": None,
            "error": None,
            "pid": os.getpid(),
            "started": time.time(),
            "request": request.to_dict() if request is not None else previous.get("request"),
            "submitted": previous.get("submitted", time.time()),
        }
        self._start_done, self._start_at = 0, time.time()
        self._written = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.time()
        done = max(done, int(self.fields["done"] or 0))  # monotone, whatever order blocks report in
        if done > self._start_done:  # the rate since the estimation started: an ETA from block 1
            rate = (done - self._start_done) / max(now - self._start_at, 1e-9)
            self.fields["eta_seconds"] = (total - done) / rate
        self.fields.update(done=done, total=total)
        if now - self._written >= PROGRESS_WRITE_SECONDS or done >= total:
            self.write()
        if self.callback is not None:
            self.callback(done, total)

    def resumed(self, summary: CheckpointSummary) -> None:
        """Note the checkpoint the run starts from."""
        self.fields.update(
            resumed_from=summary.used,
            done=summary.used,
            total=summary.plan.evaluations,
            max_stderr=summary.max_stderr(),
        )
        self.estimating()

    def estimating(self, total: int | None = None) -> None:
        """Note that the game is built and the estimation starts now (the ETA counts from here)."""
        self.fields["total"] = self.fields["total"] or total
        self._start_done, self._start_at = int(self.fields["done"] or 0), time.time()
        self.write()

    def checkpointed(self, state: State) -> None:
        """Note a new checkpoint (its largest standard error)."""
        self.fields["max_stderr"] = max_stderr_of(state)
        self.write()

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record a failure of the work inside (state "failed", with the error) or an interruption
        (state "cancelled": Ctrl-C, SIGTERM, a cancelled job), then let it propagate."""
        try:
            yield
        except Exception as err:
            self.finish("failed", error=str(err) or type(err).__name__)
            raise
        except BaseException:
            self.finish("cancelled", error="interrupted; the run resumes from its last checkpoint")
            raise

    def finish(self, state: str, **fields: Any) -> None:
        self.fields.update(state=state, eta_seconds=None if state != "done" else 0.0, **fields)
        self.write()

    def write(self) -> None:
        """Write the record to the store now."""
        self.store.set_progress(self.fingerprint, **self.fields)
        self._written = time.time()


def execute(
    request: RunRequest | PreparedRun,
    store: RunStore,
    progress: Progress | None = None,
    checkpoint_seconds: float | None = None,
    backend: str | None = None,
    wait_seconds: float | None = None,
) -> ModesResult:
    """The result of ``request``: from the store at once, or computed with checkpoints and stored.

    Concurrent callers of the same request (other threads or processes) wait for one computation.
    A run killed at any point resumes from its last checkpoint to exactly the uninterrupted result;
    a checkpoint that cannot continue this run is dropped with a warning. A request that only raises
    the budget of a stored permutation-type run starts from that run's last checkpoint. Before
    evaluating, ``preflight.check_run`` refuses a budget that cannot finish or a full disk; a result
    that cannot be stored (a full disk) is returned with a warning saying where its work is kept
    (its progress record says "failed").

    Args:
        request: the run, or the run already prepared (``PreparedRun.of``: its model and task
            loaded once, e.g. after the caller took its fingerprint).
        store: where results, checkpoints and progress records live.
        progress: ``progress(done, total)`` gets evaluations done and planned
            (``store.progress(fingerprint)`` has more).
        checkpoint_seconds: seconds of work between checkpoints (default ``$MSA_CHECKPOINT_SECONDS``
            or 5).
        backend: None / ``"local"``, or ``"ray"`` (the workers build the game from its ``ZooGame``
            recipe).
        wait_seconds: how long to wait for another process computing the same run (None: while it
            lives).

    Returns:
        The result; its meta adds the model, its digest, units, output, lesion and device.

    Raises:
        MSAInputError: a request the model does not fit (unknown units or output, a budget too
            small).
    """
    prepared = request if isinstance(request, PreparedRun) else PreparedRun.of(request)
    request, loaded, fingerprint = prepared.request, prepared.loaded, prepared.fingerprint
    result = store.get(fingerprint)
    if result is not None:
        return result
    seconds = checkpoint_seconds if checkpoint_seconds is not None else checkpoint_seconds_default()
    with store.lock(fingerprint, timeout=wait_seconds):
        result = store.get(fingerprint)
        if result is not None:
            return result
        recorder = ProgressRecorder(store, fingerprint, progress, request)  # jobs wrote "queued"
        game = prepared.game()  # on the GPU when there is one
        family = prepared.family
        with recorder.recording():  # a request the game does not fit is recorded as failed
            plan = request.plan(game.n_players)
        check_run(game, plan.budget, store)  # before any record
        with recorder.recording():
            if plan.extendable:
                store.seed_from_base(fingerprint, family, plan.budget)
            checkpoint, resume = stored_resume(store, fingerprint, plan, seconds, recorder)
            wall_start = time.perf_counter()
            # game calls of about a second each, so progress is reported that often (same results)
            batch = (
                progress_batch_size(probe_game(game, 4, repeats=1)) if backend != "ray" else None
            )
            where, played = prepared.on_backend(backend, game)  # Ray workers build their own
            options = Play(batch, progress=recorder, checkpoint=checkpoint)
            result = run_plan(plan, played, where, modes_result, resume, options, wall_start)
        result.meta.update(
            model=request.model,
            model_digest=loaded.digest,
            units=request.units,
            output=request.output,
            lesion=request.lesion,
            device=str(game.device),
        )
        if loaded.task is not None:
            result.meta["task"] = task_meta(loaded.task.task)
        result.meta["versions"] = {**result.meta.get("versions", {}), "torch": torch.__version__}
        finite = result.stderr[np.isfinite(result.stderr)]
        final_stderr = float(finite.max()) if finite.size else None
        try:
            store.put(fingerprint, result, request, family)
        except STORE_WRITE_ERRORS as err:
            store.free_reserve(fingerprint)  # room for the record below and the lock's release
            why = f"finished but could not be stored ({type(err).__name__}: {err})"
            warnings.warn(
                f"run {fingerprint[:12]} {why}; {kept_work(store, fingerprint)}", stacklevel=2
            )
            recorder.finish("failed", error=why, max_stderr=final_stderr)
            return result
        try:
            if plan.extendable:
                store.keep_as_base(fingerprint, family)
            else:
                store.drop_checkpoint(fingerprint)
        except STORE_WRITE_ERRORS as err:  # the result is stored: only its checkpoint is left
            warnings.warn(
                f"run {fingerprint[:12]}: its checkpoint was not filed ({err})", stacklevel=2
            )
        recorder.finish(
            "done", done=result.n_evaluations, total=result.n_evaluations, max_stderr=final_stderr
        )
    return result


STORE_WRITE_ERRORS = (MSAInputError, *WRITE_ERRORS)


def kept_work(store: RunStore, fingerprint: str) -> str:
    """Where the work of a run that could not be stored is kept, and how to get it back (a
    sentence)."""
    summary = store.checkpoint_summary(fingerprint)
    where = (
        f"its last saved checkpoint ({summary.used} of {summary.plan.budget} evaluations) is kept "
        f"in {store.directory}, so the same command resumes from there"
        if summary is not None
        else f"it has no saved checkpoint in {store.directory}, so the same command starts over"
    )
    return (
        "the result is still returned (the CLI writes its --out file); "
        f"{where} once the store has room ({FULL_DISK_ADVICE.format(option='')})"
    )

"""``JobManager``: runs in background worker processes, queued first-in first-out, with progress and
cancel.

Each run executes in its own spawned process, so a crashing model cannot take the caller (the app)
down and the caller's thread stays free. Progress goes through the store, so any process can read
it (``store.progress(fingerprint)``); ``status`` combines it with what this manager knows.
A cancelled run keeps its last checkpoint: submitting it again resumes it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msa_core.checks import check_positive_int
from msa_core.errors import MSAInputError
from msa_core.runs.execute import execute, fingerprint_of
from msa_core.runs.interaction_runs import InteractionRequest, execute_interactions, interaction_key
from msa_core.runs.request import RunRequest
from msa_core.runs.store import RunStore
from msa_core.runs.store.locks import process_alive

STATES = ("queued", "running", "done", "failed", "cancelled")
POLL_SECONDS = 0.1  # how often the scheduler thread reaps finished workers and starts queued runs
CANCEL_GRACE_SECONDS = (
    5.0  # a cancelled worker gets this long to save its checkpoint before it is killed
)


@dataclass(frozen=True)
class JobStatus:
    """Where a run stands: ``state`` is one of "queued", "running", "done", "failed", "cancelled".

    ``done``/``total``: evaluations (``total`` None until known); ``max_stderr``: largest standard
    error of the estimate at its last checkpoint (None until the estimator can tell);
    ``eta_seconds``: None until measurable; ``error``: why a run failed or was cancelled.
    """

    state: str
    done: int = 0
    total: int | None = None
    max_stderr: float | None = None
    eta_seconds: float | None = None
    error: str | None = None
    fingerprint: str = ""
    request: RunRequest | InteractionRequest | None = None
    submitted: float | None = None  # epoch seconds
    # submitted to this manager (it can cancel it); else a run of another process
    here: bool = False


@dataclass
class _Job:
    request: RunRequest | InteractionRequest
    fingerprint: str
    state: str = "queued"
    error: str | None = None
    process: Any = field(default=None, repr=False)  # multiprocessing.Process while running


class JobManager:
    """Runs ``RunRequest``s of ``store`` in at most ``max_workers`` worker processes at once.

    Each run is ``runs.execute`` in a spawned process; results, checkpoints and progress go through
    the store, so any process (another app session, the CLI) sees them.

    Args:
        store: the run store the workers read and write.
        max_workers: runs at once (a positive integer); the rest wait in submission order.
        checkpoint_seconds: seconds of work between checkpoints (default ``$MSA_CHECKPOINT_SECONDS``
            or 5).

    Raises:
        MSAInputError: ``max_workers`` is not a positive integer.

    >>> import tempfile
    >>> manager = JobManager(RunStore(tempfile.mkdtemp()))
    >>> manager.jobs()
    []
    """

    def __init__(
        self, store: RunStore, max_workers: int = 1, checkpoint_seconds: float | None = None
    ):
        check_positive_int(max_workers, "max_workers")
        self.store, self.max_workers, self.checkpoint_seconds = (
            store,
            max_workers,
            checkpoint_seconds,
        )
        self._context = multiprocessing.get_context("spawn")
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[str] = deque()
        self._lock = threading.RLock()
        self._scheduler: threading.Thread | None = None

    def submit(self, request: RunRequest | InteractionRequest) -> str:
        """Queue a run and return at once; nothing starts when its result is stored or it is already
        queued or running.

        Args:
            request: the run, or an interaction run of a stored run's top units.

        Returns:
            Its fingerprint (sha256 hex; an ``InteractionRequest``'s is its ``ix:`` key), the key of
            ``status``, ``cancel`` and the store.

        Raises:
            MSAInputError: a request its model does not fit (checked here, before queueing).
        """
        if isinstance(request, InteractionRequest):
            fingerprint = interaction_key(request, self.store)
        else:
            fingerprint = fingerprint_of(request)
        with self._lock:
            job = self._jobs.get(fingerprint)
            if job is not None and job.state in ("queued", "running"):
                return fingerprint
            self._jobs[fingerprint] = job = _Job(request, fingerprint)
            if fingerprint in self.store:
                job.state = "done"
                return fingerprint
            previous = self.store.progress(fingerprint) or {}
            self.store.set_progress(
                fingerprint,
                state="queued",
                request=request.to_dict(),
                submitted=time.time(),
                done=int(previous.get("done") or 0),
                total=previous.get("total"),
                max_stderr=previous.get("max_stderr"),
                pid=os.getpid(),
            )
            self._queue.append(fingerprint)
            self._schedule()
            if self._scheduler is None or not self._scheduler.is_alive():
                self._scheduler = threading.Thread(target=self._loop, name="msa-jobs", daemon=True)
                self._scheduler.start()
        return fingerprint

    def status(self, fingerprint: str) -> JobStatus:
        """The status of a run submitted here, or of one whose progress another process recorded.

        Args:
            fingerprint: from ``submit`` (or the store's index).

        Returns:
            A ``JobStatus``: state (queued, running, done, failed, cancelled, or None when unknown),
            evaluations done and planned, the largest standard error so far, an ETA, the error.
        """
        with self._lock:
            self._schedule()
            job = self._jobs.get(fingerprint)
            state, error = (job.state, job.error) if job is not None else (None, None)
        record = self.store.progress(fingerprint) or {}
        if state is None:
            state, error = self._state_elsewhere(fingerprint, record)
        if state in ("failed", "cancelled") and error is None:
            error = record.get("error")
        done, total = int(record.get("done") or 0), record.get("total")
        request = job.request if job is not None else _request_of(record)
        return JobStatus(
            state=state,
            done=total if state == "done" and total else done,
            total=total,
            max_stderr=record.get("max_stderr"),
            eta_seconds=record.get("eta_seconds") if state == "running" else None,
            error=error,
            fingerprint=fingerprint,
            request=request,
            submitted=record.get("submitted"),
            here=job is not None,
        )

    def recorded(self, limit: int = 20) -> list[JobStatus]:
        """Statuses of the runs whose progress the store holds (this manager's, other apps' and the
        CLI's), the ``limit`` most recently submitted first."""
        records = []
        for fingerprint in self.store.progress_fingerprints():
            record = self.store.progress(fingerprint) or {}
            records.append((record.get("submitted") or record.get("started") or 0.0, fingerprint))
        return [
            self.status(fingerprint) for _, fingerprint in sorted(records, reverse=True)[:limit]
        ]

    def cancel(self, fingerprint: str) -> None:
        """Stop a queued or running run (a running one keeps its last checkpoint); finished runs are
        left alone.

        Raises:
            MSAInputError: no run with this fingerprint was submitted here.
        """
        with self._lock:
            job = self._jobs.get(fingerprint)
            if job is None:
                raise MSAInputError(f"no job {fingerprint[:12]} was submitted here")
            if job.state == "queued":
                self._queue.remove(fingerprint)
            elif job.state == "running":
                _stop(job.process)
            else:
                return
            job.state, job.error = "cancelled", "cancelled by the user"
            record = self.store.progress(fingerprint) or {}
            self.store.set_progress(
                fingerprint,
                **{**record, "state": "cancelled", "error": job.error, "eta_seconds": None},
            )

    def jobs(self) -> list[JobStatus]:
        """Statuses of every run submitted here, in submission order."""
        with self._lock:
            fingerprints = list(self._jobs)
        return [self.status(fingerprint) for fingerprint in fingerprints]

    def shutdown(self) -> None:
        """Cancel every queued and running run."""
        with self._lock:
            for fingerprint, job in self._jobs.items():
                if job.state in ("queued", "running"):
                    self.cancel(fingerprint)

    # -- scheduling ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._lock:
                self._schedule()
                if not self._queue and not any(
                    job.state == "running" for job in self._jobs.values()
                ):
                    self._scheduler = None
                    return
            threading.Event().wait(POLL_SECONDS)

    def _schedule(self) -> None:
        """Reap finished workers, then start queued runs while fewer than ``max_workers`` run."""
        for job in self._jobs.values():
            if job.state == "running" and not job.process.is_alive():
                job.process.join()
                job.state, job.error = self._outcome(job)
        running = sum(job.state == "running" for job in self._jobs.values())
        while self._queue and running < self.max_workers:
            job = self._jobs[self._queue.popleft()]
            threads = max(1, (os.cpu_count() or 1) // self.max_workers)
            job.process = self._context.Process(
                target=run_worker,
                name=f"msa-run-{job.fingerprint[:12]}",
                daemon=True,
                args=(
                    str(self.store.directory),
                    self.store.size_limit,
                    job.request.to_dict(),
                    job.fingerprint,
                    self.checkpoint_seconds,
                    threads,
                ),
            )
            job.process.start()
            job.state = "running"
            running += 1

    def _outcome(self, job: _Job) -> tuple[str, str | None]:
        if job.fingerprint in self.store:
            return "done", None
        record = self.store.progress(job.fingerprint) or {}
        if job.process.exitcode == 0:
            return "failed", "the worker ended without a result"
        if record.get("state") == "failed" and record.get("pid") == job.process.pid:
            return "failed", record.get("error")
        return "failed", f"the worker process died (exit code {job.process.exitcode})"

    def _state_elsewhere(self, fingerprint: str, record: dict[str, Any]) -> tuple[str, str | None]:
        """State of a run this manager did not start, from the store."""
        if fingerprint in self.store:
            return "done", None
        if not record:
            raise MSAInputError(
                f"no run {fingerprint[:12]} was submitted here or recorded in "
                f"{self.store.directory}"
            )
        if record.get("state") == "running" and not self.store.running(fingerprint):
            return "cancelled", "interrupted; submitting it again resumes from its last checkpoint"
        if record.get("state") == "queued" and not process_alive(record.get("pid")):
            return "cancelled", "its app stopped before it started; submitting it again starts it"
        state = record.get("state")
        return (state if state in STATES else "failed"), record.get("error")


def _request_of(record: dict[str, Any]) -> RunRequest | None:
    try:
        return RunRequest.from_dict(record["request"]) if record.get("request") else None
    except (MSAInputError, TypeError):
        return None


def _stop(process: Any) -> None:
    """Ask a worker to stop (it saves a checkpoint on SIGTERM), kill it if it does not, and reap
    it."""
    process.terminate()
    process.join(CANCEL_GRACE_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_worker(
    directory: str,
    size_limit: int,
    request: dict[str, Any],
    fingerprint: str,
    checkpoint_seconds: float | None,
    threads: int,
) -> None:
    """Worker process body: execute one run; a failure is recorded in the store and exits with code
    1."""
    signal.signal(signal.SIGTERM, _interrupt)
    import torch

    torch.set_num_threads(threads)
    store = RunStore(Path(directory), size_limit)
    try:
        if request.get("kind") == "interactions":
            execute_interactions(
                InteractionRequest.from_dict(request), store, checkpoint_seconds=checkpoint_seconds
            )
        else:
            execute(RunRequest.from_dict(request), store, checkpoint_seconds=checkpoint_seconds)
    except Exception as err:  # the worker boundary: report any failure to the parent via the store
        record = store.progress(fingerprint) or {}
        if record.get("state") != "failed" or record.get("pid") != os.getpid():
            store.set_progress(
                fingerprint,
                state="failed",
                error=str(err) or type(err).__name__,
                pid=os.getpid(),
                done=record.get("done", 0),
                total=record.get("total"),
            )
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(1)

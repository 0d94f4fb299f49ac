"""JobManager with real spawned worker processes: queue, progress through the store, cancel,
failure.
"""

import time

import pytest
from runs_support import small_request

from msa_core.errors import MSAInputError
from msa_core.runs import JobManager, JobStatus, execute


def wait_for_state(
    manager: JobManager,
    fingerprint: str,
    states: tuple[str, ...],
    timeout: float = 120,
    until=lambda status: True,
) -> JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = manager.status(fingerprint)
        if status.state in states and until(status):
            return status
        assert time.monotonic() < deadline, f"timed out waiting for {states}; last status {status}"
        time.sleep(0.05)


def test_jobs_queue_run_report_progress_and_cancel_in_worker_processes(store):
    """Three worker processes one after another (about 5 s each to import torch and load the
    model)."""
    manager = JobManager(store, max_workers=1, checkpoint_seconds=0.05)
    long_run = manager.submit(small_request(n_permutations=4000))
    short_run = manager.submit(small_request(seed=3))
    # 32 players: too many for exact
    failing = manager.submit(small_request(method="exact", n_permutations=None))
    assert manager.status(short_run).state == "queued"  # one worker at a time, first in first out
    assert manager.submit(small_request(seed=3)) == short_run  # already queued: not queued twice
    elsewhere = JobManager(store)  # another app (or a reloaded one) reads the jobs from the store
    listed = {status.fingerprint: status for status in elsewhere.recorded()}
    assert set(listed) == {long_run, short_run, failing} and not any(
        s.here for s in listed.values()
    )
    assert listed[short_run].state == "queued" and listed[short_run].request == small_request(
        seed=3
    )

    # progress is published before the first checkpoint is written: on a loaded machine the gap is
    # long
    running = wait_for_state(
        manager,
        long_run,
        ("running",),
        until=lambda status: status.done > 2 and store.has_checkpoint(long_run),
    )
    assert running.total is not None and running.done < running.total
    assert manager.status(short_run).state == "queued"
    progress = store.progress(long_run)  # what any other process (e.g. a Streamlit rerun) reads
    assert progress["state"] == "running" and progress["done"] > 0
    manager.cancel(long_run)
    cancelled = manager.status(long_run)
    assert cancelled.state == "cancelled" and cancelled.error

    done = wait_for_state(manager, short_run, ("done", "failed"))
    assert done.state == "done", done.error
    assert done.done == done.total > 0 and done.max_stderr is not None and done.max_stderr > 0
    assert store.get(short_run).n_permutations == 20
    failed = wait_for_state(manager, failing, ("failed", "done"))
    assert failed.state == "failed" and "exact" in failed.error and "N <= 20" in failed.error
    assert [status.fingerprint for status in manager.jobs()] == [long_run, short_run, failing]
    # a cancelled run keeps its last checkpoint and resumes later
    assert store.has_checkpoint(long_run)
    listed = {status.fingerprint: status.state for status in elsewhere.recorded()}
    assert listed == {long_run: "cancelled", short_run: "done", failing: "failed"}


def test_a_stored_result_starts_no_worker(store):
    fingerprint = execute(small_request(), store).meta["fingerprint"]
    manager = JobManager(store)
    assert manager.submit(small_request()) == fingerprint
    status = manager.status(fingerprint)
    assert status == JobStatus(
        state="done",
        done=status.total,
        total=status.total,
        max_stderr=status.max_stderr,
        eta_seconds=None,
        error=None,
        fingerprint=fingerprint,
        request=small_request(),
        submitted=status.submitted,
        here=True,
    )
    assert status.total > 0 and manager._scheduler is None


def test_bad_submissions_and_unknown_runs_are_clear_errors(store):
    manager = JobManager(store)
    with pytest.raises(MSAInputError, match="no output 'pixels'"):
        manager.submit(small_request(output="pixels"))
    with pytest.raises(MSAInputError, match="no run 000000000000"):
        manager.status("0" * 64)
    with pytest.raises(MSAInputError, match="no job"):
        manager.cancel("0" * 64)
    with pytest.raises(MSAInputError, match="max_workers"):
        JobManager(store, max_workers=0)

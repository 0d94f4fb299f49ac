"""The store across processes: a CLI run killed with SIGKILL resumes exactly; two processes share
one run.
"""

import signal
import time

import numpy as np
from runs_support import MODEL, small_request, start_cli

from msa_core import shapley_modes
from msa_core.runs import RunStore, fingerprint_of
from msa_core.zoo import load_model

KILL_RUN = small_request(n_permutations=600)  # long enough to be killed after its first checkpoint
RUN_ARGS = ("run", "--model", MODEL, "--output", "correct", "--method", "permutation", "--quiet")


def wait_for(condition, timeout: float, what: str, poll: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


def test_a_killed_cli_run_resumes_from_its_checkpoint_to_the_uninterrupted_result(tmp_path):
    """Two CLI processes (about 5 s each to import torch and load the model) and one reference
    run."""
    cache = tmp_path / "cache"
    args = (
        *RUN_ARGS,
        "--permutations",
        "600",
        "--cache-dir",
        str(cache),
        "--out",
        str(tmp_path / "r.npz"),
    )
    fingerprint = fingerprint_of(KILL_RUN)
    store = RunStore(cache)
    first = start_cli(*args, checkpoint_seconds=0.05)
    try:
        wait_for(
            lambda: store.has_checkpoint(fingerprint) or first.poll() is not None,
            120,
            "a first checkpoint",
        )
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == -signal.SIGKILL, (
        "the run finished before its first checkpoint could be seen"
    )
    assert fingerprint not in store and store.has_checkpoint(fingerprint)

    second = start_cli(*args, checkpoint_seconds=0.05)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "resumed from a checkpoint at" in out
    assert store.progress(fingerprint)["resumed_from"] > 0

    loaded = load_model(MODEL)
    uninterrupted = shapley_modes(
        loaded.game("hidden neurons", "correct"), method="permutation", n_permutations=600
    )
    resumed = store.get(fingerprint)
    for key in ("modes", "stderr", "v_full", "v_empty"):
        assert np.array_equal(getattr(resumed, key), getattr(uninterrupted, key)), key
    assert resumed.n_evaluations == uninterrupted.n_evaluations
    written = np.load(tmp_path / "r.npz", allow_pickle=False)
    assert np.array_equal(written["modes"], uninterrupted.modes)


def test_two_processes_asking_for_the_same_run_do_the_work_once(tmp_path):
    """Two CLI processes at once (about 5 s each to start)."""
    args = (*RUN_ARGS, "--permutations", "200", "--cache-dir", str(tmp_path / "cache"))
    processes = [start_cli(*args) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err for _, err in outputs]
    computed = [out for out, _ in outputs if "computed in" in out]
    served = [out for out, _ in outputs if "found in the store" in out]
    assert len(computed) == 1 and len(served) == 1, outputs
    assert len(RunStore(tmp_path / "cache").list()) == 1

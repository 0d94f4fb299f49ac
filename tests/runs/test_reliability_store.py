"""Stored results are never wrong, never lost, and the CLI fails clearly (issue 23).

Each test names the item of issue 23 it keeps fixed: (1) interaction runs score the parent run's
task, (2) a run interrupted anywhere resumes to exactly the uninterrupted result, (5, 6) a full disk
loses no result and ``delete`` frees space, (7) a bad ``$MSA_CACHE_SIZE_LIMIT`` is refused before
any work, (8) a result of a newer store format is never deleted, (9) a closed stdout still writes
``--out``, (10) ``export`` never overwrites without ``--force``, (17, 19, 20, 21) clear and fast CLI
errors and messages.
"""

import copy
import errno
import io
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import diskcache
import numpy as np
import pytest
from cli_runner import run_cli
from runs_support import MODEL, ROOT, cli_command, small_request, start_cli

from msa_core import ModesResult, UnanimityGame, shapley_modes
from msa_core.cli import interrupt
from msa_core.estimators.checkpoint import State
from msa_core.runs import RunRequest, RunStore, execute, fingerprint_of


class MemoryCheckpoint:
    """A checkpoint kept in memory (a deep copy of each state saved)."""

    every_seconds = 0.0  # save after every block

    def __init__(self) -> None:
        self.state: State | None = None

    def load(self) -> State | None:
        return copy.deepcopy(self.state)

    def save(self, state: State) -> None:
        self.state = copy.deepcopy(state)


class InterruptAt:
    """A tracer that raises ``KeyboardInterrupt`` at the ``line``-th line msa_core executes, as a
    signal handler does between two bytecodes; it counts the lines when ``line`` is None."""

    def __init__(self, line: int | None):
        self.line, self.count = line, 0

    def __call__(self, frame, event, arg):
        if "msa_core" not in frame.f_code.co_filename:
            return None
        if event == "line":
            self.count += 1
            if self.count == self.line:
                raise KeyboardInterrupt(f"line {self.line}")
        return self


def traced_run(game, method: str, checkpoint, tracer: InterruptAt):
    sys.settrace(tracer)
    try:
        return shapley_modes(
            game, method=method, n_permutations=8, seed=5, batch_size=3, checkpoint=checkpoint
        )
    finally:
        sys.settrace(None)


@pytest.mark.parametrize("method", ["permutation", "regression_adjusted"])
def test_2_a_run_interrupted_at_any_line_resumes_to_the_uninterrupted_result_bit_for_bit(method):
    """An interrupt at every 7th line the engine runs (absorbing, counting, saving included), then
    a resume from the checkpoint: the same modes, errors and counts as the run never interrupted."""
    game = UnanimityGame.random(5, 3, 3, seed=1)
    # once untraced first: what runs once per process (compiling or loading a kernel) is not
    # counted, so every later run executes the same lines
    shapley_modes(game, method=method, n_permutations=8, seed=5, batch_size=3)
    count = InterruptAt(None)
    whole = traced_run(game, method, MemoryCheckpoint(), count)
    assert count.count > 500
    for line in range(1, count.count, 7):
        checkpoint = MemoryCheckpoint()
        with pytest.raises(KeyboardInterrupt):
            traced_run(game, method, checkpoint, InterruptAt(line))
        resumed = shapley_modes(
            game, method=method, n_permutations=8, seed=5, batch_size=3, checkpoint=checkpoint
        )
        assert np.array_equal(resumed.modes, whole.modes), line
        assert np.array_equal(resumed.stderr, whole.stderr), line
        assert (resumed.n_evaluations, resumed.n_permutations) == (
            whole.n_evaluations,
            whole.n_permutations,
        ), line


SIGNAL_MODEL = "mlp-digits-h16-none-s0"  # the model of the report


def signal_request(permutations: int) -> RunRequest:
    return RunRequest(model=SIGNAL_MODEL, method="permutation", n_permutations=permutations, seed=5)


def checkpointed(store: RunStore, fingerprint: str) -> bool:
    """Whether the run has saved a checkpoint (its progress record has a standard error)."""
    with warnings.catch_warnings():  # the store's databases may not exist yet
        warnings.simplefilter("ignore")
        return (store.progress(fingerprint) or {}).get("max_stderr") is not None


def interrupted_cli_run(cache: Path, permutations: int, how: signal.Signals, delay: float) -> int:
    """Start ``run`` (a checkpoint every 0.05 s), send ``how`` ``delay`` s after its first
    checkpoint; the exit code (130 when the signal stopped it, 0 when it finished first)."""
    fingerprint = fingerprint_of(signal_request(permutations))
    store = RunStore(cache, readonly=True)
    process = start_cli(
        "run",
        "--model",
        SIGNAL_MODEL,
        "--method",
        "permutation",
        "--permutations",
        str(permutations),
        "--seed",
        "5",
        "--quiet",
        "--cache-dir",
        str(cache),
        checkpoint_seconds=0.05,
    )
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and not checkpointed(store, fingerprint):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(delay)
        process.send_signal(how)
        process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    return process.returncode


def assert_resumes_to_the_uninterrupted_run(
    tmp_path: Path, permutations: int, interrupts: list[tuple[signal.Signals, float]]
) -> None:
    """Interrupt a CLI run with each signal in turn (each resuming the last), finish it, and
    compare with a run never interrupted, bit for bit."""
    request = signal_request(permutations)
    whole = execute(request, RunStore(tmp_path / "whole"))
    cache = tmp_path / "interrupted"
    codes = [interrupted_cli_run(cache, permutations, how, delay) for how, delay in interrupts]
    assert 130 in codes
    resumed = execute(request, RunStore(cache))
    assert resumed.meta["evaluations_discarded"] >= 0
    assert np.array_equal(resumed.modes, whole.modes) and np.array_equal(
        resumed.stderr, whole.stderr
    )
    assert (resumed.n_evaluations, resumed.n_permutations) == (
        whole.n_evaluations,
        whole.n_permutations,
    )
    assert abs(resumed.efficiency_gap()) == pytest.approx(abs(whole.efficiency_gap()), abs=1e-12)


@pytest.mark.slow
def test_2_a_cli_run_stopped_by_real_signals_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGINT soon after the first checkpoint, then SIGTERM later in the resumed run (two CLI
    processes, about 5 s each to import torch)."""
    assert_resumes_to_the_uninterrupted_run(
        tmp_path, 600, [(signal.SIGINT, 0.0), (signal.SIGTERM, 0.37)]
    )


@pytest.mark.slow
@pytest.mark.parametrize("delays", [(0.0, 0.11, 0.23), (0.53, 0.71, 1.3), (0.05, 1.9, 0.29)])
def test_2_many_interrupt_times_all_resume_to_the_uninterrupted_result(tmp_path, delays):
    """The issue's case: 10,000 permutations interrupted at many times (a minute or two each)."""
    interrupts = [(signal.SIGINT if i % 2 else signal.SIGTERM, d) for i, d in enumerate(delays)]
    assert_resumes_to_the_uninterrupted_run(tmp_path, 10_000, interrupts)


def test_2_runs_stopped_by_a_real_signal_at_many_times_resume_to_the_uninterrupted_result(
    tmp_path,
):
    """SIGTERM (handled as the CLI handles it) at 8 times through a run in this process, raised
    by a timer, each followed by a resume: every result equals the uninterrupted one, bit for bit.
    The times are fractions of a warm uninterrupted run's own duration, so they fall inside the
    run on a fast machine and a slow one alike.
    """
    request = signal_request(300)
    whole = execute(request, RunStore(tmp_path / "whole"), checkpoint_seconds=0.01)
    started = time.perf_counter()  # a second, warm run (models and kernels loaded) for its time
    execute(request, RunStore(tmp_path / "timed"), checkpoint_seconds=0.01)
    duration = time.perf_counter() - started
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, interrupt),
        signal.SIGALRM: signal.signal(
            signal.SIGALRM, lambda *_: signal.raise_signal(signal.SIGTERM)
        ),
    }
    stopped = 0
    try:
        for trial in range(8):
            store = RunStore(tmp_path / f"trial{trial}")
            signal.setitimer(signal.ITIMER_REAL, duration * (0.05 + 0.1 * trial))
            try:
                execute(request, store, checkpoint_seconds=0.01)
            except KeyboardInterrupt:
                stopped += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            resumed = execute(request, store, checkpoint_seconds=0.01)
            assert np.array_equal(resumed.modes, whole.modes), trial
            assert np.array_equal(resumed.stderr, whole.stderr), trial
            assert resumed.n_permutations == whole.n_permutations, trial
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert stopped >= 4


# -- (1) interaction runs score the parent's task --------------------------------------------------
def test_1_an_interaction_run_of_a_task_run_scores_that_task(tmp_path, store, monkeypatch):
    """A task run of a tiny Llama checkpoint, then its interactions: the same task (values and
    shape of the parent's task outputs), not the checkpoint's default output. Each run parses and
    tokenises its task once (``runs.prepared``: fingerprint and game from one load)."""
    from test_tasks import ROWS, tiny_llama, word_tokenizer

    import msa_core.tasks
    from msa_core.runs.interaction_runs import InteractionRequest, execute_interactions
    from msa_core.tasks import task_from_rows

    parses = []
    load_task = msa_core.tasks.load_task
    monkeypatch.setattr(
        msa_core.tasks, "load_task", lambda task: parses.append(task) or load_task(task)
    )

    folder = tmp_path / "tiny-llama"
    tiny_llama().save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    task = tmp_path / "task.jsonl"
    task.write_text(task_from_rows(ROWS).to_jsonl())
    run = RunRequest(model=f"hf:{folder}", units="attention blocks", task=str(task), method="exact")
    parent = execute(run, store)
    assert parent.meta["request"]["output"] == "task_logprob"
    assert len(parses) == 1
    pairs = execute_interactions(
        InteractionRequest(parent=parent.meta["fingerprint"], top=2, method="exact"), store
    )
    assert len(parses) == 2
    assert pairs.output_shape == parent.output_shape == (len(ROWS),)
    np.testing.assert_array_equal(pairs.v_full, parent.v_full)
    np.testing.assert_array_equal(pairs.v_empty, parent.v_empty)


# -- (8) a newer store format is never deleted ----------------------------------------------------
def newer(result, fmt: int = 99):
    """``result`` as a newer msa_core would store it: the same arrays, a larger store format."""
    result.meta["store_format"] = fmt
    buffer = io.BytesIO()
    result.save(buffer)
    return buffer.getvalue()


def test_8_a_result_of_a_newer_store_format_is_refused_by_name_and_kept(capsys, store):
    from msa_core.runs.formats import NewerFormat
    from msa_core.runs.interaction_runs import InteractionRequest, execute_interactions
    from msa_core.runs.repair import repair

    result = execute(small_request(), store)
    fingerprint = result.meta["fingerprint"]
    blob = newer(result)
    store.results.set(fingerprint, blob)
    request = InteractionRequest(parent=fingerprint, top=3, n_samples=4)
    with pytest.raises(NewerFormat, match="newer msa_core .store format 99; this version reads 1"):
        execute_interactions(request, store)
    with pytest.raises(NewerFormat):
        execute(small_request(), store)
    code, _, err = run_cli(
        capsys, "interactions", fingerprint[:10], "--cache-dir", str(store.directory)
    )
    assert code == 2 and "store format 99" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "show", fingerprint[:10], "--cache-dir", str(store.directory))
    assert code == 2 and "store format 99" in err
    assert [entry["fingerprint"] for entry in store.list()] == [fingerprint]
    repair(store.directory)
    assert RunStore(store.directory).results.get(fingerprint) == blob


# -- (5, 6) a full disk near the end of a run ------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A real 12 MB tmpfs (needs the right to mount: root in CI); unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> None:
    """Fill the disk to the last byte."""
    with open(disk / "filler", "ab", buffering=0) as handle:  # unbuffered: close never fails
        try:
            while True:
                handle.write(b"\0" * (1 << 16))
        except OSError:
            pass
    os.sync()


def orphans(store: RunStore) -> list[Path]:
    """Value files of the store that no row names."""
    from msa_core.runs.rows import RowReader, value_files

    orphaned = []
    for name in ("results", "work"):
        rows = RowReader(store.directory / name)
        named = {store.directory / name / row.filename for row in rows.rows() if row.filename}
        orphaned += [path for path in value_files(store.directory / name) if path not in named]
    return orphaned


def test_freeing_space_with_the_work_log_unread_keeps_every_checkpoint(tmp_path, monkeypatch):
    """Where the work database can be read only without its write-ahead log (a full disk), a live
    run's lock or fresh heartbeat may be in the log alone, so locks are unknown: ``free_files``
    frees the finished results' files and leaves every checkpoint file in place."""
    from msa_core.runs.rows import RowReader, value_files
    from msa_core.runs.store import free_files

    cache = tmp_path / "cache"
    execute(signal_request(200), RunStore(cache))  # a stored result and its base checkpoint

    def interrupt_half_way(done: int, total: int) -> None:
        if done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # a run's own checkpoint in work/
        execute(signal_request(400), RunStore(cache), interrupt_half_way, checkpoint_seconds=0)
    results, work = (sorted(value_files(cache / name)) for name in ("results", "work"))
    assert results and work
    result_bytes = sum(path.stat().st_size for path in results)
    read = RowReader._sql

    def work_log_unread(reader, query, args=()):
        reader.log_unread = reader.log_unread or reader.folder.name == "work"
        return read(reader, query, args)

    monkeypatch.setattr(RowReader, "_sql", work_log_unread)
    assert free_files(cache) == result_bytes > 0
    assert not any(value_files(cache / "results")) and sorted(value_files(cache / "work")) == work


def test_5_6_a_disk_filling_up_near_the_end_loses_no_result_and_delete_frees_it(
    capsys, small_disk, tmp_path, monkeypatch
):
    """A CLI run whose disk fills up half way: its --out file is written, the message says where
    the work is kept and how to resume; no lock and no orphan file are left; `delete --all` frees
    the space, and the rerun resumes to the uninterrupted result."""
    from msa_core import cli_support
    from msa_core.runs.store import checkpoints as store_module

    cache = small_disk / "cache"
    out = tmp_path / "r.npz"
    args = ["run", "--model", SIGNAL_MODEL, "--method", "permutation", "--permutations", "400"]
    args += ["--seed", "5", "--cache-dir", str(cache), "--quiet"]
    execute(signal_request(200), RunStore(cache))  # a stored run and its base checkpoint
    update = cli_support.ProgressBar.update

    def filling(bar, done: int, total: int) -> None:
        if done > total // 2 and not (small_disk / "filler").exists():
            fill(small_disk)
        update(bar, done, total)

    monkeypatch.setattr(cli_support.ProgressBar, "update", filling)
    monkeypatch.setattr(store_module, "SAVE_RETRY_SECONDS", 0.0)  # failed saves: no waiting
    monkeypatch.setenv("MSA_CHECKPOINT_SECONDS", "0.01")
    code, stdout, err = run_cli(capsys, *args, "--out", str(out))
    assert code == 0, err
    assert "finished but could not be stored" in err and "resumes from there" in err
    assert "not stored in" in stdout and f"written to {out}" in stdout
    whole = execute(signal_request(400), RunStore(tmp_path / "whole"))
    written = ModesResult.load(out)
    assert np.array_equal(written.modes, whole.modes)
    store = RunStore(cache, readonly=True)
    fingerprint = fingerprint_of(signal_request(400))
    assert store.holder(fingerprint) is None and orphans(store) == []
    assert store.progress(fingerprint)["state"] == "failed"
    (small_disk / "filler").unlink()
    fill(small_disk)  # full again: delete --all must still free the space it promises
    before = shutil.disk_usage(small_disk).used
    code, stdout, err = run_cli(capsys, "delete", "--all", "--cache-dir", str(cache))
    assert code == 0, err
    assert shutil.disk_usage(small_disk).used < before - 400_000, stdout
    assert not any(RunStore(cache, readonly=True).rows["results"].keys())  # base checkpoints too
    (small_disk / "filler").unlink()
    monkeypatch.setattr(cli_support.ProgressBar, "update", update)
    code, stdout, err = run_cli(capsys, *args, "--out", str(out), "--force")
    assert code == 0 and "stored in" in stdout, err
    assert np.array_equal(ModesResult.load(out).modes, whole.modes)


def test_5_a_failed_store_write_leaves_no_value_file_behind(store, monkeypatch):
    """Simulated ENOSPC half way through a value file (runs without a tmpfs): the file goes."""

    def half_then_full(self, full_path, iterator, mode, encoding=None):
        os.makedirs(os.path.dirname(full_path), exist_ok=True)
        with open(full_path, mode) as handle:
            handle.write(next(iter(iterator))[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(diskcache.Disk, "_write", half_then_full)
    with pytest.raises(OSError, match="No space"):
        store.results.set("f" * 64, b"x" * 100_000)
    assert orphans(store) == [] and "f" * 64 not in store.results


def test_5_a_full_disk_or_a_read_only_store_is_named_as_such_not_as_damage(tmp_path):
    """(19) too: the CLI's message for each failure of the store."""
    from msa_core.runs.store import store_problem

    folder = tmp_path / "cache"
    full = store_problem(sqlite3.OperationalError("database or disk is full"), folder)
    assert "is full" in full and "delete --all" in full and "damaged" not in full
    readonly = store_problem(
        sqlite3.OperationalError("attempt to write a readonly database"), folder
    )
    assert "read-only" in readonly and "repair" not in readonly
    damaged = store_problem(sqlite3.DatabaseError("file is not a database"), folder)
    assert "damaged" in damaged and "store repair" in damaged


# -- (7) the store's size limit --------------------------------------------------------------------
@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if a model's weights or data load."""
    import msa_core.zoo as zoo

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    zoo.load_model.cache_clear()
    monkeypatch.setattr(zoo, "load_weights", refuse)
    yield
    zoo.load_model.cache_clear()


@pytest.mark.parametrize("limit", ["1000", "0", "-5", "abc", "1e9", ""])
def test_7_a_bad_cache_size_limit_is_refused_before_any_work(
    capsys, tmp_path, monkeypatch, no_model_loads, limit
):
    monkeypatch.setenv("MSA_CACHE_SIZE_LIMIT", limit)
    cache = tmp_path / "cache"
    code, out, err = run_cli(capsys, "run", "--model", SIGNAL_MODEL, "--cache-dir", str(cache))
    assert code == 2 and "Traceback" not in err
    assert "MSA_CACHE_SIZE_LIMIT must be a whole number of bytes" in err
    assert "at least 67108864 (64 MiB)" in err and repr(limit) in err
    assert not cache.exists() and out == ""


def test_7_a_result_larger_than_the_store_keeps_is_returned_not_stored_and_evicted(tmp_path):
    store = RunStore(tmp_path / "cache", size_limit=10_000)
    with pytest.warns(UserWarning, match="more than the store keeps"):
        result = execute(small_request(), store)
    assert store.list() == [] and result.n_permutations == 20
    assert fingerprint_of(small_request()) not in store


# -- (9) a closed stdout ---------------------------------------------------------------------------
def test_9_a_closed_stdout_still_writes_out_and_exits_cleanly(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "r.npz"
    execute(signal_request(50), RunStore(cache))
    command = " ".join(cli_command("run", "--model", SIGNAL_MODEL, "--method", "permutation"))
    command += f" --permutations 50 --seed 5 --cache-dir {cache} --out {out} --quiet | head -c 1"
    done = subprocess.run(
        ["bash", "-c", command + "; echo; echo ${PIPESTATUS[0]}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.splitlines()[-1] == "0", done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert ModesResult.load(out).n_permutations == 50


# -- (10) export never overwrites without --force --------------------------------------------------
def test_10_export_refuses_an_existing_file_or_symlink_unless_forced(capsys, store, tmp_path):
    fingerprint = execute(small_request(), store).meta["fingerprint"]
    cache = str(store.directory)
    existing, target, link = tmp_path / "r.csv", tmp_path / "target.txt", tmp_path / "link.csv"
    existing.write_text("mine")
    target.write_text("precious")
    link.symlink_to(target)
    for path in (existing, link):
        code, _, err = run_cli(
            capsys, "export", fingerprint[:8], "--out", str(path), "--cache-dir", cache
        )
        assert code == 2 and "already exists" in err and "--force" in err
        code, _, err = run_cli(
            capsys, "run", "--model", MODEL, "--out", str(path), "--cache-dir", cache
        )
        assert code == 2 and "already exists" in err
    assert existing.read_text() == "mine" and target.read_text() == "precious"
    for path in (existing, link):
        args = ("export", fingerprint[:8], "--out", str(path), "--cache-dir", cache, "--force")
        assert run_cli(capsys, *args)[0] == 0
        assert path.read_text().startswith("unit,") and not path.is_symlink()
    assert target.read_text() == "precious"  # the link was replaced, never written through
    assert sorted(p.name for p in tmp_path.iterdir() if ".partial" in p.name) == []


def test_10_the_interactions_out_file_is_never_overwritten_without_force(capsys, store, tmp_path):
    from msa_core.runs.interaction_runs import InteractionRequest, execute_interactions

    fingerprint = execute(small_request(), store).meta["fingerprint"]
    key = execute_interactions(InteractionRequest(parent=fingerprint, top=3, n_samples=4), store)
    target, link = tmp_path / "target.txt", tmp_path / "pairs.csv"
    target.write_text("precious")
    link.symlink_to(target)
    args = ("interactions", key.meta["key"][:9], "--cache-dir", str(store.directory))
    code, _, err = run_cli(capsys, *args, "--out", str(link))
    assert code == 2 and "already exists" in err and target.read_text() == "precious"
    assert run_cli(capsys, *args, "--out", str(link), "--force")[0] == 0
    assert link.read_text().startswith("unit_a,") and target.read_text() == "precious"


# -- (17, 19, 20, 21) clear and fast CLI errors and messages ---------------------------------------
def test_17_a_bad_ray_address_is_a_clear_error(capsys, tmp_path, monkeypatch):
    code, _, err = run_cli(
        capsys, "run", "--model", MODEL, "--backend", "ray", "--address", "x", "--cache-dir", "c"
    )
    assert code == 2 and "expected a Ray cluster address" in err and "Traceback" not in err
    from msa_core.backends.ray_pool import connect
    from msa_core.errors import MSAInputError

    def init(**kwargs):
        raise ValueError("Invalid address format: y:1")

    fake_ray = types.SimpleNamespace(is_initialized=lambda: False, init=init)
    with pytest.raises(MSAInputError, match="'y:1' is not a Ray cluster address"):
        connect(fake_ray, "y:1")


@pytest.fixture
def read_only_cache(tmp_path):
    """A store holding one run, made read-only: a read-only tmpfs for root (who ignores
    permissions), else permissions."""
    source, cache = tmp_path / "source", tmp_path / "ro"
    execute(small_request(), RunStore(source))
    root = os.geteuid() == 0
    if root:  # a copy on a tmpfs nothing holds open, then remounted read-only
        cache.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(cache)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip("root cannot mount a tmpfs here")
        shutil.copytree(source, cache, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(cache)], check=True)
    else:
        shutil.copytree(source, cache)
        for path in [cache, *cache.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
    yield cache
    if root:
        subprocess.run(["umount", "-l", str(cache)], check=False)
    else:
        for path in [cache, *cache.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def test_19_a_read_only_store_is_called_read_only_not_damaged(capsys, read_only_cache):
    code, _, err = run_cli(
        capsys, "run", "--model", MODEL, "--output", "correct", "--cache-dir", str(read_only_cache)
    )
    assert code == 2 and "is read-only for this user" in err, err
    assert "damaged" not in err and "repair" not in err
    code, out, _ = run_cli(capsys, "list", "--cache-dir", str(read_only_cache))
    assert code == 0 and "1 runs in" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--model", MODEL, "--units", "atoms"], "has no granularity 'atoms'"),
        (["--model", MODEL, "--output", "smell"], "has no output 'smell'"),
    ],
)
def test_20_unknown_model_units_or_output_are_refused_before_any_model_loads(
    capsys, tmp_path, no_model_loads, args, message
):
    code, _, err = run_cli(capsys, "run", *args, "--cache-dir", str(tmp_path / "c"))
    assert code == 2 and message in err and ("allowed" in err or "bundled" in err)


def test_21_a_fresh_one_unit_run_says_computed_and_a_repeat_found(capsys, tmp_path):
    args = ("run", "--model", "gan-digits-s0", "--units", "channels of out", "--quiet")
    args += ("--cache-dir", str(tmp_path / "c"))
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and "1 units" in out, err
    assert "computed in" in out and "found in the store" not in out
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "found in the store (computed earlier)" in out


def test_5_a_killed_runs_disk_reserve_is_removed_by_the_next_lock(store):
    """A run holds a 1 MiB reserve while locked; one left by a killed process goes at the next
    lock, the live one stays until its lock is released."""
    (store.directory / ".reserve-deadbeef").write_bytes(b"\0" * 10)
    with store.lock("a" * 64):
        reserves = [path.name for path in store.directory.glob(".reserve-*")]
        assert len(reserves) == 1 and reserves[0] != ".reserve-deadbeef"
        assert (store.directory / reserves[0]).stat().st_size == 1 << 20
    assert list(store.directory.glob(".reserve-*")) == []

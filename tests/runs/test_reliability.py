"""Attacks and faults against scratch run stores, checkpoint folders and the dashboard's settings
(issue 16).

Each test names the case of the issue it keeps fixed: (1) no file outside the store is touched, (2)
no checkpoint code is run, (3) the server listens on localhost and a shared deployment is
restricted, (4) one bad entry loses one entry and a damaged store can be rebuilt, (5) locks
heartbeat, go stale and are released on SIGTERM, (6) a full disk neither kills a run nor blocks
reading, (7) clear errors before any expensive work.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import diskcache
import numpy as np
import pytest
import tomllib
import torch
from cli_runner import run_cli
from runs_support import MODEL, ROOT, small_request, start_cli

import msa_core.memory
from msa_core import Game, ModelGame, ModesResult, shapley_modes
from msa_core.deployment import deployment
from msa_core.errors import MSAInputError
from msa_core.runs import RunRequest, RunStore, execute, fingerprint_of
from msa_core.runs.store import checkpoints, locks, space
from msa_core.units import Neurons
from msa_core.zoo import get_card


def fake_result(seed: int) -> ModesResult:
    """A result of 8 players x 1,000 outputs (random: about 130 kB, so diskcache keeps it in a
    file)."""
    modes = np.random.default_rng(seed).normal(size=(8, 1000))
    return ModesResult(
        modes,
        np.abs(modes),
        modes.sum(0),
        np.zeros(1000),
        100,
        3,
        [f"u{i}" for i in range(8)],
        meta={"method": "permutation"},
    )


def stored(store: RunStore, seed: int) -> str:
    """Put a fake result in the store as run ``sha256(seed)``; returns its fingerprint."""
    fingerprint = hashlib.sha256(str(seed).encode()).hexdigest()
    store.put(fingerprint, fake_result(seed), small_request(seed=seed))
    return fingerprint


def insert_row(folder: Path, key: str, filename: str | None, mode: int = 2, value=None) -> None:
    """Write a crafted row straight into a diskcache database, as an attacker with write access
    would."""
    now = time.time()
    with sqlite3.connect(folder / "cache.db") as db:
        db.execute(
            "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, tag, "
            "size, mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, NULL, 0, ?, ?, ?)",
            (key, now, now, mode, filename, value),
        )


def value_file(store: RunStore, key: str) -> Path:
    """The file diskcache keeps ``results[key]`` in."""
    ((filename,),) = store.results._sql(
        "SELECT filename FROM Cache WHERE key = ?", (key,)
    ).fetchall()
    return store.directory / "results" / filename


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def close(store: RunStore) -> None:
    store.results.close()
    store.work.close()


# -- (1) no file outside the store is read, written or deleted
# ----------------------------------------------
@pytest.mark.parametrize("name", ["absolute", "dot-dot"])
def test_rows_naming_files_outside_the_store_never_touch_them(capsys, store, tmp_path, name):
    victim = tmp_path / "victim.json"
    victim.write_text(
        json.dumps({"fingerprint": "a" * 64})
    )  # readable as an index entry, as an attacker would
    filename = str(victim) if name == "absolute" else "../../victim.json"
    kept = stored(store, 1)
    insert_row(store.directory / "work", "index:" + "a" * 64, filename)
    insert_row(store.directory / "results", "b" * 64, filename)
    cache = str(store.directory)
    code, out, err = run_cli(capsys, "list", "--cache-dir", cache)
    assert code == 0 and kept[:12] in out and "a" * 12 not in out
    assert "not one of the store's own files" in err
    assert run_cli(capsys, "show", "b" * 12, "--cache-dir", cache)[0] == 2
    assert (
        store.get("b" * 64) is None
    )  # the writable store drops the row, and refuses to delete the file
    code, out, err = run_cli(capsys, "delete", "--all", "--cache-dir", cache)
    assert code == 0 and f"deleted run {kept[:12]}" in out
    assert victim.read_text() == json.dumps({"fingerprint": "a" * 64})


def test_only_the_folders_own_value_files_pass(tmp_path):
    from msa_core.runs.rows import safe_file

    folder = tmp_path / "results"
    (folder / "ab" / "cd").mkdir(parents=True)
    good = "ab/cd/" + "0" * 28 + ".val"
    (folder / "ab" / "cd" / ("1" * 28 + ".val")).symlink_to(tmp_path / "elsewhere")
    assert safe_file(folder, good) == folder / good
    for bad in (
        "/etc/passwd",
        "../" + good,
        "ab/cd/../../x.val",
        "ab/cd/" + "1" * 28 + ".val",
        None,
        7,
        "AB/cd/x.val",
    ):
        assert safe_file(folder, bad) is None, bad


# -- (2) checkpoint loading never runs code; every loading failure names its file
# ----------------------------
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny Llama saved as config.json + model.safetensors (transformers' own classes, no code of
    its own)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-llama"
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture
def checkpoint(tiny_checkpoint, tmp_path) -> Path:
    """A fresh copy of the tiny checkpoint for one test to damage."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "tiny-llama"))


def load(folder: Path):
    from msa_core.zoo.hf import load_checkpoint

    return load_checkpoint(folder)


def test_a_checkpoint_that_names_its_own_code_is_refused_without_running_it(checkpoint, tmp_path):
    marker = tmp_path / "code-ran"
    (checkpoint / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((checkpoint / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig"}
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        MSAInputError, match=r"config.json names code in the folder to run \(auto_map"
    ):
        load(checkpoint)
    assert not marker.exists()


def test_a_tokenizer_that_names_its_own_code_is_refused(checkpoint):
    (checkpoint / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}})
    )
    with pytest.raises(
        MSAInputError, match="tokenizer_config.json names code in the folder to run"
    ):
        load(checkpoint)


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            "truncated weights",
            r"model.safetensors is truncated: its tensors need [\d,]+ bytes but the file has",
        ),
        ("garbage weights", r"model.safetensors is not a readable safetensors file"),
        ("garbled config", r"config.json is not readable JSON"),
        ("unknown architecture", r"cannot use .*config.json: "),
        ("garbled tokenizer", r"cannot load the tokenizer of .* \(tokenizer.json\)"),
    ],
)
def test_every_loading_failure_is_an_input_error_naming_the_file(checkpoint, damage, message):
    weights, config = checkpoint / "model.safetensors", checkpoint / "config.json"
    if damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "garbage weights":
        weights.write_bytes(b"\xff" * 64)
    elif damage == "garbled config":
        config.write_text("{not json")
    elif damage == "unknown architecture":
        config.write_text(
            json.dumps({**json.loads(config.read_text()), "model_type": "no-such-model"})
        )
    else:
        (checkpoint / "tokenizer.json").write_text("{not json")
    with pytest.raises(MSAInputError, match=message):
        load(checkpoint)


def test_damaged_bundled_weights_are_an_input_error_naming_the_file(tmp_path, monkeypatch):
    import msa_core.zoo.weights as weights

    truncated = tmp_path / "mlp.safetensors"
    truncated.write_bytes(weights.weights_path(MODEL).read_bytes()[:-10])
    monkeypatch.setattr(weights, "weights_path", lambda name: truncated)
    with pytest.raises(MSAInputError, match="mlp.safetensors is truncated"):
        weights.load_weights(get_card(MODEL).build(), MODEL)


# -- (3) the dashboard listens on localhost; a shared deployment is restricted
# -------------------------------
def test_the_dashboard_listens_on_localhost_by_default():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost"


def test_a_shared_deployment_turns_off_paths_and_deletion_and_caps_budgets_and_models():
    local, shared = deployment({}), deployment({"MSA_DEPLOYMENT": "shared"})
    assert local.allows_local_paths and local.allows_deletion and local.max_run_evaluations is None
    assert not shared.allows_local_paths and not shared.allows_deletion
    assert shared.max_run_evaluations == 200_000 and shared.model_cache_entries == 4
    shared.check_budget(200_000)
    with pytest.raises(
        MSAInputError, match="at most 200,000 evaluations per run; this one asks for 200,001"
    ):
        shared.check_budget(200_001)
    capped = deployment(
        {
            "MSA_DEPLOYMENT": "shared",
            "MSA_MAX_RUN_EVALUATIONS": "10",
            "MSA_MODEL_CACHE_ENTRIES": "1",
        }
    )
    assert (capped.max_run_evaluations, capped.model_cache_entries) == (10, 1)
    with pytest.raises(
        MSAInputError, match="MSA_DEPLOYMENT='public' is unknown; allowed: local, shared"
    ):
        deployment({"MSA_DEPLOYMENT": "public"})
    with pytest.raises(
        MSAInputError, match="MSA_MAX_RUN_EVALUATIONS must be a positive whole number"
    ):
        deployment({"MSA_DEPLOYMENT": "shared", "MSA_MAX_RUN_EVALUATIONS": "-1"})


def test_the_run_page_of_a_shared_deployment_offers_no_path_and_no_delete(
    open_page, cache_dir, monkeypatch
):
    monkeypatch.setenv("MSA_DEPLOYMENT", "shared")
    stored(RunStore(cache_dir), 1)
    app = open_page("pages/run.py")
    assert "Local Hugging Face checkpoint…" not in app.selectbox(key="model").options
    assert [button.label for button in app.button if button.label == "Delete"] == []
    monkeypatch.setenv("MSA_DEPLOYMENT", "local")
    app = open_page("pages/run.py")
    assert "Local Hugging Face checkpoint…" in app.selectbox(key="model").options
    assert [button.label for button in app.button if button.label == "Delete"] == ["Delete"]


# -- (4) one bad entry loses one entry; a damaged store says how to rebuild it, and is rebuilt
# ---------------
def test_a_pickled_key_or_value_loses_only_that_entry(capsys, store):
    kept = stored(store, 1)
    with diskcache.Cache(store.directory / "work") as foreign:  # diskcache's default disk pickles
        foreign.set(("a", "tuple", "key"), "x")
        foreign.set("index:" + "c" * 64, {"a": "dict"})
    cache = str(store.directory)
    for args in (
        ["list"],
        ["show", kept[:8]],
        ["export", kept[:8], "--out", str(store.directory.parent / "r.csv")],
    ):
        code, out, err = run_cli(capsys, *args, "--cache-dir", cache)
        assert code == 0, err
        assert "warning:" in err and "work/cache.db" in err and "pickled" in err
    assert [entry["fingerprint"] for entry in store.list()] == [kept]
    assert run_cli(capsys, "delete", "--all", "--cache-dir", cache)[0] == 0
    assert store.list() == []


def test_a_malformed_index_entry_is_listed_from_its_result(store):
    fingerprint = stored(store, 1)
    store.work.set(
        f"index:{fingerprint}", json.dumps({"fingerprint": fingerprint, "request": "oops"})
    )
    with pytest.warns(UserWarning, match=f"index entry {fingerprint[:12]} .* cannot be read"):
        entries = store.list()
    assert [(entry["fingerprint"], entry["request"]["seed"]) for entry in entries] == [
        (fingerprint, 1)
    ]


def test_a_garbled_database_names_the_repair_which_rebuilds_the_store_from_the_result_files(
    capsys, store
):
    fingerprints = [stored(store, seed) for seed in (1, 2)]
    expected = store.get(fingerprints[0])
    close(store)
    for name in ("results", "work"):
        (store.directory / name / "cache.db").write_bytes(b"garbage " * 512)
    cache = str(store.directory)
    for args in (
        ["list"],
        ["show", fingerprints[0][:8]],
        [
            "run",
            "--model",
            MODEL,
            "--output",
            "correct",
            "--method",
            "permutation",
            "--permutations",
            "2",
        ],
    ):
        code, out, err = run_cli(capsys, *args, "--cache-dir", cache)
        assert code == 2 and "is damaged" in err and f"store repair --cache-dir {cache}" in err, (
            args,
            err,
        )
    code, out, err = run_cli(capsys, "store", "check", "--cache-dir", cache)
    assert (
        code == 1 and "is damaged" in out and out.count("is in ") == 2
    )  # the two result files were found
    code, out, err = run_cli(capsys, "store", "repair", "--cache-dir", cache)
    assert code == 0 and "repaired" in out, err
    assert list(store.directory.glob("damaged-*/results/cache.db"))
    repaired = RunStore(store.directory, readonly=True)
    assert sorted(entry["fingerprint"] for entry in repaired.list()) == fingerprints
    assert np.array_equal(repaired.get(fingerprints[0]).modes, expected.modes)
    assert run_cli(capsys, "store", "check", "--cache-dir", cache)[:2] == (
        0,
        f"0 problems in {cache}: the store is intact\n",
    )
    assert (
        run_cli(capsys, "store", "repair", "--cache-dir", cache)[1]
        == f"nothing to repair in {cache}\n"
    )


def test_a_lost_index_hides_no_run_and_is_rebuilt(capsys, store):
    fingerprints = [stored(store, seed) for seed in (1, 2)]
    close(store)
    for path in (store.directory / "work").glob("cache.db*"):
        path.unlink()
    cache = str(store.directory)
    code, out, err = run_cli(capsys, "list", "--cache-dir", cache)
    assert code == 0 and all(fingerprint[:12] in out for fingerprint in fingerprints)
    code, out, _ = run_cli(capsys, "store", "check", "--cache-dir", cache)
    assert code == 1 and out.count("has no index entry") == 2
    assert run_cli(capsys, "store", "repair", "--cache-dir", cache)[0] == 0
    assert run_cli(capsys, "store", "check", "--cache-dir", cache)[0] == 0
    assert len(RunStore(store.directory).list()) == 2


def test_a_deleted_result_file_is_reported_with_its_reason(capsys, store):
    gone, kept = stored(store, 1), stored(store, 2)
    value_file(store, gone).unlink()
    code, out, err = run_cli(capsys, "show", gone[:12], "--cache-dir", str(store.directory))
    assert code == 2 and "warning:" in err and "is missing" in err and "store check" in err
    truncated = value_file(store, kept)
    truncated.write_bytes(truncated.read_bytes()[:500])
    code, out, err = run_cli(capsys, "store", "check", "--cache-dir", str(store.directory))
    assert code == 1 and "is missing" in out and "cannot be read" in out


# -- (5) locks: host, pid, heartbeat; stale ones broken; SIGTERM releases; waiting has a limit
# --------------
def lock_row(store: RunStore, fingerprint: str, host: str, age: float, pid: int = 1) -> None:
    store.work.set(
        f"lock:{fingerprint}",
        json.dumps({"pid": pid, "host": host, "heartbeat": time.time() - age}),
    )


def test_a_lock_with_a_stale_heartbeat_is_broken_with_a_message(store):
    fingerprint = "d" * 64
    lock_row(store, fingerprint, "another-host", age=3600)
    assert not store.running(fingerprint)
    with pytest.warns(
        UserWarning, match=r"broke the lock of run dddddddddddd: .*another-host.* 3600 s ago"
    ):
        with store.lock(fingerprint, poll_seconds=0.01):
            holder = store.holder(fingerprint)
            assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
    assert store.holder(fingerprint) is None
    store.work.set(
        f"lock:{fingerprint}", json.dumps({"pid": 1, "host": "another-host"})
    )  # an old lock: no heartbeat
    assert not store.running(fingerprint)


def test_a_live_holder_elsewhere_blocks_delete_and_waiting_gives_up_with_a_message(store):
    fingerprint = stored(store, 1)
    lock_row(store, fingerprint, "another-host", age=1, pid=4242)
    assert store.running(fingerprint)
    with pytest.raises(MSAInputError, match="in progress"):
        store.delete(fingerprint)
    other = "e" * 64
    lock_row(store, other, "another-host", age=1, pid=4242)
    with pytest.raises(
        MSAInputError,
        match=r"being computed by pid 4242 on host another-host.*gave up waiting after 0.2 s",
    ):
        with store.lock(other, poll_seconds=0.01, timeout=0.2):
            pass


def test_a_held_lock_heartbeats(store, monkeypatch):
    monkeypatch.setattr(locks, "HEARTBEAT_SECONDS", 0.01)
    with store.lock("f" * 64):
        first = store.holder("f" * 64)["heartbeat"]
        deadline = time.monotonic() + 30
        while store.holder("f" * 64)["heartbeat"] == first:
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.01)


def test_sigterm_stops_a_cli_run_like_ctrl_c_releasing_its_lock_and_keeping_its_checkpoint(
    tmp_path,
):
    """One CLI process (about 5 s to import torch and load the model)."""
    cache = tmp_path / "cache"
    fingerprint = fingerprint_of(small_request(n_permutations=600))
    process = start_cli(
        "run",
        "--model",
        MODEL,
        "--output",
        "correct",
        "--method",
        "permutation",
        "--permutations",
        "600",
        "--quiet",
        "--cache-dir",
        str(cache),
        checkpoint_seconds=0.05,
    )
    store = RunStore(cache)
    try:
        deadline = time.monotonic() + 120
        while not store.has_checkpoint(fingerprint) and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130, err
    assert "interrupted; run the same command again to resume" in err
    assert store.holder(fingerprint) is None and store.has_checkpoint(fingerprint)
    assert store.progress(fingerprint)["state"] == "cancelled"


# -- (6) a full disk: checkpoints retried then skipped, free space checked first, reading never
# writes -------
def test_a_failing_checkpoint_write_is_retried_then_reported_and_the_run_finishes(
    store, monkeypatch
):
    monkeypatch.setattr(checkpoints, "SAVE_RETRY_SECONDS", 0.0)
    write, tries = store.work.set, []

    def full_disk(key, value, *args, **kwargs):
        if key.startswith("ckpt:"):
            tries.append(key)
            raise sqlite3.OperationalError("database or disk is full")
        return write(key, value, *args, **kwargs)

    monkeypatch.setattr(store.work, "set", full_disk)
    with pytest.warns(
        UserWarning,
        match=r"checkpoint of run .* not saved after 3 tries .*disk is full.*the run goes on",
    ):
        result = execute(small_request(), store, checkpoint_seconds=0.0)
    assert len(tries) >= 3 and len(tries) % 3 == 0
    reference = execute(small_request(), RunStore(store.directory.parent / "other"))
    assert np.array_equal(result.modes, reference.modes)
    assert store.get(result.meta["fingerprint"]) is not None


def test_a_run_is_refused_before_it_starts_when_the_disk_lacks_room(store, monkeypatch):
    usage = shutil.disk_usage(store.directory)
    monkeypatch.setattr(space.shutil, "disk_usage", lambda path: usage._replace(free=100_000))
    with pytest.raises(
        MSAInputError, match=r"the run needs about [\d.]+ MB in .* but only 0.1 MB are free"
    ):
        execute(small_request(), store)
    assert store.progress(fingerprint_of(small_request())) is None  # refused before it started


def test_a_result_that_cannot_be_stored_is_still_returned(store, monkeypatch):
    monkeypatch.setattr(
        store, "put", lambda *args: (_ for _ in ()).throw(OSError(28, "No space left on device"))
    )
    with pytest.warns(UserWarning, match="finished but could not be stored .*No space left"):
        result = execute(small_request(), store)
    assert result.n_permutations == 20


def test_reading_commands_never_write_to_the_store(capsys, store, tmp_path):
    fingerprint = stored(store, 1)
    close(store)
    before = snapshot(store.directory)
    cache = str(store.directory)
    for args in (
        ["list"],
        ["show", fingerprint[:8]],
        ["export", fingerprint[:8], "--out", str(tmp_path / "r.csv")],
        ["store", "check"],
    ):
        assert run_cli(capsys, *args, "--cache-dir", cache)[0] == 0, args
    assert snapshot(store.directory) == before


# -- (7) clear errors before expensive work
# -----------------------------------------------------------------
@pytest.fixture
def linear() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 3))


@pytest.mark.parametrize(
    "inputs, labels, message",
    [
        (torch.zeros(0, 4), None, r"inputs have an empty batch \(B = 0\)"),
        (
            torch.randn(5, 7),
            None,
            r"cannot run on the inputs \(\[5, 7\] float32\): .*shapes cannot be multiplied",
        ),
        (torch.ones(5, 4, dtype=torch.int64), None, r"cannot run on the inputs \(\[5, 4\] int64\)"),
        (
            torch.randn(5, 4),
            torch.tensor([0, 1, 5, 0, 2]),
            r"labels must be class indices from 0 to 2 .*from 0 to 5",
        ),
        (
            torch.randn(5, 4),
            torch.tensor([0, -1, 1, 0, 2]),
            r"labels must be class indices from 0 to 2 .*from -1 to 2",
        ),
    ],
)
def test_bad_model_inputs_and_labels_are_clear_errors(linear, inputs, labels, message):
    with pytest.raises(MSAInputError, match=message):
        ModelGame(
            linear,
            inputs,
            Neurons("1"),
            output="correct" if labels is not None else "logits",
            labels=labels,
        )


def test_an_output_too_large_for_memory_is_refused_before_it_is_allocated(monkeypatch):
    monkeypatch.setattr(msa_core.memory, "available_bytes", lambda: 10**9)

    class Huge(Game):
        n_players, output_shape, player_names = 10, (10**8,), [f"u{i}" for i in range(10)]

        def evaluate(self, coalitions):
            raise AssertionError("evaluated before the size was checked")

    with pytest.raises(
        MSAInputError, match=r"10 players x 100,000,000 output values need at least 24 GB .* 1 GB"
    ):
        shapley_modes(Huge(), method="permutation", n_permutations=2)
    with pytest.raises(
        MSAInputError, match=r"1000 players x 100,000 output values need at least 2.4 GB"
    ):
        shapley_modes(
            lambda c: np.zeros((len(c), 10**5)),
            n_players=1000,
            method="permutation",
            n_permutations=2,
        )


def test_an_inconsistent_result_file_is_refused_at_load(capsys, tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(
        path,
        modes=np.zeros((3, 4)),
        stderr=np.zeros((3, 5)),
        v_full=np.zeros(4),
        v_empty=np.zeros(4),
        player_names=np.array(["a", "b", "c"]),
        meta=np.array("{}"),
    )
    with pytest.raises(
        MSAInputError, match=r"not a consistent MSA result: stderr has shape \[3, 5\] but modes"
    ):
        ModesResult.load(path)
    code, _, err = run_cli(capsys, "export", str(path), "--out", str(tmp_path / "bad.csv"))
    assert code == 2 and "not a consistent" in err and not (tmp_path / "bad.csv").exists()
    np.savez(
        path,
        modes=np.zeros((3, 4)),
        stderr=np.zeros((3, 4)),
        v_full=np.zeros(4),
        v_empty=np.zeros(4),
        player_names=np.array(["a", "b"]),
        meta=np.array("{}"),
    )
    with pytest.raises(MSAInputError, match="player_names has shape .*expected 3 names"):
        ModesResult.load(path)


def test_a_seed_beyond_int64_is_refused_everywhere(capsys):
    with pytest.raises(MSAInputError, match=r"seed must be a whole number from 0 to 2\^63 - 1"):
        small_request(seed=2**63)
    with pytest.raises(MSAInputError, match=r"seed must be a whole number from 0 to 2\^63 - 1"):
        shapley_modes(lambda c: c.astype(float), n_players=2, seed=2**63)
    code, _, err = run_cli(capsys, "run", "--model", MODEL, "--seed", str(2**63))
    assert code == 2 and "--seed: expected a whole number from 0 to 2^63 - 1" in err
    assert RunRequest(model=MODEL, seed=2**63 - 1).seed == 2**63 - 1


def test_a_budget_that_cannot_finish_is_refused_with_a_time_estimate(capsys, tmp_path):
    code, _, err = run_cli(
        capsys,
        "run",
        "--model",
        MODEL,
        "--output",
        "correct",
        "--method",
        "permutation",
        "--permutations",
        "1000000000",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert code == 2, err
    assert (
        "a budget of 31,000,000,002 evaluations would take about" in err
        and "at most 1,000,000,000" in err
    )
    assert (
        RunStore(tmp_path / "cache").progress(fingerprint_of(small_request(n_permutations=10**9)))
        is None
    )


@pytest.mark.parametrize(
    "target, message",
    [
        (".", "it is a folder; give a file name such as"),
        ("/proc/msa-result.npz", "cannot create files in /proc"),
        ("no-such-folder/r.npz", "folder .*no-such-folder does not exist"),
    ],
)
def test_an_unwritable_out_is_refused_before_the_run(capsys, tmp_path, target, message):
    out = target if target.startswith("/") else str(tmp_path / target)
    code, _, err = run_cli(
        capsys,
        "run",
        "--model",
        MODEL,
        "--output",
        "correct",
        "--out",
        out,
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert code == 2 and re.search(message, err), err
    assert not (tmp_path / "cache").exists()  # refused before the store was even opened


def test_export_writes_exactly_the_file_named_in_the_format_asked(capsys, store, tmp_path):
    fingerprint = stored(store, 1)
    cache = str(store.directory)
    code, _, err = run_cli(
        capsys,
        "export",
        fingerprint[:8],
        "--format",
        "npz",
        "--out",
        str(tmp_path / "x.csv"),
        "--cache-dir",
        cache,
    )
    assert code == 2 and "the format is npz but the file name ends in .csv; name it x.npz" in err
    assert list(tmp_path.glob("x.*")) == []
    code, out, _ = run_cli(
        capsys,
        "export",
        fingerprint[:8],
        "--format",
        "npz",
        "--out",
        str(tmp_path / "x.data"),
        "--cache-dir",
        cache,
    )
    assert code == 0 and out == f"written to {tmp_path / 'x.data'}\n"
    assert [path.name for path in tmp_path.glob("x.*")] == ["x.data"]
    assert np.array_equal(ModesResult.load(tmp_path / "x.data").modes, store.get(fingerprint).modes)


def test_the_cli_reports_argument_errors_before_importing_torch():
    code = (
        "import sys\nfrom msa_core.cli import main\n"
        "for args in (['run', '--model', 'x', '--seed', '-1'],\n"
        "             ['run', '--model', 'x', '--method', 'magic'],\n"
        "             ['export', 'x', '--out', 'y', '--format', 'xlsx'], ['fly']):\n"
        "    try:\n        main(args)\n    except SystemExit as stop:\n"
        "        assert stop.code == 2, stop.code\n"
        "print('torch' in sys.modules, 'msa_core.runs' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False False\n"
    assert (
        "invalid choice: 'magic'" in done.stderr
        and "--seed: expected a whole number" in done.stderr
    )


def test_the_torch_free_names_are_the_engines():
    from msa_core.estimators.plan import ESTIMATORS
    from msa_core.lesion.game import LESIONS as GAME_LESIONS
    from msa_core.names import EXPORT_FORMATS, LESIONS, METHODS
    from msa_core.runs.export import FORMATS

    assert (
        METHODS == ("auto", *ESTIMATORS) and GAME_LESIONS == LESIONS and FORMATS == EXPORT_FORMATS
    )

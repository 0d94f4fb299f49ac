"""The run store in one process: fingerprints, reuse, corrupt entries, checkpoints, extension,
eviction.
"""

import dataclasses
import io
import json
import socket
import subprocess

import numpy as np
import pytest
from runs_support import MODEL, small_request

from msa_core import FileCheckpoint, ModesResult, shapley_modes
from msa_core.errors import MSAInputError
from msa_core.runs import RunRequest, RunStore, execute
from msa_core.runs.execute import max_stderr_of
from msa_core.zoo import load_model


def direct(request: RunRequest, **kwargs) -> ModesResult:
    """The request computed straight by the engine, without any store."""
    loaded = load_model(request.model)
    request = request.resolved(loaded)
    return shapley_modes(
        loaded.game(request.units, request.output, request.lesion),
        method=request.method,
        n_permutations=request.n_permutations,
        max_evaluations=request.max_evaluations,
        seed=request.seed,
        **kwargs,
    )


def same_numbers(a: ModesResult, b: ModesResult) -> bool:
    return all(
        np.array_equal(getattr(a, key), getattr(b, key))
        for key in ("modes", "stderr", "v_full", "v_empty")
    )


class Counter:
    """A progress callback that counts its calls (a run served from the store never calls it)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, done, total):
        self.calls += 1


def test_a_repeated_request_is_served_from_the_store_without_evaluating(store):
    first_progress, again_progress = Counter(), Counter()
    first = execute(small_request(), store, progress=first_progress)
    again = execute(small_request(), store, progress=again_progress)
    assert first_progress.calls > 0 and again_progress.calls == 0
    assert same_numbers(first, again) and same_numbers(first, direct(small_request()))
    fingerprint = first.meta["fingerprint"]
    assert [entry["fingerprint"] for entry in store.list()] == [fingerprint]
    record = store.progress(fingerprint)
    assert record["state"] == "done" and record["done"] == record["total"] == first.n_evaluations
    assert record["max_stderr"] is not None and record["max_stderr"] > 0


def test_the_fingerprint_covers_everything_that_changes_the_numbers():
    loaded = load_model(MODEL)
    base = small_request()
    prints = {base.fingerprint(loaded)}
    for change in (
        {"output": "logits"},
        {"lesion": "mean"},
        {"method": "antithetic"},
        {"n_permutations": 22},
        {"max_evaluations": 500},
        {"seed": 1},
    ):
        prints.add(dataclasses.replace(base, **change).fingerprint(loaded))
    other_weights = dataclasses.replace(loaded, digest="0" * 64)
    other_inputs = dataclasses.replace(loaded, inputs=loaded.inputs[:10], labels=loaded.labels[:10])
    prints |= {base.fingerprint(other_weights), base.fingerprint(other_inputs)}
    assert len(prints) == 9
    # defaults filled in or spelled out: the same run
    assert small_request(units=None).fingerprint(loaded) == small_request(
        units="hidden neurons"
    ).fingerprint(loaded)


@pytest.mark.parametrize("damage", [b"not an npz at all", "truncated", "old format"])
def test_a_corrupt_or_old_entry_warns_and_is_recomputed(store, damage):
    first = execute(small_request(), store)
    fingerprint = first.meta["fingerprint"]
    if damage == "truncated":
        blob = store.results.get(fingerprint)[:200]
    elif damage == "old format":
        old = dataclasses.replace(first, meta={**first.meta, "store_format": 0})
        buffer = io.BytesIO()
        old.save(buffer)
        blob = buffer.getvalue()
    else:
        blob = damage
    store.results.set(fingerprint, blob)
    progress = Counter()
    with pytest.warns(
        UserWarning, match=f"stored run {fingerprint[:12]} cannot be read.*recomputed"
    ):
        again = execute(small_request(), store, progress=progress)
    assert progress.calls > 0 and same_numbers(first, again)
    assert store.get(fingerprint) is not None


def test_a_corrupt_or_foreign_checkpoint_warns_and_the_run_starts_over(store, tmp_path):
    request = small_request()
    fingerprint = execute(request, store).meta["fingerprint"]
    expected = store.get(fingerprint)
    store.delete(fingerprint)
    store.work.set(f"ckpt:{fingerprint}", b"garbage")
    with pytest.warns(UserWarning, match="checkpoint.*corrupt"):
        assert same_numbers(execute(request, store), expected)
    store.delete(fingerprint)
    foreign = FileCheckpoint(tmp_path / "foreign.npz", every_seconds=0.0)
    direct(small_request(seed=5), checkpoint=foreign)  # a checkpoint of another seed
    store.work.set(f"ckpt:{fingerprint}", (tmp_path / "foreign.npz").read_bytes())
    with pytest.warns(UserWarning, match="checkpoint of this run cannot be used.*another run"):
        assert same_numbers(execute(request, store), expected)


def test_a_run_resumes_from_its_checkpoint_to_the_uninterrupted_result(store, tmp_path):
    request = small_request(n_permutations=40)
    expected = direct(request)
    loaded = load_model(MODEL)
    fingerprint = request.fingerprint(loaded)
    partial = FileCheckpoint(tmp_path / "partial.npz", every_seconds=0.0)

    class Stop(Exception):
        pass

    def stop_halfway(done, total):
        if done > total // 2:
            raise Stop

    with pytest.raises(Stop):
        direct(request, checkpoint=partial, progress=stop_halfway)
    saved = partial.load()
    store.work.set(f"ckpt:{fingerprint}", (tmp_path / "partial.npz").read_bytes())
    resumed = execute(request, store)
    assert same_numbers(resumed, expected)
    assert store.progress(fingerprint)["resumed_from"] == int(saved["run.used"]) > 0
    # a finished run keeps its checkpoint only as its family's base
    assert not store.has_checkpoint(fingerprint)


def test_more_permutations_extend_a_finished_run(store):
    execute(small_request(n_permutations=20), store)
    extended = execute(small_request(n_permutations=40), store)
    record = store.progress(extended.meta["fingerprint"])
    assert record["resumed_from"] > 0  # started from the 20-permutation run's last checkpoint
    assert same_numbers(extended, direct(small_request(n_permutations=40)))
    assert extended.n_permutations == 40
    # the base is larger: computed from scratch
    smaller = execute(small_request(n_permutations=30), store)
    assert store.progress(smaller.meta["fingerprint"])["resumed_from"] == 0
    assert same_numbers(smaller, direct(small_request(n_permutations=30)))


def test_max_stderr_of_a_checkpoint_is_the_estimators(tmp_path):
    checkpoint = FileCheckpoint(tmp_path / "c.npz", every_seconds=1e9)
    result = direct(small_request(), checkpoint=checkpoint)  # saved once, before the last block
    value = max_stderr_of(checkpoint.load())
    assert value is not None and 0 < value
    assert value == pytest.approx(result.stderr.max(), rel=0.5)


def test_list_resolve_and_delete(store):
    fingerprints = [execute(small_request(seed=seed), store).meta["fingerprint"] for seed in (0, 1)]
    assert [entry["fingerprint"] for entry in store.list()] == fingerprints[::-1]  # newest first
    assert store.resolve(fingerprints[0][:10]) == fingerprints[0]
    with pytest.raises(MSAInputError, match="no stored run matches 'zzz'"):
        store.resolve("zzz")
    store.delete(fingerprints[0])
    assert store.get(fingerprints[0]) is None and len(store.list()) == 1


def test_a_run_in_progress_cannot_be_deleted_and_a_dead_holders_lock_is_broken(store):
    with store.lock("f" * 64):
        assert store.running("f" * 64)
        with pytest.raises(MSAInputError, match="in progress"):
            store.delete("f" * 64)
    dead = subprocess.Popen(["true"])
    dead.wait()
    store.work.set("lock:" + "e" * 64, json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    assert not store.running("e" * 64)
    broken = f"broke the lock of run eeeeeeeeeeee: its holder, pid {dead.pid} .* no longer"
    with pytest.warns(UserWarning, match=broken):
        with store.lock("e" * 64, poll_seconds=0.01):
            assert store.running("e" * 64)


def test_old_results_are_evicted_past_the_size_limit_but_checkpoints_stay(tmp_path):
    rng = np.random.default_rng(0)
    # random numbers do not compress: about 1 MB per stored result
    modes = rng.normal(size=(32, 4000))
    result = ModesResult(
        modes, np.abs(modes), modes.sum(0), np.zeros(4000), 100, 3, [str(i) for i in range(32)]
    )
    size = 2 * modes.nbytes
    store = RunStore(tmp_path / "small", size_limit=int(2.5 * size))
    store.work.set("ckpt:" + "c" * 64, b"a run in progress")
    for seed in range(5):
        store.put(f"{seed:064d}", dataclasses.replace(result, meta={}), small_request(seed=seed))
    kept = [seed for seed in range(5) if f"{seed:064d}" in store]
    assert 4 in kept and 0 not in kept and len(kept) <= 3
    assert store.volume() <= 2.5 * size + (1 << 20)
    assert store.has_checkpoint("c" * 64)
    assert len(store.list()) == len(kept)


def test_the_store_never_holds_pickles(store):
    with pytest.raises(TypeError, match="str/bytes/int/float"):
        store.work.set("x", {"a": 1})
    with pytest.raises(TypeError):
        store.work.set(("tuple", "key"), "value")


def test_the_cache_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MSA_CACHE_DIR", str(tmp_path / "from-env"))
    assert RunStore().directory == tmp_path / "from-env"
    monkeypatch.delenv("MSA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert RunStore().directory == tmp_path / "xdg" / "msa-dashboard"


def test_bad_requests_name_what_is_allowed():
    with pytest.raises(MSAInputError, match="unknown lesion 'half'; allowed: zero, mean"):
        small_request(lesion="half")
    with pytest.raises(MSAInputError, match="no output 'pixels'"):
        small_request(output="pixels").fingerprint(load_model(MODEL))
    with pytest.raises(MSAInputError, match="unknown run request fields"):
        RunRequest.from_dict({"model": MODEL, "colour": "red"})

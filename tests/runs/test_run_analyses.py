"""Analyses kept with a stored run (``RunStore.analysis`` / ``keep_analysis``): read back as
written, deleted with the run (``delete``, ``clear``), names checked, nothing written to a
read-only store, a full disk a warning."""

import sqlite3

import pytest
from runs_support import small_request

from msa_core.errors import MSAInputError
from msa_core.runs import RunStore, execute, fingerprint_of
from msa_core.runs.repair import repair

NAME = "selective-lesions-k2"
VALUE = {"lesions": [{"language": 0, "experts": [3, 1], "loss_after": [1.5, 2.25]}]}


def stored_run(tmp_path):
    store = RunStore(tmp_path)
    request = small_request(n_permutations=2)
    execute(request, store)
    return store, fingerprint_of(request)


def test_an_analysis_is_read_back_and_goes_with_its_run(tmp_path):
    store, fingerprint = stored_run(tmp_path)
    assert store.analysis(fingerprint, NAME) is None
    store.keep_analysis(fingerprint, NAME, VALUE)
    assert RunStore(tmp_path).analysis(fingerprint, NAME) == VALUE
    assert RunStore(tmp_path, readonly=True).analysis(fingerprint, NAME) == VALUE
    assert repair(tmp_path) == ([], None)  # the store's own rows, not foreign ones

    store.delete(fingerprint)
    assert store.analysis(fingerprint, NAME) is None
    assert not [key for key in store.rows["work"].keys() if key.startswith("analysis:")]
    store.keep_analysis(fingerprint, NAME, VALUE)  # no run: nothing kept
    assert not list(store.rows["work"].keys())


def test_clear_deletes_the_analyses_too(tmp_path):
    store, fingerprint = stored_run(tmp_path)
    store.keep_analysis(fingerprint, NAME, VALUE)
    assert fingerprint in store.clear()
    assert not list(store.rows["work"].keys())


def test_names_and_fingerprints_are_checked_and_a_readonly_store_is_not_written(tmp_path):
    store, fingerprint = stored_run(tmp_path)
    for name in ("../escape", "Upper", "", "a/b", "a:b"):
        with pytest.raises(MSAInputError, match="analysis name"):
            store.analysis(fingerprint, name)
    with pytest.raises(MSAInputError, match="not a run fingerprint"):
        store.keep_analysis("../" + fingerprint[3:], "x", {})
    RunStore(tmp_path, readonly=True).keep_analysis(fingerprint, "x", {"a": 1})
    assert store.analysis(fingerprint, "x") is None
    store.work.set(f"analysis:{fingerprint}:x", "[1, 2]")  # not an object
    assert store.analysis(fingerprint, "x") is None


def test_a_full_disk_keeps_nothing_and_warns(tmp_path, monkeypatch):
    store, fingerprint = stored_run(tmp_path)

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store.work, "set", full)
    with pytest.warns(UserWarning, match="not kept"):
        store.keep_analysis(fingerprint, NAME, VALUE)
    assert store.analysis(fingerprint, NAME) is None

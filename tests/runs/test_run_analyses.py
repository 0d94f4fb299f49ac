"""Analyses kept with a stored run (``msa_core.runs.analyses``): read back as written, gone with the
run, names checked, nothing written to a read-only store."""

import pytest
from runs_support import small_request

from msa_core.errors import MSAInputError
from msa_core.runs import RunStore, execute, fingerprint_of
from msa_core.runs.analyses import RunAnalyses


def test_an_analysis_is_read_back_and_goes_with_its_run(tmp_path):
    store = RunStore(tmp_path)
    request = small_request(n_permutations=2)
    execute(request, store)
    fingerprint = fingerprint_of(request)
    analyses = RunAnalyses(store)
    assert analyses.get(fingerprint, "selective-lesions-k2") is None
    value = {"lesions": [{"language": 0, "experts": [3, 1], "loss_after": [1.5, 2.25]}]}
    analyses.put(fingerprint, "selective-lesions-k2", value)
    assert RunAnalyses(RunStore(tmp_path)).get(fingerprint, "selective-lesions-k2") == value
    assert RunAnalyses(RunStore(tmp_path, readonly=True)).get(fingerprint, "selective-lesions-k2")

    store.delete(fingerprint)
    assert analyses.get(fingerprint, "selective-lesions-k2") is None
    assert not (tmp_path / "analyses" / fingerprint).exists()
    analyses.put(fingerprint, "selective-lesions-k2", value)  # no run: nothing kept
    assert not (tmp_path / "analyses" / fingerprint).exists()


def test_names_and_fingerprints_are_checked_and_a_readonly_store_is_not_written(tmp_path):
    store = RunStore(tmp_path)
    request = small_request(n_permutations=2)
    execute(request, store)
    fingerprint = fingerprint_of(request)
    for name in ("../escape", "Upper", "", "a/b"):
        with pytest.raises(MSAInputError, match="analysis name"):
            RunAnalyses(store).get(fingerprint, name)
    with pytest.raises(MSAInputError, match="not a run fingerprint"):
        RunAnalyses(store).put("../" + fingerprint[3:], "x", {})
    RunAnalyses(RunStore(tmp_path, readonly=True)).put(fingerprint, "x", {"a": 1})
    assert RunAnalyses(store).get(fingerprint, "x") is None
    (tmp_path / "analyses" / fingerprint).mkdir(parents=True)
    (tmp_path / "analyses" / fingerprint / "x.json").write_text("[1, 2]")  # not an object
    assert RunAnalyses(store).get(fingerprint, "x") is None

"""Interaction runs through the store: linked to their parent run, cached, exported, listed apart
from runs, launched by the CLI (the job manager runs them in
tests/app/test_interactions_page.py)."""

import csv

import numpy as np
import pytest
from cli_runner import run_cli
from runs_support import small_request

from msa_core.analysis.interactions import top_players
from msa_core.errors import MSAInputError
from msa_core.interaction_result import InteractionResult
from msa_core.runs import RunStore, execute
from msa_core.runs.interaction_runs import (
    InteractionRequest,
    execute_interactions,
    export_interactions,
    list_interactions,
    resolve_interactions,
    stored_interactions,
)
from msa_core.runs.repair import check, repair


@pytest.fixture
def parent(store):
    """A small stored run (32 neurons, per-image correctness, 20 permutations), its fingerprint."""
    result = execute(small_request(), store)
    return result.meta["fingerprint"], result


def test_interaction_run_is_cached_linked_to_its_parent_and_kept_apart_from_runs(
    store, parent, tmp_path
):
    fingerprint, run = parent
    request = InteractionRequest(parent=fingerprint, top=5, n_samples=6, seed=1)
    calls = []
    first = execute_interactions(request, store, progress=lambda done, total: calls.append(done))
    assert calls and first.interactions.shape == (5, 5, 360)
    np.testing.assert_array_equal(first.players, top_players(run, 5))
    assert (
        first.meta["parent"] == fingerprint and first.meta["model"] == run.meta["request"]["model"]
    )
    assert first.meta["cost_ratio"] == pytest.approx(first.n_evaluations / run.n_evaluations)
    calls.clear()
    again = execute_interactions(request, store, progress=lambda done, total: calls.append(done))
    assert not calls  # from the store: nothing evaluated
    np.testing.assert_array_equal(again.interactions, first.interactions)
    key = first.meta["key"]
    assert [entry["key"] for entry in list_interactions(store, fingerprint)] == [key]
    assert list_interactions(store, "0" * 64) == []
    assert [entry["fingerprint"] for entry in store.list()] == [
        fingerprint
    ]  # run lists never show it
    assert resolve_interactions(store, key[:8]) == key == resolve_interactions(store, key[3:10])
    assert store.progress(key)["state"] == "done"
    other = execute_interactions(
        InteractionRequest(parent=fingerprint, top=5, n_samples=6, seed=2), store
    )
    assert other.meta["key"] != key and len(list_interactions(store)) == 2


def test_store_check_and_repair_keep_interaction_runs(store, parent):
    fingerprint, _ = parent
    request = InteractionRequest(parent=fingerprint, top=4, n_samples=4, seed=1)
    key = execute_interactions(request, store).meta["key"]
    assert check(store.directory) == []  # its rows are the store's own, not damage
    store.work.set("index:" + "0" * 64, "not json")  # damage elsewhere: repair rebuilds the store
    problems, moved = repair(store.directory)
    assert problems and moved is not None
    repaired = RunStore(store.directory)
    assert [entry["key"] for entry in list_interactions(repaired, fingerprint)] == [key]
    assert stored_interactions(repaired, key) is not None


def test_default_budget_is_a_multiple_of_the_parent_run(store, parent):
    fingerprint, run = parent
    result = execute_interactions(InteractionRequest(parent=fingerprint, top=4, cost=1.5), store)
    assert result.meta["method"] == "sampled"
    assert 1.2 < result.n_evaluations / run.n_evaluations < 1.8, (
        result.n_evaluations / run.n_evaluations
    )


def test_export_csv_and_npz_read_back(store, parent, tmp_path):
    result = execute_interactions(InteractionRequest(parent=parent[0], top=3, n_samples=4), store)
    rows = list(csv.DictReader(open(export_interactions(result, tmp_path / "pairs.csv"))))
    assert len(rows) == 3 * 360 and list(rows[0]) == [
        "unit_a",
        "unit_b",
        "output_0",
        "value",
        "stderr",
    ]
    a, b = (
        result.player_names.index(rows[-1]["unit_a"]),
        result.player_names.index(rows[-1]["unit_b"]),
    )
    assert float(rows[-1]["value"]) == result.interactions[a, b, 359]
    back = InteractionResult.load(export_interactions(result, tmp_path / "pairs.npz"))
    np.testing.assert_array_equal(back.interactions, result.interactions)
    with pytest.raises(MSAInputError, match="allowed: npz, csv"):
        export_interactions(result, tmp_path / "pairs.html")


def test_bad_requests_and_missing_parents_are_refused(store):
    with pytest.raises(MSAInputError, match="not in the store"):
        execute_interactions(InteractionRequest(parent="f" * 64, top=4), store)
    for fields, match in (
        (dict(parent="abc"), "64 hex"),
        (dict(top=1), "top"),
        (dict(method="kernel"), "allowed"),
        (dict(cost=0), "cost"),
        (dict(n_samples=1), "n_samples"),
        (dict(seed=-2), "seed"),
    ):
        with pytest.raises(MSAInputError, match=match):
            InteractionRequest(**{"parent": "f" * 64, **fields})
    with pytest.raises(MSAInputError, match="unknown interaction request fields"):
        InteractionRequest.from_dict({"parent": "f" * 64, "k": 3})


def test_corrupt_entry_is_dropped_and_recomputed(store, parent):
    request = InteractionRequest(parent=parent[0], top=3, n_samples=4)
    key = execute_interactions(request, store).meta["key"]
    store.results.set(key, b"not an npz")
    with pytest.warns(UserWarning, match="cannot be read"):
        assert stored_interactions(store, key) is None
    assert list_interactions(store) == []
    assert execute_interactions(request, store).meta["key"] == key


def test_cli_interactions_computes_exports_and_shows(capsys, store, parent, tmp_path):
    cache = str(store.directory)
    code, out, err = run_cli(
        capsys,
        "interactions",
        parent[0][:10],
        "--top",
        "4",
        "--samples",
        "4",
        "--quiet",
        "--cache-dir",
        cache,
        "--out",
        str(tmp_path / "p.csv"),
    )
    assert code == 0, err
    assert (
        "4 units (6 pairs)" in out and "strongest pairs" in out and (tmp_path / "p.csv").is_file()
    )
    key = list_interactions(store)[0]["key"]
    code, out, err = run_cli(
        capsys, "interactions", key[:9], "--cache-dir", cache, "--out", str(tmp_path / "p.npz")
    )
    assert code == 0 and "found in the store" in out, err
    assert InteractionResult.load(tmp_path / "p.npz").n_units == 4
    for args, match in (
        (("--top", "1"), "expected a whole number >= 2"),
        (("--cost", "0"), "positive number"),
        (("--out", str(tmp_path / "p.png")), "allowed suffixes"),
        (("--backend", "gpu"), "invalid choice: 'gpu'"),
        (("--address", "1.2.3.4:6379"), "--address only applies to --backend ray"),
    ):
        code, out, err = run_cli(
            capsys, "interactions", parent[0][:10], *args, "--cache-dir", cache
        )
        assert code == 2 and match in err, err
    code, out, err = run_cli(capsys, "interactions", "ix:0000", "--cache-dir", cache)
    assert code == 2 and "no stored interaction runs match" in err

import json

import numpy as np
import pytest

from msa_core import ModesResult, MSAInputError, UnanimityGame, shapley_modes


def test_save_and_load_round_trip(tmp_path):
    res = shapley_modes(
        UnanimityGame.random(6, 8, 3, output_shape=(2, 2), seed=0),
        method="permutation",
        n_permutations=5,
    )
    path = tmp_path / "r.npz"
    res.save(path)
    back = ModesResult.load(path)
    for key in ("modes", "stderr", "v_full", "v_empty", "score_stderr"):
        assert np.array_equal(getattr(res, key), getattr(back, key))
    assert back.player_names == res.player_names
    assert (back.n_evaluations, back.n_permutations) == (res.n_evaluations, res.n_permutations)
    assert back.meta == json.loads(json.dumps(res.meta))
    with np.load(path) as data:
        assert set(data.files) == {
            *("modes", "stderr", "v_full", "v_empty", "player_names", "meta", "score_stderr")
        }


def test_a_result_saved_before_score_stderr_existed_loads_and_falls_back_to_the_bound(tmp_path):
    res = shapley_modes(
        UnanimityGame.random(6, 8, 3, output_shape=(3,), seed=0),
        method="permutation",
        n_permutations=30,
    )
    stderr, is_bound = res.score_stderr_or_bound()
    assert not is_bound and np.array_equal(stderr, res.score_stderr)
    # the estimator's own standard error of the mean is below the bound (the mean of the
    # elements'): contributions to different outputs are not perfectly correlated
    assert np.all(res.score_stderr <= res.stderr.mean(axis=1))
    old = tmp_path / "old.npz"
    res.score_stderr = None  # what save wrote before: no score_stderr entry
    res.save(old)
    back = ModesResult.load(old)
    assert back.score_stderr is None
    stderr, is_bound = back.score_stderr_or_bound()
    assert is_bound and np.array_equal(stderr, res.stderr.mean(axis=1))
    with np.load(old) as data:
        arrays = {key: data[key] for key in data.files}
    np.savez(tmp_path / "bad.npz", **arrays, score_stderr=np.zeros(2))
    with pytest.raises(MSAInputError, match="score_stderr has shape"):
        ModesResult.load(tmp_path / "bad.npz")


def test_load_rejects_files_that_are_not_results(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, modes=np.zeros(3))
    with pytest.raises(MSAInputError, match="lacks"):
        ModesResult.load(path)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(MSAInputError, match="cannot read"):
        ModesResult.load(garbage)


def test_load_never_unpickles(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(
        path,
        modes=np.zeros(2),
        stderr=np.zeros(2),
        v_full=np.zeros(()),
        v_empty=np.zeros(()),
        player_names=np.array([{"a": 1}], dtype=object),
        meta=np.array("{}"),
    )
    with pytest.raises(MSAInputError, match="cannot read"):
        ModesResult.load(path)


def test_efficiency_gap_and_shapes():
    res = ModesResult(
        modes=np.array([[1.0, 2.0], [3.0, 4.0]]),
        stderr=np.zeros((2, 2)),
        v_full=np.array([4.0, 7.0]),
        v_empty=np.zeros(2),
        n_evaluations=4,
        n_permutations=0,
        player_names=["a", "b"],
    )
    assert res.n_players == 2 and res.output_shape == (2,)
    assert res.efficiency_gap() == 1.0

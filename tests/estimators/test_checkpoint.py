import numpy as np
import pytest
from ground_truth import RandomNonlinearGame

from msa_core import FileCheckpoint, MSAInputError, shapley_modes


class Crash(RuntimeError):
    pass


class CrashingGame:
    """Row-by-row game (values independent of batching) that raises on call number ``crash_at``."""

    def __init__(self, n_players: int, crash_at: int | None):
        self.inner = RandomNonlinearGame(n_players, out=(3,), seed=1)
        self.crash_at, self.calls, self.rows = crash_at, 0, 0

    def __call__(self, coalitions):
        self.calls += 1
        self.rows += len(coalitions)
        if self.calls == self.crash_at:
            raise Crash("the model crashed")
        return np.concatenate([self.inner(row[None]) for row in coalitions])


KW = {
    "exact": dict(),
    "permutation": dict(n_permutations=60),
    "antithetic": dict(n_permutations=60),
    "kernel": dict(max_evaluations=1500),
    "leverage": dict(max_evaluations=1500),
    "regression_adjusted": dict(max_evaluations=1500),
}


@pytest.mark.parametrize("method", list(KW))
def test_interrupted_run_resumes_to_the_uninterrupted_result(method, tmp_path):
    n = 11
    reference = shapley_modes(
        CrashingGame(n, None), n_players=n, method=method, batch_size=40, seed=3, **KW[method]
    )
    checkpoint = FileCheckpoint(tmp_path / "run.npz", every_seconds=0.0)
    with pytest.raises(Crash):
        shapley_modes(
            CrashingGame(n, 9),
            n_players=n,
            method=method,
            batch_size=40,
            seed=3,
            checkpoint=checkpoint,
            **KW[method],
        )
    saved = checkpoint.load()
    assert saved is not None and int(saved["run.used"]) > 2
    resumed_game = CrashingGame(n, None)
    resumed = shapley_modes(
        resumed_game,
        n_players=n,
        method=method,
        batch_size=40,
        seed=3,
        checkpoint=checkpoint,
        **KW[method],
    )
    assert np.array_equal(resumed.modes, reference.modes)
    assert np.array_equal(resumed.stderr, reference.stderr)
    assert resumed.n_evaluations == reference.n_evaluations
    # nothing absorbed is redone
    assert resumed_game.rows == reference.n_evaluations - int(saved["run.used"])


def test_permutation_run_extends_from_its_checkpoint(tmp_path):
    n = 9
    # only the save before the last block
    checkpoint = FileCheckpoint(tmp_path / "run.npz", every_seconds=1e9)
    shapley_modes(
        CrashingGame(n, None),
        n_players=n,
        method="permutation",
        n_permutations=100,
        checkpoint=checkpoint,
    )
    game = CrashingGame(n, None)
    extended = shapley_modes(
        game, n_players=n, method="permutation", n_permutations=300, checkpoint=checkpoint
    )
    fresh = shapley_modes(
        CrashingGame(n, None), n_players=n, method="permutation", n_permutations=300
    )
    assert np.array_equal(extended.modes, fresh.modes) and extended.n_permutations == 300
    assert extended.n_evaluations == fresh.n_evaluations
    assert game.rows < 300 * (n - 1) - 50 * (n - 1)  # at least half of the first run is reused


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    checkpoint = FileCheckpoint(tmp_path / "run.npz", every_seconds=0.0)
    shapley_modes(
        CrashingGame(9, None),
        n_players=9,
        method="permutation",
        n_permutations=200,
        checkpoint=checkpoint,
    )
    assert checkpoint.load() is not None
    with pytest.raises(MSAInputError, match="belongs to another run"):
        shapley_modes(
            CrashingGame(9, None),
            n_players=9,
            method="permutation",
            n_permutations=200,
            seed=1,
            checkpoint=checkpoint,
        )
    with pytest.raises(MSAInputError, match="only permutation-type runs can be extended"):
        shapley_modes(
            CrashingGame(9, None),
            n_players=9,
            method="permutation",
            n_permutations=100,
            checkpoint=checkpoint,
        )


def test_an_unreadable_checkpoint_warns_and_starts_over(tmp_path):
    path = tmp_path / "run.npz"
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="cannot be read"):
        res = shapley_modes(
            CrashingGame(6, None), n_players=6, method="exact", checkpoint=FileCheckpoint(path)
        )
    assert res.n_evaluations == 64

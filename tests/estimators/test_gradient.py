"""The gradient control variate (``method="gradient"``): unbiased, efficient per order, calibrated,
and no worse than permutation sampling where the linearisation is exact."""

import numpy as np
import pytest
from ground_truth import RandomNonlinearGame, WithGradients

from msa_core import MSAInputError, shapley_modes
from msa_core.games import FunctionGame

N = 8


def smooth_game(seed: int = 1) -> tuple[WithGradients, np.ndarray]:
    """A smooth game read as a function of continuous gates (its analytic gradients), and its exact
    modes."""
    raw = RandomNonlinearGame(N, out=(3,), seed=seed)
    truth = shapley_modes(raw, n_players=N, method="exact").modes
    return WithGradients(raw, N, raw.gradients), truth


def test_the_mean_over_seeds_is_the_exact_mode_and_every_run_is_efficient():
    game, truth = smooth_game()
    runs = [shapley_modes(game, method="gradient", n_permutations=6, seed=s) for s in range(300)]
    for res in runs[:5]:
        np.testing.assert_allclose(res.modes.sum(0), res.v_full - res.v_empty, atol=1e-9)
    modes = np.stack([res.modes for res in runs])
    z = (modes.mean(0) - truth) / (modes.std(0, ddof=1) / np.sqrt(len(runs)))
    # 24 elements: all within 4 standard errors of the mean, and on average about 1 squared
    assert np.abs(z).max() < 4, z.round(2)
    assert 0.3 < float(np.mean(z**2)) < 2.5, z.round(2)


def test_an_exact_linearisation_beats_permutation_sampling_at_equal_evaluations():
    raw = RandomNonlinearGame(N, out=(3,), seed=4)
    truth = shapley_modes(raw, n_players=N, method="exact").modes
    game = WithGradients(raw, N)  # multilinear derivatives: c_j is the contribution itself

    def mse(method: str) -> float:
        runs = [shapley_modes(game, method=method, n_permutations=20, seed=s) for s in range(40)]
        errors = [np.mean((res.modes - truth) ** 2) for res in runs]
        return float(np.mean(errors))

    assert mse("gradient") < 0.7 * mse("permutation")


def test_the_result_has_the_games_output_shape_and_records_the_method():
    game, _ = smooth_game()
    res = shapley_modes(game, method="gradient", n_permutations=4)
    assert res.modes.shape == res.stderr.shape == (N, 3)
    assert res.v_full.shape == (3,)
    assert res.meta["method"] == "gradient" and res.meta["output_shape"] == [3]
    assert res.n_evaluations == 2 + 4 * (N - 1)


def test_a_game_without_gradients_is_refused_before_any_evaluation():
    calls = []

    def game(coalitions):
        calls.append(len(coalitions))
        return coalitions.sum(1, keepdims=True) * 1.0

    with pytest.raises(MSAInputError, match="method='gradient' needs a model game"):
        shapley_modes(game, n_players=4, method="gradient", n_permutations=3)
    with pytest.raises(MSAInputError, match="method='gradient' needs a model game"):
        shapley_modes(FunctionGame(game, 4), method="gradient", n_permutations=3)
    assert calls == []


def test_a_top_k_target_is_refused_with_the_methods_that_keep_its_scores():
    from msa_core import TopK

    game, _ = smooth_game()
    with pytest.raises(MSAInputError, match="a top-k target needs a method"):
        shapley_modes(game, method="gradient", n_permutations=4, target=TopK(1))


def test_a_backend_other_than_this_process_is_refused():
    class Elsewhere:  # a backend object (as msa_core.backends.RayBackend is)
        def game(self, game, n_players):
            return game

        def runner(self):
            raise AssertionError("never reached")

        def meta(self, game):
            return None

    game, _ = smooth_game()
    with pytest.raises(MSAInputError, match="local backend only"):
        shapley_modes(game, method="gradient", n_permutations=4, backend=Elsewhere())


def test_a_resumed_run_gives_the_uninterrupted_result(tmp_path):
    from msa_core.estimators.checkpoint import FileCheckpoint

    game, _ = smooth_game()
    whole = shapley_modes(game, method="gradient", n_permutations=300, seed=3)
    checkpoint = FileCheckpoint(tmp_path / "run.npz", every_seconds=0.0)
    calls = []

    def failing(coalitions):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return game.with_gradients()(coalitions)

    flaky = WithGradients(game.game, N, game.gradients)
    flaky.with_gradients = lambda: FunctionGame(failing, N)
    with pytest.raises(KeyboardInterrupt):
        shapley_modes(
            flaky,
            method="gradient",
            n_permutations=300,
            seed=3,
            checkpoint=checkpoint,
            batch_size=64,
        )
    resumed = shapley_modes(
        game, method="gradient", n_permutations=300, seed=3, checkpoint=checkpoint
    )
    np.testing.assert_array_equal(resumed.modes, whole.modes)
    np.testing.assert_array_equal(resumed.stderr, whole.stderr)

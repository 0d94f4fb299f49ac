import numpy as np
import pytest
import torch
from ground_truth import (
    CountingGame,
    RandomNonlinearGame,
    shapley_by_permutations,
    shapley_by_subsets,
)

from msa_core import UnanimityGame, shapley_modes
from msa_core.estimators.exact import shapley_weights


@pytest.mark.parametrize("n_players", [2, 3, 5, 6])
def test_exact_equals_brute_force_over_all_orders(n_players):
    game = RandomNonlinearGame(n_players, out=(3, 2), seed=n_players)
    res = shapley_modes(game, n_players=n_players, method="exact")
    np.testing.assert_allclose(res.modes, shapley_by_permutations(game, n_players), atol=1e-12)
    assert res.modes.shape == (n_players, 3, 2)
    assert np.all(res.stderr == 0)


def test_exact_equals_subset_formula_for_ten_players_in_small_batches():
    game = RandomNonlinearGame(10, out=(4,), seed=3)
    res = shapley_modes(game, n_players=10, method="exact", batch_size=37)
    np.testing.assert_allclose(res.modes, shapley_by_subsets(game, 10), atol=1e-11)


def test_exact_scalar_and_torch_outputs():
    scalar = lambda c: torch.tensor(c.sum(1) ** 2, dtype=torch.float32)  # noqa: E731  v(S) = |S|^2
    res = shapley_modes(scalar, n_players=4, method="exact")
    assert res.modes.shape == (4,) and res.v_full.shape == ()
    np.testing.assert_allclose(res.modes, np.full(4, 4.0), atol=1e-12)  # symmetric: 16 / 4


def test_exact_matches_closed_form_of_unanimity_game():
    game = UnanimityGame.random(14, n_terms=30, max_order=6, output_shape=(5,), seed=1)
    res = shapley_modes(game, method="exact")
    np.testing.assert_allclose(res.modes, game.shapley_values(), atol=1e-11)


def test_exact_evaluates_every_coalition_once():
    counting = CountingGame(RandomNonlinearGame(6, seed=0))
    res = shapley_modes(counting, n_players=6, method="exact", batch_size=9)
    codes = counting.rows @ (1 << np.arange(6))
    assert sorted(codes.tolist()) == list(range(64))
    assert res.n_evaluations == 64
    assert max(len(call) for call in counting.calls) <= 9


def test_shapley_weights_sum_to_one_over_positions():
    n = 9
    from math import comb

    w = shapley_weights(n)
    assert np.isclose(sum(comb(n - 1, s) * w[s] for s in range(n)), 1.0)

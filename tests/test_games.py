import numpy as np
import pytest
import torch
from ground_truth import shapley_by_permutations

from msa_core import AdditiveGame, FunctionGame, MSAInputError, UnanimityGame, as_game
from msa_core.games import values_as_array


def test_unanimity_closed_form_equals_brute_force():
    game = UnanimityGame.random(6, n_terms=12, max_order=4, output_shape=(2, 3), seed=0)
    np.testing.assert_allclose(game.shapley_values(), shapley_by_permutations(game, 6), atol=1e-12)


def test_unanimity_value_is_the_sum_of_contained_terms():
    supports = np.array([[True, True, False], [False, False, True]])
    game = UnanimityGame(supports, np.array([2.0, 5.0]))
    coalitions = np.array(
        [[True, True, False], [True, False, True], [True, True, True], [False, False, False]]
    )
    assert game(coalitions).tolist() == [2.0, 5.0, 7.0, 0.0]


def test_additive_closed_form_equals_brute_force():
    game = AdditiveGame(
        np.random.default_rng(1).normal(size=(5, 2)), baseline=np.array([1.0, -1.0])
    )
    np.testing.assert_allclose(game.shapley_values(), shapley_by_permutations(game, 5), atol=1e-12)


def test_as_game_wraps_callables_and_checks_player_counts():
    game = as_game(lambda c: c.astype(float), n_players=3)
    assert isinstance(game, FunctionGame) and game.player_names == ["u0", "u1", "u2"]
    assert as_game(game) is game
    with pytest.raises(MSAInputError, match="contradicts the game, which has 3 players"):
        as_game(game, n_players=4)


def test_player_names_must_match_the_number_of_players():
    with pytest.raises(
        MSAInputError, match="player_names has 2 entries but the game has 3 players"
    ):
        FunctionGame(lambda c: c, 3, player_names=["a", "b"])


@pytest.mark.parametrize(
    "coalitions, message",
    [
        (np.ones((2, 3), dtype=int), "dtype bool"),
        (np.ones((2, 4), dtype=bool), r"shape \[C, 3\]"),
        (np.ones(3, dtype=bool), r"shape \[C, 3\]"),
        ([[True, False, True]], "numpy bool array"),
    ],
)
def test_game_call_rejects_bad_coalitions(coalitions, message):
    game = FunctionGame(lambda c: c.astype(float), 3)
    with pytest.raises(MSAInputError, match=message):
        game(coalitions)


def test_game_call_accepts_torch_bool_coalitions():
    game = FunctionGame(lambda c: c.astype(float), 2)
    assert game(torch.tensor([[True, False]])).tolist() == [[1.0, 0.0]]


def test_values_as_array_converts_torch_and_integers_to_float64():
    assert values_as_array(torch.tensor([[1.5]], dtype=torch.bfloat16), 1, None).dtype == np.float64
    assert values_as_array(np.array([3, 4]), 2, None).tolist() == [3.0, 4.0]

import numpy as np
import pytest
from ground_truth import CountingGame, RandomNonlinearGame

from msa_core import AdditiveGame, UnanimityGame, shapley_modes


@pytest.mark.parametrize("method", ["permutation", "antithetic"])
def test_additive_game_is_recovered_exactly_with_zero_stderr(method):
    weights = np.random.default_rng(0).normal(size=(12, 3))
    res = shapley_modes(AdditiveGame(weights, baseline=2.0), method=method, n_permutations=10)
    np.testing.assert_allclose(res.modes, weights, atol=1e-12)
    np.testing.assert_allclose(res.stderr, 0.0, atol=1e-12)


@pytest.mark.parametrize("method", ["permutation", "antithetic"])
def test_estimates_fall_within_a_few_stderr_of_closed_form(method):
    game = UnanimityGame.random(16, n_terms=40, max_order=5, output_shape=(30,), seed=2)
    res = shapley_modes(game, method=method, n_permutations=300, seed=1)
    z = np.abs(res.modes - game.shapley_values()) / res.stderr
    assert np.mean(z < 3) > 0.97, np.mean(z < 3)
    assert z.max() < 6


def test_permutations_count_and_prefix_coalitions():
    counting = CountingGame(RandomNonlinearGame(5, seed=1))
    res = shapley_modes(
        counting, n_players=5, method="permutation", n_permutations=4, batch_size=1000
    )
    rows = counting.rows[2:]  # after the full and empty coalitions
    assert res.n_permutations == 4 and res.n_evaluations == 2 + 4 * 4
    sizes = rows.sum(1).reshape(4, 4)
    assert (sizes == np.arange(1, 5)).all()
    chains = rows.reshape(4, 4, 5)
    assert (chains[:, 1:] >= chains[:, :-1]).all()  # each order adds one unit at a time


def test_antithetic_pairs_each_order_with_its_reverse():
    counting = CountingGame(RandomNonlinearGame(5, seed=1))
    shapley_modes(counting, n_players=5, method="antithetic", n_permutations=4)
    for first, second in counting.rows[2:].reshape(2, 2, 4, 5):
        # the reverse order's prefix of size k is the complement of the forward prefix of size N - k
        assert (second == ~first[::-1]).all()


def test_antithetic_beats_plain_permutation_on_a_monotone_game():
    game = UnanimityGame.random(12, n_terms=30, max_order=4, output_shape=(10,), seed=5)
    truth = game.shapley_values()
    errors = {
        m: np.mean(
            [
                np.mean(
                    (shapley_modes(game, method=m, n_permutations=40, seed=s).modes - truth) ** 2
                )
                for s in range(6)
            ]
        )
        for m in ("permutation", "antithetic")
    }
    assert errors["antithetic"] < errors["permutation"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("per_sample", [1, 2])
@pytest.mark.parametrize("shape", [(7, 5), (7,)])
def test_the_compiled_fold_equals_contributions_added_to_the_moments(dtype, per_sample, shape):
    """``fold_orders`` (one compiled pass) against the explicit path it replaces: contributions
    ``[P, N, D]`` (differences in the values' dtype), averaged per sample in float64, added to
    float64 moments; over two blocks, so the second is shifted by the first block's first sample.
    The arithmetic is the same but for the order of the float64 additions (relative 1e-16 each).
    Moments of shape ``(N,)`` (the unit scores: one output) are folded in place too."""
    from msa_core.estimators.base import RunningMoments
    from msa_core.estimators.permutation import fold_orders, marginal_contributions

    rng = np.random.default_rng(0)
    n, d, orders = shape[0], (shape[1:] or (1,))[0], 6
    ends = rng.normal(size=(2, d)).astype(dtype)
    folded, reference = RunningMoments(shape), RunningMoments(shape)
    for _ in range(2):
        ranks = rng.random((orders, n)).argsort(1).argsort(1)
        values = rng.normal(size=(orders * (n - 1), d)).astype(dtype)
        fold_orders(ranks, values, ends[0], ends[1], per_sample, folded)
        contributions = marginal_contributions(ranks, values, ends[0], ends[1]).astype(np.float64)
        reference.add(contributions.reshape(-1, per_sample, *shape).mean(axis=1))
    assert folded.count == reference.count == 2 * orders // per_sample
    for name in ("shift", "sum", "sum_sq"):
        np.testing.assert_allclose(
            getattr(folded, name), getattr(reference, name), rtol=1e-12, atol=1e-12
        )

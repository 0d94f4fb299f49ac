"""The regression-adjusted estimator, its surrogate features and leverage-score sampling."""

from itertools import combinations

import numpy as np
import pytest
from ground_truth import RandomNonlinearGame, shapley_by_subsets

from msa_core import UnanimityGame, shapley_modes
from msa_core.errors import MSAInputError
from msa_core.estimators.kernel import border_sizes, pair_schedule
from msa_core.estimators.surrogate import OddFeatures, product_shapley


@pytest.mark.parametrize("n", [6, 7])
def test_surrogate_features_have_the_stated_shapley_values_and_are_odd(n):
    features = OddFeatures(n, order=3)
    truth = shapley_by_subsets(features, n)  # [N, F]: each feature as a game of its own
    np.testing.assert_allclose(features.shapley, truth.T, atol=1e-12)
    coalitions = np.random.default_rng(0).random((20, n)) < 0.5
    np.testing.assert_allclose(features(coalitions), -features(~coalitions), atol=1e-15)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_product_times_size_shapley_values_match_brute_force(order):
    n, h = 6, np.array([0.0, 0.3, -1.0, 2.0, 0.5, 1.5, -0.7])  # an arbitrary factor per size 0..6
    members = list(range(order))
    game = lambda c: (c[:, members].all(axis=1) * h[c.sum(axis=1)])[:, None]  # noqa: E731
    truth = shapley_by_subsets(game, n)[:, 0]
    inside, outside = product_shapley(n, order, h)
    np.testing.assert_allclose(truth, [inside] * order + [outside] * (n - order), atol=1e-12)


def test_all_coalitions_give_the_exact_values_with_zero_stderr():
    game = RandomNonlinearGame(6, out=(2, 2), seed=4)
    res = shapley_modes(game, n_players=6, method="regression_adjusted", max_evaluations=64)
    np.testing.assert_allclose(res.modes, shapley_by_subsets(game, 6), atol=1e-11)
    assert res.n_evaluations == 64 and np.all(res.stderr == 0)


def test_the_mean_over_seeds_is_unbiased():
    """Cross-fitting keeps it unbiased: the mean of 60 runs is within its noise of the truth."""
    game = UnanimityGame.random(8, n_terms=30, max_order=5, output_shape=(4,), seed=8)
    runs = np.stack(
        [
            shapley_modes(game, method="regression_adjusted", max_evaluations=80, seed=s).modes
            for s in range(60)
        ]
    )
    z = (runs.mean(axis=0) - game.shapley_values()) / (
        runs.std(axis=0, ddof=1) / np.sqrt(len(runs))
    )
    assert np.all(np.abs(z) < 4.5), np.abs(z).max()  # 32 elements: |z| > 4.5 has probability 2e-4


def test_efficiency_holds_per_output_element():
    game = RandomNonlinearGame(9, out=(3, 2), seed=1)
    res = shapley_modes(game, n_players=9, method="regression_adjusted", max_evaluations=150)
    ends = game(np.array([[True] * 9, [False] * 9]))
    total = (ends[0] - ends[1]).reshape(3, 2)
    np.testing.assert_allclose(res.modes.sum(axis=0), total, atol=1e-12 * np.abs(ends).max())


class SpannedGame:
    """A game inside the surrogate's span: a size curve, unit effects, pairwise products (whose
    odd part is of order 1) and size-signed pairwise interactions ``x_i x_j u``, ``[C, 2]``."""

    def __init__(self, n_players: int, seed: int):
        rng = np.random.default_rng(seed)
        self.n_players = n_players
        self.curve = rng.normal(size=n_players + 1)
        self.units = rng.normal(size=(n_players, 2))
        self.pairs = np.triu(rng.normal(size=(2, n_players, n_players)), 1)
        self.signed = np.triu(rng.normal(size=(n_players, n_players)), 1)

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        z = coalitions.astype(np.float64)
        x, sizes = 2 * z - 1, coalitions.sum(axis=1)
        u = (2 * sizes - self.n_players) / self.n_players
        pairwise = np.einsum("ci,kij,cj->ck", z, self.pairs, z)
        signed = np.einsum("ci,ij,cj->c", x, self.signed, x) * u
        return self.curve[sizes, None] + z @ self.units + pairwise + signed[:, None]


def test_a_game_in_the_surrogates_span_is_recovered_exactly():
    """The residual is 0, so every group's estimate is the truth: no error, no spread."""
    game = SpannedGame(9, seed=2)
    truth = shapley_by_subsets(game, 9)
    res = shapley_modes(game, n_players=9, method="regression_adjusted", max_evaluations=200)
    scale = np.abs(truth).max()
    np.testing.assert_allclose(res.modes, truth, atol=1e-6 * scale)
    assert res.stderr.max() < 1e-6 * scale and np.all(np.isfinite(res.stderr))


def test_surrogate_order_follows_memory_and_size_and_is_validated():
    from msa_core.estimators.regression_adjusted import RegressionAdjustedEstimator as Estimator

    assert Estimator.highest_order(16, 10) == 3  # 719 features
    assert Estimator.highest_order(17, 10) == 2  # triples would be 858 features
    assert Estimator.highest_order(16, 32 * 32 * 32) == 1  # pairs x outputs: too many numbers
    assert Estimator.highest_order(45, 1) == 1  # 990 pairs
    for order in (0, 4, True, 2.0):
        with pytest.raises(MSAInputError, match="surrogate's order must be one of"):
            OddFeatures(5, order=order)


def test_regression_adjusted_beats_kernel_and_permutation_at_equal_evaluations():
    game = UnanimityGame.random(12, n_terms=60, max_order=5, output_shape=(10,), seed=3)
    truth = game.shapley_values()
    errors = {
        m: np.mean(
            [
                np.mean(
                    (shapley_modes(game, method=m, max_evaluations=600, seed=s).modes - truth) ** 2
                )
                for s in range(4)
            ]
        )
        for m in ("permutation", "kernel", "regression_adjusted")
    }
    assert errors["regression_adjusted"] < errors["kernel"] / 2 < errors["permutation"] / 4, errors


def test_leverage_sampling_spreads_pairs_evenly_over_sizes():
    counts = np.bincount(
        pair_schedule(24, [3, 4, 5, 12], 500, np.random.default_rng(0), power=0.0), minlength=13
    )
    assert counts.sum() == 500 and max(counts[[3, 4, 5]]) - min(counts[[3, 4, 5]]) <= 1
    assert (
        abs(counts[12] - 500 / 3.5 / 2) <= 1
    )  # the middle size is one size, the others two (s and N-s)
    assert border_sizes(10, 100, power=0.0) == [
        1,
        9,
    ]  # 20 coalitions; size 2 would need 90 of 80 left


def test_coalitions_of_sampled_pairs_are_complements():
    from msa_core.estimators.regression_adjusted import RegressionAdjustedEstimator

    estimator = RegressionAdjustedEstimator(12, np.zeros(1), np.zeros(1), seed=0, budget=900)
    rows = estimator.block(len(estimator.segments))
    assert (rows[0::2] == ~rows[1::2]).all()
    sizes = rows[0::2].sum(axis=1)
    assert set(sizes.tolist()) <= set(estimator.sampled_sizes.tolist())
    assert {frozenset(np.flatnonzero(r)) for r in rows[0::2]} != set(
        map(frozenset, combinations(range(12), 1))
    )

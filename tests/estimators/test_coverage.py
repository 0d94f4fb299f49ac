"""Calibrated standard errors: 95% intervals hold the truth for about 95% of elements over seeds.

Each check runs one sampler on a game with exact truth for ``SEEDS`` seeds and counts the elements
(seeds x players x outputs) inside ``result.interval(0.95)``. The target is issue 15's: 93-97% of
elements. The outputs carry independent random coefficients, so their errors are uncorrelated; the
band is that range widened by 3 binomial standard errors of the count (about 1 point), wide enough
for the correlation left between players (their modes sum to a fixed total) and for the moderated
variance of the permutation samplers (which covers 96-97% on smooth games, to cover 93-94% on games
of rare events), and narrow enough to catch the normal quantile on 8 batch-means groups (90%) or a
too-small variance (the 84-91% issue 15 measured).
"""

import numpy as np
import pytest
from ground_truth import RandomNonlinearGame, WithGradients

from msa_core import ModesResult, UnanimityGame, shapley_modes
from msa_core.estimators.plan import ESTIMATORS, SAMPLED_METHODS
from msa_core.result import interval_multiplier

SEEDS = 40


def coverage(
    game, truth: np.ndarray, method: str, budget: int, n_players: int | None = None
) -> tuple[float, int]:
    """Share of elements inside the 95% interval over ``SEEDS`` runs, and how many were counted."""
    inside = []
    for seed in range(SEEDS):
        res = shapley_modes(
            game, n_players=n_players, method=method, max_evaluations=budget, seed=seed
        )
        low, high = res.interval(0.95)
        inside.append((low <= truth) & (truth <= high))
    return float(np.mean(inside)), int(np.size(inside))


def assert_calibrated(share: float, count: int) -> None:
    slack = 3 * np.sqrt(0.95 * 0.05 / count)
    message = f"95% intervals hold the truth for {share:.3f} of {count} elements"
    assert 0.93 - slack <= share <= 0.97 + slack, message


def played(game, method: str, n_players: int, gradients=None):
    """``game``, with gradients (``gradients``, default the multilinear extension's) for a method
    that needs them."""
    if ESTIMATORS[method].needs_gradients:
        return WithGradients(game, n_players, gradients)
    return game


@pytest.mark.parametrize("method", SAMPLED_METHODS)
def test_intervals_cover_a_sum_of_unanimity_games(method):
    game = UnanimityGame.random(12, n_terms=40, max_order=4, output_shape=(8,), seed=5)
    truth = game.shapley_values()
    assert_calibrated(*coverage(played(game, method, 12), truth, method, budget=50 * 11))


@pytest.mark.parametrize("method", SAMPLED_METHODS)
def test_intervals_cover_a_smooth_nonlinear_game(method):
    game = RandomNonlinearGame(10, out=(8,), seed=3)
    truth = shapley_modes(game, n_players=10, method="exact").modes
    sampled = played(game, method, 10, game.gradients)
    assert_calibrated(*coverage(sampled, truth, method, budget=40 * 9, n_players=10))


def test_degrees_of_freedom_are_stored_and_old_results_use_the_normal_quantile(tmp_path):
    half_width = lambda result: result.interval()[1] - result.modes  # noqa: E731
    game = UnanimityGame.random(12, n_terms=20, max_order=3, output_shape=(2,), seed=0)
    res = shapley_modes(game, method="permutation", n_permutations=30)
    assert res.meta["stderr_dof"] == pytest.approx(1.1 * 30 - 1)
    res.save(tmp_path / "r.npz")
    loaded = ModesResult.load(tmp_path / "r.npz")
    np.testing.assert_allclose(half_width(loaded), interval_multiplier(1.1 * 30 - 1) * res.stderr)
    del loaded.meta["stderr_dof"]  # a result saved before degrees of freedom were recorded
    np.testing.assert_allclose(half_width(loaded), 1.959964 * res.stderr, rtol=1e-6)
    assert shapley_modes(game, method="exact").meta["stderr_dof"] is None


SCORE_SEEDS = 200
FAST_SCORE_METHODS = ("permutation", "antithetic", "kernel")  # moments and jackknife; the rest slow


@pytest.mark.parametrize(
    "method",
    [
        method if method in FAST_SCORE_METHODS else pytest.param(method, marks=pytest.mark.slow)
        for method in SAMPLED_METHODS
    ],
)
def test_score_intervals_cover_the_exact_score_and_the_bound_over_covers(method):
    """The ranking's score (a unit's mode averaged over the outputs) with the run's own
    ``score_stderr``: its 95% intervals hold the exact score for 93-97% of units over 200 seeds
    (band as above). The old bound, the mean of the elements' standard errors, covers more than
    99%: measured 0.995-1.0 here, where the exact standard error is about half the bound."""
    game = UnanimityGame.random(10, n_terms=30, max_order=3, output_shape=(4,), seed=2)
    truth = game.shapley_values().mean(axis=1)
    inside, inside_bound = [], []
    for seed in range(SCORE_SEEDS):
        res = shapley_modes(
            played(game, method, 10), method=method, max_evaluations=2 + 20 * 9, seed=seed
        )
        assert res.score_stderr is not None
        half = interval_multiplier(res.meta["stderr_dof"])
        error = np.abs(res.modes.mean(axis=1) - truth)
        inside.append(error <= half * res.score_stderr)
        inside_bound.append(error <= half * res.score_stderr_or_bound()[0])
        assert np.array_equal(inside_bound[-1], inside[-1])  # the recorded one is used
        inside_bound[-1] = error <= half * res.stderr.mean(axis=1)
    assert_calibrated(float(np.mean(inside)), int(np.size(inside)))
    assert np.mean(inside_bound) > 0.99

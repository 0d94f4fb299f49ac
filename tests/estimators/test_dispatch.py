"""Properties every method shares, budgets, stopping, progress and bad input of
``shapley_modes``."""

import numpy as np
import pytest
import torch
from ground_truth import CountingGame, RandomNonlinearGame, shapley_by_subsets

from msa_core import METHODS, MSAInputError, UnanimityGame, shapley_modes

SAMPLED = ["permutation", "antithetic", "kernel", "leverage", "regression_adjusted"]
# estimates from a fit: null players ~0, not 0
REGRESSIONS = (
    "kernel",
    "leverage",
    "regression_adjusted",
)
ALL = ["exact", *SAMPLED]


@pytest.mark.parametrize("method", ALL)
def test_efficiency_holds_to_float_precision(method):
    game = RandomNonlinearGame(9, out=(4, 3), seed=1)
    res = shapley_modes(
        game, n_players=9, method=method, max_evaluations=600 if method != "exact" else None
    )
    scale = np.abs(res.v_full - res.v_empty).max()
    assert res.efficiency_gap() < 1e-12 * max(1.0, scale) * 9


@pytest.mark.parametrize("method", ALL)
def test_null_player_gets_zero(method):
    inner = RandomNonlinearGame(6, out=(5,), seed=2)
    game = lambda c: inner(c[:, :6])  # noqa: E731  player 6 never matters
    res = shapley_modes(
        game, n_players=7, method=method, max_evaluations=None if method == "exact" else 700
    )
    if method in REGRESSIONS:  # a regression coefficient: zero up to sampling noise
        assert np.all(np.abs(res.modes[6]) <= 4 * res.stderr[6] + 1e-12)
    else:  # zero up to the rounding of sums of values
        np.testing.assert_allclose(res.modes[6], 0.0, atol=1e-12 * np.abs(res.v_full).max())
        # every marginal contribution of a null player is exactly 0
        assert np.all(res.stderr[6] == 0)


def test_symmetric_players_get_equal_modes():
    inner = RandomNonlinearGame(5, out=(3,), seed=3)

    def game(c):  # players 0 and 1 only act through their count
        merged = c.copy()
        merged[:, 0] = c[:, 0] | c[:, 1]
        merged[:, 1] = c[:, 0] & c[:, 1]
        return inner(merged)

    res = shapley_modes(game, n_players=5, method="exact")
    np.testing.assert_allclose(res.modes[0], res.modes[1], atol=1e-12)
    assert not np.allclose(res.modes[0], res.modes[2])


@pytest.mark.parametrize("method", ALL)
def test_linearity_with_the_same_seed(method):
    g1, g2 = RandomNonlinearGame(8, out=(3,), seed=4), RandomNonlinearGame(8, out=(3,), seed=5)
    combo = lambda c: 2.0 * g1(c) - 0.5 * g2(c)  # noqa: E731
    kw = dict(
        n_players=8, method=method, seed=3, max_evaluations=None if method == "exact" else 500
    )
    lhs = shapley_modes(combo, **kw).modes
    rhs = 2.0 * shapley_modes(g1, **kw).modes - 0.5 * shapley_modes(g2, **kw).modes
    np.testing.assert_allclose(lhs, rhs, atol=1e-10)


@pytest.mark.parametrize("method", SAMPLED)
def test_same_seed_same_result_for_any_batch_size(method):
    inner = RandomNonlinearGame(11, out=(2, 2), seed=6)
    # row by row, so the game's own values cannot depend on the batch (BLAS kernels may)
    game = lambda c: np.concatenate([inner(row[None]) for row in c])  # noqa: E731
    results = [
        shapley_modes(game, n_players=11, method=method, max_evaluations=900, seed=7, batch_size=b)
        for b in (1, 13, 100, 5000)
    ]
    for other in results[1:]:
        assert np.array_equal(results[0].modes, other.modes)
        assert np.array_equal(results[0].stderr, other.stderr, equal_nan=True)
        assert results[0].n_evaluations == other.n_evaluations
    different_seed = shapley_modes(game, n_players=11, method=method, max_evaluations=900, seed=8)
    assert not np.array_equal(results[0].modes, different_seed.modes)


@pytest.mark.parametrize("method", SAMPLED)
@pytest.mark.parametrize("budget", [130, 401])
def test_max_evaluations_is_a_hard_budget_and_calls_respect_batch_size(method, budget):
    counting = CountingGame(RandomNonlinearGame(10, seed=0))
    res = shapley_modes(
        counting, n_players=10, method=method, max_evaluations=budget, batch_size=16
    )
    assert len(counting.rows) == res.n_evaluations <= budget
    # the budget is used
    assert res.n_evaluations > budget - 2 * 9 * (2 if method == "antithetic" else 1)
    assert max(len(call) for call in counting.calls) <= 16


@pytest.mark.parametrize("method", ALL)
def test_full_and_empty_are_evaluated_once(method):
    counting = CountingGame(RandomNonlinearGame(7, seed=0))
    res = shapley_modes(
        counting, n_players=7, method=method, max_evaluations=None if method == "exact" else 300
    )
    rows = counting.rows
    assert rows.all(axis=1).sum() == 1 and (~rows).all(axis=1).sum() == 1
    np.testing.assert_allclose(res.v_full, counting.game(np.ones((1, 7), bool))[0])


@pytest.mark.parametrize("method", SAMPLED)
def test_target_stderr_stops_early_within_budget(method):
    game = UnanimityGame.random(12, n_terms=20, max_order=3, output_shape=(4,), seed=1)
    full = shapley_modes(game, method=method, n_permutations=200, seed=2)
    target = float(np.nanmax(full.stderr)) * 2.5
    res = shapley_modes(
        game, method=method, n_permutations=200, seed=2, target_stderr=target, batch_size=50
    )
    assert res.meta["stopped_early"] and res.n_evaluations < full.n_evaluations
    assert np.nanmax(res.stderr) <= target


def test_progress_reports_evaluations_up_to_the_total():
    seen = []
    res = shapley_modes(
        RandomNonlinearGame(6, seed=0),
        n_players=6,
        method="permutation",
        n_permutations=20,
        batch_size=10,
        progress=lambda done, total: seen.append((done, total)),
    )
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == res.n_evaluations
    assert {t for _, t in seen} == {res.n_evaluations}


def test_auto_is_exact_when_all_coalitions_fit_the_budget_else_the_best_sampler():
    small = shapley_modes(RandomNonlinearGame(8, seed=0), n_players=8)
    assert small.meta["method"] == "exact"
    np.testing.assert_allclose(
        small.modes, shapley_by_subsets(RandomNonlinearGame(8, seed=0), 8), atol=1e-11
    )
    large = shapley_modes(UnanimityGame.random(24, 10, 3, seed=0), max_evaluations=3000)
    assert large.meta["method"] == "regression_adjusted" and large.n_evaluations <= 3000


def test_auto_samples_permutations_when_the_regression_would_be_wide(monkeypatch):
    """Above KERNEL_MAX_VALUES = N x |out|, auto picks permutation sampling (also on resume)."""
    import msa_core.estimators.plan as plan

    game = UnanimityGame.random(24, 10, 3, seed=0)
    # N x |out|
    values = 24 * shapley_modes(game, max_evaluations=100, method="permutation").v_full.size
    monkeypatch.setattr(plan, "KERNEL_MAX_VALUES", values - 1)
    wide = shapley_modes(game, max_evaluations=3000)
    assert wide.meta["method"] == "permutation" and wide.efficiency_gap() < 1e-10
    monkeypatch.setattr(plan, "KERNEL_MAX_VALUES", values)
    assert shapley_modes(game, max_evaluations=3000).meta["method"] == "regression_adjusted"


def test_one_player_game():
    res = shapley_modes(lambda c: c * 3.0 + 1.0, n_players=1, method="permutation")
    assert res.modes.tolist() == [[3.0]] and res.stderr.tolist() == [[0.0]]


def test_torch_values_in_float32_are_accepted():
    game = RandomNonlinearGame(5, out=(3,), seed=0)
    res = shapley_modes(lambda c: torch.from_numpy(game(c)).float(), n_players=5, method="exact")
    np.testing.assert_allclose(res.modes, shapley_by_subsets(game, 5), atol=1e-5)


def _ok(c):
    return c.astype(float)


@pytest.mark.parametrize(
    "game, kwargs, message",
    [
        (
            lambda c: c.astype(float)[:-1],
            dict(n_players=3),
            "leading dimension must be the number of coalitions",
        ),
        (lambda c: np.full((len(c), 2), np.nan), dict(n_players=3), "NaN or inf"),
        (lambda c: np.full((len(c), 2), np.inf), dict(n_players=3), "NaN or inf"),
        (lambda c: c.tolist(), dict(n_players=3), "numpy array or torch tensor"),
        (lambda c: np.zeros((len(c), 2), complex), dict(n_players=3), "real numbers"),
        (
            lambda c: np.zeros((len(c), len(c))),
            dict(n_players=3, method="exact", batch_size=3),
            "same output shape",
        ),
        (_ok, dict(), "n_players is required"),
        (_ok, dict(n_players=0), "n_players must be an integer >= 1"),
        (_ok, dict(n_players=2.5), "n_players must be an integer >= 1"),
        ("not a game", dict(n_players=3), "game must be callable"),
        (
            _ok,
            dict(n_players=3, method="shapiq"),
            "unknown method 'shapiq'; allowed: auto, exact, permutation",
        ),
        (_ok, dict(n_players=21, method="exact"), "permutation, antithetic, kernel"),
        (_ok, dict(n_players=5, method="exact", max_evaluations=20), "needs 2^5 = 32 evaluations"),
        (
            _ok,
            dict(n_players=5, method="exact", n_permutations=3),
            "does not apply to method='exact'",
        ),
        (
            _ok,
            dict(n_players=5, method="permutation", n_permutations=1),
            "too small for method='permutation'",
        ),
        (_ok, dict(n_players=5, method="antithetic", n_permutations=3), "must be even"),
        (
            _ok,
            dict(n_players=5, method="kernel", max_evaluations=5),
            "too small for method='kernel'",
        ),
        (_ok, dict(n_players=5, n_permutations=0), "n_permutations must be a positive integer"),
        (_ok, dict(n_players=5, max_evaluations=-3), "max_evaluations must be a positive integer"),
        (_ok, dict(n_players=5, seed=-1), "seed must be a whole number from 0 to 2^63 - 1"),
        (_ok, dict(n_players=5, batch_size=0), "batch_size must be a positive integer"),
        (_ok, dict(n_players=5, target_stderr=0), "target_stderr must be a positive number"),
        (_ok, dict(n_players=5, backend="dask"), "unknown backend 'dask'"),
        (_ok, dict(n_players=5, progress=3), "progress must be a callable"),
    ],
)
def test_bad_input_gets_a_clear_error(game, kwargs, message):
    with pytest.raises(MSAInputError, match=message.replace("(", r"\(").replace("^", r"\^")):
        shapley_modes(game, **kwargs)


def test_bad_input_is_refused_before_any_evaluation():
    counting = CountingGame(_ok)
    with pytest.raises(MSAInputError):
        shapley_modes(counting, n_players=21, method="exact")
    assert counting.calls == []


def test_methods_are_listed():
    assert METHODS == (
        "auto",
        "exact",
        "permutation",
        "antithetic",
        "kernel",
        "leverage",
        "regression_adjusted",
        "gradient",
    )

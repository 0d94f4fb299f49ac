import numpy as np
from ground_truth import RandomNonlinearGame, shapley_by_permutations

from msa_core import UnanimityGame, shapley_modes
from msa_core.estimators.kernel import (
    border_sizes,
    pair_schedule,
    solve_constrained,
    sum_zero_basis,
)


def test_full_enumeration_gives_exact_values():
    game = RandomNonlinearGame(6, out=(2, 2), seed=4)
    res = shapley_modes(game, n_players=6, method="kernel", max_evaluations=64)
    np.testing.assert_allclose(res.modes, shapley_by_permutations(game, 6), atol=1e-11)
    assert res.n_evaluations == 64 and np.all(res.stderr == 0)


def test_paired_sampling_is_exact_for_games_up_to_order_two():
    game = UnanimityGame.random(30, n_terms=80, max_order=2, output_shape=(6,), seed=3)
    res = shapley_modes(game, method="kernel", max_evaluations=400, seed=9)
    np.testing.assert_allclose(res.modes, game.shapley_values(), atol=1e-10)


def test_estimates_fall_within_a_few_stderr_of_closed_form():
    game = UnanimityGame.random(40, n_terms=120, max_order=5, output_shape=(25,), seed=7)
    res = shapley_modes(game, method="kernel", max_evaluations=8000, seed=2)
    z = np.abs(res.modes - game.shapley_values()) / res.stderr
    assert np.mean(z < 3) > 0.9, np.mean(z < 3)


def test_kernel_beats_permutation_at_equal_evaluations():
    game = UnanimityGame.random(20, n_terms=60, max_order=5, output_shape=(10,), seed=11)
    truth = game.shapley_values()
    errors = {
        m: np.mean(
            [
                np.mean(
                    (shapley_modes(game, method=m, max_evaluations=1500, seed=s).modes - truth) ** 2
                )
                for s in range(4)
            ]
        )
        for m in ("permutation", "kernel")
    }
    assert errors["kernel"] < errors["permutation"] / 2


def test_border_sizes_grow_with_budget():
    assert border_sizes(10, 20) == []
    assert border_sizes(10, 100) == [1, 9]
    assert border_sizes(10, 1022) == list(range(1, 10))


def test_pair_schedule_allocates_every_pair_and_favours_small_sizes():
    schedule = pair_schedule(24, [3, 4, 5, 12], 500, np.random.default_rng(0))
    counts = np.bincount(schedule, minlength=13)
    assert counts.sum() == 500 and counts[3] > counts[4] > counts[5] > counts[12] > 0


def test_constrained_solve_sums_to_delta_and_solves_exact_system():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(5, 3))
    truth -= truth.mean(0) - 1.0 / 5  # sums to 1 per output
    z = rng.integers(0, 2, size=(40, 5)).astype(float)
    modes = solve_constrained(z.T @ z, z.T @ (z @ truth), np.ones(3), sum_zero_basis(5))
    np.testing.assert_allclose(modes, truth, atol=1e-10)
    np.testing.assert_allclose(sum_zero_basis(5).sum(0), 0.0, atol=1e-12)

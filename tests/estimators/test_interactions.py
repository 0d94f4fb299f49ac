"""Interaction modes against ground truth: brute force, unanimity games, symmetry, additivity."""

import numpy as np
import pytest
from ground_truth import CountingGame, RandomNonlinearGame, interactions_by_subsets

from msa_core import AdditiveGame, FileCheckpoint, MSAInputError, UnanimityGame
from msa_core.estimators.interactions import interaction_modes, pair_weights
from msa_core.interaction_result import InteractionResult


@pytest.mark.parametrize("n_players", [2, 3, 5, 7])
def test_exact_equals_brute_force(n_players):
    game = RandomNonlinearGame(n_players, out=(3, 2), seed=n_players)
    res = interaction_modes(game, n_players=n_players, method="exact", batch_size=5)
    np.testing.assert_allclose(
        res.interactions, interactions_by_subsets(game, n_players), atol=1e-12
    )
    assert res.interactions.shape == (n_players, n_players, 3, 2) and np.all(res.stderr == 0)
    assert res.n_evaluations == 2**n_players


def test_exact_evaluates_every_coalition_once_and_restricted_players_give_the_submatrix():
    game = CountingGame(RandomNonlinearGame(6, out=(4,), seed=2))
    full = interaction_modes(game, n_players=6, method="exact")
    codes = game.rows @ (1 << np.arange(6))
    assert sorted(codes.tolist()) == list(range(64))
    some = interaction_modes(game, n_players=6, players=[5, 0, 3], method="exact")
    np.testing.assert_allclose(
        some.interactions, full.interactions[np.ix_([5, 0, 3], [5, 0, 3])], atol=1e-12
    )
    assert some.player_names == ["u5", "u0", "u3"]


def test_unanimity_game_closed_form_exact_and_sampled():
    game = UnanimityGame.random(12, n_terms=25, max_order=5, output_shape=(3,), seed=4)
    truth = game.pair_interactions()
    assert np.abs(truth).max() > 0.1  # the game has interactions to find
    exact = interaction_modes(game, method="exact")
    np.testing.assert_allclose(exact.interactions, truth, atol=1e-11)
    players = [0, 3, 7, 11]
    sampled = interaction_modes(game, players=players, method="sampled", n_samples=3000, seed=1)
    z = np.abs(sampled.interactions - truth[np.ix_(players, players)])[
        np.triu_indices(4, 1)
    ] / sampled.stderr[np.triu_indices(4, 1)].clip(1e-12)
    assert z.max() < 4.0, z  # 18 estimates within 4 standard errors


def test_single_unanimity_term_gives_its_coefficient_over_size_minus_one():
    res = interaction_modes(
        lambda c: c[:, :3].all(1, keepdims=True) * 6.0, n_players=5, method="exact"
    )
    np.testing.assert_allclose(res.interactions[0, 1], [3.0], atol=1e-12)  # 6 / (3 - 1)
    np.testing.assert_allclose(
        res.interactions[0, 3], [0.0], atol=1e-12
    )  # unit 3 is not in the term


def test_symmetric_units_have_equal_interactions_and_the_matrix_is_symmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    a[1], a[:, 1] = a[0], a[:, 0]  # units 0 and 1 are interchangeable
    a[1, 1], a[0, 1], a[1, 0] = a[0, 0], a[0, 0], a[0, 0]

    def game(c):
        z = c.astype(float)
        return np.tanh(np.einsum("ci,ij,cj->c", z, a, z))[:, None]

    for method, kw, tol in (("exact", {}, 1e-12), ("sampled", {"n_samples": 50}, 1e-12)):
        res = interaction_modes(game, n_players=6, method=method, **kw)
        np.testing.assert_allclose(res.interactions, np.swapaxes(res.interactions, 0, 1), atol=tol)
        assert np.all(np.diagonal(res.interactions, axis1=0, axis2=1) == 0)
    exact = interaction_modes(game, n_players=6, method="exact")
    np.testing.assert_allclose(exact.interactions[0, 2:], exact.interactions[1, 2:], atol=1e-12)


def test_additive_game_has_no_interactions():
    game = AdditiveGame(np.random.default_rng(1).normal(size=(9, 2, 3)), baseline=1.5)
    for method in ("exact", "sampled"):
        res = interaction_modes(game, method=method, n_samples=30 if method == "sampled" else None)
        assert np.abs(res.interactions).max() < 1e-12, method
        assert np.abs(res.stderr).max() < 1e-12, method


def test_sampled_intervals_cover_and_converge():
    n = 6
    game = RandomNonlinearGame(n, out=(2,), seed=1)
    truth = interactions_by_subsets(game, n)[np.triu_indices(n, 1)]
    z, errors = [], []
    for seed in range(30):
        res = interaction_modes(game, n_players=n, method="sampled", n_samples=200, seed=seed)
        pairs, stderr = res.interactions[np.triu_indices(n, 1)], res.stderr[np.triu_indices(n, 1)]
        z.append((pairs - truth) / stderr)
        errors.append(np.abs(pairs - truth).max())
    z = np.concatenate(z).ravel()
    assert 0.9 <= np.mean(np.abs(z) < 1.96) <= 0.99, np.mean(
        np.abs(z) < 1.96
    )  # 900 estimates, 95% intervals
    assert 0.85 < z.std() < 1.15
    big = interaction_modes(game, n_players=n, method="sampled", n_samples=6400, seed=0)
    assert (
        np.abs(big.interactions[np.triu_indices(n, 1)] - truth).max() < np.median(errors) / 3
    )  # ~1/sqrt(32)


def test_sampled_same_seed_same_result_whatever_batch_and_shares_coalitions():
    game = CountingGame(RandomNonlinearGame(10, out=(3,), seed=3))
    a = interaction_modes(
        game, n_players=10, players=[1, 2, 5, 8], method="sampled", n_samples=64, seed=7
    )
    b = interaction_modes(
        game,
        n_players=10,
        players=[1, 2, 5, 8],
        method="sampled",
        n_samples=64,
        seed=7,
        batch_size=3,
    )
    np.testing.assert_allclose(a.interactions, b.interactions, rtol=1e-12, atol=1e-14)
    assert a.n_evaluations == b.n_evaluations
    assert a.n_evaluations < 2 + 64 * 4 * 6  # fewer than four coalitions per pair and sample


def test_sampled_max_evaluations_budget_is_met_closely():
    game = RandomNonlinearGame(16, out=(2,), seed=0)
    res = interaction_modes(
        game, n_players=16, players=list(range(0, 16, 2)), method="sampled", max_evaluations=5000
    )
    assert 0.85 * 5000 <= res.n_evaluations <= 1.15 * 5000, res.n_evaluations
    assert res.meta["method"] == "sampled"
    auto = interaction_modes(game, n_players=16, players=[0, 1], max_evaluations=2**16)
    assert auto.meta["method"] == "exact"


class Crash(RuntimeError):
    pass


class CrashingGame:
    def __init__(self, crash_at):
        self.inner, self.calls, self.crash_at = (
            RandomNonlinearGame(10, out=(3,), seed=1),
            0,
            crash_at,
        )

    def __call__(self, coalitions):
        self.calls += 1
        if self.calls == self.crash_at:
            raise Crash("the model crashed")
        return np.concatenate([self.inner(row[None]) for row in coalitions])


@pytest.mark.parametrize("method", ["exact", "sampled"])
def test_interrupted_run_resumes_to_the_uninterrupted_result(method, tmp_path):
    kw = dict(
        n_players=10,
        players=[0, 2, 4, 6],
        method=method,
        batch_size=30,
        seed=2,
        n_samples=80 if method == "sampled" else None,
    )
    reference = interaction_modes(CrashingGame(None), **kw)
    checkpoint = FileCheckpoint(tmp_path / "ix.npz", every_seconds=0.0)
    with pytest.raises(Crash):
        interaction_modes(CrashingGame(20), checkpoint=checkpoint, **kw)
    assert int(checkpoint.load()["run.used"]) > 2
    resumed = interaction_modes(CrashingGame(None), checkpoint=checkpoint, **kw)
    np.testing.assert_allclose(resumed.interactions, reference.interactions, rtol=1e-12, atol=1e-14)
    assert resumed.n_evaluations == reference.n_evaluations
    with pytest.raises(MSAInputError, match="units"):
        interaction_modes(
            CrashingGame(None), checkpoint=checkpoint, **{**kw, "players": [0, 1, 4, 6]}
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(players=[1, 1]), "distinct"),
        (dict(players=[3]), "at least 2"),
        (dict(players=[0, 9]), "0..5"),
        (dict(players=[0.5, 1]), "integer"),
        (dict(method="kernel"), "allowed: auto, exact, sampled"),
        (dict(method="exact", max_evaluations=10), "2\\^6"),
        (dict(n_samples=1), "n_samples"),
        (dict(method="sampled", max_evaluations=4), "buys"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_input_is_refused_before_any_evaluation(kwargs, match):
    game = CountingGame(RandomNonlinearGame(6, seed=0))
    with pytest.raises(MSAInputError, match=match):
        interaction_modes(game, n_players=6, **kwargs)
    assert (
        len(game.calls) <= 1
    )  # at most the two ends (the evaluation budget needs the sampler's cost)


def test_exact_refuses_more_than_twenty_players():
    with pytest.raises(MSAInputError, match="N <= 20"):
        interaction_modes(lambda c: c.astype(float), n_players=21, method="exact")


def test_pair_weights_sum_to_one_over_coalitions():
    from math import comb

    n = 9
    w = pair_weights(n)
    assert np.isclose(sum(comb(n - 2, s) * w[s] for s in range(n - 1)), 1.0)


def test_result_saves_and_loads(tmp_path):
    res = interaction_modes(RandomNonlinearGame(4, out=(2,), seed=0), n_players=4, method="exact")
    res.save(tmp_path / "ix.npz")
    back = InteractionResult.load(tmp_path / "ix.npz")
    np.testing.assert_array_equal(back.interactions, res.interactions)
    assert (
        back.player_names == res.player_names
        and back.n_evaluations == 16
        and back.meta["method"] == "exact"
    )
    np.save(tmp_path / "other.npy", np.zeros(2))
    with pytest.raises(MSAInputError):
        InteractionResult.load(tmp_path / "other.npy")


def test_stderr_of_the_sum_over_outputs_is_calibrated():
    n = 6
    game = RandomNonlinearGame(n, out=(3, 2), seed=5)
    truth = interactions_by_subsets(game, n).reshape(n, n, -1).sum(-1)[np.triu_indices(n, 1)]
    z = []
    for seed in range(30):
        res = interaction_modes(game, n_players=n, method="sampled", n_samples=200, seed=seed)
        summed = res.interactions.reshape(n, n, -1).sum(-1)[np.triu_indices(n, 1)]
        z.append((summed - truth) / res.summed_stderr[np.triu_indices(n, 1)])
    z = np.concatenate(z)
    assert 0.9 <= np.mean(np.abs(z) < 1.96) <= 0.99 and 0.85 < z.std() < 1.15, (
        z.std(),
        np.mean(np.abs(z) < 1.96),
    )
    exact = interaction_modes(game, n_players=n, method="exact")
    assert exact.summed_stderr.shape == (n, n) and np.all(exact.summed_stderr == 0)


class CountedAdditiveGame(AdditiveGame):
    """An additive game that tells its output shape before any call and counts its calls."""

    calls = 0

    def evaluate(self, coalitions):
        self.calls += 1
        return super().evaluate(coalitions)


def test_an_interaction_run_that_cannot_fit_in_memory_is_refused_before_any_evaluation(
    monkeypatch,
):
    """45 pairs x 1000 outputs need 45 x 1000 x 24 bytes (three float64 arrays a row); the modes
    of the same 10 players need 10 x 1000 x 24. With 0.5 MB free only the modes fit."""
    import msa_core.memory

    monkeypatch.setattr(msa_core.memory, "available_bytes", lambda: 500_000)
    game = CountedAdditiveGame(np.ones((10, 1000)))
    with pytest.raises(MSAInputError, match="Shapley interactions of 45 pairs x 1,000 output"):
        interaction_modes(game, method="sampled", n_samples=10)
    assert game.calls == 0  # the game tells its output shape: refused before any evaluation
    few = interaction_modes(game, players=[0, 1, 2], method="sampled", n_samples=10)
    assert few.interactions.shape == (3, 3, 1000)  # 3 pairs fit
    blind = CountingGame(lambda c: np.ones((c.shape[0], 1000)))  # its shape is known from the ends
    with pytest.raises(MSAInputError, match="45 pairs"):
        interaction_modes(blind, n_players=10, method="sampled", n_samples=10)
    assert len(blind.calls) == 1 and blind.rows.shape[0] == 2  # the full and empty coalitions only

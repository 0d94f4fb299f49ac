"""Budgets checked before launch: the plan's estimator and evaluations match what ``shapley_modes``
does,
impossible budgets are refused with the reason, progress records are monotone with an early ETA."""

import numpy as np
import pytest
from runs_support import small_request

from msa_core import shapley_modes
from msa_core.errors import MSAInputError
from msa_core.runs import execute
from msa_core.runs.budget import Probe, plan_run, probe_game, progress_batch_size
from msa_core.runs.execute import ProgressRecorder
from msa_core.zoo import load_model


def weighted_game(n_players: int, n_outputs: int):
    """A cheap game with distinct players: v(S) = (sum of weights in S)^2 per output."""
    weights = np.arange(1, n_players + 1)[:, None] * np.linspace(0.5, 1.5, n_outputs)[None]

    def game(coalitions: np.ndarray) -> np.ndarray:
        return (coalitions.astype(float) @ weights) ** 2

    game.n_players = n_players
    return game


@pytest.mark.parametrize(
    "changes",
    [
        {"method": "auto", "n_permutations": 40},  # 2^6 = 64 fits 2 + 40 * 5: exact
        {"method": "auto", "n_permutations": 3},  # 17 evaluations: kernel
        {"method": "permutation", "n_permutations": 7},
        {"method": "antithetic", "n_permutations": 6},
        {"method": "kernel", "max_evaluations": 33},
        {
            "method": "permutation",
            "max_evaluations": 40,
        },  # not a whole number of permutations: 37 used
    ],
)
def test_the_plan_is_what_the_estimator_then_does(changes):
    game = weighted_game(6, 3)
    plan = plan_run(small_request(**changes), Probe(6, 3, 1e-3))
    result = shapley_modes(
        game,
        n_players=6,
        method=changes["method"],
        n_permutations=changes.get("n_permutations"),
        max_evaluations=changes.get("max_evaluations"),
    )
    assert (plan.method, plan.evaluations) == (result.meta["method"], result.n_evaluations)
    assert plan.seconds == pytest.approx(plan.evaluations * 1e-3)
    assert plan.reason.startswith("auto picked " + plan.method) == (changes["method"] == "auto")


def test_auto_picks_permutation_for_large_outputs_and_says_why():
    plan = plan_run(small_request(method="auto", n_permutations=5), Probe(113, 32768, 1e-4))
    assert plan.method == "permutation" and "exceed 2^20" in plan.reason


@pytest.mark.parametrize(
    "n_players, changes, message",
    [
        (32, {"method": "auto", "n_permutations": None, "max_evaluations": 1}, "at least 66"),
        (128, {"method": "exact", "n_permutations": None}, "N <= 20"),
        (
            59,
            {"method": "auto", "n_permutations": 10**9},
            "of memory",
        ),  # kernel's pair schedule: ~700 GiB
        (32, {"method": "permutation", "n_permutations": 10**9}, "days"),
    ],
)
def test_impossible_budgets_are_refused_before_launch(n_players, changes, message):
    with pytest.raises(MSAInputError, match=message):
        plan_run(small_request(**changes), Probe(n_players, 360, 1e-3), memory_limit=16 << 30)


def test_zero_permutations_is_refused_by_the_request():
    with pytest.raises(MSAInputError, match="n_permutations must be a positive integer"):
        small_request(n_permutations=0)


def test_the_probe_times_the_real_game(one_torch_thread):
    game = load_model(small_request().model).game("hidden neurons", "correct")
    probe = probe_game(game)
    assert (probe.n_players, probe.n_outputs) == (32, 360) and 0 < probe.seconds_per_evaluation < 1


def test_progress_is_monotone_with_an_eta_from_the_first_block(store):
    recorder = ProgressRecorder(store, "f" * 64, None, small_request())
    recorder.estimating(100)
    record = store.progress("f" * 64)
    assert record["total"] == 100 and record["request"] == small_request().to_dict()
    recorder(10, 100)
    assert recorder.fields["eta_seconds"] is not None and recorder.fields["eta_seconds"] > 0
    recorder(5, 100)  # a block reported late does not move progress back
    assert recorder.fields["done"] == 10


def test_a_run_records_its_request_for_the_jobs_panel(store):
    fingerprint = execute(small_request(), store).meta["fingerprint"]
    record = store.progress(fingerprint)
    assert record["state"] == "done"
    assert record["request"] == {**small_request().to_dict(), "units": "hidden neurons"}  # resolved


def test_game_calls_are_sized_to_report_progress_about_every_second():
    assert progress_batch_size(Probe(32, 640, 0.018)) == 55  # MoE-like: 409 rows would take 7 s
    assert progress_batch_size(Probe(32, 360, 2.5e-5)) is None  # MLP: the default batch takes 18 ms
    assert progress_batch_size(Probe(32, 10, 5.0)) == 1  # slower than a second per evaluation

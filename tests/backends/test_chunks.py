"""Chunks evaluated apart and merged in order give a whole run's state (no Ray needed)."""

import numpy as np
import pytest
from ground_truth import RandomNonlinearGame

from msa_core.backends.chunks import chunk_bounds, evaluate_chunk, merge_delta
from msa_core.estimators.plan import ESTIMATORS
from msa_core.estimators.runner import BlockRunner, TimedGame
from msa_core.games import as_game

N = 11
BUDGETS = {
    "exact": 2**N - 2,
    "permutation": 120 * (N - 1),
    "antithetic": 120 * (N - 1),
    "kernel": 1500,
    "leverage": 1500,
    "regression_adjusted": 1500,
}


def run_whole(game, method: str):
    """The local run: every block through one BlockRunner."""
    ends = np.asarray(game(np.array([[True] * N, [False] * N])), dtype=np.float64).reshape(2, -1)
    estimator = ESTIMATORS[method](N, ends[0], ends[1], 7, BUDGETS[method])
    BlockRunner(TimedGame(game), estimator, 50).run()
    return estimator, ends


# every method whose blocks can be played apart; gradient's coefficient is carried from earlier
# blocks, so it runs in this process only (refused on Ray: tests/estimators/test_gradient.py)
CHUNKED = [method for method, cls in ESTIMATORS.items() if not cls.needs_gradients]


@pytest.mark.parametrize("method", CHUNKED)
@pytest.mark.parametrize("blocks_per_chunk", [1, 3])
def test_chunks_merged_in_order_give_the_whole_run(method, blocks_per_chunk):
    # wide outputs make blocks small, so a run has many blocks to split into chunks
    game = as_game(RandomNonlinearGame(N, out=(300,), seed=2), N)
    whole, ends = run_whole(game, method)
    assert whole.n_blocks >= 4
    merged = ESTIMATORS[method](N, ends[0], ends[1], 7, BUDGETS[method])
    evaluated = 0
    for first, stop in reversed(
        chunk_bounds(0, merged.n_blocks, blocks_per_chunk)
    ):  # merging in any order works
        fresh = ESTIMATORS[method](N, ends[0], ends[1], 7, BUDGETS[method])
        result = evaluate_chunk(game, fresh, first, stop, 64, (300,))
        evaluated += result.evaluated
        merged.load_state_dict(merge_delta(merged.state_dict(), result.delta))
    assert evaluated == whole.planned_evaluations()
    for got, want in zip(merged.estimate(), whole.estimate(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert merged.n_permutations == whole.n_permutations


def test_a_late_chunk_feeds_the_variance_with_all_its_samples():
    game = as_game(RandomNonlinearGame(N, out=(300,), seed=2), N)
    whole, ends = run_whole(game, "permutation")
    fresh = ESTIMATORS["permutation"](N, ends[0], ends[1], 7, BUDGETS["permutation"])
    first = whole.n_blocks - 2
    delta = evaluate_chunk(game, fresh, first, whole.n_blocks, 64).delta
    # the variance comes from every permutation, so the chunk's moments hold all its samples
    expected = whole.n_samples - first * whole.per_block
    assert int(delta["moments.count"]) == expected

"""Ground truth for the lesion-set helpers of ``msa_core.analysis.lesions``."""

import numpy as np
import pytest

from msa_core import MSAInputError
from msa_core.analysis.lesions import (
    keep_only,
    lesion_sets,
    random_keep_only,
    rank_curves,
    unit_counts,
)


def test_lesion_sets_remove_the_top_k_then_random_k():
    coalitions = lesion_sets(np.array([0.1, 0.9, -0.5, 0.7, 0.0]), k=2, n_random=3, seed=1)
    assert coalitions.shape == (4, 5)
    assert np.flatnonzero(~coalitions[0]).tolist() == [1, 3]
    assert (~coalitions[1:]).sum(1).tolist() == [2, 2, 2]
    np.testing.assert_array_equal(
        coalitions, lesion_sets(np.array([0.1, 0.9, -0.5, 0.7, 0.0]), 2, 3, seed=1)
    )
    with pytest.raises(MSAInputError, match="between 0"):
        lesion_sets(np.zeros(3), k=4)


def test_lesion_by_rank_against_unit_by_unit_masks():
    """An additive game's value is the sum of the intact units' weights: each curve is a partial
    sum.
    """
    weights = np.array([3.0, -1.0, 7.0, 0.5, 2.0])
    scores = np.array([0.2, 0.9, 0.1, 0.4, 0.3])  # ranks 1, 3, 4, 0, 2 (highest first)
    calls = []

    def value_of(coalitions):
        calls.append(len(coalitions))
        return coalitions.astype(float) @ weights

    ks, curves = rank_curves(scores, None, value_of, ("lesion_top", "keep_top", "lesion_bottom"))
    order = [1, 3, 4, 0, 2]
    assert ks.tolist() == [0, 1, 2, 3, 4, 5] and calls == [18]  # one call with every set
    for k in ks:
        top, bottom = order[:k], order[len(order) - k :]
        assert curves["lesion_top"][k] == weights.sum() - weights[top].sum()
        assert curves["keep_top"][k] == weights[top].sum()
        assert curves["lesion_bottom"][k] == weights.sum() - weights[bottom].sum()
    with pytest.raises(MSAInputError, match="expert counts between 0 and 5"):
        rank_curves(scores, [6], value_of, ("lesion_top",), "expert")


def test_random_keep_only_keeps_k_units_per_draw_k_major():
    ks = unit_counts([1, 3], 6)
    draws = random_keep_only(ks, 6, n_random=4, seed=2)
    assert draws.shape == (8, 6) and draws.sum(1).tolist() == [1] * 4 + [3] * 4
    assert keep_only(np.array([2, 0, 1]), [2], 3).tolist() == [[True, False, True]]

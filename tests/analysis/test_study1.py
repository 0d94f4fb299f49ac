"""Study 1 on the bundled digits MLPs: the metrics against hand-computed values, and issue 10's pass
criteria.

Budgets were fixed from measurements before these tests were written (margins beside the constants;
the full study at 1,000 permutations is bench/study1.py); model seeds 0, 1, 2 and estimator seed 0
are fixed up front.
Permutation sampling is used: on these games its wall time per evaluation is far below the kernel
sampler's (whose regression over the 3,600 per-image outputs dominates), and at these budgets every
criterion held for estimator seeds 0, 1 and 2 (reference: 1,000 permutations).
"""

from __future__ import annotations

from math import log

import numpy as np
import pytest
import torch

from msa_core import shapley_modes
from msa_core.analysis import study1
from msa_core.errors import MSAInputError
from msa_core.result import ModesResult
from msa_core.zoo import load_model
from msa_core.zoo.mlp import REGIMES, SEEDS, build, name_of

CRITERIA_PERMUTATIONS = (
    100  # N=64; smallest lesion-by-rank margin (L2) over estimator seeds 0-2: 0.19 vs 0.10
)
GAP_PERMUTATIONS = (
    30  # N=16 and N=128, none and L1; gap(128) - gap(16) >= 0.2 even at 10 permutations
)


def findings(hidden: int, regime: str, seed: int, permutations: int) -> study1.ModelFindings:
    loaded = load_model(name_of(hidden, regime, seed))
    result = shapley_modes(
        loaded.game(output="class_accuracy"),
        method="permutation",
        n_permutations=permutations,
        seed=0,
    )
    return study1.analyse(loaded, result)


@pytest.fixture(scope="module")
def n64() -> dict[tuple[str, int], study1.ModelFindings]:
    """Every N=64 digits model at the criteria budget (about 20 s on this machine, shared by the
    tests).
    """
    torch.set_num_threads(1)
    return {
        (regime, seed): findings(64, regime, seed, CRITERIA_PERMUTATIONS)
        for regime in REGIMES
        for seed in SEEDS
    }


def mean(found: dict, regime: str, field: str) -> float:
    return float(np.mean([getattr(found[regime, seed], field) for seed in SEEDS]))


# ---- the metrics, against hand-computed values -------------------------------------------------


def test_idc_by_hand():
    # equal shares, sign ignored
    assert study1.idc(np.array([0.3, -0.3, 0.3])) == pytest.approx(1.0)
    assert study1.idc(np.array([0.0, 5.0, 0.0, 0.0])) == 0.0  # one unit does everything
    p = np.array([9.0, 16.0]) / 25.0  # phi = (3, 4)
    assert study1.idc(np.array([3.0, 4.0])) == pytest.approx(-(p * np.log(p)).sum() / log(2))
    assert study1.idc(np.array([3.0, 4.0])) == pytest.approx(0.942683, abs=1e-6)
    assert study1.idc(np.array([1.0, 1.0, 0.0, 0.0])) == pytest.approx(log(2) / log(4))  # = 0.5


@pytest.mark.parametrize(
    "phi, message",
    [
        (np.zeros(4), "every contribution is zero"),
        (np.ones(1), "at least 2"),
        (np.ones((2, 2)), "at least 2"),
    ],
)
def test_idc_refuses_undefined_input(phi, message):
    with pytest.raises(MSAInputError, match=message):
        study1.idc(phi)


def test_class_modes_sum_images_and_phi_averages_classes():
    modes = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)  # [N=2, B=3, K=4]
    result = ModesResult(
        modes, np.zeros_like(modes), modes.sum(0), np.zeros((3, 4)), 2, 0, ["a", "b"]
    )
    np.testing.assert_array_equal(study1.class_modes(result), [[12, 15, 18, 21], [48, 51, 54, 57]])
    np.testing.assert_array_equal(study1.neuron_phi(study1.class_modes(result)), [16.5, 52.5])


def test_class_correlation_by_hand():
    # [N=3, K=4]
    modes = np.array([[1.0, 2.0, 5.0, -1.0], [2.0, 4.0, 5.0, -2.0], [3.0, 6.0, 5.0, -3.0]])
    corr = study1.class_correlation(modes)
    # class 2 is constant: correlates with nothing
    np.testing.assert_allclose(corr[0], [1.0, 1.0, 0.0, -1.0])
    np.testing.assert_allclose(np.diag(corr), 1.0)


def test_weight_magnitude_and_pearson_by_hand():
    model = build(2, n_inputs=3, n_classes=2)
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [0.0, 0.0, -1.0]]))
        model.fc2.weight.copy_(torch.tensor([[2.0, 0.0], [-4.0, 1.0]]))
    np.testing.assert_allclose(
        study1.weight_magnitude(model), [(1 + 2 + 3 + 2 + 4) / 5, (1 + 1) / 5]
    )
    assert study1.pearson(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0])) == pytest.approx(
        0.9933992
    )
    assert study1.pearson(np.ones(3), np.arange(3.0)) == 0.0
    with pytest.raises(MSAInputError, match="Linear layers named"):
        study1.weight_magnitude(model, fan_in="hidden")


def test_lesion_by_rank_against_hand_masking():
    loaded = load_model(name_of(32, "l1", 0))
    phi = np.random.default_rng(1).normal(size=32)
    curve = study1.lesion_by_rank(loaded, phi)
    order = np.argsort(-phi)
    for k in (0, 5, 32):
        with torch.no_grad():
            hidden = torch.nn.functional.leaky_relu(loaded.model.fc1(loaded.inputs))
            mask = torch.ones(32)
            mask[order[:k]] = 0.0
            lesioned = (
                (loaded.model.fc2(hidden * mask).argmax(1) == loaded.labels).double().mean().item()
            )
            kept = (
                (loaded.model.fc2(hidden * (1 - mask)).argmax(1) == loaded.labels)
                .double()
                .mean()
                .item()
            )
        assert curve.lesioned[k] == pytest.approx(lesioned) and curve.kept[k] == pytest.approx(kept)
    with pytest.raises(MSAInputError, match="between 0 and 32"):
        study1.lesion_by_rank(loaded, phi, [40])


# ---- issue 10's pass criteria on the bundled models ---------------------------------------------


def test_intact_accuracy_and_efficiency(n64):
    assert min(item.accuracy for item in n64.values()) >= 0.95
    assert max(item.efficiency_gap for item in n64.values()) <= 1e-5


def test_regularisation_lowers_idc_at_64(n64):
    assert mean(n64, "l1", "idc") <= mean(n64, "none", "idc") - 0.15
    assert mean(n64, "l2", "idc") <= mean(n64, "none", "idc") - 0.02


def test_fewer_neurons_hold_most_of_the_contribution_under_l1(n64):
    for item in n64.values():
        assert 1 <= item.units_for[0.5] <= item.units_for[0.8] <= item.units_for[0.9] <= 64
    assert mean(n64, "l1", "gini") > mean(n64, "none", "gini")
    assert np.mean([n64["l1", s].units_for[0.8] for s in SEEDS]) < np.mean(
        [n64["none", s].units_for[0.8] for s in SEEDS]
    )


def test_lesioning_the_top_fifth_hurts_regularised_nets_more(n64):
    assert mean(n64, "l1", "lesion_top") <= mean(n64, "none", "lesion_top") - 0.30
    assert mean(n64, "l2", "lesion_top") <= mean(n64, "none", "lesion_top") - 0.10


def test_weight_magnitude_tracks_shapley_value_under_l1(n64):
    assert mean(n64, "l1", "weight_r") >= 0.8
    assert mean(n64, "l1", "weight_r") >= mean(n64, "none", "weight_r") + 0.2


@pytest.mark.parametrize("regime", ["l1", "l2"])
def test_shapley_guided_pruning_beats_random_at_every_k(n64, regime):
    """Holds for the regularised nets. Unregularised nets fail it (measured, reported in
    bench/study1.py): their top neurons by phi overlap in the classes they serve, so keeping only
    them is no better than chance."""
    for seed in SEEDS:
        item = n64[regime, seed]
        pruned = study1.pruning(load_model(item.name), item.phi, item.weight)
        assert np.all(pruned.shapley > pruned.random_mean), (item.name, pruned)


def test_none_minus_l1_gap_grows_with_size():
    torch.set_num_threads(1)
    gap = {
        hidden: np.mean(
            [
                findings(hidden, "none", seed, GAP_PERMUTATIONS).idc
                - findings(hidden, "l1", seed, GAP_PERMUTATIONS).idc
                for seed in SEEDS
            ]
        )
        for hidden in (16, 128)
    }
    assert gap[128] > gap[16]

"""Ground truth for the generic views and metrics of ``msa_core.analysis.modes``."""

import numpy as np
import pytest

from msa_core import ModesResult, MSAInputError, shapley_modes
from msa_core.analysis.modes import (
    classification,
    concentration,
    contribution_curve_figure,
    gini,
    heatmap_figure,
    hub_table,
    shared_zmax,
    top_units,
    unit_contributions,
    unit_order,
    units_for_share,
    view_of,
)


def per_sample_result(seed: int = 0) -> tuple[ModesResult, np.ndarray]:
    """Modes [N=4, B=6, K=3] of made-up numbers, and labels [6] of 3 classes."""
    rng = np.random.default_rng(seed)
    modes = rng.normal(size=(4, 6, 3))
    result = ModesResult(
        modes=modes,
        stderr=np.abs(rng.normal(size=modes.shape)),
        v_full=modes.sum(0),
        v_empty=np.zeros((6, 3)),
        n_evaluations=10,
        n_permutations=2,
        player_names=[f"u{i}" for i in range(4)],
    )
    return result, np.array([0, 1, 2, 0, 1, 2])


def test_sum_and_mean_views_reduce_over_samples():
    result, _ = per_sample_result()
    view = view_of(result, "mean")
    np.testing.assert_allclose(view.values, result.modes.mean(1))
    np.testing.assert_allclose(view.stderr, result.stderr.mean(1))
    assert (
        view.stderr_is_bound
        and view.units == result.player_names
        and view.outputs == ["0", "1", "2"]
    )
    np.testing.assert_allclose(view_of(result, "sum").values, result.modes.sum(1))
    np.testing.assert_allclose(view_of(result).values, result.modes.sum(1))  # the default


def test_class_view_keeps_each_samples_own_class_and_averages_per_class():
    result, labels = per_sample_result()
    view = view_of(result, "class", labels)
    for c in range(3):
        samples = np.flatnonzero(labels == c)
        np.testing.assert_allclose(view.values[:, c], result.modes[:, samples, c].mean(1))


def test_class_view_of_per_sample_scalars_groups_by_label():
    result, labels = per_sample_result()
    scalars = ModesResult(
        result.modes[..., 0],
        result.stderr[..., 0],
        result.v_full[:, 0],
        result.v_empty[:, 0],
        10,
        2,
        result.player_names,
    )
    view = view_of(scalars, "class", labels)
    np.testing.assert_allclose(view.values[:, 1], scalars.modes[:, [1, 4]].mean(1))


def test_sample_view_and_bad_views_are_explained():
    result, labels = per_sample_result()
    np.testing.assert_allclose(view_of(result, "sample", sample=4).values, result.modes[:, 4])
    with pytest.raises(MSAInputError, match="no labels"):
        view_of(result, "class")
    with pytest.raises(MSAInputError, match="out of range"):
        view_of(result, "sample", sample=6)
    with pytest.raises(MSAInputError, match="allowed"):
        view_of(result, "pixels")


def test_views_of_a_mean_game_are_its_modes():
    """Linearity: the mean view of per-sample modes equals the modes of the sample-mean game."""
    weights = np.random.default_rng(1).normal(size=(3, 5, 2))

    def game(c):  # [C, 3] -> [C, 5, 2], non-linear in the coalition
        intact = c.astype(float)
        return np.einsum("cn,nbk->cbk", intact, weights) * (1 + intact.sum(1))[:, None, None]

    per_sample = shapley_modes(game, n_players=3, method="exact")
    averaged = shapley_modes(lambda c: game(c).mean(1), n_players=3, method="exact")
    np.testing.assert_allclose(view_of(per_sample, "mean").values, averaged.modes, atol=1e-12)
    totals = shapley_modes(lambda c: game(c).sum(1), n_players=3, method="exact")
    np.testing.assert_allclose(view_of(per_sample, "sum").values, totals.modes, atol=1e-12)


def test_gini_and_shares_on_known_distributions():
    assert gini(np.ones(10)) == 0.0
    assert gini(np.eye(1, 10).ravel()) == pytest.approx(0.9)
    # mean |xi - xj| / (2 mean) = 1.25 / 5
    assert gini(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(0.25)
    assert gini(np.zeros(3)) == 0.0
    x = np.array([1.0, 1.0, 8.0, 0.0])
    assert [units_for_share(x, s) for s in (0.5, 0.8, 0.9, 1.0)] == [1, 1, 2, 3]
    assert units_for_share(np.zeros(4), 0.5) == 0


def test_concentration_uses_total_absolute_contribution():
    values = np.array([[3.0, -3.0], [1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]])
    np.testing.assert_allclose(unit_contributions(values), [6.0, 1.0, 0.0, 1.0])
    result = ModesResult(
        values, np.zeros_like(values), values.sum(0), np.zeros(2), 4, 0, list("abcd")
    )
    metrics = concentration(result)
    assert metrics["units for 50%"] == 1 and metrics["units for 90%"] == 3
    assert metrics["top unit share"] == pytest.approx(0.75)
    # the hub table lists the one ranking (mean mode, signed): b (+0.5) before a (0, yet 75%)
    rows = hub_table(view_of(result), k=2)
    assert [row["unit"] for row in rows] == ["b", "a"]
    assert rows[1]["share of |contribution|"] == pytest.approx(0.75)


def test_orders_put_large_and_similar_units_together():
    values = np.array([[1.0, 0.0, 1.0], [0.0, 5.0, 0.0], [2.0, 0.1, 2.0], [0.0, 4.0, 0.3]])
    assert unit_order(values, "total").tolist() == [1, 3, 2, 0]
    clustered = unit_order(values, "cluster").tolist()
    assert sorted(clustered) == [0, 1, 2, 3]
    assert (
        abs(clustered.index(0) - clustered.index(2)) == 1
        and abs(clustered.index(1) - clustered.index(3)) == 1
    )
    with pytest.raises(MSAInputError, match="allowed"):
        unit_order(values, "random")


def test_heatmap_holds_the_view_centred_at_zero_with_a_shared_limit():
    result, labels = per_sample_result()
    view = view_of(result, "class", labels)
    heat = heatmap_figure(view, "total", zmax=7.0).data[0]
    order = np.argsort(-np.abs(view.values).sum(1))
    np.testing.assert_allclose(np.array(heat.z), view.values[order])
    assert list(heat.y) == [view.units[i] for i in order]
    assert (heat.zmin, heat.zmax, heat.zmid) == (-7.0, 7.0, 0.0)
    assert heat.showscale and not heatmap_figure(view, colorbar=False).data[0].showscale
    errors = heatmap_figure(view, stderr=True).data[0]
    np.testing.assert_allclose(np.array(errors.z), view.stderr)
    assert shared_zmax([view, view_of(result, "mean")]) == pytest.approx(np.abs(view.values).max())


def test_top_units_lists_the_strongest_per_output():
    values = np.array([[2.0, -1.0], [-3.0, 0.5], [1.0, 0.0]])
    result = ModesResult(
        values, np.zeros_like(values), values.sum(0), np.zeros(2), 4, 0, ["a", "b", "c"]
    )
    rows = top_units(view_of(result), k=1)
    assert rows[0]["top units (+)"].startswith("a ") and rows[0]["top units (-)"].startswith("b ")
    assert rows[1]["top units (+)"].startswith("b ") and rows[1]["top units (-)"].startswith("a ")


def test_contribution_curve_ends_at_one_and_starts_with_the_largest_share():
    values = np.array([[1.0], [3.0], [0.0], [4.0]])
    result = ModesResult(
        values, np.zeros_like(values), values.sum(0), np.zeros(1), 4, 0, list("abcd")
    )
    trace = contribution_curve_figure({"r": view_of(result)}).data[0]
    np.testing.assert_allclose(trace.y, [0.5, 0.875, 1.0, 1.0])
    np.testing.assert_allclose(trace.x, [0.25, 0.5, 0.75, 1.0])


def test_classification_counts_hits_per_class():
    logits = np.array([[[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]], [[0.0, 2.0], [0.0, 1.0], [3.0, 1.0]]])
    predictions, accuracy, per_class = classification(logits, np.array([0, 1, 1]))
    assert predictions.tolist() == [[0, 1, 0], [1, 1, 0]]
    np.testing.assert_allclose(accuracy, [2 / 3, 1 / 3])
    np.testing.assert_allclose(per_class, [[1.0, 0.5], [0.0, 0.5]])


def test_a_task_runs_outputs_are_named_by_group_and_prompt():
    from msa_core.analysis.modes import output_names
    from msa_core.tasks import task_from_rows, task_meta

    task = task_from_rows(
        [
            {"prompt": "Text: Il fait beau.\nLanguage:", "target": " French", "group": "language"},
            {"prompt": "one, two, three,", "target": " four", "group": "counting"},
        ],
        "t",
    )
    values = np.ones((3, 2))
    result = ModesResult(values, values * 0, values.sum(0), np.zeros(2), 4, 1, list("abc"))
    assert output_names(result) is None
    result.meta["task"] = task_meta(task)
    assert output_names(result) == [
        "0 language: Text: Il fait beau. ⏎ Language:",
        "1 counting: one, two, three,",
    ]
    assert view_of(result, class_names=output_names(result)).outputs == output_names(result)

"""Ground truth for seed aggregates (t-interval, Welch's test against scipy), lesion curves
(additive game) and the per-sample input and unit-mode figures."""

import numpy as np
import pytest
import torch
from scipy import stats

from msa_core import ModesResult, MSAInputError, shapley_modes
from msa_core.analysis.lesion_curves import k_coalitions, k_curve_figure, k_curves, k_grid
from msa_core.analysis.modes import heatmap_figure, unit_order, view_of, with_click_targets
from msa_core.analysis.samples import sample_input, unit_mode_figure
from msa_core.analysis.seeds import seed_of, setup_of, t_interval, view_metrics, welch_test
from msa_core.zoo import load_model


def test_t_interval_matches_scipy_and_collapses_without_spread():
    values = [0.61, 0.58, 0.66]
    mean, low, high = t_interval(values)
    expected = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values)) and (low, high) == pytest.approx(
        expected, rel=1e-12
    )
    assert t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5) and t_interval([2.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(MSAInputError):
        t_interval([])


def test_welch_test_matches_scipy():
    a, b = [0.60, 0.58, 0.64], [0.24, 0.31, 0.22]
    outcome = welch_test(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert outcome["t"] == pytest.approx(reference.statistic, rel=1e-10)
    assert outcome["p"] == pytest.approx(reference.pvalue, rel=1e-8)
    assert (outcome["low"], outcome["high"]) == pytest.approx(
        tuple(reference.confidence_interval(0.95)), rel=1e-8
    )
    assert outcome["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    assert (
        welch_test([1.0, 1.0], [2.0, 2.0])["p"] == 0.0
        and welch_test([1.0, 1.0], [1.0, 1.0])["p"] == 1.0
    )
    with pytest.raises(MSAInputError, match="at least 2 values per group"):
        welch_test([1.0], [1.0, 2.0])


def test_setups_drop_only_the_seed():
    request = {
        "model": "mlp-digits-h32-l1-s2",
        "units": "hidden neurons",
        "output": "logits",
        "lesion": "mean",
    }
    assert setup_of(request) == setup_of(dict(request, model="mlp-digits-h32-l1-s0"))
    assert setup_of(request) != setup_of(dict(request, model="mlp-digits-h32-l2-s2"))
    assert seed_of("mlp-digits-h32-l1-s2") == 2 and seed_of("moe-fortunes-5lang") is None


def test_view_metrics_of_one_hub():
    modes = np.diag([4.0, 0.0, 0.0, 0.0])[:, :1]  # one unit does all
    res = ModesResult(
        modes, np.zeros_like(modes), modes.sum(0), np.zeros(1), 8, 1, ["a", "b", "c", "d"]
    )
    metrics = view_metrics(view_of(res))
    assert (
        metrics["gini"] == pytest.approx(0.75)
        and metrics["units for 90%"] == 1
        and metrics["idc"] == 0.0
    )


def test_lesion_curves_of_an_additive_game_are_sums_of_the_ranked_scores():
    scores = np.array([5.0, -1.0, 3.0, 0.5, 2.0])
    curves = k_curves(lambda c: c.astype(float) @ scores, scores, n_random=4, seed=3)
    ranked = np.sort(scores)[::-1]
    assert curves.ks.tolist() == [0, 1, 2, 3, 4, 5]  # every k for few units
    np.testing.assert_allclose(curves.top, scores.sum() - np.concatenate([[0], np.cumsum(ranked)]))
    np.testing.assert_allclose(
        curves.bottom, scores.sum() - np.concatenate([[0], np.cumsum(ranked[::-1])])
    )
    assert np.all(curves.bottom >= curves.random_mean - 1e-12) and np.all(
        curves.random_mean >= curves.top - 1e-12
    )
    assert np.all(curves.random_low <= curves.random_mean) and np.all(
        curves.random_mean <= curves.random_high
    )
    coalitions = k_coalitions(scores, [2], n_random=3, seed=0)
    assert coalitions.shape == (5, 5) and (~coalitions).sum(1).tolist() == [2] * 5
    assert len(k_curve_figure(curves, "value", 5).data) == 4  # band, top, random, bottom
    assert k_grid(128).tolist() == list(range(0, 129, 8)) and k_grid(3).tolist() == [0, 1, 2, 3]
    with pytest.raises(MSAInputError, match="between 0 and 5"):
        k_coalitions(scores, [6], 1, 0)


def test_clustered_heatmap_draws_a_dendrogram_whose_leaves_are_its_rows():
    values = np.random.default_rng(4).normal(
        size=(5, 3)
    )  # distinct rows: every merge above height 0
    res = ModesResult(
        values, np.zeros_like(values), values.sum(0), np.zeros(2), 8, 1, list("abcde")
    )
    figure = heatmap_figure(view_of(res), "cluster")
    heat, *branches = figure.data
    assert list(heat.y) == [list("abcde")[i] for i in unit_order(values, "cluster")]
    assert len(branches) == 4
    ends = [(x, y) for branch in branches for x, y in zip(branch.x, branch.y, strict=True)]
    leaf_ends = {float(y) for x, y in ends if x == 0}
    assert leaf_ends == {0.0, 1.0, 2.0, 3.0, 4.0}  # one leaf per heatmap row, at that row
    assert list(figure.layout.yaxis.tickvals) == list(heat.y)  # every label drawn


def test_sample_input_shows_the_digit_its_label_and_the_intact_prediction():
    loaded = load_model("mlp-digits-h32-none-s0")
    shown = sample_input(loaded, 7)
    flat = loaded.inputs[7].numpy()
    np.testing.assert_allclose(
        shown.image, (flat.reshape(8, 8) - flat.min()) / np.ptp(flat), atol=1e-6
    )
    with torch.no_grad():
        assert shown.prediction == str(int(loaded.model(loaded.inputs[7:8]).argmax()))
    assert shown.label == str(int(loaded.labels[7]))
    with pytest.raises(MSAInputError, match="out of range"):
        sample_input(loaded, 10_000)


def test_sample_input_of_the_language_model_is_its_text():
    loaded = load_model("moe-fortunes-5lang")
    shown = sample_input(loaded, 0)
    ids = loaded.inputs["input_ids"][0]
    assert shown.text and "\x00" not in shown.text and len(shown.tokens) == len(ids) - 1
    assert shown.text.encode()[:8] == bytes(int(t) for t in ids[1:9])


def test_unit_mode_figure_takes_the_outputs_own_form():
    res = shapley_modes(
        lambda c: np.stack([c.astype(float), -2 * c.astype(float)], 1), n_players=3, method="exact"
    )  # modes [3, 2, 3]
    view = view_of(res, "sum")
    bars = unit_mode_figure(res, view, "u1").data[0]
    np.testing.assert_allclose(np.array(bars.y), view.values[1])
    images = np.arange(2 * 3 * 1 * 4 * 5, dtype=float).reshape(2, 3, 1, 4, 5)
    pictures = ModesResult(
        images, np.zeros_like(images), images.sum(0), np.zeros((3, 1, 4, 5)), 4, 1, ["a", "b"]
    )
    pixels = unit_mode_figure(pictures, view_of(pictures, "sum"), "b", sample=2).data[0]
    np.testing.assert_allclose(np.array(pixels.z), images[1, 2, 0])
    with pytest.raises(MSAInputError, match="unknown unit"):
        unit_mode_figure(res, view, "zz")


def test_click_targets_cover_every_cell_and_carry_its_hover():
    values = np.random.default_rng(5).normal(size=(4, 3))
    res = ModesResult(values, np.abs(values), values.sum(0), np.zeros(3), 8, 1, list("abcd"))
    figure = with_click_targets(heatmap_figure(view_of(res), "total"))
    heat, targets = figure.data[0], figure.data[-1]  # noise marks (if any) in between
    assert len(targets.x) == 12 and targets.marker.opacity == 0 and heat.hoverinfo == "skip"
    placed = zip(targets.x, targets.y, targets.customdata, strict=True)
    cells = {(y, x): (z, e) for x, y, (z, e) in placed}
    for row, unit in enumerate(heat.y):
        for column, output in enumerate(heat.x):
            assert cells[unit, output] == (heat.z[row][column], heat.customdata[row][column])
    assert "customdata[0]" in targets.hovertemplate and "customdata[1]" in targets.hovertemplate


def test_with_nothing_chosen_compare_opens_on_runs_comparable_with_the_newest():
    from msa_core.analysis.seeds import comparable_runs

    def entry(fingerprint, model, output, shape):
        request = {"model": model, "units": "hidden", "output": output, "lesion": "zero"}
        return {"fingerprint": fingerprint, "request": request, "output_shape": shape}

    entries = [  # newest first: an MLP, a GAN, an MLP of another output, two more MLPs
        entry("a", "mlp-digits-h32-l1-s0", "class_accuracy", [360, 10]),
        entry("b", "gan-digits-s0", "image", [32, 1, 32, 32]),
        entry("c", "mlp-digits-h32-none-s0", "logits", [360, 10]),
        entry("d", "mlp-digits-h64-none-s0", "class_accuracy", [360, 10]),
        entry("e", "mlp-digits-h32-l2-s0", "class_accuracy", [360, 10]),
        entry("f", "mlp-digits-h32-l2-s1", "class_accuracy", [360, 10]),
    ]
    assert comparable_runs(entries) == ["a", "d", "e"]
    assert comparable_runs(entries[1:2]) == ["b"] and comparable_runs([]) == []

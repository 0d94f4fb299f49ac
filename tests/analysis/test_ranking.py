"""The one ranking and the noise rules (``msa_core.analysis.ranking``)."""

from __future__ import annotations

import numpy as np

from msa_core import shapley_modes
from msa_core.analysis.modes import heatmap_figure, view_of, with_click_targets
from msa_core.analysis.ranking import (
    NOISE_LEGEND,
    ranking_of,
    unit_ranking,
    unit_statistic,
    within_noise,
)
from msa_core.result import ModesResult
from tests.ground_truth import shapley_by_subsets

WEIGHTS = np.array([[3.0, 1.0], [2.0, 1.5], [0.5, 0.0], [0.2, 0.1], [0.0, 0.0]])


def game(coalitions):
    """Additive in the units plus a synergy of units 0 and 1: two outputs per coalition."""
    c = np.asarray(coalitions, dtype=float)
    return c @ WEIGHTS + (c[:, :1] * c[:, 1:2]) * np.array([[1.0, -0.5]])


def result(modes, stderr, names=None):
    modes, stderr = np.asarray(modes, float), np.asarray(stderr, float)
    n = len(modes)
    return ModesResult(
        modes, stderr, modes.sum(0), np.zeros(modes.shape[1:]), 10, 5, names or list("abcdefg")[:n]
    )


def test_the_statistic_is_the_mode_of_the_mean_output_and_exact_runs_are_resolved():
    exact = shapley_modes(game, n_players=5, method="exact")
    truth = shapley_by_subsets(lambda c: game(c).mean(1), 5)  # Shapley values of the mean output
    scores, stderr = unit_statistic(exact)
    np.testing.assert_allclose(scores, truth, atol=1e-12)
    np.testing.assert_array_equal(stderr, 0.0)
    ranked = unit_ranking(exact)
    assert ranked.order.tolist() == np.argsort(-truth, kind="stable").tolist()
    assert ranked.resolved.all() and not ranked.noise.any()
    assert ranked.top_resolved(2)


def test_rank_ranges_follow_the_95_percent_separation_of_each_pair():
    # a is far above; b and c overlap (gap 0.1 < 1.96 * sqrt(0.2^2 + 0.2^2)); d overlaps c only
    ranked = ranking_of([3.0, 1.0, 0.9, 0.5], [0.1, 0.2, 0.2, 0.1], list("abcd"))
    assert ranked.rank_text() == ["1", "2-3", "2-4", "3-4"]
    assert ranked.resolved.tolist() == [True, False, False, False]
    assert ranked.top_resolved(1) and not ranked.top_resolved(2)
    # one stderr smaller and c separates from b: the gap is then 2.5 stderr of the difference
    sharp = ranking_of([3.0, 1.0, 0.9, 0.5], [0.1, 0.02, 0.03, 0.01], list("abcd"))
    assert sharp.rank_text() == ["1", "2", "3", "4"]
    labels = sharp.labels()
    assert list(labels) == list("abcd") and labels["b"].startswith("#2 b (+1 ± 0.02")


def test_within_noise_is_strictly_inside_two_standard_errors():
    values, errors = np.array([0.5, 0.39, -0.41, 0.0, 0.0]), np.array([0.2, 0.2, 0.2, 0.0, 1.0])
    assert within_noise(values, errors).tolist() == [False, True, False, False, True]


def test_the_propagated_stderr_bounds_the_spread_over_seeds():
    """The statistic's stderr (mean of the outputs' stderrs) is an upper bound: the spread of the
    statistic over 40 seeds is not larger (allowing for the spread's own sampling error)."""
    runs = [
        shapley_modes(game, n_players=5, method="permutation", n_permutations=8, seed=seed)
        for seed in range(40)
    ]
    scores = np.stack([unit_statistic(run)[0] for run in runs])
    reported = np.mean([unit_statistic(run)[1] for run in runs], axis=0)
    spread = scores.std(0, ddof=1)
    moving = reported > 1e-9  # the additive units have no error (up to rounding)
    # the sd of 40 draws is within about 1 +- 0.22 of the truth at 2 of its own stderr
    assert np.all(spread[moving] <= 1.25 * reported[moving])


def test_heatmaps_mark_exactly_the_cells_within_noise():
    res = result([[1.0, 0.05], [-0.3, 2.0]], [[0.1, 0.1], [0.2, 0.1]], ["u", "v"])
    figure = with_click_targets(heatmap_figure(view_of(res)))
    [marks] = [trace for trace in figure.data if trace.name == NOISE_LEGEND]
    assert list(zip(marks.x, marks.y, strict=True)) == [("1", "u"), ("0", "v")]
    assert not any(t.name == NOISE_LEGEND for t in heatmap_figure(view_of(res), stderr=True).data)
    clean = result([[1.0, 2.0]], [[0.1, 0.1]], ["u"])
    assert not any(trace.name == NOISE_LEGEND for trace in heatmap_figure(view_of(clean)).data)


def test_a_run_whose_noise_exceeds_its_signal_says_so_on_its_pages_and_report():
    from msa_core.analysis.ranking import noise_verdict
    from msa_core.runs.report import report_html

    noisy = result([[5.0, 0.2], [0.1, -0.3]], [[6.56, 0.5], [0.4, 0.4]], ["u", "v"])
    verdict = noise_verdict(noisy)
    assert verdict.startswith("Noise exceeds signal") and "6.56" in verdict and "(5)" in verdict
    unresolved = result([[0.5, 0.2], [0.1, -0.3]], [[0.3, 0.5], [0.4, 0.4]], ["u", "v"])
    assert "every unit's Shapley value lies within 2" in noise_verdict(unresolved)
    clear = result([[5.0, 0.2], [0.1, -0.3]], [[0.5, 0.5], [0.4, 0.4]], ["u", "v"])
    assert noise_verdict(clear) is None
    assert noise_verdict(shapley_modes(game, n_players=5, method="exact")) is None
    page = report_html(noisy)
    assert '<p class="warning">Noise exceeds signal' in page
    assert "Noise exceeds signal" not in report_html(clear)


def test_the_three_top_k_notions_are_one_rule():
    """The stop rule (``TopK.decide``), the ranking (``top_resolved``) and the LLM preflight
    (``needed_permutations``) all decide with ``stopping.top_k_decision``: on signed scores, a
    negative unit of large |score| ranks last, and the three agree on random scores."""
    from msa_core.analysis.llm_preflight import needed_permutations
    from msa_core.estimators.stopping import TopK, top_k_decision

    rng = np.random.default_rng(0)
    for _ in range(40):
        n, k = int(rng.integers(3, 9)), int(rng.integers(1, 3))
        scores, stderr = rng.normal(size=n), rng.uniform(0.01, 0.5, size=n)
        ranked = ranking_of(scores, stderr, [f"u{i}" for i in range(n)])
        status = TopK(k).decide(scores[:, None], stderr[:, None], np.inf, alpha=0.05)
        resolved = len(top_k_decision(scores, stderr, k, alpha=0.05).top) == k
        assert ranked.top_resolved(k) == status.resolved == resolved
        need = needed_permutations(scores[:, None], stderr[:, None], 4, k, 0.95)[0]
        if np.isfinite(need) and need > 4:  # resolved at need, not one permutation before
            at_need, before = (stderr * np.sqrt(4 / p) for p in (need, need - 1))
            assert len(top_k_decision(scores, at_need, k, 0.05).top) == k
            assert len(top_k_decision(scores, before, k, 0.05).top) < k
        else:
            assert need != 4 or resolved
    signed = top_k_decision(np.array([5.0, -9.0, 4.0, 1.0]), np.full(4, 0.1), 2, 0.05)
    assert signed.top == [0, 2] and signed.out == [3, 1]

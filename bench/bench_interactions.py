"""Interaction runs: their cost relative to the run they refine, and their error against exact.

1. A 12-player game (random sparse unanimity game with terms of order <= 4, 16 outputs): the run
   it refines is ``shapley_modes`` with 200 permutations; the interaction runs of all 12 units
   (66 pairs) get 1, 2, 4 and 8 times its evaluations. Error against the exact interaction modes
   (2^12 coalitions): RMS and max over pairs and outputs, relative to the RMS of the exact modes;
   coverage of the 95% intervals; distinct coalitions per sample against the 4 per pair of a
   sampler that shares nothing.
2. A bundled MLP (mlp-digits-h32-none-s0, class_accuracy [360, 10]): wall time of the top-16
   interaction run (2x the evaluations) against the 100-permutation run it refines, same process.

Run: ``PYTHONPATH=. OMP_NUM_THREADS=1 python bench/bench_interactions.py``
"""

from __future__ import annotations

import time

import numpy as np

from msa_core import UnanimityGame, shapley_modes
from msa_core.analysis.interactions import top_players
from msa_core.estimators.interactions import SampledInteractions, interaction_modes
from msa_core.zoo import load_model


def twelve_players() -> None:
    game = UnanimityGame.random(12, n_terms=40, max_order=4, output_shape=(16,), seed=3)
    parent = shapley_modes(game, method="permutation", n_permutations=200, seed=0)
    exact = interaction_modes(game, method="exact")
    truth = exact.interactions[np.triu_indices(12, 1)]
    scale = np.sqrt(np.mean(truth**2))
    probe = SampledInteractions(12, np.zeros(16), np.zeros(16), 0, 64, np.arange(12))
    print(
        f"12 players, 66 pairs, 16 outputs; the run refined: {parent.n_evaluations} evaluations "
        f"(200 permutations); exact interactions: {exact.n_evaluations} evaluations"
    )
    print(
        f"distinct coalitions per sample {probe.rows_per_sample():.1f} (a sampler sharing nothing: "
        f"{4 * 66}, {4 * 66 / probe.rows_per_sample():.1f}x more)"
    )
    print("cost x | evaluations | samples | RMS error / RMS | max error / RMS | 95% coverage")
    for ratio in (1, 2, 4, 8):
        errors, covered, evaluations, samples = [], [], [], []
        for seed in range(5):
            res = interaction_modes(
                game, method="sampled", max_evaluations=ratio * parent.n_evaluations, seed=seed
            )
            pairs, stderr = (
                res.interactions[np.triu_indices(12, 1)],
                res.stderr[np.triu_indices(12, 1)],
            )
            errors.append(pairs - truth)
            covered.append(np.abs(pairs - truth) <= 1.96 * stderr + 1e-12)
            evaluations.append(res.n_evaluations)
            samples.append(res.n_samples)
        errors = np.stack(errors)
        print(
            f"{ratio:6d} | {np.mean(evaluations):11.0f} | {np.mean(samples):7.0f} | "
            f"{np.sqrt(np.mean(errors**2)) / scale:15.3f} | "
            f"{np.abs(errors).max() / scale:15.3f} | "
            f"{np.mean(covered):.3f}"
        )


def mlp_wall_time() -> None:
    game = load_model("mlp-digits-h32-none-s0").game("hidden neurons", "class_accuracy")
    start = time.perf_counter()
    parent = shapley_modes(game, method="permutation", n_permutations=100, seed=0)
    parent_seconds = time.perf_counter() - start
    start = time.perf_counter()
    res = interaction_modes(
        game,
        players=top_players(parent, 16).tolist(),
        method="sampled",
        max_evaluations=2 * parent.n_evaluations,
        seed=0,
    )
    seconds = time.perf_counter() - start
    print(
        "mlp-digits-h32-none-s0, class_accuracy [360, 10]: "
        f"run {parent.n_evaluations} evaluations in "
        f"{parent_seconds:.2f} s; top-16 interactions {res.n_evaluations} evaluations "
        f"({res.n_evaluations / parent.n_evaluations:.2f}x) in {seconds:.2f} s "
        f"({seconds / parent_seconds:.2f}x the run's wall time; game "
        f"{res.meta['game_seconds']:.2f} s)"
    )


if __name__ == "__main__":
    twelve_players()
    mlp_wall_time()

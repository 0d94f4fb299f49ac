"""Does the gradient control variate pay? ``python bench/bench_gradient.py`` (issue 22, item 4a).

``method="gradient"`` (``msa_core/estimators/gradient.py``) corrects each sampled marginal
contribution by its linearisation (attribution patching: one backward pass gives every unit's
derivative in its gate). It is unbiased whatever the linearisation; it pays only where the
linearisation tracks the contributions well enough to cut the variance by more than a backward
pass costs. Printed, one torch thread, CPU seconds:

1. Games with exact truth (all 2^8 coalitions), ``--repeats`` seeds of ``--permutations`` orders
   each: the bundled MoE LM (one held-out sentence per language, the summed log-prob of each
   sentence's next bytes ``[5]``), its 8 experts of layer 0 and its 8 heads of layers 0-1. Per game:
   MSE of permutation sampling / MSE of gradient at equal evaluations, the CPU of one run of each,
   and the MSE ratio at equal CPU (the first divided by the cost ratio; above 1: gradient pays).
2. ``--llm`` (after ``python -m msa_core.zoo.fetch smollm2``): SmolLM2-135M's 270 heads on the
   bundled study task (12 prompts, each prompt's target log-prob). Too large for exact truth or
   repeated runs on a CPU, so measured at ``--coalitions`` random coalitions (a permutation's
   prefix of uniform size, as permutation sampling draws them), 8 units added to each: the
   correlation of each marginal contribution with its trapezoid linearisation, the share of the
   variance left with the best coefficient, and the CPU of an evaluation with and without its
   derivatives (the plain one with layer reuse, as runs use it).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import table

from msa_core import shapley_modes
from msa_core.lesion import ModelGame
from msa_core.lesion.outputs import CustomOutput, make_output
from msa_core.names import LESIONS
from msa_core.units import Experts, Heads
from msa_core.zoo import load_model

MOE_UNITS = {
    "experts of layer 0": [Experts("model.layers.0.mlp")],
    "heads of layers 0-1": [Heads("model.layers.0.self_attn"), Heads("model.layers.1.self_attn")],
}


def moe_game(units) -> ModelGame:
    """The bundled MoE on one held-out sentence per language; each sentence's summed next-byte
    log-prob ``[5]`` (one number per sample: one backward pass per evaluation)."""
    loaded = load_model("moe-fortunes-5lang")
    inputs = {key: value[::4, :17] for key, value in loaded.inputs.items()}
    per_byte = make_output("target_logprob", inputs, None)
    summed = CustomOutput(lambda raw, copies: per_byte(raw, copies).sum(-1))
    return ModelGame(loaded.model, inputs, units, output=summed)


def runs(game: ModelGame, method: str, truth: np.ndarray, permutations: int, repeats: int):
    """Mean squared error over ``repeats`` seeds and CPU seconds per run."""
    errors, start = [], time.process_time()
    for seed in range(repeats):
        res = shapley_modes(game, method=method, n_permutations=permutations, seed=seed)
        errors.append(float(np.mean((res.modes - truth) ** 2)))
    return float(np.mean(errors)), (time.process_time() - start) / repeats


def exact_rows(permutations: int, repeats: int) -> list[tuple[str, ...]]:
    rows = [
        (
            "game",
            "MSE ratio (perm. / gradient), equal evaluations",
            "CPU s per run: perm. / gradient",
            "MSE ratio at equal CPU",
        )
    ]
    for label, units in MOE_UNITS.items():
        game = moe_game(units)
        truth = shapley_modes(game, method="exact").modes
        plain_mse, plain_cpu = runs(game, "permutation", truth, permutations, repeats)
        grad_mse, grad_cpu = runs(game, "gradient", truth, permutations, repeats)
        ratio = plain_mse / grad_mse
        rows.append(
            (
                f"moe-fortunes-5lang, {label} [5]",
                f"{ratio:.2f}x",
                f"{plain_cpu:.2f} / {grad_cpu:.2f}",
                f"{ratio * plain_cpu / grad_cpu:.2f}x",
            )
        )
    return rows


def llm_rows(n_coalitions: int, lesion: str = "zero") -> list[tuple[str, ...]]:
    from msa_core.runs import RunRequest

    loaded = RunRequest(model="smollm2-135m", units="heads", task="smollm2-study").load()
    game = loaded.game("heads", output="task_logprob", lesion=lesion)
    gradients = game.with_gradients()
    n = game.n_players
    rng = np.random.default_rng(0)
    contributions, linearised = [], []
    plain_cpu = grad_cpu = 0.0
    evaluations = 0
    for _ in range(n_coalitions):
        coalition = np.zeros(n, dtype=bool)
        coalition[rng.permutation(n)[: rng.integers(0, n)]] = True
        added = rng.choice(np.flatnonzero(~coalition), 8, replace=False)
        rows = np.repeat(coalition[None], 9, axis=0)
        rows[np.arange(1, 9), added] = True
        start = time.process_time()
        with_derivatives = gradients(rows).numpy()
        grad_cpu += time.process_time() - start
        start = time.process_time()
        values = game(rows).numpy()
        plain_cpu += time.process_time() - start
        evaluations += 9
        for i, unit in enumerate(added):
            contributions.append(values[i + 1] - values[0])
            ends = with_derivatives[[0, i + 1], 1 + unit]  # at the coalition, and with the unit
            linearised.append(ends.mean(0))
    delta, trapezoid = np.ravel(contributions), np.ravel(linearised)
    beta = float(delta @ trapezoid / (trapezoid @ trapezoid))
    left = float(np.var(delta - beta * trapezoid) / np.var(delta))
    cost = grad_cpu / plain_cpu
    correlation = float(np.corrcoef(delta, trapezoid)[0, 1])
    return [
        (f"SmolLM2-135M heads, study task, {lesion} lesion", "value"),
        ("marginal contributions measured", f"{delta.size:,} ({len(contributions)} x 12 prompts)"),
        ("correlation with the trapezoid linearisation", f"{correlation:.2f}"),
        ("variance left with the best coefficient", f"{left:.2f} (coefficient {beta:.3f})"),
        (
            "CPU s per evaluation: plain (layer reuse) / with derivatives",
            f"{plain_cpu / evaluations:.2f} / {grad_cpu / evaluations:.2f} ({cost:.1f}x)",
        ),
        ("MSE ratio at equal CPU (above 1: gradient pays)", f"{1 / (left * cost):.2f}x"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--permutations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--llm", action="store_true", help="also SmolLM2-135M (fetched)")
    parser.add_argument("--coalitions", type=int, default=6, help="SmolLM2 coalitions")
    parser.add_argument("--lesion", choices=LESIONS, default="zero", help="SmolLM2's lesion")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(table(exact_rows(args.permutations, args.repeats)))
    if args.llm:
        print()
        print(table(llm_rows(args.coalitions, args.lesion)))


if __name__ == "__main__":
    main()

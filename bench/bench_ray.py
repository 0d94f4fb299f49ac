"""Speed-up of 2 Ray workers over 1 (issue 8):
``python bench/bench_ray.py [--game mlp|moe] [--permutations P]``.

Games, permutation sampling, each built on every worker (never shipped as a model):
- ``mlp``: the 128 hidden neurons of the bundled digits MLP ``mlp-digits-h128-none-s0`` (values:
  per-class accuracy shares of 360 images, 3600 numbers; ``ZooGame``). Light: an evaluation costs
  tens of microseconds, so the per-chunk sums (128 x 3600) are a visible share of the work.
- ``moe``: the 32 experts (4 layers x 8) of a small Mixtral built from a config (hidden 64, 8
  sequences of 16 tokens; values: log-probabilities of the next byte, 8 x 16 x 32 numbers). Heavier:
  every evaluation is a transformer forward pass.
Runs in one process on one local Ray instance (``num_cpus=2``):

1. the local backend, one torch thread (the baseline);
2. Ray with 1 worker; 3. Ray with 2 workers (each actor one CPU, one torch thread).

Reported: wall time, time to the first merged chunk (actor start: process, imports, model load),
and the steady rate (evaluations per second over the second half of the run, when every actor is
up: slope of evaluations merged against time), whose ratio is the speed-up that does not count the
one-off start; and the seconds spent in the
game summed over workers, over the wall time after the first chunk ("busy workers": how many
were evaluating at a time, on average). The machine's load average is
printed before and after: on a shared machine the workers compete with other processes, so the
speed-up is a lower bound of what 2 free cores give.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import ray
import torch
from common import table

from msa_core import shapley_modes
from msa_core.backends import GameFactory, RayBackend
from msa_core.lesion import ModelGame
from msa_core.units import Experts
from msa_core.zoo import load_model
from msa_core.zoo.recipe import ZooGame

MODEL, GRANULARITY = "mlp-digits-h128-none-s0", "hidden neurons"


def small_mixtral_game() -> ModelGame:
    """The 32 experts of a small Mixtral (4 layers x 8 experts, hidden 64) on 8 sequences of 16
    tokens.
    """
    import transformers

    config = transformers.MixtralConfig(
        num_local_experts=8,
        vocab_size=32,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        num_experts_per_tok=2,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    ids = torch.randint(0, 32, (8, 16), generator=torch.Generator().manual_seed(0))
    return ModelGame(model, {"input_ids": ids}, Experts("model.layers.*.mlp"), output="log_probs")


# name: (the game built here, its factory for the workers, default permutations, blocks per chunk)
GAMES = {
    "mlp": (lambda: load_model(MODEL).game(GRANULARITY), ZooGame(MODEL, GRANULARITY), 1500, None),
    "moe": (
        small_mixtral_game,
        GameFactory(small_mixtral_game),
        200,
        2,
    ),  # small chunks: many progress points
}


class Clock:
    """Progress callback that notes when each chunk (or batch) is absorbed:
    ``(seconds, evaluations done)``.
    """

    def __init__(self):
        self.start = time.perf_counter()
        self.points: list[tuple[float, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.points.append((time.perf_counter() - self.start, done))

    def steady_rate(self) -> float:
        """Evaluations per second over the second half of the evaluations (least-squares slope)."""
        times, done = np.array(self.points, dtype=np.float64).T
        late = done >= done[-1] / 2
        return float(np.polyfit(times[late], done[late], 1)[0])


def run(label: str, game, backend, permutations: int) -> tuple[list[str], np.ndarray, float]:
    clock = Clock()
    result = shapley_modes(
        game,
        method="permutation",
        n_permutations=permutations,
        seed=0,
        backend=backend,
        progress=clock,
    )
    wall = time.perf_counter() - clock.start
    rate = clock.steady_rate()
    # workers in the game at a time, on average
    busy = result.meta["game_seconds"] / (wall - clock.points[0][0])
    row = [
        label,
        f"{wall:.1f}",
        f"{clock.points[0][0]:.1f}",
        f"{rate:,.0f}",
        f"{result.meta['game_seconds']:.1f}",
        f"{busy:.2f}",
    ]
    return row, result.modes, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", choices=list(GAMES), default="mlp")
    parser.add_argument("--permutations", type=int, help="default: 1500 (mlp), 200 (moe)")
    args = parser.parse_args()
    build_here, factory, permutations, blocks_per_chunk = GAMES[args.game]
    permutations = args.permutations or permutations
    torch.set_num_threads(1)
    print(
        f"game: {args.game}, {permutations} permutations; cores: {os.cpu_count()}, "
        f"load average before: {os.getloadavg()}"
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = [
        (
            "run",
            "wall s",
            "first chunk s",
            "steady evaluations/s",
            "game s (all workers)",
            "busy workers",
        )
    ]
    local_row, reference, local_rate = run("local, 1 thread", build_here(), None, permutations)
    rows.append(tuple(local_row))
    rates = {}
    for workers in (1, 2):
        row, modes, rates[workers] = run(
            f"ray, {workers} worker(s)",
            factory,
            RayBackend(workers=workers, blocks_per_chunk=blocks_per_chunk),
            permutations,
        )
        rows.append(tuple(row))
        # float32 models: sums differ with how coalitions share a forward pass
        scale = np.abs(reference).max()
        assert np.allclose(modes, reference, rtol=1e-4, atol=1e-5 * scale), (
            "a Ray run differs from the local one"
        )
    ray.shutdown()
    print(table(rows))
    print(
        f"speed-up of 2 workers over 1 (steady rates): {rates[2] / rates[1]:.2f}x; "
        f"2 workers over the local run: {rates[2] / local_rate:.2f}x"
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

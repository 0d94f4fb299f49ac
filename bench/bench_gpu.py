"""SmolLM2-135M's heads on one GPU: evaluations per second (issue 22's GPU figure).

``python bench/bench_gpu.py`` after ``python -m msa_core.zoo.fetch smollm2``; on a machine without
CUDA it measures the CPU instead (one thread), so the script is checked where no GPU is lent. The
game is the Run page's: 270 heads, the bundled study task (12 prompts, each prompt's target
log-prob), zero lesion, layer reuse and the head at scored positions only. Printed per precision
(float32, and on CUDA bfloat16 under autocast): evaluations per second over ``--permutations``
orders' prefixes (269 each), coalitions per pass, and an evaluation as a fraction of one plain
forward of the batch; the device's name heads the table. Wall time, synchronised.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import table

from msa_core.coalitions import from_ranks
from msa_core.lesion import ModelGame
from msa_core.runs import RunRequest
from msa_core.tasks import task_output_fn


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_seconds(model: torch.nn.Module, inputs: dict, device: torch.device) -> float:
    """Least wall time of 5 plain forwards of the batch (after one warm-up)."""
    times = []
    with torch.inference_mode():
        for _ in range(6):
            synchronise(device)
            start = time.perf_counter()
            model(**inputs, use_cache=False)
            synchronise(device)
            times.append(time.perf_counter() - start)
    return min(times[1:])


def rows(permutations: int) -> list[tuple[str, ...]]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU, one thread"
    loaded = RunRequest(model="smollm2-135m", units="heads", task="smollm2-study").load()
    model = loaded.model.to(device)
    inputs = {key: value.to(device) for key, value in loaded.inputs.items()}
    units = list(loaded.card.granularities["heads"])
    output = task_output_fn(loaded.task, "task_logprob")
    plain = forward_seconds(model, inputs, device)
    result = [(name, "evaluations / s", "coalitions per pass", "fraction of a plain forward")]
    precisions = ("float32", "bfloat16") if device.type == "cuda" else ("float32",)
    for precision in precisions:
        game = ModelGame(model, inputs, units, output=output, precision=precision)
        rng = np.random.default_rng(0)
        n = game.n_players
        ranks = rng.random((permutations, n)).argsort(1).argsort(1)
        coalitions = from_ranks(ranks, np.arange(1, n))  # each order's prefixes of 1 .. N-1
        game(coalitions[: game.coalitions_per_pass])  # warm-up: kernels, caches
        synchronise(device)
        start = time.perf_counter()
        game(coalitions)
        synchronise(device)
        seconds = (time.perf_counter() - start) / len(coalitions)
        result.append(
            (
                precision,
                f"{1 / seconds:,.1f}",
                f"{game.coalitions_per_pass}",
                f"{seconds / plain:.2f} (plain forward {plain * 1e3:.1f} ms)",
            )
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--permutations", type=int, default=2, help="orders whose prefixes run")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    print(table(rows(args.permutations)))


if __name__ == "__main__":
    main()

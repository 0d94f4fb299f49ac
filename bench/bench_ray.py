"""Speed-up of 2 Ray workers over 1 (issue 8): ``python bench/bench_ray.py [--permutations 600]``.

Game: the 128 hidden neurons of the bundled digits MLP ``mlp-digits-h128-none-s0`` (values: per-class
accuracy shares of 360 images, 3600 numbers), permutation sampling, built on each worker from its
zoo name (``ZooGame``). Runs in one process on one local Ray instance (``num_cpus=2``):

1. the local backend, one torch thread (the baseline);
2. Ray with 1 worker; 3. Ray with 2 workers (each actor one CPU, one torch thread).

Reported: wall time, time to the first merged chunk (actor start: process, imports, model load),
and the steady rate (evaluations per second over the second half of the run, when every actor is
up), whose ratio is the speed-up that does not count the one-off start; and the seconds spent in the
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
from msa_core.backends import RayBackend, ZooGame
from msa_core.zoo import load_model

MODEL, GRANULARITY = "mlp-digits-h128-none-s0", "hidden neurons"


class Clock:
    """Progress callback that notes when each chunk (or batch) is absorbed: ``(seconds, evaluations done)``."""

    def __init__(self):
        self.start = time.perf_counter()
        self.points: list[tuple[float, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.points.append((time.perf_counter() - self.start, done))

    def steady_rate(self) -> float:
        """Evaluations per second from the first point past half the evaluations to the last point."""
        end_time, end_done = self.points[-1]
        half_time, half_done = next(point for point in self.points if point[1] >= end_done / 2)
        return (end_done - half_done) / (end_time - half_time)


def run(label: str, game, backend, permutations: int) -> tuple[list[str], np.ndarray, float]:
    clock = Clock()
    result = shapley_modes(game, method="permutation", n_permutations=permutations, seed=0, backend=backend,
                           progress=clock)
    wall = time.perf_counter() - clock.start
    rate = clock.steady_rate()
    busy = result.meta["game_seconds"] / (wall - clock.points[0][0])  # workers in the game at a time, on average
    row = [label, f"{wall:.1f}", f"{clock.points[0][0]:.1f}", f"{rate:,.0f}", f"{result.meta['game_seconds']:.1f}",
           f"{busy:.2f}"]
    return row, result.modes, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--permutations", type=int, default=1500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()}")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = [("run", "wall s", "first chunk s", "steady evaluations/s", "game s (all workers)", "busy workers")]
    local_row, reference, local_rate = run("local, 1 thread", load_model(MODEL).game(GRANULARITY), None,
                                           args.permutations)
    rows.append(tuple(local_row))
    rates = {}
    for workers in (1, 2):
        row, modes, rates[workers] = run(f"ray, {workers} worker(s)", ZooGame(MODEL, GRANULARITY),
                                         RayBackend(workers=workers), args.permutations)
        rows.append(tuple(row))
        assert np.allclose(modes, reference, rtol=1e-6, atol=1e-9), "a Ray run differs from the local one"
    ray.shutdown()
    print(table(rows))
    print(f"speed-up of 2 workers over 1 (steady rates): {rates[2] / rates[1]:.2f}x; "
          f"2 workers over the local run: {rates[2] / local_rate:.2f}x")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

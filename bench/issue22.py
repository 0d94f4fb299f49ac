"""Issue 22's figures in one run: ``python bench/issue22.py`` (``pip install -r
bench/requirements.txt`` first; SmolLM2 sections after ``python -m msa_core.zoo.fetch smollm2``).

Each section is the named benchmark's own code, run in this one process, one torch thread:

- item 4, estimators: MSE against permutation sampling and 95% coverage at 100 x N evaluations on
  the four 16-player games, and against shapiq on their scalar versions (``bench_estimators.py``);
  the gradient control variate (``bench_gradient.py``);
- item 5, cheaper LM evaluations: one evaluation's CPU as a fraction of a plain forward on the
  fetched SmolLM2-135M with a short-prompt task (``bench_lesion.py --part real``);
- item 6, engine overhead: total CPU / CPU inside the game, and the speed-up against msapy
  (``bench_estimators.py --speed-only``);
- item 1, answers that stop: SmolLM2-135M's heads on the study task, what a top-10-per-group target
  resolves and is estimated to need, against a fixed run of the same cost (``bench_targets.py
  --llm``).

``--quick`` shrinks every section (two of the four games, 2 seeds, 200 permutations for the speed
rows, SmolLM2's layers with a top-3 target, one permutation) to check the script in minutes; the
README's figures come from the full sizes.
"""

from __future__ import annotations

import argparse

import bench_estimators
import bench_gradient
import bench_lesion
import bench_targets
import torch
from common import table

QUICK_GAMES = ["mlp-l1", "moe-l01"]  # the quickest to enumerate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (see the module)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    repeats, permutations = (2, 200) if args.quick else (10, 1000)
    units, k = bench_targets.LLM_QUICK if args.quick else bench_targets.LLM_FULL
    cap = 2  # permutations of the targeted SmolLM2 run (the least its stop rule allows)

    games = [key for key, _ in bench_estimators.GAMES.values()]
    vector, scalar = bench_estimators.bench_models(
        100 * bench_estimators.N, repeats, QUICK_GAMES if args.quick else games
    )
    print(f"## Item 4: MSE of permutation / MSE of the method, coverage, seconds\n\n{vector}\n")
    print(f"## Item 4: scalar games against shapiq\n\n{scalar}\n")
    gradient = table(bench_gradient.exact_rows(10, repeats))
    print(f"## Item 4a: the gradient control variate\n\n{gradient}\n")
    print("## Item 5: an LM evaluation's cost, fraction of a plain forward\n")
    bench_lesion.real_lm_costs(0.25 if args.quick else 1.0)
    speed = table(bench_estimators.bench_speed(permutations))
    print(f"\n## Item 6: engine overhead and msapy\n\n{speed}\n")
    header = ("group", f"targeted: top {k} resolved", "fixed, same cost", "permutations needed")
    rows = [header, *bench_targets.llm_rows(units, k, cap)]
    print(f"## Item 1: SmolLM2-135M {units}, top {k} per group at 95%\n\n{table(rows)}")


if __name__ == "__main__":
    main()

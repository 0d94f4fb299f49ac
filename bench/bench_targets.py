"""Top-k targets (issue 22, item 1): what resolving the top k units costs, against fixed budgets.

``python bench/bench_targets.py [--cap 4000] [--seeds 2]``: for bundled models' games, a run with
``target=TopK(k, per_group)`` (permutation sampling, at most ``--cap`` permutations) against plain
runs of fixed budgets, one torch thread. Printed per case: permutations and CPU seconds the targeted
run used and what it resolved (groups whose top k is known at 95%; units still unresolved); the same
for a fixed run of the same cost (another seed), whose status is read afterwards from its per-output
standard errors (``ModesResult.top_k_status``, one look, the conservative bound), and for a fixed
run of 1000 permutations (the paper's budget).
"""

from __future__ import annotations

import argparse
import time

import torch
from common import table

from msa_core import TopK, shapley_modes
from msa_core.zoo import load_model

CASES = (  # model, units, output, k, per_group
    ("moe-fortunes-5lang", "experts (layer 0)", "language_logprob", 2, True),
    ("mlp-digits-h16-l1-s0", "hidden neurons", "target_logprob", 1, False),
    ("mlp-digits-h16-l1-s0", "hidden neurons", "target_logprob", 3, False),
)


def summary(res) -> str:
    status = res.top_k_status()
    done = sum(len(group.top) == status.k for group in status.groups)
    open_units = sum(len(group.unresolved) for group in status.groups)
    return f"{done}/{len(status.groups)} groups, {open_units} units open"


def run(game, **kwargs):
    start = time.process_time()
    res = shapley_modes(game, method="permutation", **kwargs)
    return res, time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=int, default=4000, help="permutations a targeted run may use")
    parser.add_argument("--seeds", type=int, default=2, help="targeted runs per case")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [
        (
            "case",
            "targeted: perm. / CPU s / resolved",
            "fixed, same cost: resolved",
            "fixed 1000 perm.: CPU s / resolved",
        )
    ]
    for model, units, output, k, per_group in CASES:
        loaded = load_model(model)
        game = loaded.game(units, output=output)
        target = TopK(k, per_group=per_group)
        cells = []
        for seed in range(args.seeds):
            res, seconds = run(game, n_permutations=args.cap, seed=seed, target=target)
            same, _ = run(game, n_permutations=res.n_permutations, seed=seed + 100)
            status = same.top_k_status(k, per_group)
            same_done = sum(len(group.top) == k for group in status.groups)
            cells.append(
                (
                    f"{res.n_permutations} / {seconds:.1f} / {summary(res)}",
                    f"{same_done}/{len(status.groups)} groups",
                )
            )
        fixed, fixed_seconds = run(game, n_permutations=1000, seed=0)
        status = fixed.top_k_status(k, per_group)
        fixed_done = sum(len(group.top) == k for group in status.groups)
        label = f"{model}, {units}, {output} {list(fixed.output_shape)}, top {k}" + (
            " per group" if per_group else ""
        )
        rows.append(
            (
                label,
                "; ".join(cell[0] for cell in cells),
                "; ".join(cell[1] for cell in cells),
                f"{fixed_seconds:.1f} / {fixed_done}/{len(status.groups)} groups",
            )
        )
        print(" | ".join(rows[-1]), flush=True)
    print(f"\nTop-k targets, at most {args.cap} permutations, CPU seconds, one torch thread\n")
    print(table(rows))


if __name__ == "__main__":
    main()

"""Top-k targets (issue 22, item 1): what resolving the top k units costs, against fixed budgets.

``python bench/bench_targets.py [--cap 4000] [--seeds 2] [--quick]``: for bundled models' games, a
run with ``target=TopK(k, per_group)`` (permutation sampling, at most ``--cap`` permutations)
against plain runs of fixed budgets, one torch thread. Printed per case: permutations and CPU
seconds the targeted run used and what it resolved (groups whose top k is known at 95%; units still
unresolved); the same for a fixed run of the same cost (another seed), whose status is read
afterwards from its standard errors (``top_k_status``, one look), and for a fixed run
of 1000 permutations (the paper's budget).

``--llm`` (after ``python -m msa_core.zoo.fetch smollm2``): SmolLM2-135M's 270 heads on the bundled
study task (``assets/tasks/smollm2-study.jsonl``: 12 prompts in 4 groups), the target log-prob
averaged per group (``llm_preflight.GroupMeanGame``, values ``[C, 4]``), top 10 per group: the
targeted run (at most ``--llm-cap`` permutations), a fixed run of the same cost (another seed), how
many of each group's top 10 each resolves, their evaluations and CPU minutes, and the permutations
the preflight's estimate (``llm_preflight.needed_permutations``, from the targeted run's own scores)
says resolving would need. ``--quick`` runs it on the 30 layers, top 3, 4 permutations (a few CPU
minutes) instead.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import table

from msa_core import TopK, shapley_modes, top_k_status
from msa_core.analysis.llm_preflight import (
    GroupMeanGame,
    needed_permutations,
    permutations_in_words,
)
from msa_core.zoo import load_model

LLM_FULL = ("heads", 10)  # units, k
LLM_QUICK = ("layers", 3)

CASES = (  # model, units, output, k, per_group
    ("moe-fortunes-5lang", "experts (layer 0)", "language_logprob", 2, True),
    ("mlp-digits-h16-l1-s0", "hidden neurons", "target_logprob", 1, False),
    ("mlp-digits-h16-l1-s0", "hidden neurons", "target_logprob", 3, False),
)


def summary(res) -> str:
    status = top_k_status(res)
    done = sum(len(group.top) == status.k for group in status.groups)
    open_units = sum(len(group.unresolved) for group in status.groups)
    return f"{done}/{len(status.groups)} groups, {open_units} units open"


def run(game, **kwargs):
    start = time.process_time()
    res = shapley_modes(game, method="permutation", **kwargs)
    return res, time.process_time() - start


def llm_rows(units: str, k: int, cap: int, seed: int = 0) -> list[tuple[str, ...]]:
    """The SmolLM2 section (see the module): one row per group, then the totals."""
    from msa_core.runs import RunRequest

    loaded = RunRequest(model="smollm2-135m", units=units, task="smollm2-study").load()
    task = loaded.task.task
    game = GroupMeanGame(
        loaded.game(units, output="task_logprob"), task.group_index(), len(task.groups)
    )
    target = TopK(k, per_group=True)
    targeted, targeted_cpu = run(game, n_permutations=cap, seed=seed, target=target)
    fixed, fixed_cpu = run(game, n_permutations=targeted.n_permutations, seed=seed + 100)
    status = top_k_status(targeted)
    same = top_k_status(fixed, k, per_group=True)
    scores = np.array(status.scores)
    need = needed_permutations(
        scores, np.array(status.score_stderr), targeted.n_permutations, k, target.level
    )
    per_permutation = targeted_cpu / max(targeted.n_evaluations, 1) * (game.n_players - 1)
    rows = [
        (
            f"{group}",
            f"{len(status.groups[g].top)}/{k}",
            f"{len(same.groups[g].top)}/{k}",
            permutations_in_words(need[g])
            + (
                ""
                if not np.isfinite(need[g])
                else f" ({need[g] * per_permutation / 3600:.1f} CPU h)"
            ),
        )
        for g, group in enumerate(task.groups)
    ]
    rows.append(
        (
            f"all ({game.n_players} {units}), {targeted.n_permutations} permutations each",
            f"{targeted.n_evaluations:,} evaluations, {targeted_cpu / 60:.1f} CPU min"
            + (", stopped" if targeted.meta["stopped_early"] else ", cap reached"),
            f"{fixed.n_evaluations:,} evaluations, {fixed_cpu / 60:.1f} CPU min",
            f"{permutations_in_words(float(np.max(need)))} permutations for every group",
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=int, default=4000, help="permutations a targeted run may use")
    parser.add_argument("--seeds", type=int, default=2, help="targeted runs per case")
    parser.add_argument("--llm", action="store_true", help="only the SmolLM2 section")
    parser.add_argument(
        "--llm-cap", type=int, default=4, help="permutations the SmolLM2 targeted run may use"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: --cap 500 --seeds 1; SmolLM2 layers"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.llm:
        units, k = LLM_QUICK if args.quick else LLM_FULL
        rows = [
            (
                "group",
                f"targeted: top {k} resolved",
                "fixed, same cost: resolved",
                "permutations needed (preflight estimate)",
            )
        ]
        rows += llm_rows(units, k, args.llm_cap)
        print(
            f"\nSmolLM2-135M {units} on the bundled study task, top {k} per group (95%), one "
            f"torch thread, CPU time\n"
        )
        print(table(rows))
        return
    if args.quick:
        args.cap, args.seeds = min(args.cap, 500), 1
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
            status = top_k_status(same, k, per_group)
            same_done = sum(len(group.top) == k for group in status.groups)
            cells.append(
                (
                    f"{res.n_permutations} / {seconds:.1f} / {summary(res)}",
                    f"{same_done}/{len(status.groups)} groups",
                )
            )
        fixed, fixed_seconds = run(game, n_permutations=1000, seed=0)
        status = top_k_status(fixed, k, per_group)
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

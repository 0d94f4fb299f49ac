"""The paper's task x unit study on SmolLM2-135M (after ``python -m msa_core.zoo.fetch smollm2``).

    python bench/llm_study.py [--units heads] [--permutations 6] [--k 4] [--task smollm2-study]

One torch thread. The MSA run goes through the run store ($MSA_CACHE_DIR): a stored run is reused,
an interrupted one resumes. Prints the run's wall time and efficiency gap, intact accuracy per
group,
layer shares, the group correlation, top-10% vs random lesions, each group's selective lesion
(every group's loss before and after, the ratio, greedy continuations), removal curves, and the
pass criteria; ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from msa_core.analysis import llm
from msa_core.runs import RunRequest, execute
from msa_core.runs.store import RunStore


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", default="heads")
    parser.add_argument("--permutations", type=int, default=6)
    parser.add_argument("--k", type=int, default=4, help="units per selective lesion (paper: 4)")
    parser.add_argument(
        "--task", default=None, help="task file or bundled set (default: the model's own)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    np.set_printoptions(precision=3, suppress=True, linewidth=160)
    request = RunRequest(
        model="smollm2-135m",
        units=args.units,
        method="permutation",
        n_permutations=args.permutations,
        seed=args.seed,
        task=args.task,
    )
    began = time.time()
    result = execute(request, RunStore())
    print(
        f"run: {result.n_players} units x {result.output_shape[0]} examples, "
        f"{result.n_evaluations} evaluations, "
        f"{result.meta.get('wall_seconds', 0):.0f} s when computed "
        f"({time.time() - began:.0f} s now)"
    )
    began = time.time()
    findings = llm.analyse(request.load(), result, k=args.k, seed=args.seed)
    print(f"analyses: {time.time() - began:.0f} s")
    groups = findings.groups
    print(f"efficiency gap (max over examples): {findings.efficiency_gap:.2e}")
    print("intact accuracy:", dict(zip(groups, findings.accuracy.round(2).tolist(), strict=True)))
    print("layer shares of |contribution| (rows: groups):\n", findings.shares)
    print("group correlation:\n", findings.correlation)
    check = findings.top_vs_random
    for g, group in enumerate(groups):
        print(
            f"top {check.k} vs random, {group}: loss {check.intact[g]:.3f} -> "
            f"top {check.top[g]:.3f}, "
            f"random {check.random[g].mean():.3f} (draws {check.random[g].round(3).tolist()})"
        )
    for lesion in findings.lesions:
        names = [findings.player_names[u] for u in lesion.experts]
        print(
            f"selective lesion {groups[lesion.language]}: ratio {lesion.ratio:.2f}; units {names}\n"
            f"  loss before {lesion.loss_before.round(3).tolist()}\n"
            f"  loss after {lesion.loss_after.round(3).tolist()}\n"
            f"  continuation before {lesion.continuation_before!r}\n"
            f"  continuation after {lesion.continuation_after!r}"
        )
    high, low = findings.curves.rises()
    print(
        "removal ks",
        findings.curves.ks.tolist(),
        "\n  highest first rise",
        high.round(3).tolist(),
        "\n  lowest first rise",
        low.round(3).tolist(),
    )
    print("verdicts:", findings.verdicts())
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "groups": groups,
                    "accuracy": findings.accuracy.tolist(),
                    "shares": findings.shares.tolist(),
                    "correlation": findings.correlation.tolist(),
                    "efficiency_gap": findings.efficiency_gap,
                    "top_k": check.k,
                    "intact": check.intact.tolist(),
                    "top": check.top.tolist(),
                    "random": check.random.tolist(),
                    "ratios": [x.ratio for x in findings.lesions],
                    "curves": {
                        "ks": findings.curves.ks.tolist(),
                        "highest": high.tolist(),
                        "lowest": low.tolist(),
                    },
                    "verdicts": findings.verdicts(),
                    "run_wall_seconds": result.meta.get("wall_seconds"),
                    "n_evaluations": result.n_evaluations,
                },
                handle,
                indent=1,
            )


if __name__ == "__main__":
    main()

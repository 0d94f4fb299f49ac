"""Study 1 in full through the run store: every bundled MLP (digits 16/32/64/128, Fashion-MNIST
64/128; none / L1 / L2; seeds 0-2), the paper's class-accuracy game, and every number issue 10 asks
for.

    .venv/bin/python bench/study1.py [--permutations 1000] [--data digits fashion] [--store DIR]

Runs go through ``msa_core.runs.execute`` into a fresh store (or ``--store``: a repeated run is then
read back at once). Prints one row per model, the mean +- sd over seeds per setting beside the
paper's numbers, the pass criteria of issue 10, pruning (Shapley vs |weight| vs random), the most
correlated class pairs, and the wall time of each data set.

The estimator is permutation sampling, not "auto" (kernel): with 3,600 (digits) or 10,240 (Fashion)
per-image outputs, the kernel sampler's regression costs far more wall time than the evaluations
(measured at N=128, 100 permutations: kernel 47 s, permutation 5 s).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from msa_core.analysis import study1
from msa_core.runs.execute import execute
from msa_core.runs.request import RunRequest
from msa_core.runs.store import RunStore
from msa_core.zoo import fashion, load_model, mlp

PAPER = (
    "paper (MNIST, 10 seeds): IDC at N=100 L1 0.69 / L2 0.78 / none 0.84; "
    "at N=200 0.60 / 0.67 / 0.77.\n"
    "paper, measured on sklearn digits (N=64, 300 permutations, 5 seeds): "
    "IDC none 0.90, L1 0.66, L2 0.86;\n"
    "  accuracy after lesioning the top 20%: 0.85 / 0.33 / 0.66; "
    "r(|weight|, phi): 0.52 / 0.93 / 0.75."
)


def run_dataset(
    data: str, method: str, permutations: int, store: RunStore
) -> list[tuple[study1.ModelFindings, study1.NeuronPruning]]:
    """Run and analyse every model of one data set, printing a row per model."""
    rows = []
    print(
        f"{'model':28s} {'acc':>6s} {'IDC':>6s} {'gini':>6s} {'u80%':>4s} {'les20':>6s} "
        f"{'keep20':>6s} {'r(w)':>6s} {'eff.gap':>8s} {'evals':>7s} {'secs':>6s}"
    )
    for card in (
        card for card in mlp.cards() if card.facts["data"] == mlp.DATASETS[data].description
    ):
        loaded = load_model(card.name)
        request = RunRequest(
            model=card.name, output="class_accuracy", method=method, n_permutations=permutations
        )
        start = time.perf_counter()
        result = execute(request, store)
        seconds = time.perf_counter() - start
        item = study1.analyse(loaded, result)
        rows.append((item, study1.pruning(loaded, item.phi, item.weight)))
        print(
            f"{item.name:28s} {item.accuracy:6.3f} {item.idc:6.3f} {item.gini:6.3f} "
            f"{item.units_for[0.8]:4d} {item.lesion_top:6.3f} {item.keep_top:6.3f} "
            f"{item.weight_r:6.3f} {item.efficiency_gap:8.1e} {item.n_evaluations:7d} "
            f"{seconds:6.1f}",
            flush=True,
        )
    return rows


def print_summary(rows: list[tuple[study1.ModelFindings, study1.NeuronPruning]]) -> None:
    """Mean +- sd over seeds per (data, hidden, regime), with pruning against random and
    |weight|."""
    summary = study1.summarise([item for item, _ in rows])
    print(
        f"\n{'data':15s} {'N':>4s} {'regime':6s} "
        + " ".join(f"{f:>13s}" for f in study1.SUMMARY_FIELDS)
        + "  prune>rand  shap-rand  shap-|w|"
    )
    for key, numbers in summary.items():
        prunes = [
            p
            for item, p in rows
            if (item.facts["data"], item.facts["hidden"], item.facts["regime"]) == key
        ]
        beats = np.mean([np.all(p.shapley > p.random_mean) for p in prunes])
        versus_random = np.mean([np.mean(p.shapley - p.random_mean) for p in prunes])
        versus_weight = np.mean([np.mean(p.shapley - p.magnitude) for p in prunes])
        print(
            f"{key[0]:15s} {key[1]:4d} {key[2]:6s} "
            + " ".join(f"{numbers[f][0]:6.3f}+-{numbers[f][1]:5.3f}" for f in study1.SUMMARY_FIELDS)
            + f"  {beats:9.2f}  {versus_random:+9.3f}  {versus_weight:+8.3f}"
        )


def print_criteria(rows: list[tuple[study1.ModelFindings, study1.NeuronPruning]]) -> None:
    """Issue 10's study-1 criteria on digits (means over seeds)."""
    summary = study1.summarise([item for item, _ in rows])
    value = lambda hidden, regime, field: summary["sklearn digits", hidden, regime][field][0]  # noqa: E731
    checks = {
        "IDC(L1) <= IDC(none) - 0.15 at N=64": value(64, "none", "idc") - value(64, "l1", "idc")
        >= 0.15,
        "IDC(L2) <= IDC(none) - 0.02 at N=64": value(64, "none", "idc") - value(64, "l2", "idc")
        >= 0.02,
        "gap none-L1 larger at N=128 than N=16": (
            value(128, "none", "idc") - value(128, "l1", "idc")
            > value(16, "none", "idc") - value(16, "l1", "idc")
        ),
        "lesion top 20%: L1 >= 0.30 below none": value(64, "none", "lesion_top")
        - value(64, "l1", "lesion_top")
        >= 0.3,
        "lesion top 20%: L2 >= 0.10 below none": value(64, "none", "lesion_top")
        - value(64, "l2", "lesion_top")
        >= 0.1,
        "r(|w|, phi) >= 0.8 for L1": value(64, "l1", "weight_r") >= 0.8,
        "r(|w|, phi) L1 >= none + 0.2": value(64, "l1", "weight_r")
        >= value(64, "none", "weight_r") + 0.2,
        "intact accuracy >= 0.95 everywhere": min(item.accuracy for item, _ in rows) >= 0.95,
        "pruning beats random at every k (all)": all(
            np.all(p.shapley > p.random_mean) for _, p in rows
        ),
        "efficiency to 1e-5": max(item.efficiency_gap for item, _ in rows) <= 1e-5,
    }
    print("\nissue 10 criteria (digits, N=64 unless stated, means over seeds 0-2):")
    for label, passed in checks.items():
        print(f"  {'PASS' if passed else 'FAIL'}  {label}")


def print_class_pairs(
    rows: list[tuple[study1.ModelFindings, study1.NeuronPruning]], hidden: int, classes: list[str]
) -> None:
    """The three most correlated class pairs per regime (correlation of modes over neurons, mean
    over seeds).
    """
    print(f"\nmost correlated class pairs at N={hidden} (mean over seeds):")
    for regime in mlp.REGIMES:
        mats = [
            study1.class_correlation(item.class_modes)
            for item, _ in rows
            if item.facts["hidden"] == hidden and item.facts["regime"] == regime
        ]
        if not mats:
            continue
        corr = np.mean(mats, axis=0)
        upper = [(corr[i, j], i, j) for i in range(len(corr)) for j in range(i + 1, len(corr))]
        top = sorted(upper, reverse=True)[:3]
        print(
            f"  {regime:5s} "
            + ", ".join(f"{classes[i]}-{classes[j]} {r:.2f}" for r, i, j in top)
            + f"; mean off-diagonal {np.mean([r for r, _, _ in upper]):.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--permutations", type=int, default=1000, help="the paper's budget (default 1000)"
    )
    parser.add_argument(
        "--method", default="permutation", help="estimator (default permutation, see above)"
    )
    parser.add_argument(
        "--data", nargs="+", default=["digits", "fashion"], choices=list(mlp.DATASETS)
    )
    parser.add_argument(
        "--store", default=None, help="run store directory (default: a fresh temporary one)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(PAPER)
    with tempfile.TemporaryDirectory() as scratch:
        store = RunStore(args.store or scratch)
        for data in args.data:
            print(
                f"\n== {mlp.DATASETS[data].description}: {args.method}, {args.permutations} "
                "permutations =="
            )
            start = time.perf_counter()
            rows = run_dataset(data, args.method, args.permutations, store)
            elapsed = time.perf_counter() - start
            print_summary(rows)
            if data == "digits":
                print_criteria(rows)
            classes = [str(k) for k in range(10)] if data == "digits" else list(fashion.CLASSES)
            print_class_pairs(rows, 64, classes)
            print(
                f"\n{data}: {len(rows)} models in {elapsed:.0f} s wall ({elapsed / 60:.1f} min) on "
                "this CPU, one thread, through the run store"
            )


if __name__ == "__main__":
    main()

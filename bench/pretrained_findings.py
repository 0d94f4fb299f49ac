"""Which units of the fetched real models carry which group: EfficientNet-Lite0's last-stage
channels per photographed class, all-MiniLM-L6-v2's heads per sentence topic (after
``python -m msa_core.zoo.fetch efficientnet-lite0`` / ``minilm``).

    python bench/pretrained_findings.py vision [--permutations 10] [--k 16]
    python bench/pretrained_findings.py encoder [--evaluations 300] [--k 7]

One torch thread. For each group (a photo's 5 crops; a topic's 4 sentence pairs) the units are
ranked by their mean Shapley value on the group's values (true-class log-prob; pair cosine
similarity); the group's top-k units are lesioned together and compared with k random units (40
draws: the random sets' mean drop and their 2.5-97.5 percentiles). Prints the wall time, the top
units of each group with their 95% intervals, how many top units two groups share, and the drops;
``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from msa_core.estimators import shapley_modes
from msa_core.zoo import load_model

DRAWS = 40


def group_means(values: np.ndarray, groups: np.ndarray, names: list[str]) -> np.ndarray:
    """``[..., B] -> [..., G]``: the mean over each group's samples."""
    return np.stack([values[..., groups == name].mean(-1) for name in names], -1)


def held_out_drops(
    game, modes: np.ndarray, groups: np.ndarray, names: list[str], k: int
) -> np.ndarray:
    """``[G]``: each group's drop when its top-k units are ranked without the sample they are
    scored on (leave one sample out, averaged over the group's samples): no selection bias."""
    n = game.n_players
    rows, scored = [np.ones(n, bool)], []
    for name in names:
        members = np.flatnonzero(groups == name)
        for sample in members:
            ranking = np.argsort(-modes[:, members[members != sample]].mean(-1))
            row = np.ones(n, bool)
            row[ranking[:k]] = False
            rows.append(row)
            scored.append((name, sample))
    values = game(np.stack(rows)).numpy()
    drops = {name: [] for name in names}
    for row, (name, sample) in enumerate(scored, 1):
        drops[name].append(values[0, sample] - values[row, sample])
    return np.array([np.mean(drops[name]) for name in names])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", choices=("vision", "encoder"))
    parser.add_argument("--permutations", type=int, default=10)
    parser.add_argument("--evaluations", type=int, default=300)
    parser.add_argument("--k", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.model == "vision":
        loaded = load_model("efficientnet-lite0")
        game = loaded.game("stage 6 channels", "target_logprob")
        k = args.k or 16
        run = {"method": "permutation", "n_permutations": args.permutations}
        groups = np.array(loaded.card.facts["groups"])
        names = list(dict.fromkeys(groups))
    else:
        loaded = load_model("all-minilm-l6-v2")
        game = loaded.game("heads", "pair_similarity")
        k = args.k or 7
        run = {"method": "regression_adjusted", "max_evaluations": args.evaluations}
        from msa_core.zoo.encoder import load_pairs

        groups = np.array([pair.group for pair in load_pairs("topics").pairs])
        names = [name for name in dict.fromkeys(groups) if name != "unrelated"]
    start = time.perf_counter()
    result = shapley_modes(game, seed=0, **run)
    seconds = time.perf_counter() - start
    low, high = result.interval(0.95)
    modes = group_means(result.modes, groups, names)  # [N, G]
    half = group_means(
        (high - low) / 2, groups, names
    )  # a bound: intervals of the mean are tighter
    units = result.player_names
    top = {name: np.argsort(-modes[:, g])[:k] for g, name in enumerate(names)}
    n = game.n_players
    rows = [np.ones(n, bool)]
    for name in names:
        row = np.ones(n, bool)
        row[top[name]] = False
        rows.append(row)
    rng = np.random.default_rng(0)
    for _ in range(DRAWS):
        row = np.ones(n, bool)
        row[rng.choice(n, k, replace=False)] = False
        rows.append(row)
    values = group_means(
        game(np.stack(rows)).numpy(),
        groups,
        [*names, *(["unrelated"] if "unrelated" in groups else [])],
    )  # [R, G(+1)]
    intact, lesioned, random = values[0], values[1 : 1 + len(names)], values[1 + len(names) :]
    held_out = held_out_drops(game, result.modes, groups, names, k)
    report = {
        "seconds": seconds,
        "evaluations": result.n_evaluations,
        "efficiency_gap": float(
            np.abs(result.modes.sum(0) - (result.v_full - result.v_empty)).max()
        ),
        "k": k,
        "groups": {},
    }
    print(f"{args.model}: {n} units, {result.n_evaluations} evaluations in {seconds:.0f} s")
    for g, name in enumerate(names):
        own_drop = intact[g] - lesioned[g, g]
        other = [h for h in range(len(names)) if h != g]
        other_drop = float(np.mean(intact[other] - lesioned[g, other]))
        random_drops = intact[g] - random[:, g]
        entry = {
            "top": [(units[i], float(modes[i, g]), float(half[i, g])) for i in top[name][:5]],
            "intact": float(intact[g]),
            "own_drop_topk": float(own_drop),
            "other_groups_drop_topk": other_drop,
            "own_drop_topk_held_out": float(held_out[g]),
            "random_drop_mean": float(random_drops.mean()),
            "random_drop_95": [
                float(np.percentile(random_drops, 2.5)),
                float(np.percentile(random_drops, 97.5)),
            ],
            "shared_top_with": {
                other_name: len(set(top[name]) & set(top[other_name]))
                for other_name in names
                if other_name != name
            },
        }
        report["groups"][name] = entry
        print(
            f"  {name}: intact {intact[g]:.3f}; top-{k} lesion drops it by {own_drop:.3f} "
            f"(held out {held_out[g]:.3f}; other groups {other_drop:.3f}); {k} random: "
            f"{random_drops.mean():.3f} "
            f"[{entry['random_drop_95'][0]:.3f}, {entry['random_drop_95'][1]:.3f}]"
        )
        print(
            "    top units (mean mode ± 95% half-width):",
            ", ".join(f"{u} {m:.3f}±{h:.3f}" for u, m, h in entry["top"]),
        )
        print("    top-k shared with:", entry["shared_top_with"])
    if "unrelated" in groups:
        report["unrelated_intact"] = float(intact[-1])
        print(f"  unrelated pairs: intact similarity {intact[-1]:.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()

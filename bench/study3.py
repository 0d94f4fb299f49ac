"""Study 3 at the default budget, through the run store: every number of the study and the wall
time.

For each bundled generator seed: the run (every layer's channels, 32 fixed latents, permutation
sampling), its efficiency gap, the per-layer median spectral centroid / spatial extent / share of
|contribution|, whether the centroid rises with depth over the hidden layers, the showcased cluster
lesion's concentration, and the judge's agreement with the requested labels. The store is a fresh
temporary directory unless ``--store`` is given, so the wall time includes the computation.

    python bench/study3.py [--permutations 30] [--store DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from common import table

torch.set_num_threads(1)

from msa_core.analysis import study3  # noqa: E402
from msa_core.runs import RunStore, execute  # noqa: E402
from msa_core.zoo import gan, load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--permutations", type=int, default=study3.STUDY_PERMUTATIONS)
    parser.add_argument(
        "--store", default=None, help="run store directory (default: a fresh temporary one)"
    )
    args = parser.parse_args()
    directory = args.store or tempfile.mkdtemp(prefix="msa-study3-")
    store = RunStore(directory)
    print(
        f"study 3: {len(gan.SEEDS)} seeds, {args.permutations} permutations each, store "
        f"{directory}\n"
    )
    start = time.perf_counter()
    hidden_centroids, rising, rising_with_mean = [], 0, 0
    for seed in gan.SEEDS:
        name = gan.name_of(seed)
        loaded = load_model(name)
        began = time.perf_counter()
        result = execute(study3.study_request(name, args.permutations), store)
        run_seconds = time.perf_counter() - began
        summaries = study3.layer_summaries(result)
        rows = [
            (
                "layer",
                "channels",
                "median centroid",
                "(with mean)",
                "median extent",
                "share |contribution|",
            )
        ]
        rows += [
            (
                s.layer,
                str(s.channels),
                f"{s.spectral_centroid:.3f}",
                f"{s.centroid_with_mean:.3f}",
                f"{s.spatial_extent:.3f}",
                f"{s.contribution_share:.3f}",
            )
            for s in summaries
        ]
        rises = study3.centroid_rises(summaries)
        rising += rises
        rising_with_mean += study3.centroid_rises(summaries, with_mean=True)
        hidden = study3.hidden_layers(summaries)
        hidden_centroids.append([s.spectral_centroid for s in summaries if s.layer in hidden])
        cluster = study3.showcase_cluster(result)
        lesion = study3.cluster_lesion(loaded.game(study3.STUDY_UNITS), cluster)
        print(
            f"## {name}: {result.n_players} players, {result.n_evaluations:,} evaluations, run "
            f"{run_seconds:.1f} s, efficiency gap {result.efficiency_gap():.1e}"
        )
        print(table(rows))
        print(f"centroid rises over {' -> '.join(hidden)}: {rises}")
        print(
            f"showcased cluster ({len(cluster)} channels: {', '.join(lesion.players)}): 50% of "
            f"|difference| in {lesion.concentration():.1%} of pixels (criterion <= 25%)"
        )
        print(
            f"judge agrees with the requested label on {gan.agreement(loaded.model):.1%} of 500 "
            "samples\n"
        )
    mean = np.mean(hidden_centroids, axis=0)
    print(
        f"centroid rises with depth in {rising} of {len(gan.SEEDS)} seeds (criterion: at least 2); "
        f"with the mean kept (DC bin) in {rising_with_mean}"
    )
    print(
        f"mean median centroid by depth: {', '.join(f'{v:.3f}' for v in mean)}; paper: "
        f"{', '.join(f'{v:.2f}' for v in study3.PAPER_CENTROIDS)}"
    )
    print(f"total wall time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

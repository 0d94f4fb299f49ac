"""Study 2 end to end on the bundled byte-level Mixtral: MSA over its 32 experts, then every number.

    python bench/study2.py [--permutations 100] [--seed 0] [--weights PATH]

One torch thread. Prints the Shapley run's wall time and efficiency gap, the language x expert
matrix, layer shares, the largest hub, the language correlation, each language's selective lesion
(experts, every language's loss before and after, the ratio, greedy continuations), removal curves
with the pass verdicts, and Shapley-guided pruning vs random. ``--weights`` evaluates another
safetensors file of the same architecture (e.g. a candidate from a training experiment).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from safetensors.torch import load_file

from msa_core import shapley_modes
from msa_core.analysis import study2
from msa_core.lesion import ModelGame
from msa_core.zoo import moe
from msa_core.zoo.weights import load_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    np.set_printoptions(precision=3, suppress=True, linewidth=160)
    model = moe.build()
    if args.weights:
        model.load_state_dict(load_file(args.weights))
    else:
        load_weights(model, moe.NAME)
    inputs, languages = moe.game_inputs()
    eval_inputs, eval_languages = moe.eval_inputs()
    names = [moe.LANGUAGE_NAMES[language] for language in moe.LANGUAGES]
    card = moe.cards()[0]
    game = ModelGame(
        model, inputs, list(card.granularities["experts (all layers)"]), output="target_logprob"
    )
    began = time.perf_counter()
    result = shapley_modes(
        game, method="permutation", n_permutations=args.permutations, seed=args.seed
    )
    shapley_seconds = time.perf_counter() - began
    print(
        f"MSA: {game.n_players} experts, {args.permutations} permutations, {result.n_evaluations} "
        f"evaluations, {shapley_seconds:.1f} s wall; efficiency gap {result.efficiency_gap():.2e}"
    )
    began = time.perf_counter()
    found = study2.analyse(
        model,
        result,
        languages.numpy(),
        names,
        eval_inputs,
        eval_languages,
        moe.LATIN,
        prompts=moe.prompts(),
    )
    print(f"analysis: {time.perf_counter() - began:.1f} s wall")
    print(
        "intact loss per language (nats/byte, evaluation sentences):",
        dict(zip(names, np.round(found.lesions[0].loss_before, 3), strict=False)),
    )
    print("language x expert matrix (rows: languages; columns L0.E0 .. L3.E7):")
    print(found.matrix)
    print("layer shares of |contribution| (rows: languages, columns: layers):")
    print(found.shares)
    print(
        f"largest hub {found.player_names[found.hub]}: share per language "
        f"{np.round(found.hub_share, 3)}"
    )
    print("language correlation:")
    print(found.correlation)
    for lesion in found.lesions:
        removed = [found.player_names[e] for e in lesion.experts]
        print(
            f"selective lesion {names[lesion.language]}: remove {removed}; rise "
            f"{np.round(lesion.rise, 3)}; ratio {lesion.ratio:.2f}"
        )
        print(f"    before: {lesion.continuation_before!r}")
        print(f"    after:  {lesion.continuation_after!r}")
    print(f"selective verdict: {found.selective}")
    top, bottom = found.curves.rises()
    print("removal rise highest-first:", np.round(top, 3))
    print("removal rise lowest-first: ", np.round(bottom, 3))
    print(f"removal verdict: {found.removal}")
    print(
        f"pruning ks {found.pruning.ks}: shapley {np.round(found.pruning.shapley, 3)}, "
        f"random {np.round(found.pruning.random_mean, 3)} +- "
        f"{np.round(found.pruning.random_std, 3)}"
    )


if __name__ == "__main__":
    main()

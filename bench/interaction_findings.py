"""Findings of interaction runs on the bundled models (README "Findings"); short runs, cached in
the store.

1. MLPs: do L1 hubs interact more than the top neurons of unregularised nets? Exact runs and exact
   interactions of all 16 hidden neurons of mlp-digits-h16-{l1,none}-s{0,1,2} (output: per-image
   correctness, so a pair's summed interaction is its effect on accuracy).
2. GAN: are the channel clusters of Study 3 (correlation of modes) groups of strongly interacting
   channels? The 16 channels of gan-digits-s0's last hidden layer, sampled.
3. MoE: do a language's experts across layers interact? The top-8 experts of moe-fortunes-5lang
   (language_logprob), sampled; cross-layer pairs that prefer the same language against the others.

Run: ``MSA_CACHE_DIR=/tmp/x PYTHONPATH=. python bench/interaction_findings.py [mlp|gan|moe ...]``
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.stats import spearmanr

from msa_core.analysis import study2, study3
from msa_core.analysis.interactions import pair_values, strength
from msa_core.estimators.interactions import interaction_modes
from msa_core.runs import RunRequest, RunStore, execute
from msa_core.runs.interaction_runs import InteractionRequest, execute_interactions
from msa_core.zoo import load_model, moe

HUBS = 3  # the top neurons by |phi| compared between regimes


def interactions_of(store: RunStore, request: RunRequest, **fields):
    parent = execute(request, store)
    result = execute_interactions(
        InteractionRequest(parent=parent.meta["fingerprint"], **fields), store
    )
    print(
        f"  {request.model} · {parent.meta['units']}: parent {parent.n_evaluations} evals, "
        "interactions "
        f"{result.meta['method']} {result.n_evaluations} evals ({result.meta['cost_ratio']:.2f}x), "
        f"{result.meta['wall_seconds']:.0f} s"
    )
    return parent, result


def mlp(store: RunStore) -> None:
    print("1. MLP hubs (exact, 16 hidden neurons, output: per-image correctness)")
    rows = {}
    for regime in ("l1", "none"):
        for seed in range(3):
            request = RunRequest(
                model=f"mlp-digits-h16-{regime}-s{seed}", output="correct", method="exact"
            )
            parent, result = interactions_of(store, request, top=16)
            phi = np.abs(parent.modes.sum(1))  # |effect on the number of correct images| per neuron
            summed = np.abs(pair_values(result))  # |effect of the pair's interaction on it|
            order = result.players  # position -> neuron
            hubs = np.isin(order, np.argsort(-phi)[:HUBS])
            iu = np.triu_indices(16, 1)
            hub_pairs = (hubs[:, None] & hubs[None, :])[iu]
            touching = (hubs[:, None] | hubs[None, :])[iu]
            rows.setdefault(regime, []).append(
                {
                    "accuracy": float(parent.v_full.mean()),
                    "share of |phi| in hubs": float(np.sort(phi)[::-1][:HUBS].sum() / phi.sum()),
                    "mean |pair| (images)": float(summed[iu].mean()),
                    "hub-hub |pair|": float(summed[iu][hub_pairs].mean()),
                    "hub-other |pair|": float(summed[iu][touching & ~hub_pairs].mean()),
                    "other-other |pair|": float(summed[iu][~touching].mean()),
                    "pair mass / unit mass": float(summed[iu].sum() / phi.sum()),
                }
            )
    for regime, items in rows.items():
        print(f"  {regime}:")
        for key in items[0]:
            values = np.array([item[key] for item in items])
            print(
                f"    {key:<24} {values.mean():8.3f} ± {values.std():.3f}  "
                f"({', '.join(f'{v:.3f}' for v in values)})"
            )


def mlp32(store: RunStore, n_samples: int = 200) -> None:
    print("1b. MLP hubs, sampled: top-16 of 32 hidden neurons (runs of 200 permutations)")
    for regime in ("l1", "none"):
        for seed in range(3):
            request = RunRequest(
                model=f"mlp-digits-h32-{regime}-s{seed}",
                output="correct",
                method="permutation",
                n_permutations=200,
            )
            parent, result = interactions_of(store, request, top=16, n_samples=n_samples)
            summed = np.abs(pair_values(result))
            noise = result.summed_stderr
            iu = np.triu_indices(16, 1)
            hubs = np.arange(16) < HUBS  # positions are in ranking order
            hub_pairs = (hubs[:, None] & hubs[None, :])[iu]
            print(
                f"    {regime} s{seed}: mean |pair| {summed[iu].mean():.2f} (mean stderr "
                f"{noise[iu].mean():.2f}); hub-hub {summed[iu][hub_pairs].mean():.2f}, "
                f"others {summed[iu][~hub_pairs].mean():.2f}"
            )


def gan(store: RunStore, n_samples: int = 120) -> None:
    print("2. GAN channel clusters (gan-digits-s0, channels of up16, sampled)")
    request = RunRequest(
        model="gan-digits-s0", units="channels of up16", method="permutation", n_permutations=100
    )
    parent, result = interactions_of(store, request, top=16, n_samples=n_samples)
    clusters = study3.cluster_channels(
        parent, np.arange(parent.n_players), study3.SHOWCASE_CLUSTERS
    )
    label = np.empty(parent.n_players, dtype=int)
    for index, members in enumerate(clusters):
        label[members] = index
    position_label = label[result.players]
    power = strength(result)  # sum over pixels of |interaction|
    summed = np.abs(pair_values(result))
    noise = (
        np.asarray(result.stderr).reshape(16, 16, -1).sum(-1)
    )  # the same sum of the elements' stderr
    iu = np.triu_indices(16, 1)
    same = (position_label[:, None] == position_label[None, :])[iu]
    flat = parent.modes.reshape(parent.n_players, -1)[result.players]
    correlation = np.corrcoef(flat)[iu]
    print(
        f"  clusters (sizes): {[len(c) for c in clusters]}; {same.sum()} within-cluster pairs of "
        f"{len(same)}"
    )
    print(
        f"  strength (sum |I| over pixels): within {power[iu][same].mean():.3f}, between "
        f"{power[iu][~same].mean():.3f}; noise level (sum of stderr) {noise[iu].mean():.3f}"
    )
    print(
        f"  mean stderr of summed I {result.summed_stderr[iu].mean():.3f}; "
        f"|summed I| (net effect on the pixel sum): within {summed[iu][same].mean():.3f}, "
        f"between {summed[iu][~same].mean():.3f}"
    )
    rho = spearmanr(np.abs(correlation), power[iu] - noise[iu])
    print(
        f"  Spearman(|mode correlation|, strength - noise) over pairs: {rho.statistic:.2f} (p "
        f"{rho.pvalue:.2g})"
    )
    rho = spearmanr(correlation, pair_values(result)[iu])
    print(f"  Spearman(mode correlation, summed I): {rho.statistic:.2f} (p {rho.pvalue:.2g})")


def moe_experts(store: RunStore, top: int = 8, n_samples: int = 60) -> None:
    print(
        "3. MoE experts across layers (moe-fortunes-5lang, experts (all layers), "
        "language_logprob, sampled)"
    )
    request = RunRequest(
        model="moe-fortunes-5lang",
        units="experts (all layers)",
        output="language_logprob",
        method="permutation",
        n_permutations=100,
    )
    parent, result = interactions_of(store, request, top=top, n_samples=n_samples)
    _, languages = moe.game_inputs()
    n_languages = len(moe.LANGUAGES)
    matrix = study2.language_matrix(
        parent, languages.numpy(), n_languages, "language_logprob"
    )  # [L, N]
    preferred = np.argmax(study2.selectivity(matrix), axis=0)[result.players]  # per chosen expert
    layers = study2.expert_layers(parent.player_names)[result.players]
    per_language = np.asarray(result.interactions).sum(2)  # [K, K, L]: summed over sentences
    stderr = np.asarray(result.stderr).sum(2)  # an upper bound of the sum's stderr
    iu = np.triu_indices(top, 1)
    cross = (layers[:, None] != layers[None, :])[iu]
    same = (preferred[:, None] == preferred[None, :])[iu]
    own = per_language[iu[0], iu[1], preferred[iu[0]]]  # on the first expert's preferred language
    bound = stderr[iu[0], iu[1], preferred[iu[0]]]
    others = np.array(
        [
            np.delete(per_language[a, b], preferred[a]).__abs__().mean()
            for a, b in zip(*iu, strict=True)
        ]
    )
    names = [moe.LANGUAGE_NAMES[lang] for lang in moe.LANGUAGES]
    chosen = zip(result.player_names, preferred, strict=True)
    print(f"  chosen experts: {', '.join(f'{n}({names[p][:2]})' for n, p in chosen)}")
    for what, mask in (
        ("cross-layer, same language", cross & same),
        ("cross-layer, other languages", cross & ~same),
        ("same layer", ~cross),
    ):
        if mask.any():
            print(
                f"  {what:<30} {mask.sum():3d} pairs: |I| on that language "
                f"{np.abs(own[mask]).mean():.3f} "
                f"(signed {own[mask].mean():+.3f}; stderr bound {bound[mask].mean():.3f}); "
                f"|I| on other languages {others[mask].mean():.3f}"
            )
    strongest = np.argsort(-np.abs(own))[:5]
    for i in strongest:
        a, b = iu[0][i], iu[1][i]
        print(
            f"    {result.player_names[a]} x {result.player_names[b]} on {names[preferred[a]]}: "
            f"{own[i]:+.3f} "
            f"± {bound[i]:.3f}"
        )


def moe_layers(
    store: RunStore, languages: tuple[str, ...] = ("pl", "zh"), n_samples: int = 60
) -> None:
    """Each language's most selective expert in every layer (players picked, not top-K), sampled."""
    print(
        f"3b. MoE: the most selective expert per layer for {', '.join(languages)} "
        "(language_logprob)"
    )
    request = RunRequest(
        model="moe-fortunes-5lang",
        units="experts (all layers)",
        output="language_logprob",
        method="permutation",
        n_permutations=100,
    )
    parent = execute(request, store)
    _, rows = moe.game_inputs()
    matrix = study2.selectivity(
        study2.language_matrix(parent, rows.numpy(), len(moe.LANGUAGES), "language_logprob")
    )
    layers = study2.expert_layers(parent.player_names)
    players, owner = [], []
    for language in languages:
        index = moe.LANGUAGES.index(language)
        for layer in np.unique(layers):
            candidates = np.flatnonzero(layers == layer)
            best = int(candidates[np.argmax(matrix[index, candidates])])
            if best not in players:
                players.append(best)
                owner.append(index)
    game = load_model(request.model).game(request.units, request.output)
    result = interaction_modes(game, players=players, method="sampled", n_samples=n_samples, seed=0)
    owner_arr, layer_of = np.array(owner), layers[players]
    per_language = np.asarray(result.interactions).sum(2)  # [K, K, L]
    bound = np.asarray(result.stderr).sum(2)
    k = len(players)
    tags = ", ".join(f"{result.player_names[i]}({moe.LANGUAGES[owner[i]]})" for i in range(k))
    print(
        f"  players: {tags}; {result.n_evaluations} evaluations "
        f"({result.n_evaluations / parent.n_evaluations:.2f}x the run)"
    )
    iu = np.triu_indices(k, 1)
    same_language = (owner_arr[:, None] == owner_arr[None, :])[iu]
    cross_layer = (layer_of[:, None] != layer_of[None, :])[iu]
    for language in sorted(set(owner)):
        on = per_language[iu[0], iu[1], language]
        err = bound[iu[0], iu[1], language]
        both = same_language & (owner_arr[iu[0]] == language)
        for what, mask in (
            ("its experts, across layers", both & cross_layer),
            ("other pairs", ~both),
        ):
            if mask.any():
                print(
                    f"  on {moe.LANGUAGES[language]}: {what:<27} {mask.sum():2d} pairs, mean |I| "
                    f"{np.abs(on[mask]).mean():.3f}, signed {on[mask].mean():+.3f} (stderr bound "
                    f"{err[mask].mean():.3f})"
                )
        for i in np.flatnonzero(both & cross_layer):
            a, b = iu[0][i], iu[1][i]
            print(
                f"    {result.player_names[a]} x {result.player_names[b]}: {on[i]:+.3f} ± "
                f"{err[i]:.3f}"
            )


if __name__ == "__main__":
    store = RunStore()
    parts = sys.argv[1:] or ["mlp", "mlp32", "gan", "moe", "moe_layers"]
    for part in parts:
        {"mlp": mlp, "mlp32": mlp32, "gan": gan, "moe": moe_experts, "moe_layers": moe_layers}[
            part
        ](store)

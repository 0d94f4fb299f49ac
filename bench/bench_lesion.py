"""Benchmark: msapy with a per-coalition objective vs ``shapley_modes`` on ``ModelGame``.

Same process, one torch thread, equal permutations (plain permutation sampling on both sides):

(a) the 32 hidden neurons of the digits MLP (``common.digits_mlp``), per-image logits [200, 10];
(b) the 32 channels of the middle layer of a DCGAN-style 16x16 generator, pixels of 16 images;
(c) the 32 experts (4 layers x 8) of a tiny byte-level Mixtral, per-token log-probs [4, 31].

The msapy objective is what a user would write: one full forward per coalition, the lesion done by a
forward hook. Our side is then re-run with the tricks switched on one at a time (one coalition per
pass -> batching -> prefix reuse -> push-forward) to give each trick's factor, and reports the share
of wall time spent outside the model's own forward (estimator, masks, value conversion).

Then the cost of one evaluation of a language model as a fraction of one plain forward of the same
batch (``model(**inputs)``, one coalition's worth of work), on the coalitions permutation sampling
asks for (prefixes of random orders, one game call): the bundled MoE (``moe-fortunes-5lang``,
experts and heads, 20 sentences x 33 bytes, every next byte scored) and a Llama-architecture model
of SmolLM2-135M's shape (random init; 30 layers x 9 heads, hidden 576, vocab 49152), one 20-token
prompt, scored on every next token or on its last 4 tokens only (a task's target). Tricks in turn:
batched passes of the whole model -> layer reuse -> LM head only at the scored positions. And the
same on the fetched SmolLM2-135M (``python -m msa_core.zoo.fetch smollm2``) scoring a real
short-prompt task (15 prompts of 6 tokens: capitals and weekdays), for heads, layers and MLP blocks.

    python bench/bench_lesion.py [--scale 1.0] [--part all|msapy|lm|real]  # scale: permutations
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from common import digits_mlp, table
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from msa_core import shapley_modes  # noqa: E402
from msa_core.coalitions import from_ranks  # noqa: E402
from msa_core.lesion import ModelGame  # noqa: E402
from msa_core.lesion.outputs import TokenScores  # noqa: E402
from msa_core.units import Channels, Experts, Heads, Neurons, UnitSpec  # noqa: E402

TRICKS = {  # label -> ModelGame switches, each row adding one trick to the one above
    "1 coalition / pass": dict(coalitions_per_pass=1, prefix_reuse=False, push_forward=False),
    "+ batching": dict(prefix_reuse=False, push_forward=False),
    "+ prefix reuse": dict(push_forward=False),
    "+ push-forward": {},
}


def dcgan16(nz: int = 32, seed: int = 0) -> nn.Sequential:
    """DCGAN-style generator, latent [B, nz, 1, 1] -> image [B, 1, 16, 16]: 64@4x4, 32@8x8,
    16@16x16.

    Random weights; batch-norm statistics calibrated on 512 latents so every layer is well scaled.
    """
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.ConvTranspose2d(nz, 64, 4, 1, 0, bias=False),
        nn.BatchNorm2d(64, momentum=None),
        nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 4, 2, 1, bias=False),
        nn.BatchNorm2d(32, momentum=None),
        nn.ReLU(),
        nn.ConvTranspose2d(32, 16, 4, 2, 1, bias=False),
        nn.BatchNorm2d(16, momentum=None),
        nn.ReLU(),
        nn.ConvTranspose2d(16, 1, 3, 1, 1),
        nn.Sigmoid(),
    )
    with torch.no_grad():
        model.train()(torch.randn(512, nz, 1, 1))
    return model.eval()


TEXT = (
    "The quick brown fox jumps over the lazy dog. Der schnelle braune Fuchs springt über den "
    "faulen Hund. Le renard brun rapide saute par-dessus le chien paresseux. El rápido zorro "
    "marrón salta."
)


def tiny_moe_lm(seed: int = 0) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A byte-level Mixtral (4 layers, 8 experts, top-2, hidden 64) from a config, and 4 x 32 bytes
    of text.
    """
    from transformers import AutoModelForCausalLM, MixtralConfig

    config = MixtralConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=8,
        num_experts_per_tok=2,
        max_position_embeddings=64,
        initializer_range=0.1,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    data = torch.tensor(list(TEXT.encode()))[: 4 * 32].view(4, 32)
    return model, {"input_ids": data, "use_cache": False}


@dataclass
class Case:
    name: str
    model: nn.Module
    inputs: torch.Tensor | dict
    units: UnitSpec
    output: str
    permutations: int
    lesion_hook: Callable[[list[int]], list[torch.utils.hooks.RemovableHandle]]  # msapy side
    values: Callable[[object], np.ndarray]  # raw output -> per-sample values (msapy side)


def zero_units_hook(module: nn.Module, axis: int) -> Callable:
    """The hook a user writes: zero the lesioned units of ``module``'s output along ``axis``."""

    def register(lesioned: list[int]) -> list:
        def hook(m, args, out):
            out = out.clone()
            out.index_fill_(axis, torch.tensor(lesioned, dtype=torch.long), 0.0)
            return out

        return [module.register_forward_hook(hook)] if lesioned else []

    return register


def remove_experts_hook(model: nn.Module, per_layer: int) -> Callable:
    """Zero the routing weight of lesioned experts at each layer's router."""

    def register(lesioned: list[int]) -> list:
        handles = []
        for i, layer in enumerate(model.model.layers):
            dead = torch.tensor(
                [e % per_layer for e in lesioned if e // per_layer == i], dtype=torch.long
            )
            if dead.numel():

                def hook(m, args, out, dead=dead):
                    logits, weights, index = out
                    return logits, weights.masked_fill(torch.isin(index, dead), 0.0), index

                handles.append(layer.mlp.gate.register_forward_hook(hook))
        return handles

    return register


def next_token_logprob(ids: torch.Tensor) -> Callable:
    def values(raw) -> np.ndarray:
        logits = raw.logits[:, :-1].float()
        return logits.log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0].numpy()

    return values


def cases(scale: float) -> list[Case]:
    mlp, images, _ = digits_mlp(hidden=32)
    gan = dcgan16()
    latents = torch.randn(16, 32, 1, 1, generator=torch.Generator().manual_seed(1))
    lm, tokens = tiny_moe_lm()
    return [
        Case(
            "(a) MLP digits, 32 neurons",
            mlp,
            images,
            Neurons("1"),
            "logits",
            int(1000 * scale),
            zero_units_hook(mlp[1], -1),
            lambda raw: raw.numpy(),
        ),
        Case(
            "(b) DCGAN 16x16, 32 channels",
            gan,
            latents,
            Channels("5"),
            "image",
            int(200 * scale),
            zero_units_hook(gan[5], 1),
            lambda raw: raw.numpy(),
        ),
        Case(
            "(c) MoE LM, 32 experts",
            lm,
            tokens,
            Experts("model.layers.*.mlp"),
            "target_logprob",
            int(40 * scale),
            remove_experts_hook(lm, 8),
            next_token_logprob(tokens["input_ids"]),
        ),
    ]


def run_msapy(case: Case, n_players: int) -> tuple[np.ndarray, float]:
    """msapy's permutation sampling with a full forward per coalition; modes [N, *out] and
    seconds."""
    from msapy import msa

    def objective(lesioned: tuple) -> np.ndarray:
        handles = case.lesion_hook(list(lesioned))
        try:
            with torch.inference_mode():
                raw = (
                    case.model(**case.inputs)
                    if isinstance(case.inputs, dict)
                    else case.model(case.inputs)
                )
        finally:
            for handle in handles:
                handle.remove()
        return case.values(raw)

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        modes = msa.interface(
            elements=list(range(n_players)),
            objective_function=objective,
            n_permutations=case.permutations,
            n_parallel_games=1,
            random_seed=1,
            dual_progress_bars=False,
        )
    seconds = time.perf_counter() - start
    return np.stack([modes.get_shapley_mode(i) for i in range(n_players)]), seconds


def run_ours(case: Case, switches: dict) -> tuple[np.ndarray, float, float, str]:
    """shapley_modes on a ModelGame: modes, wall seconds, share of it outside the model, plan
    name."""
    game = ModelGame(case.model, case.inputs, case.units, output=case.output, **switches)
    start = time.perf_counter()
    res = shapley_modes(game, method="permutation", n_permutations=case.permutations, seed=0)
    seconds = time.perf_counter() - start
    return res.modes, seconds, 1.0 - game.forward_seconds / seconds, game.plan.name


LM_TRICKS = {  # label -> ModelGame switches, each row adding one trick to the one above
    "whole model": dict(prefix_reuse=False, scored_positions=False),
    "+ layer reuse": dict(scored_positions=False),
    "+ scored positions only": {},
}


def smollm2_shape(seed: int = 0) -> nn.Module:
    """A random-init Llama of SmolLM2-135M's configuration (stands in for the real one)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def plain_forward_seconds(model: nn.Module, inputs: dict, repeats: int = 5) -> float:
    """Least CPU time of ``repeats`` plain forwards of the batch (no lesion, no cache).

    CPU time of this process rather than wall time: on one thread it counts the same work, and it
    does not count the time other processes on a shared machine hold the core.
    """
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.process_time()
            model(**inputs, use_cache=False)
            times.append(time.process_time() - start)
    return min(times)


def lm_cost_rows(
    name: str,
    model: nn.Module,
    inputs: dict,
    units: UnitSpec | list[UnitSpec],
    output,
    orders: int,
    repeats: int,
    whole_rows: int | None = None,
) -> list:
    """Per trick: CPU seconds per evaluation / those of one plain forward, on ``orders`` orders
    (least of ``repeats`` game calls; the plain forward's least of 10). ``whole_rows``: the whole
    model (first trick, whose cost per evaluation does not depend on the coalition) runs only the
    first that many coalitions, the others' values being checked against it there."""
    games = {
        label: ModelGame(model, inputs, units, output=output, **switches)
        for label, switches in LM_TRICKS.items()
    }
    n = next(iter(games.values())).n_players
    ranks = np.random.default_rng(0).random((orders, n)).argsort(1).argsort(1)
    rows = from_ranks(ranks, np.arange(1, n))
    plain = plain_forward_seconds(model, inputs, 10)
    fractions, reference = [], None
    for label, game in games.items():
        asked = rows[:whole_rows] if reference is None else rows
        seconds = []
        for _ in range(repeats):
            start = time.process_time()
            values = game(asked)
            seconds.append(time.process_time() - start)
        per_eval = min(seconds) / len(asked)
        fractions.append(f"{per_eval / plain:.2f} ({game.coalitions_per_pass}/pass)")
        if reference is None:
            reference = values
        scale = float(reference.abs().max())  # float32 rounding of reordered sums, well within 1e-4
        torch.testing.assert_close(
            values[: len(reference)], reference, rtol=0, atol=1e-4 * max(1.0, scale), msg=label
        )
    plain_after = plain_forward_seconds(model, inputs, 10)
    return [(name, f"{n}", f"{len(rows)}", f"{plain:.3f} / {plain_after:.3f}", *fractions)]


def lm_costs(scale: float) -> None:
    from msa_core.zoo import load_model

    moe = load_model("moe-fortunes-5lang")
    smol = smollm2_shape()
    ids = torch.randint(0, 49152, (1, 20), generator=torch.Generator().manual_seed(0))
    prompt = {"input_ids": ids}
    last4 = torch.arange(15, 19)  # logits at positions 15..18 score tokens 16..19
    task = TokenScores(last4, prompt["input_ids"][:, last4 + 1])
    orders = max(1, int(4 * scale))
    experts, heads = Experts("model.layers.*.mlp"), Heads("model.layers.*.self_attn")
    rows = [
        ("model, units", "players", "coalitions", "plain forward s (before / after)", *LM_TRICKS)
    ]
    for name, model, inputs, units, output, k, repeats in (
        ("MoE, experts (4 x 8)", moe.model, moe.inputs, experts, "target_logprob", orders, 3),
        ("MoE, heads (4 x 4)", moe.model, moe.inputs, heads, "target_logprob", orders, 3),
        (
            "SmolLM2 shape, heads, all 19 next tokens",
            smol,
            prompt,
            heads,
            "target_logprob",
            max(1, int(scale)),
            1,
        ),
        ("SmolLM2 shape, heads, last 4 tokens", smol, prompt, heads, task, max(1, int(scale)), 1),
    ):
        rows += lm_cost_rows(name, model, inputs, units, output, k, repeats)
        print(f"done {name}", flush=True)
    print(
        "\nOne LM evaluation's cost as a fraction of one plain forward of the same batch (CPU "
        "time, one thread; prefixes of random orders in one game call; target <= 0.5)\n"
    )
    print(table(rows))


# The short-prompt task of issue 22: 15 prompts of 5 tokens (capitals, weekdays), 1 target token.
CAPITALS = ("France Paris", "Germany Berlin", "Italy Rome", "Spain Madrid", "Japan Tokyo")
CAPITALS += ("Russia Moscow", "Egypt Cairo", "Greece Athens")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SHORT_TASK = [
    {
        "prompt": f"The capital of {pair.split()[0]} is",
        "target": f" {pair.split()[1]}",
        "group": "capital",
    }
    for pair in CAPITALS
] + [
    {"prompt": f"The day after {day} is", "target": f" {DAYS[(i + 1) % 7]}", "group": "weekday"}
    for i, day in enumerate(DAYS)
]


def real_lm_costs(scale: float) -> None:
    """The same ratios on the fetched SmolLM2-135M scoring ``SHORT_TASK`` (its target log-probs):
    heads (1 order, 269 coalitions), layers and MLP blocks (4 orders, 116 coalitions)."""
    from msa_core.errors import MSAInputError
    from msa_core.tasks import task_output_fn, with_task
    from msa_core.zoo import load_model

    try:
        loaded = with_task(load_model("smollm2-135m"), SHORT_TASK)
    except MSAInputError as err:
        print(
            f"SmolLM2-135M is not in the model store ({err}); fetch it with "
            "`python -m msa_core.zoo.fetch smollm2`"
        )
        return
    output = task_output_fn(loaded.task, "task_logprob")
    shape = "x".join(map(str, loaded.inputs["input_ids"].shape))
    rows = [("units", "players", "coalitions", "plain forward s (before / after)", *LM_TRICKS)]
    for granularity, orders in (("heads", 1), ("layers", 4), ("mlp blocks", 4)):
        rows += lm_cost_rows(
            f"SmolLM2-135M {granularity}, task {shape}",
            loaded.model,
            loaded.inputs,
            list(loaded.card.granularities[granularity]),
            output,
            max(1, int(orders * scale)),
            1,
            whole_rows=24,
        )
        print(f"done SmolLM2-135M {granularity}", flush=True)
    print(
        "\nThe fetched SmolLM2-135M on a real short-prompt task (15 prompts of 6 tokens, capitals "
        "and weekdays, target log-probs): one evaluation's cost as a fraction of one plain forward "
        "(CPU time, one thread; the whole model on the first 24 coalitions; target <= 0.5)\n"
    )
    print(table(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every permutation count")
    parser.add_argument(
        "--part",
        choices=("all", "msapy", "lm", "real"),
        default="all",
        help="msapy: the comparison with msapy; lm: LM evaluation cost only; real: on the fetched "
        "SmolLM2-135M only",
    )
    args = parser.parse_args()
    if args.part in ("all", "real"):
        real_lm_costs(args.scale)
    if args.part in ("all", "lm"):
        lm_costs(args.scale)
    if args.part in ("lm", "real"):
        return
    summary = [
        ("case", "permutations", "msapy s", "ours s", "speed-up", "outside forward", "r(modes)")
    ]
    tricks = [("case", *TRICKS, "plan")]
    for case in cases(args.scale):
        results = {label: run_ours(case, switches) for label, switches in TRICKS.items()}
        modes, seconds, outside, plan = results["+ push-forward"]
        for label, (other, *_) in results.items():  # same seed, same permutations: same modes
            np.testing.assert_allclose(other, modes, rtol=1e-3, atol=1e-4, err_msg=label)
        reference, msapy_seconds = run_msapy(case, modes.shape[0])
        r = np.corrcoef(reference.ravel(), modes.ravel())[0, 1]
        summary.append(
            (
                case.name,
                str(case.permutations),
                f"{msapy_seconds:.2f}",
                f"{seconds:.2f}",
                f"{msapy_seconds / seconds:.1f}x",
                f"{outside:.0%}",
                f"{r:.3f}",
            )
        )
        times = [results[label][1] for label in TRICKS]
        factors = [f"{times[0]:.2f} s"] + [
            f"{t:.2f} s ({before / t:.1f}x)" for before, t in zip(times, times[1:], strict=False)
        ]
        tricks.append((case.name, *factors, plan))
        print(f"done {case.name}", flush=True)
    print(
        "\nmsapy (full forward per coalition, hook lesion) vs shapley_modes(ModelGame), one torch "
        "thread, equal permutations\n"
    )
    print(table(summary))
    print("\nEach trick added in turn (time of shapley_modes; factor over the row before)\n")
    print(table(tricks))


if __name__ == "__main__":
    main()

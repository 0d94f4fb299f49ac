"""Cheaper LM evaluations: layer reuse, scored positions only, OOM halving, half precision.

Each trick is checked against the plain path (the whole model on every copy, full logits) on tiny
random-init HF models: Mixtral and OLMoE (experts, heads, layers) and Llama (dense: heads, layers,
MLP neurons).

Tolerances follow from the arithmetic. Both paths run the same float32 operations; only the number
of rows per matmul differs, which may reorder a dot product's sum. A reordered float32 sum of K
terms differs by at most K * u * (sum of |terms|) (u = 2^-24; Higham's gamma_K), and each of the
L layers and the head adds one such error, carried forward with gains of order 1 at these scales:
``tol = (L + 1) * K * u * scale`` with K the widest contraction and scale the values' largest
magnitude (log-probs; at least 1).
"""

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from test_lesion_moe import COMMON, INPUTS, N_LAYERS, build  # noqa: E402

from msa_core.coalitions import from_ranks  # noqa: E402
from msa_core.lesion import ModelGame  # noqa: E402
from msa_core.lesion.layer_reuse import LayerReuse  # noqa: E402
from msa_core.lesion.outputs import TokenScores  # noqa: E402
from msa_core.units import Experts, Heads, Layers, Neurons  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PLAIN = dict(prefix_reuse=False, scored_positions=False)
WIDEST = max(COMMON["hidden_size"], COMMON["intermediate_size"], COMMON["vocab_size"])
U32 = 2.0**-24


def llama() -> torch.nn.Module:
    config = transformers.LlamaConfig(
        **{k: v for k, v in COMMON.items() if k != "num_experts_per_tok"}
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


MODELS = {"mixtral": lambda: build("mixtral"), "olmoe": lambda: build("olmoe"), "llama": llama}
UNITS = {
    "experts": Experts("model.layers.*.mlp"),
    "heads": Heads("model.layers.*.self_attn"),
    "layers": Layers("model.layers"),
    "neurons": Neurons("model.layers.1.mlp", name="mlp1"),
}
CASES = [
    ("mixtral", "experts"),
    ("olmoe", "experts"),
    ("mixtral", "heads"),
    ("olmoe", "layers"),
    ("llama", "heads"),
    ("llama", "layers"),
    ("llama", "neurons"),
]


def float32_tolerance(values: torch.Tensor) -> float:
    return (N_LAYERS + 1) * WIDEST * U32 * max(1.0, float(values.abs().max()))


def permutation_prefixes(n: int, orders: int, seed: int = 0) -> np.ndarray:
    """What the permutation estimator asks for: prefixes of random orders ``[orders*(n-1), n]``."""
    ranks = np.random.default_rng(seed).random((orders, n)).argsort(1).argsort(1)
    return from_ranks(ranks, np.arange(1, n))


def no_hooks_left(model: torch.nn.Module) -> bool:
    """No hook stays registered and no module keeps a swapped-in forward (layer sharing)."""
    if any("forward" in m.__dict__ for m in model.modules()):
        return False
    return not any(
        m._forward_hooks or m._forward_pre_hooks or m._forward_hooks_with_kwargs
        for m in model.modules()
    )


@pytest.mark.parametrize("lesion", ["zero", "mean"])
@pytest.mark.parametrize(("family", "units"), CASES)
def test_layer_reuse_gives_the_plain_values(family, units, lesion):
    model = MODELS[family]()
    plain = ModelGame(model, INPUTS, UNITS[units], output="target_logprob", lesion=lesion, **PLAIN)
    reuse = ModelGame(
        model, INPUTS, UNITS[units], output="target_logprob", lesion=lesion, coalitions_per_pass=3
    )
    assert isinstance(reuse.plan, LayerReuse) and plain.plan.name == "whole model"
    n = reuse.n_players
    rows = np.concatenate(
        [permutation_prefixes(n, 3), np.random.default_rng(1).random((5, n)) < 0.5]
    )
    expected = plain(rows)
    for part in np.array_split(
        np.arange(len(rows)), 3
    ):  # several calls: the carried coalition crosses them
        torch.testing.assert_close(
            reuse(rows[part]), expected[part], rtol=0, atol=float32_tolerance(expected)
        )
    assert no_hooks_left(model)


@pytest.mark.parametrize("units", ["experts", "heads"])
def test_layer_reuse_runs_each_layer_once_per_group_and_shares_what_precedes_a_lesion(units):
    """Prefixes of one order over 2 layers x 4 units, in one pass: layer l's rows (here: the input
    of the o_proj, where heads are lesioned) are one copy per distinct pattern of layers <= l; the
    attention's projections (before any lesion of layer l) see one per pattern of layers < l."""
    model = build("mixtral")
    game = ModelGame(model, INPUTS, UNITS[units], output="target_logprob")
    assert game.plan.share
    rows = permutation_prefixes(game.n_players, 1, seed=3)
    game.coalitions_per_pass, game.plan.carried = len(rows), None
    seen: dict[str, list[int]] = {"layer": [], "attention": []}
    hooks = []
    for layer in model.model.layers:
        attention = layer.self_attn
        hooks.append(
            attention.o_proj.register_forward_hook(
                lambda m, a, o: seen["layer"].append(a[0].shape[0])
            )
        )
        hooks.append(
            attention.q_proj.register_forward_pre_hook(
                lambda m, a: seen["attention"].append(a[0].shape[0])
            )
        )
    try:
        game(rows)
    finally:
        for hook in hooks:
            hook.remove()
    patterns = [len({tuple(r[: 4 * (i + 1)]) for r in rows}) for i in range(N_LAYERS)]
    samples = INPUTS["input_ids"].shape[0]
    parents = [p * samples for p in [1, *patterns[:-1]]]
    assert seen["attention"] == parents and patterns[0] < len(rows)
    # experts are lesioned after the attention: its o_proj runs per parent too
    assert seen["layer"] == (parents if units == "experts" else [p * samples for p in patterns])
    assert no_hooks_left(model)


@pytest.mark.parametrize("prefix_reuse", [True, False])
def test_scored_positions_only_reach_the_head(prefix_reuse):
    model = llama()
    ids = INPUTS["input_ids"]
    positions = torch.tensor([2, 5, 7])
    scores = TokenScores(positions, ids[:, positions.clamp(max=6) + 1] % 32)
    full = ModelGame(model, INPUTS, UNITS["heads"], output=scores, **PLAIN)
    fast = ModelGame(model, INPUTS, UNITS["heads"], output=scores, prefix_reuse=prefix_reuse)
    head_rows = []
    hook = model.lm_head.register_forward_pre_hook(
        lambda m, args: head_rows.append(args[0].shape[1])
    )
    rows = permutation_prefixes(full.n_players, 2)
    try:
        values = fast(rows)
    finally:
        hook.remove()
    assert set(head_rows) == {len(positions)}
    expected = full(rows)
    assert values.shape == (len(rows), ids.shape[0], len(positions))
    torch.testing.assert_close(values, expected, rtol=0, atol=float32_tolerance(expected))
    # the named next-token output reads every position but the last
    named = ModelGame(model, INPUTS, UNITS["heads"], output="target_logprob")
    assert named.output_fn.positions.tolist() == list(range(ids.shape[1] - 1))


def test_out_of_memory_halves_the_pass_and_retries():
    model = build("mixtral")
    game = ModelGame(model, INPUTS, UNITS["heads"], output="target_logprob", coalitions_per_pass=8)
    expected = ModelGame(model, INPUTS, UNITS["heads"], output="target_logprob", **PLAIN)
    run, sizes = game.plan.run, []

    def tight(keep):
        sizes.append(keep.shape[0])
        if keep.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return run(keep)

    game.plan.run = tight
    rows = permutation_prefixes(game.n_players, 2)  # 14 coalitions
    values = game(rows)
    assert game.coalitions_per_pass == 2 and sizes[:3] == [8, 4, 2] and set(sizes[3:]) <= {1, 2}
    torch.testing.assert_close(values, expected(rows), rtol=0, atol=float32_tolerance(values))
    assert no_hooks_left(model)

    game.plan.run = lambda keep: (_ for _ in ()).throw(torch.OutOfMemoryError("even one"))
    with pytest.raises(torch.OutOfMemoryError, match="even one"):
        game(rows[:3])
    assert game.coalitions_per_pass == 1 and no_hooks_left(model)


# bfloat16 keeps 8 significant bits: each matmul input is rounded with relative error <= 2^-8, so a
# product's sum is off by <= 2 * 2^-8 of its sum of magnitudes; (L + 1) such stages, carried forward
# with gains of order 1, give the bound below relative to the largest log-prob (float16: 2^-11).
# It holds for dense models. In an MoE, a token whose router scores for two experts are closer than
# that rounding may go to the other expert: a jump, not a rounding error (measured on the bundled
# MoE in bfloat16: mean error 0.014, largest 3.2 on log-probs up to 18), so MoE is not tested here.
HALF_UNIT = {"bfloat16": 2.0**-8, "float16": 2.0**-11}


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_half_precision_stays_within_its_rounding(precision):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, precision)
    try:
        with torch.autocast(device, dtype=dtype):
            torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)
    except RuntimeError as err:  # older CPU builds lack float16 autocast
        pytest.skip(f"torch.autocast({device!r}, {precision}) unsupported here: {err}")
    model = llama().to(device)
    inputs = {"input_ids": INPUTS["input_ids"].to(device)}
    exact = ModelGame(model, inputs, UNITS["heads"], output="target_logprob")
    half = ModelGame(model, inputs, UNITS["heads"], output="target_logprob", precision=precision)
    rows = permutation_prefixes(exact.n_players, 2)
    expected, values = exact(rows), half(rows)
    bound = (N_LAYERS + 1) * 2 * HALF_UNIT[precision] * max(1.0, float(expected.abs().max()))
    error = float((values - expected).abs().max())
    assert values.dtype == torch.float32 and error <= bound
    assert error > float32_tolerance(expected)  # the half path did run in half precision
    model.to("cpu")


def test_units_outside_the_layers_fall_back_to_the_whole_model():
    model = llama()
    game = ModelGame(
        model,
        INPUTS,
        [Heads("model.layers.*.self_attn"), Neurons("model.norm")],
        output="target_logprob",
    )
    assert game.plan.name == "whole model"
    with pytest.raises(Exception, match="unknown precision 'int8'"):
        ModelGame(model, INPUTS, UNITS["heads"], precision="int8")


def test_padded_batches_keep_their_attention_mask_per_copy():
    model = llama()
    mask = torch.ones_like(INPUTS["input_ids"])
    mask[1, :3] = 0  # left padding in one sample: the causal mask differs per sample
    inputs = {**INPUTS, "attention_mask": mask}
    plain = ModelGame(model, inputs, UNITS["heads"], output="target_logprob", **PLAIN)
    reuse = ModelGame(model, inputs, UNITS["heads"], output="target_logprob", coalitions_per_pass=4)
    assert isinstance(reuse.plan, LayerReuse) and reuse.plan.share
    rows = permutation_prefixes(reuse.n_players, 2)
    expected = plain(rows)
    torch.testing.assert_close(reuse(rows), expected, rtol=0, atol=float32_tolerance(expected))


@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("units", ["heads", "layers"])
def test_a_task_runs_its_head_only_where_targets_are_read_and_no_position_after(padding, units):
    """A task's examples of different lengths, scored at per-example positions: layer reuse runs
    the positions up to the last one read (the rest cannot reach them in a causal LM), the head
    only at the positions read and once per distinct coalition of a call (never for the coalition
    carried from the call before), and gives the whole model's values."""
    from test_tasks import ROWS, tiny_llama, word_tokenizer

    from msa_core.tasks import encode_task, task_from_rows, task_output_fn

    model = tiny_llama()
    encoded = encode_task(task_from_rows(ROWS), word_tokenizer(), padding)
    output = task_output_fn(encoded, "task_logprob")
    read = sorted(set(encoded.positions[encoded.scored].tolist()))
    assert output.positions.tolist() == read and read[-1] < encoded.inputs["input_ids"].shape[1] - 1
    plain = ModelGame(model, encoded.inputs, UNITS[units], output=output, **PLAIN)
    reuse = ModelGame(model, encoded.inputs, UNITS[units], output=output, coalitions_per_pass=4)
    assert isinstance(reuse.plan, LayerReuse) and plain.plan.name == "whole model"
    n = reuse.n_players
    rows = np.concatenate(
        [permutation_prefixes(n, 3), np.random.default_rng(1).random((6, n)) < 0.5]
    )
    rows[3] = rows[2]  # a coalition twice in one call: its head runs once
    lengths, head_rows = [], []
    hooks = [
        model.model.layers[0].register_forward_pre_hook(lambda m, a: lengths.append(a[0].shape[1])),
        model.lm_head.register_forward_pre_hook(lambda m, a: head_rows.append(a[0].shape[:2])),
    ]
    try:
        values = [reuse(rows[part]) for part in np.array_split(np.arange(len(rows)), 3)]
    finally:
        for hook in hooks:
            hook.remove()
    expected = plain(rows)
    torch.testing.assert_close(
        torch.cat(values), expected, rtol=0, atol=float32_tolerance(expected)
    )
    assert set(lengths) == {read[-1] + 1}
    samples = encoded.inputs["input_ids"].shape[0]
    distinct = sum(
        len({tuple(r) for r in rows[part]}) for part in np.array_split(np.arange(len(rows)), 3)
    )
    assert [s[1] for s in head_rows] == [len(read)] * len(head_rows)
    assert sum(s[0] for s in head_rows) == distinct * samples
    assert no_hooks_left(model)


def test_layer_reuse_holds_one_layer_per_copy_so_that_passes_take_more_coalitions():
    """Layers run one after the other, so a copy's activations are one layer's (not the sum over
    layers, as for the whole model): on 8 layers a budget holds several times the coalitions."""
    config = transformers.LlamaConfig(
        **{k: v for k, v in COMMON.items() if k != "num_experts_per_tok"} | {"num_hidden_layers": 8}
    )
    model = transformers.LlamaForCausalLM(config).eval()
    per_pass = {
        reuse: ModelGame(
            model, INPUTS, UNITS["heads"], memory_budget=1 << 20, prefix_reuse=reuse
        ).coalitions_per_pass
        for reuse in (True, False)
    }
    assert per_pass[True] >= 3 * per_pass[False] >= 3

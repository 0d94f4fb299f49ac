"""ModelGame on tiny transformers-5.x MoE LMs (Mixtral, OLMoE, Qwen2-MoE) built from configs:
experts (remove, reroute, mean), heads, layers and neurons against edited weights or forced
routing."""

import copy
import os
from functools import cache

import numpy as np
import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from msa_core.errors import MSAInputError  # noqa: E402
from msa_core.lesion import ModelGame  # noqa: E402
from msa_core.units import Experts, Heads, Layers, Neurons  # noqa: E402

FAMILIES = ("mixtral", "olmoe", "qwen2_moe")
N_EXPERTS, N_LAYERS, N_HEADS, HIDDEN = 4, 2, 4, 16
COMMON = dict(
    vocab_size=32,
    hidden_size=HIDDEN,
    intermediate_size=16,
    num_hidden_layers=N_LAYERS,
    num_attention_heads=N_HEADS,
    num_key_value_heads=2,
    max_position_embeddings=32,
    initializer_range=0.3,
    num_experts_per_tok=2,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)
IDS = torch.randint(0, 32, (4, 8), generator=torch.Generator().manual_seed(0))
INPUTS = {"input_ids": IDS}


@cache
def build(family: str, attn: str = "sdpa", mlp_only_layers: tuple = ()) -> nn.Module:
    if family == "mixtral":
        config = transformers.MixtralConfig(num_local_experts=N_EXPERTS, **COMMON)
    elif family == "olmoe":
        config = transformers.OlmoeConfig(num_experts=N_EXPERTS, **COMMON)
    else:
        config = transformers.Qwen2MoeConfig(
            num_experts=N_EXPERTS,
            moe_intermediate_size=8,
            shared_expert_intermediate_size=8,
            mlp_only_layers=list(mlp_only_layers),
            **COMMON,
        )
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config, attn_implementation=attn).eval()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def coalitions(n: int, count: int = 8, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).random((count, n)) < 0.5
    return np.concatenate([np.ones((1, n), bool), np.zeros((1, n), bool), rows])


def edited_logits(model: nn.Module, rows: np.ndarray, edit) -> torch.Tensor:
    """Logits ``[C, B, T, V]``, each from a copy of the model changed by
    ``edit(copy, lesioned_indices)``.
    """
    outs = []
    for row in rows:
        edited = copy.deepcopy(model)
        with torch.no_grad():
            edit(edited, np.flatnonzero(~row))
            outs.append(edited(**INPUTS).logits)
    return torch.stack(outs)


def experts_per_layer(family: str) -> int:
    return N_EXPERTS + (family == "qwen2_moe")  # Qwen2-MoE's shared expert as one more player


def expert_units(family: str, mode: str = "remove") -> Experts:
    return Experts("model.layers.*.mlp", mode=mode, shared_expert=family == "qwen2_moe")


def captured(module: nn.Module, model: nn.Module, pre: bool = False) -> tuple:
    """(inputs, output) of one module during a plain forward on INPUTS."""
    seen = []
    register = module.register_forward_pre_hook if pre else module.register_forward_hook
    handle = register(lambda m, args, out=None: seen.append((args, out)))
    with torch.no_grad():
        model(**INPUTS)
    handle.remove()
    return seen[0]


class Constant(nn.Module):
    """Returns ``value`` for every row of its input (a module whose output was replaced by its
    mean).
    """

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(*x.shape[:-1], -1)


class PlusConstant(nn.Module):
    def __init__(self, block: nn.Module, value: torch.Tensor):
        super().__init__()
        self.block, self.value = block, value

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.block(hidden_states) + self.value


class ForcedRouter(nn.Module):
    """Routes each token, one at a time in numpy, to its top-k among the intact experts (softmax
    over those).
    """

    def __init__(self, router: nn.Module, lesioned: set[int]):
        super().__init__()
        self.router, self.intact = (
            router,
            np.array([e for e in range(router.num_experts) if e not in lesioned]),
        )

    def forward(self, hidden: torch.Tensor) -> tuple:
        logits = hidden @ self.router.weight.T
        k = self.router.top_k
        weights, index = (
            np.zeros((len(hidden), k), np.float32),
            np.zeros((len(hidden), k), np.int64),
        )
        for t, row in enumerate(logits.numpy().astype(np.float64)):
            if not self.intact.size:
                continue
            probs = np.exp(row[self.intact] - row[self.intact].max())
            probs /= probs.sum()
            order = np.argsort(-probs)[:k]
            chosen = probs[order]
            if getattr(self.router, "norm_topk_prob", True):
                chosen = chosen / chosen.sum()
            weights[t, : len(order)] = chosen
            index[t, : len(order)] = self.intact[order]
        return logits, torch.from_numpy(weights), torch.from_numpy(index)


def split(family: str, lesioned: np.ndarray):
    """(layer, expert) pairs of lesioned expert players."""
    per_layer = experts_per_layer(family)
    return [(int(i) // per_layer, int(i) % per_layer) for i in lesioned]


@pytest.mark.parametrize("family", FAMILIES)
def test_removed_experts_match_zeroed_expert_weights(family):
    model = build(family)
    game = ModelGame(model, INPUTS, expert_units(family))
    assert game.n_players == N_LAYERS * experts_per_layer(family)

    def edit(m, lesioned):
        for layer, e in split(family, lesioned):
            mlp = m.model.layers[layer].mlp
            if e < N_EXPERTS:
                mlp.experts.down_proj[e] = 0
            else:
                mlp.shared_expert.down_proj.weight.zero_()

    rows = coalitions(game.n_players)
    torch.testing.assert_close(game(rows), edited_logits(model, rows, edit), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_rerouted_experts_match_forced_routing(family):
    model = build(family)
    game = ModelGame(model, INPUTS, Experts("model.layers.*.mlp", mode="reroute"))

    def edit(m, lesioned):
        for layer in range(N_LAYERS):
            mlp = m.model.layers[layer].mlp
            mlp.gate = ForcedRouter(
                mlp.gate, {e for lay, e in split("mixtral", lesioned) if lay == layer}
            )

    rows = coalitions(game.n_players)
    torch.testing.assert_close(game(rows), edited_logits(model, rows, edit), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_mean_lesioned_experts_match_zeroed_weights_plus_their_mean_contribution(family):
    model = build(family)
    game = ModelGame(model, INPUTS, expert_units(family), lesion="mean")
    # per layer: [E, hidden] mean weighted output of each expert, computed from its weights
    means = []
    for layer in range(N_LAYERS):
        mlp = model.model.layers[layer].mlp
        (hidden,), (_, weights, index) = captured(mlp.gate, model)
        experts = mlp.experts
        rows = []
        for e in range(N_EXPERTS):
            gate, up = (hidden @ experts.gate_up_proj[e].T).chunk(2, dim=-1)
            out = (experts.act_fn(gate) * up) @ experts.down_proj[e].T
            rows.append((out * (weights * (index == e)).sum(-1, keepdim=True)).mean(0))
        means.append(torch.stack(rows).detach())
    shared = (
        [
            captured(model.model.layers[layer].mlp.shared_expert, model)[1].mean(0)
            for layer in range(N_LAYERS)
        ]
        if family == "qwen2_moe"
        else []
    )

    def edit(m, lesioned):
        for layer in range(N_LAYERS):
            mlp = m.model.layers[layer].mlp
            routed = [e for lay, e in split(family, lesioned) if lay == layer and e < N_EXPERTS]
            if any(lay == layer and e == N_EXPERTS for lay, e in split(family, lesioned)):
                mlp.shared_expert = Constant(shared[layer])
            mlp.experts.down_proj[routed] = 0
            m.model.layers[layer].mlp = PlusConstant(mlp, means[layer][routed].sum(0))

    rows = coalitions(game.n_players)
    torch.testing.assert_close(game(rows), edited_logits(model, rows, edit), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lesion", ["zero", "mean"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_heads_match_zeroed_output_projection_columns(attn, lesion):
    model = build("mixtral", attn)
    game = ModelGame(model, INPUTS, Heads("model.layers.*.self_attn"), lesion=lesion)
    assert game.player_names[:2] == ["L0.H0", "L0.H1"] and game.n_players == N_LAYERS * N_HEADS
    width = HIDDEN // N_HEADS
    fills = [
        captured(model.model.layers[layer].self_attn.o_proj, model, pre=True)[0][0]
        .reshape(-1, HIDDEN)
        .mean(0)
        if lesion == "mean"
        else torch.zeros(HIDDEN)
        for layer in range(N_LAYERS)
    ]

    def edit(m, lesioned):
        for layer in range(N_LAYERS):
            proj = m.model.layers[layer].self_attn.o_proj
            cols = [
                c
                for i in lesioned
                if i // N_HEADS == layer
                for c in range((i % N_HEADS) * width, (i % N_HEADS + 1) * width)
            ]
            proj.bias = nn.Parameter(proj.weight[:, cols] @ fills[layer][cols])
            proj.weight[:, cols] = 0

    rows = coalitions(game.n_players)
    torch.testing.assert_close(game(rows), edited_logits(model, rows, edit), rtol=1e-5, atol=1e-5)


class Skip(nn.Module):
    """A decoder layer replaced by its input plus a constant update."""

    def __init__(self, update: torch.Tensor):
        super().__init__()
        self.update = update

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states + self.update


@pytest.mark.parametrize("lesion", ["zero", "mean"])
def test_layers_match_skipped_decoder_layers(lesion):
    model = build("olmoe")
    game = ModelGame(model, INPUTS, Layers("model.layers"), lesion=lesion)
    assert game.player_names == ["L0", "L1"]
    updates = []
    for layer in model.model.layers:
        (x, *_), y = captured(layer, model)
        updates.append(
            (y - x).reshape(-1, HIDDEN).mean(0) if lesion == "mean" else torch.zeros(HIDDEN)
        )

    def edit(m, lesioned):
        for i in lesioned:
            m.model.layers[i] = Skip(updates[i])

    rows = coalitions(game.n_players)
    torch.testing.assert_close(game(rows), edited_logits(model, rows, edit), rtol=1e-5, atol=1e-5)


def test_neurons_of_a_moe_block_output_match_zeroed_expert_rows():
    model = build("mixtral")
    game = ModelGame(model, INPUTS, Neurons("model.layers.0.mlp", name="moe0"))
    assert game.player_names[3] == "moe0.n3"

    def edit(m, lesioned):  # output feature j of the block is row j of every expert's down_proj
        m.model.layers[0].mlp.experts.down_proj[:, lesioned] = 0

    rows = coalitions(game.n_players)
    torch.testing.assert_close(game(rows), edited_logits(model, rows, edit), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_all_intact_is_the_plain_forward_and_every_single_lesion_changes_the_output(family):
    """All intact: the plain forward's values up to float32 rounding (the plan runs the positions
    but the unscored last one, so sums over fewer keys and rows may round otherwise: at most
    K * 2^-24 of the values' scale per layer and head, K the widest contraction)."""
    model = build(family)
    units = [expert_units(family), Heads("model.layers.*.self_attn"), Layers("model.layers")]
    game = ModelGame(model, INPUTS, units, output="target_logprob")
    with torch.no_grad():
        intact = model(**INPUTS).logits.log_softmax(-1)[:, :-1].gather(-1, IDS[:, 1:, None])[..., 0]
    tolerance = (N_LAYERS + 1) * max(HIDDEN, 32) * 2.0**-24 * float(intact.abs().max())
    torch.testing.assert_close(
        game(np.ones((1, game.n_players), bool))[0], intact, rtol=0, atol=tolerance
    )
    values = game(~np.eye(game.n_players, dtype=bool))
    change = (values - intact).flatten(1).abs().amax(1)
    assert (change > 1e-4).all(), [game.player_names[i] for i in np.flatnonzero(change <= 1e-4)]
    assert game(np.zeros((1, game.n_players), bool)).isfinite().all()


def test_rerouted_intact_coalition_is_exact():
    model = build("olmoe")
    game = ModelGame(model, INPUTS, Experts("model.layers.*.mlp", mode="reroute"))
    with torch.no_grad():
        assert torch.equal(game(np.ones((1, game.n_players), bool))[0], model(**INPUTS).logits)


def test_experts_on_a_dense_mlp_or_with_mean_reroute_are_errors():
    model = build("qwen2_moe", mlp_only_layers=(1,))
    with pytest.raises(
        MSAInputError, match="Experts.*'model.layers.1.mlp'.*mixture-of-experts.*Qwen2MoeMLP"
    ):
        ModelGame(model, INPUTS, Experts("model.layers.*.mlp"))
    with pytest.raises(MSAInputError, match="lesion='mean'.*needs mode='remove'"):
        ModelGame(model, INPUTS, Experts("model.layers.0.mlp", mode="reroute"), lesion="mean")
    with pytest.raises(MSAInputError, match="shared_expert=True but MixtralSparseMoeBlock has no"):
        ModelGame(build("mixtral"), INPUTS, Experts("model.layers.0.mlp", shared_expert=True))


def test_a_local_checkpoint_directory(tmp_path):
    model = build("mixtral")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    rows = coalitions(N_LAYERS * N_EXPERTS)
    expected = ModelGame(model, INPUTS, Experts("model.layers.*.mlp"))(rows)
    torch.testing.assert_close(
        ModelGame(loaded, INPUTS, Experts("model.layers.*.mlp"))(rows), expected
    )

"""ModelGame on small torch models: batched masked evaluation equals the same lesion done by editing
weights one coalition at a time, for every plan (whole model, prefix reuse, push-forward)."""

import copy

import numpy as np
import pytest
import torch
from tolerances import assert_within_ulps
from torch import nn

from msa_core import shapley_modes
from msa_core.lesion import ModelGame
from msa_core.lesion.plans import ChainSuffix, MaskedChain, PushForward, WholeModel
from msa_core.units import Channels, Layers, Neurons

# plan switches -> the plan a chain model gets when its units sit before an affine element
PLANS = {
    "whole": (dict(prefix_reuse=False), WholeModel),
    "prefix": (dict(push_forward=False), MaskedChain),
    "push": ({}, PushForward),
}


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.LeakyReLU(0.1), nn.Linear(5, 3)).eval()


def generator() -> nn.Sequential:
    """DCGAN-style: latent [B, 4, 1, 1] -> image [B, 1, 8, 8]."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.ConvTranspose2d(4, 6, 4, 1, 0),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.ConvTranspose2d(6, 3, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(3, 1, 3, 1, 1),
        nn.Sigmoid(),
    )
    model[1].running_mean.normal_(0.0, 0.1)  # keep every ReLU channel alive
    model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


class SmallCNN(nn.Module):
    """Not a chain (custom forward): every plan falls back to hooks on the whole model."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


class ResBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        return x + torch.tanh(self.fc(x))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList([ResBlock() for _ in range(3)])
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


X = torch.randn(7, 6, generator=torch.Generator().manual_seed(1))
Z = torch.randn(5, 4, 1, 1, generator=torch.Generator().manual_seed(2))
IMAGES = torch.randn(4, 1, 6, 6, generator=torch.Generator().manual_seed(3))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def coalitions(n: int, count: int = 10, seed: int = 0) -> np.ndarray:
    """Random coalitions plus the all-intact and all-lesioned ones."""
    rows = np.random.default_rng(seed).random((count, n)) < 0.5
    return np.concatenate([np.ones((1, n), bool), np.zeros((1, n), bool), rows])


def mean_output(model: nn.Module, module: nn.Module, x: torch.Tensor, axis: int) -> torch.Tensor:
    """Mean of a module's output over every dim but ``axis``, read with a plain forward hook."""
    seen = []
    handle = module.register_forward_hook(lambda m, a, out: seen.append(out))
    with torch.no_grad():
        model(x)
    handle.remove()
    out = seen[0].movedim(axis, -1)
    return out.reshape(-1, out.shape[-1]).mean(0)


def edited_outputs(model: nn.Module, x: torch.Tensor, rows: np.ndarray, edit) -> torch.Tensor:
    """Model outputs ``[C, B, ...]``, each from a copy whose weights
    ``edit(copy, lesioned_indices)`` changed.
    """
    outs = []
    for row in rows:
        edited = copy.deepcopy(model)
        with torch.no_grad():
            edit(edited, np.flatnonzero(~row))
            outs.append(edited(x))
    return torch.stack(outs)


@pytest.mark.parametrize("lesion", ["zero", "mean"])
@pytest.mark.parametrize("plan", PLANS)
def test_neurons_before_a_linear_layer_match_edited_input_columns(plan, lesion):
    model = mlp()
    switches, expected = PLANS[plan]
    game = ModelGame(model, X, Neurons("1"), lesion=lesion, **switches)
    assert type(game.plan) is expected
    fill = mean_output(model, model[1], X, -1) if lesion == "mean" else torch.zeros(5)

    def edit(m, lesioned):  # unit j reaches the output only through column j of the next layer
        m[2].bias += m[2].weight[:, lesioned] @ fill[lesioned]
        m[2].weight[:, lesioned] = 0

    rows = coalitions(5)
    torch.testing.assert_close(
        game(rows), edited_outputs(model, X, rows, edit), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("lesion", ["zero", "mean"])
@pytest.mark.parametrize("plan", ["whole", "prefix"])
def test_neurons_of_a_linear_layer_match_edited_rows(plan, lesion):
    model = mlp()
    game = ModelGame(model, X, Neurons("0"), lesion=lesion, **PLANS[plan][0])
    assert type(game.plan) is PLANS[plan][1]  # a LeakyReLU follows: no push-forward
    fill = mean_output(model, model[0], X, -1) if lesion == "mean" else torch.zeros(5)

    def edit(m, lesioned):
        m[0].weight[lesioned] = 0
        m[0].bias[lesioned] = fill[lesioned]

    rows = coalitions(5)
    torch.testing.assert_close(
        game(rows), edited_outputs(model, X, rows, edit), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("lesion", ["zero", "mean"])
@pytest.mark.parametrize("plan", PLANS)
def test_channels_of_a_conv_transpose_match_edited_weights(plan, lesion):
    model = generator()
    switches, expected = PLANS[plan]
    game = ModelGame(model, Z, Channels("0"), output="image", lesion=lesion, **switches)
    assert type(game.plan) is expected  # push-forward runs through the eval-mode BatchNorm
    fill = mean_output(model, model[0], Z, 1) if lesion == "mean" else torch.zeros(6)

    def edit(m, lesioned):  # ConvTranspose2d weight: [in, out, kh, kw]
        m[0].weight[:, lesioned] = 0
        m[0].bias[lesioned] = fill[lesioned]

    rows = coalitions(6)
    torch.testing.assert_close(
        game(rows), edited_outputs(model, Z, rows, edit), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("plan", PLANS)
def test_channels_of_an_activation_match_zeroed_input_channels_of_the_next_layer(plan):
    model = generator()
    switches, expected = PLANS[plan]
    game = ModelGame(model, Z, Channels("2"), output="image", **switches)
    assert type(game.plan) is expected

    def edit(m, lesioned):
        m[3].weight[lesioned] = 0

    rows = coalitions(6)
    torch.testing.assert_close(
        game(rows), edited_outputs(model, Z, rows, edit), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("lesion", ["zero", "mean"])
def test_channels_of_a_conv_in_a_custom_model_match_edited_weights(lesion):
    model = SmallCNN().eval()
    game = ModelGame(model, IMAGES, Channels("conv"), lesion=lesion)
    assert type(game.plan) is WholeModel
    fill = mean_output(model, model.conv, IMAGES, 1) if lesion == "mean" else torch.zeros(4)

    def edit(m, lesioned):  # Conv2d weight: [out, in, kh, kw]
        m.conv.weight[lesioned] = 0
        m.conv.bias[lesioned] = fill[lesioned]

    rows = coalitions(4)
    torch.testing.assert_close(
        game(rows), edited_outputs(model, IMAGES, rows, edit), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("lesion", ["zero", "mean"])
def test_layers_match_replacing_blocks(lesion):
    model = Residual().eval()
    game = ModelGame(model, X, Layers("blocks"), lesion=lesion)
    assert game.player_names == ["L0", "L1", "L2"]
    updates = []  # each block's mean update (output - input) on the batch, from a plain forward
    with torch.no_grad():
        x = X
        for block in model.blocks:
            updates.append((block(x) - x).mean(0))
            x = block(x)

    class Shift(nn.Module):  # a skipped block: x + its mean update ("mean") or x ("zero")
        def __init__(self, value):
            super().__init__()
            self.value = value

        def forward(self, x):
            return x + self.value

    def edit(m, lesioned):
        for i in lesioned:
            m.blocks[i] = Shift(updates[i] if lesion == "mean" else torch.zeros(6))

    rows = coalitions(3)
    torch.testing.assert_close(
        game(rows), edited_outputs(model, X, rows, edit), rtol=1e-5, atol=1e-6
    )


def test_layers_in_a_chain_reuse_the_prefix():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), ResBlock(), ResBlock(), nn.Linear(6, 2)).eval()
    game = ModelGame(model, X, Layers(["1", "2"]))
    assert type(game.plan) is ChainSuffix
    whole = ModelGame(model, X, Layers(["1", "2"]), prefix_reuse=False)
    rows = coalitions(2)
    torch.testing.assert_close(game(rows), whole(rows), rtol=1e-6, atol=1e-7)
    assert torch.equal(game(rows[:1])[0], model(X).detach())


def test_several_specs_form_one_player_set():
    model = mlp()
    game = ModelGame(model, X, [Neurons("0", name="pre"), Neurons("1", name="post")])
    assert game.player_names == [f"pre.n{i}" for i in range(5)] + [f"post.n{i}" for i in range(5)]
    # the second site is lesioned by a hook after the masked first one
    assert type(game.plan) is MaskedChain

    def edit(m, lesioned):
        pre, post = lesioned[lesioned < 5], lesioned[lesioned >= 5] - 5
        m[0].weight[pre] = 0
        m[0].bias[pre] = 0
        m[2].weight[:, post] = 0

    rows = coalitions(10)
    torch.testing.assert_close(
        game(rows), edited_outputs(model, X, rows, edit), rtol=1e-5, atol=1e-6
    )


CASES = {  # name -> (model, inputs, units, options)
    "mlp neurons": (mlp, X, Neurons("1"), {}),
    "mlp linear neurons": (mlp, X, Neurons("0"), {}),
    "gan channels": (generator, Z, Channels("2"), {"output": "image"}),
    "cnn channels": (lambda: SmallCNN().eval(), IMAGES, Channels("conv"), {}),
    "residual layers": (lambda: Residual().eval(), X, Layers("blocks"), {}),
}


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("case", CASES)
def test_all_intact_reproduces_the_model_and_every_single_lesion_changes_it(case, plan):
    make, inputs, units, options = CASES[case]
    model = make()
    game = ModelGame(model, inputs, units, **options, **PLANS[plan][0])
    with torch.no_grad():
        intact = model(inputs)
    alone = game(np.ones((1, game.n_players), bool))[0]
    if isinstance(game.plan, PushForward):  # a sum of per-unit contributions: exact up to rounding
        torch.testing.assert_close(alone, intact, rtol=1e-6, atol=1e-6)
    # the same modules and masks of ones, but plans may run another memory layout (channels-last)
    else:
        # whose kernels sum in another order: float32 rounding of a few ulps of the values' scale
        assert_within_ulps(alone, intact, ulps=16)
    rows = np.concatenate([np.ones((1, game.n_players), bool), ~np.eye(game.n_players, dtype=bool)])
    values = game(rows)  # more rows per matmul: equal up to BLAS rounding
    torch.testing.assert_close(values[0], intact, rtol=1e-6, atol=1e-6)
    change = (values[1:] - intact).flatten(1).abs().amax(1)
    assert (change > 1e-4).all(), (
        f"units whose lesion changed nothing: {np.flatnonzero(change <= 1e-4)}"
    )


def test_chunks_give_the_same_values_as_one_pass():
    model = generator()
    rows = coalitions(6, count=9)
    one = ModelGame(
        model, Z, Channels("0"), output="image", push_forward=False, coalitions_per_pass=len(rows)
    )
    chunked = ModelGame(
        model, Z, Channels("0"), output="image", push_forward=False, coalitions_per_pass=2
    )
    torch.testing.assert_close(chunked(rows), one(rows), rtol=1e-6, atol=1e-7)
    tiny_budget = ModelGame(model, Z, Channels("0"), output="image", memory_budget=1)
    assert tiny_budget.coalitions_per_pass == 1 and type(tiny_budget.plan) is PushForward
    torch.testing.assert_close(tiny_budget(rows), one(rows), rtol=1e-5, atol=1e-6)


def test_named_outputs_and_a_callable():
    model = mlp()
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    rows = coalitions(5, count=3)
    logits = ModelGame(model, X, Neurons("1"))(rows)
    assert logits.shape == (5, 7, 3)

    def values(output):
        return ModelGame(model, X, Neurons("1"), output=output, labels=labels)(rows)

    torch.testing.assert_close(values("probs"), logits.softmax(-1))
    torch.testing.assert_close(values("log_probs"), logits.log_softmax(-1))
    assert torch.equal(values("correct"), (logits.argmax(-1) == labels).float())
    torch.testing.assert_close(
        values("target_logprob"), logits.log_softmax(-1)[:, torch.arange(7), labels]
    )
    torch.testing.assert_close(values(lambda raw: raw[:, :1] * 2), logits[..., :1] * 2)


def test_mean_lesion_uses_the_reference_batch():
    model = mlp()
    reference = torch.randn(50, 6, generator=torch.Generator().manual_seed(9)) + 2.0
    game = ModelGame(model, X, Neurons("0"), lesion="mean", reference=reference)
    expected = mean_output(model, model[0], reference, -1)
    torch.testing.assert_close(game.sites[0].fill, expected)
    lesioned = game(np.zeros((1, 5), bool))[0]
    torch.testing.assert_close(lesioned, model[2](model[1](expected.expand(7, 5))).detach())


def test_runs_in_eval_mode_and_restores_training_flags():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.5), nn.ReLU(), nn.Linear(5, 3)).train()
    game = ModelGame(model, X, Neurons("2"))
    values = game(np.ones((2, 5), bool))
    assert model.training and all(m.training for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(values[0], model.eval()(X), rtol=1e-6, atol=1e-6)
    assert torch.equal(values[0], values[1])  # no dropout noise


def test_shapley_modes_of_units_feeding_the_output_layer_are_their_direct_effects():
    """Units right before the last Linear act additively: unit u's mode is a_u * W[:, u] exactly,
    whatever the sampled permutations."""
    model = mlp()
    game = ModelGame(model, X, Neurons("1"))
    res = shapley_modes(game, method="permutation", n_permutations=20, seed=0)
    assert res.modes.shape == (5, 7, 3) and res.player_names == game.player_names
    with torch.no_grad():
        hidden = model[1](model[0](X))  # [7, 5]
        direct = hidden.T[:, :, None] * model[2].weight.T[:, None, :]  # [5, 7, 3]
        intact = model(X)
    np.testing.assert_allclose(res.modes, direct.double().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.v_full, intact.double().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.modes.sum(0), res.v_full - res.v_empty, atol=1e-9)

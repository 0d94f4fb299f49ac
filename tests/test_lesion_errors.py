"""ModelGame: every bad input gets a clear error, and hooks never outlive a call."""

import numpy as np
import pytest
import torch
from torch import nn

from msa_core.errors import MSAInputError
from msa_core.lesion import ModelGame
from msa_core.units import Channels, Experts, Heads, Layers, Neurons

X = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


class FailsOnRepeatedBatch(nn.Module):
    """Raises inside the forward pass once the batch is repeated, i.e. while lesion hooks are on."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, x):
        hidden = self.fc(x)
        if x.shape[0] > X.shape[0]:
            raise RuntimeError("boom")
        return self.out(hidden)


def test_hooks_are_removed_and_modes_restored_when_the_model_raises():
    model = FailsOnRepeatedBatch().train()
    game = ModelGame(model, X, Neurons("fc"))
    assert hook_count(model) == 0
    with pytest.raises(RuntimeError, match="boom"):
        game(np.ones((3, 5), bool))
    assert hook_count(model) == 0
    assert all(m.training for m in model.modules())


def test_hooks_are_removed_after_a_call():
    model = mlp()
    game = ModelGame(model, X, [Neurons("0"), Neurons("2")], push_forward=False)
    game(np.ones((2, 8), bool))
    assert hook_count(model) == 0
    with torch.no_grad():
        torch.testing.assert_close(model(X), game(np.ones((1, 8), bool))[0])


def test_unknown_module_path_lists_close_matches():
    model = FailsOnRepeatedBatch()
    with pytest.raises(
        MSAInputError, match=r"no module at path 'fc1' in FailsOnRepeatedBatch; close matches: fc"
    ):
        ModelGame(model, X, Neurons("fc1"))


@pytest.mark.parametrize(
    "units, message",
    [
        (Channels("0"), "a Linear layer has no channels; use Neurons"),
        (Channels("1"), r"Channels need an output \[B, C, \*spatial\].*\[4, 5\]"),
        (Heads("0"), "Heads need an attention module with an output projection"),
        (Experts("0"), "Experts need a mixture-of-experts block with a router `gate`"),
        (Layers("0"), "needs a ModuleList or Sequential of blocks"),
        (Layers(["0"]), r"output shape = input shape; got \[4, 6\] -> \[4, 5\]"),
        (
            [Neurons("0"), Neurons("0", name="again")],
            "each module may appear in one unit spec only; 0",
        ),
        ("0", "units must be a unit spec or a non-empty list"),
        (["0"], r"msa_core.units specs \(Neurons, Channels, Heads, Experts, Blocks, Layers\)"),
        ([], "units must be a unit spec or a non-empty list"),
    ],
)
def test_specs_that_do_not_fit_the_module(units, message):
    with pytest.raises(MSAInputError, match=message):
        ModelGame(mlp(), X, units)


def test_neurons_on_a_conv_and_heads_on_multihead_attention():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3))
    with pytest.raises(MSAInputError, match="Conv2d outputs channels.*use Channels"):
        ModelGame(conv, torch.randn(2, 1, 5, 5), Neurons("0"))
    attention = nn.Module()
    attention.attn = nn.MultiheadAttention(6, 2)
    with pytest.raises(MSAInputError, match="applies out_proj functionally"):
        ModelGame(attention, X, Heads("attn"))


def test_a_module_the_forward_never_calls():
    model = FailsOnRepeatedBatch()
    model.unused = nn.Linear(6, 6)
    with pytest.raises(MSAInputError, match="unused never ran"):
        ModelGame(model, X, Neurons("unused"))


def test_coalition_matrix_of_the_wrong_width_or_type():
    game = ModelGame(mlp(), X, Neurons("1"))
    with pytest.raises(MSAInputError, match=r"shape \[C, 5\]"):
        game(np.ones((2, 4), bool))
    with pytest.raises(MSAInputError, match="dtype bool"):
        game(np.ones((2, 5)))


def test_inputs_labels_or_reference_on_another_device():
    model = mlp()
    with pytest.raises(
        MSAInputError,
        match=r"inputs is on meta but the model is on cpu; move it with \.to\('cpu'\)",
    ):
        ModelGame(model, X.to("meta"), Neurons("1"))
    with pytest.raises(MSAInputError, match=r"inputs\['x'\] is on meta"):
        ModelGame(model, {"x": X.to("meta")}, Neurons("1"))
    with pytest.raises(MSAInputError, match="labels is on meta"):
        ModelGame(
            model,
            X,
            Neurons("1"),
            output="correct",
            labels=torch.zeros(4, dtype=torch.long, device="meta"),
        )
    with pytest.raises(MSAInputError, match="reference is on meta"):
        ModelGame(model, X, Neurons("1"), lesion="mean", reference=X.to("meta"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lesion="shuffle"), "unknown lesion 'shuffle'; allowed: zero, mean"),
        (dict(output="accuracy"), "unknown output 'accuracy'; allowed: logits, probs"),
        (dict(output="correct"), "output='correct' needs targets: pass labels="),
        (
            dict(output="correct", labels=torch.zeros(3, dtype=torch.long)),
            "labels have batch size 3 but inputs have 4",
        ),
        (dict(output="correct", labels=torch.zeros(4)), "labels must be an integer tensor"),
        (
            dict(output="target_logprob", labels=torch.zeros(4, 2, dtype=torch.long)),
            r"do not fit targets \[4, 2\]",
        ),
        (dict(output=lambda raw: raw[0]), r"a tensor \[C \* B, ...\] = \[4, ...\]; got \[3\]"),
        (dict(output=lambda raw: raw.tolist()), "got list"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(MSAInputError, match=message):
        ModelGame(mlp(), X, Neurons("1"), **kwargs)


def test_bad_model_and_inputs():
    with pytest.raises(MSAInputError, match="model must be a torch.nn.Module"):
        ModelGame(lambda x: x, X, Neurons("1"))
    with pytest.raises(MSAInputError, match="must be a tensor"):
        ModelGame(mlp(), X.numpy(), Neurons("1"))
    with pytest.raises(MSAInputError, match="share the batch size"):
        ModelGame(mlp(), {"a": X, "b": X[:2]}, Neurons("1"))
    with pytest.raises(MSAInputError, match="dict without any tensor"):
        ModelGame(mlp(), {"a": 1}, Neurons("1"))


def test_units_whose_rows_are_not_copy_major():
    class ConstantBranch(nn.Module):
        """fc runs on a fixed [3, 4] table, whatever the batch: its rows are not input copies."""

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)
            self.register_buffer("table", torch.randn(3, 4))

        def forward(self, x):
            return x[:, :2] + self.fc(self.table).sum(0)

    game = ModelGame(ConstantBranch(), torch.randn(5, 4), Neurons("fc"))
    with pytest.raises(
        MSAInputError, match="leading dimension 3 is not a multiple of the 2 input copies"
    ):
        game(np.ones((2, 2), bool))

"""Decoder structure discovered from module names: a family no list names works when its blocks have
the parts, and a model without them is refused naming what is missing."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from two_layer_units import TWO_LAYER_GRANULARITIES

from msa_core.errors import MSAInputError
from msa_core.lesion import ModelGame
from msa_core.zoo.hf import granularities_of

HIDDEN, HEADS, FFN, LAYERS = 8, 2, 12, 2


class Attention(nn.Module):
    """A plain causal self-attention with q/k/v/o projections (no family of transformers)."""

    def __init__(self, out_name: str = "o_proj"):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(HIDDEN, HIDDEN) for _ in range(3))
        self.num_heads, self.out_name = HEADS, out_name
        setattr(self, out_name, nn.Linear(HIDDEN, HIDDEN))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = lambda y: y.unflatten(-1, (HEADS, -1)).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        mixed = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return getattr(self, self.out_name)(mixed.transpose(1, 2).flatten(-2))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.up_proj, self.down_proj = nn.Linear(HIDDEN, FFN), nn.Linear(FFN, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(torch.tanh(self.up_proj(x)))


class Block(nn.Module):
    def __init__(self, out_name: str = "o_proj"):
        super().__init__()
        self.self_attn, self.mlp = Attention(out_name), Mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(x)
        return x + self.mlp(x)


class NewFamily(nn.Module):
    def __init__(self, out_name: str = "o_proj"):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(10, HIDDEN)
        self.layers = nn.ModuleList(Block(out_name) for _ in range(LAYERS))
        self.head = nn.Linear(HIDDEN, 10)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)
        for block in self.layers:
            x = block(x)
        return self.head(x)


INPUTS = {"input_ids": torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])}


def test_a_family_no_list_names_gets_its_units_from_its_structure():
    model = NewFamily().eval()
    granularities = granularities_of(model)
    assert list(granularities) == TWO_LAYER_GRANULARITIES
    game = ModelGame(model, INPUTS, list(granularities["heads"]), output="logits")
    assert game.player_names == ["L0.H0", "L0.H1", "L1.H0", "L1.H1"]
    keep = np.array([[True, False, True, True]])
    edited = copy.deepcopy(model)
    with torch.no_grad():  # head 1 of layer 0: the o_proj columns it writes through
        edited.layers[0].self_attn.o_proj.weight[:, HIDDEN // HEADS :] = 0
        torch.testing.assert_close(game(keep)[0], edited(**INPUTS), atol=1e-6, rtol=1e-6)


def test_blocks_without_an_output_projection_are_refused_naming_it():
    with pytest.raises(MSAInputError, match="without an output projection") as raised:
        granularities_of(NewFamily(out_name="mix"))
    assert "layers[0] (Block)" in str(raised.value) and "o_proj" in str(raised.value)


def test_a_model_without_blocks_is_refused_naming_what_it_needs():
    with pytest.raises(MSAInputError, match="no ModuleList of transformer blocks"):
        granularities_of(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))

    class NoAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Mlp(), Mlp()])

    with pytest.raises(MSAInputError, match=r"layers\[0\] \(Mlp\) has no attention module"):
        granularities_of(NoAttention())

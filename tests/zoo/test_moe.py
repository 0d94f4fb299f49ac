"""``load_checkpoint`` on tiny Mixtral / OLMoE / Qwen2-MoE / Llama checkpoints built from configs and saved
to tmp folders (nothing downloaded): units offered, games equal to games on the original model, efficiency."""

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from msa_core import shapley_modes  # noqa: E402
from msa_core.errors import MSAInputError  # noqa: E402
from msa_core.lesion import ModelGame  # noqa: E402
from msa_core.units import Experts  # noqa: E402
from msa_core.zoo.hf import load_checkpoint  # noqa: E402

N_LAYERS, N_EXPERTS, N_HEADS = 2, 4, 4
COMMON = dict(vocab_size=40, hidden_size=16, intermediate_size=16, num_hidden_layers=N_LAYERS,
              num_attention_heads=N_HEADS, num_key_value_heads=2, max_position_embeddings=32,
              initializer_range=0.3, bos_token_id=None, eos_token_id=None, pad_token_id=None)
CONFIGS = {
    "mixtral": lambda: transformers.MixtralConfig(num_local_experts=N_EXPERTS, num_experts_per_tok=2, **COMMON),
    "olmoe": lambda: transformers.OlmoeConfig(num_experts=N_EXPERTS, num_experts_per_tok=2, **COMMON),
    "qwen2_moe": lambda: transformers.Qwen2MoeConfig(num_experts=N_EXPERTS, num_experts_per_tok=2,
                                                     moe_intermediate_size=8, shared_expert_intermediate_size=8,
                                                     **COMMON),
    "llama": lambda: transformers.LlamaConfig(**COMMON),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def saved(family: str, folder) -> torch.nn.Module:
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(CONFIGS[family]()).eval()
    model.save_pretrained(folder)
    return model


@pytest.mark.parametrize("family", ["mixtral", "olmoe", "qwen2_moe"])
def test_moe_checkpoint_offers_experts_per_layer_and_all_layers_and_heads(family, tmp_path):
    original = saved(family, tmp_path)
    loaded = load_checkpoint(tmp_path)
    per_layer = N_EXPERTS + (family == "qwen2_moe")  # Qwen2-MoE's shared expert is one more player
    assert list(loaded.card.granularities) == ["experts (all layers)", "experts (layer 0)", "experts (layer 1)",
                                               "heads", "layers"]
    assert loaded.game("experts (all layers)").n_players == N_LAYERS * per_layer
    assert loaded.game("experts (layer 1)").player_names[0] == "L1.E0"
    assert loaded.game("heads").n_players == N_LAYERS * N_HEADS
    assert loaded.inputs["input_ids"].shape == (2, 16)
    rows = np.random.default_rng(0).random((6, N_LAYERS * per_layer)) < 0.5
    expected = ModelGame(original, loaded.inputs, Experts("model.layers.*.mlp", shared_expert=family == "qwen2_moe"),
                         output="target_logprob")(rows)
    torch.testing.assert_close(loaded.game("experts (all layers)", "target_logprob")(rows), expected)


def test_modes_of_a_loaded_checkpoint_are_efficient(tmp_path):
    saved("mixtral", tmp_path)
    game = load_checkpoint(tmp_path).game("experts (all layers)", "target_logprob")
    result = shapley_modes(game, method="permutation", n_permutations=6, seed=0)
    np.testing.assert_allclose(result.modes.sum(0), result.v_full - result.v_empty, atol=1e-5)


def test_a_dense_checkpoint_offers_heads_and_layers(tmp_path):
    saved("llama", tmp_path)
    loaded = load_checkpoint(tmp_path)
    assert list(loaded.card.granularities) == ["heads", "layers"]
    assert loaded.game("layers").player_names == ["L0", "L1"]


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(MSAInputError, match="not a directory"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(MSAInputError, match="no config.json"):
        load_checkpoint(tmp_path)
    saved("mixtral", tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "model.bin")
    with pytest.raises(MSAInputError, match=r"no \*.safetensors"):
        load_checkpoint(tmp_path)
    with pytest.raises(MSAInputError, match="user checkpoint"):
        (tmp_path / "model.bin").rename(tmp_path / "model.safetensors")
        load_checkpoint(tmp_path).card.train()

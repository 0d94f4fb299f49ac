"""``load_checkpoint`` on tiny Mixtral / OLMoE / Qwen2-MoE / Llama checkpoints built from configs
and saved to tmp folders (nothing downloaded): units offered, games equal to games on the original
model, efficiency."""

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from two_layer_units import TWO_LAYER_GRANULARITIES  # noqa: E402

from msa_core import shapley_modes  # noqa: E402
from msa_core.errors import MSAInputError  # noqa: E402
from msa_core.lesion import ModelGame  # noqa: E402
from msa_core.units import Experts  # noqa: E402
from msa_core.zoo.hf import load_checkpoint  # noqa: E402

N_LAYERS, N_EXPERTS, N_HEADS = 2, 4, 4
COMMON = dict(
    vocab_size=40,
    hidden_size=16,
    intermediate_size=16,
    num_hidden_layers=N_LAYERS,
    num_attention_heads=N_HEADS,
    num_key_value_heads=2,
    max_position_embeddings=32,
    initializer_range=0.3,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)
CONFIGS = {
    "mixtral": lambda: transformers.MixtralConfig(
        num_local_experts=N_EXPERTS, num_experts_per_tok=2, **COMMON
    ),
    "olmoe": lambda: transformers.OlmoeConfig(
        num_experts=N_EXPERTS, num_experts_per_tok=2, **COMMON
    ),
    "qwen2_moe": lambda: transformers.Qwen2MoeConfig(
        num_experts=N_EXPERTS,
        num_experts_per_tok=2,
        moe_intermediate_size=8,
        shared_expert_intermediate_size=8,
        **COMMON,
    ),
    "llama": lambda: transformers.LlamaConfig(**COMMON),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    assert list(loaded.card.granularities) == [
        "experts (all layers)",
        "experts (layer 0)",
        "experts (layer 1)",
        "heads",
        "attention blocks",
        "mlp blocks",
        "layers",
    ]
    assert loaded.game("experts (all layers)").n_players == N_LAYERS * per_layer
    assert loaded.game("experts (layer 1)").player_names[0] == "L1.E0"
    assert loaded.game("heads").n_players == N_LAYERS * N_HEADS
    assert loaded.inputs["input_ids"].shape == (2, 16)
    rows = np.random.default_rng(0).random((6, N_LAYERS * per_layer)) < 0.5
    expected = ModelGame(
        original,
        loaded.inputs,
        Experts("model.layers.*.mlp", shared_expert=family == "qwen2_moe"),
        output="target_logprob",
    )(rows)
    torch.testing.assert_close(
        loaded.game("experts (all layers)", "target_logprob")(rows), expected
    )


def test_modes_of_a_loaded_checkpoint_are_efficient(tmp_path):
    saved("mixtral", tmp_path)
    game = load_checkpoint(tmp_path).game("experts (all layers)", "target_logprob")
    result = shapley_modes(game, method="permutation", n_permutations=6, seed=0)
    np.testing.assert_allclose(result.modes.sum(0), result.v_full - result.v_empty, atol=1e-5)


def test_a_dense_checkpoint_offers_heads_blocks_neurons_and_layers(tmp_path):
    saved("llama", tmp_path)
    loaded = load_checkpoint(tmp_path)
    assert list(loaded.card.granularities) == TWO_LAYER_GRANULARITIES
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


# ---------------------------------------------------------------- the bundled multilingual MoE LM

from msa_core.zoo import list_models, load_model, moe  # noqa: E402

bundled = pytest.mark.skipif(
    moe.NAME not in [card.name for card in list_models()], reason="the MoE weights are not bundled"
)


def test_token_labels_show_each_letter_on_its_last_byte():
    ids = moe.encode("aż 中\n")
    assert ids[0] == moe.BOS and len(ids) == 1 + len("aż 中\n".encode())
    assert moe.token_labels(ids) == ["<s>", "a", "·", "ż", "␣", "·", "·", "中", "\\n"]
    assert moe.token_labels(torch.tensor([0xC5])) == ["xC5"]  # a lone lead byte stays a hex label


def test_language_weights_make_a_batch_mean_a_per_language_mean():
    languages = torch.tensor([0, 0, 0, 1, 2, 2])
    values = torch.arange(6.0)[:, None] * moe.language_weights(languages, 3)
    torch.testing.assert_close(values.mean(0), torch.tensor([1.0, 3.0, 4.5]))
    with pytest.raises(MSAInputError, match="every language"):
        moe.language_weights(torch.tensor([0, 0]), 2)


@bundled
def test_bundled_card_inputs_outputs_and_heldout_sentences():
    loaded = load_model(moe.NAME)
    sentences = moe.heldout()
    assert list(sentences) == list(moe.LANGUAGES)
    assert all(
        len(rows) == moe.GAME_SENTENCES + moe.EVAL_SENTENCES
        and min(len(s.encode()) for s in rows) >= moe.EVAL_BYTES
        for rows in sentences.values()
    )
    ids, languages = loaded.inputs["input_ids"], moe.game_inputs()[1]
    assert (
        ids.shape == (5 * moe.GAME_SENTENCES, 1 + moe.GAME_BYTES) and (ids[:, 0] == moe.BOS).all()
    )
    assert {name: loaded.game(name).n_players for name in loaded.card.granularities} == {
        "experts (all layers)": 32,
        **{f"experts (layer {i})": 8 for i in range(4)},
        "heads": 16,
    }
    intact = np.ones((1, 32), bool)
    tokens = loaded.game("experts (all layers)", "target_logprob")(intact)[0]  # [B, T-1]
    per_language = loaded.game("experts (all layers)", "language_logprob")(intact)[0].mean(0)  # [L]
    expected = torch.stack([tokens[languages == i].mean() for i in range(5)])
    torch.testing.assert_close(per_language, expected)
    assert (
        expected > -np.log(256) / 2
    ).all()  # trained: under half the loss of a uniform guess, every language
    with pytest.raises(
        MSAInputError, match="own held-out sentences"
    ):  # other rows: their languages are unknown
        loaded.game("experts (all layers)", "language_logprob", inputs={"input_ids": ids[:3]})


@bundled
def test_bundled_game_is_efficient_for_both_outputs_and_per_layer():
    loaded = load_model(moe.NAME)
    for granularity, output in (
        ("experts (all layers)", "language_logprob"),
        ("experts (layer 2)", "target_logprob"),
        ("heads", "language_logprob"),
    ):
        result = shapley_modes(
            loaded.game(granularity, output), method="permutation", n_permutations=3, seed=0
        )
        assert result.efficiency_gap() < 1e-5, (granularity, output)

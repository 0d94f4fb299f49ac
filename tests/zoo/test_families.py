"""Units of decoder-only transformers of every supported family, on tiny random-initialised configs
built here (nothing downloaded): each granularity ``granularities_of`` offers, lesioned through
``ModelGame``, equals the same units removed by editing the weights (output projections zeroed)."""

import copy
import os

import numpy as np
import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from two_layer_units import TWO_LAYER_GRANULARITIES  # noqa: E402

from msa_core.lesion import ModelGame  # noqa: E402
from msa_core.zoo.hf import granularities_of  # noqa: E402

N_LAYERS, N_HEADS, HIDDEN, FFN = 2, 4, 16, 24
COMMON = dict(
    vocab_size=32,
    hidden_size=HIDDEN,
    num_hidden_layers=N_LAYERS,
    num_attention_heads=N_HEADS,
    intermediate_size=FFN,
    max_position_embeddings=32,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)
GQA = dict(COMMON, num_key_value_heads=2)
CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(**GQA),
    "mistral": lambda: transformers.MistralConfig(**GQA),
    "qwen2": lambda: transformers.Qwen2Config(**GQA),
    "qwen3": lambda: transformers.Qwen3Config(**GQA, head_dim=HIDDEN // N_HEADS),
    "gpt2": lambda: transformers.GPT2Config(
        vocab_size=32,
        n_embd=HIDDEN,
        n_layer=N_LAYERS,
        n_head=N_HEADS,
        n_inner=FFN,
        n_positions=32,
        bos_token_id=None,
        eos_token_id=None,
    ),
    "gpt_neox": lambda: transformers.GPTNeoXConfig(**COMMON),
    "phi": lambda: transformers.PhiConfig(**COMMON),
    "gemma": lambda: transformers.GemmaConfig(**GQA, head_dim=HIDDEN // N_HEADS),
    "gemma2": lambda: transformers.Gemma2Config(**GQA, head_dim=HIDDEN // N_HEADS),
    "gemma3": lambda: transformers.Gemma3TextConfig(**GQA, head_dim=HIDDEN // N_HEADS),
    "olmo": lambda: transformers.OlmoConfig(**COMMON),
    "olmo2": lambda: transformers.Olmo2Config(**COMMON),
    "olmo3": lambda: transformers.Olmo3Config(**COMMON),
    "mixtral": lambda: transformers.MixtralConfig(
        **GQA, num_local_experts=4, num_experts_per_tok=2
    ),
}
INPUTS = {"input_ids": torch.randint(0, 32, (2, 6), generator=torch.Generator().manual_seed(0))}
DENSE = [family for family in CONFIGS if family != "mixtral"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(family: str) -> nn.Module:
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(
        CONFIGS[family](), attn_implementation="eager"
    ).eval()
    with torch.no_grad():  # biases and weights large enough that every lesion shows
        for name, parameter in model.named_parameters():
            if "norm" not in name and "ln" not in name:
                parameter.normal_(0, 0.3)
    return model


def projection(model: nn.Module, layer: int, which: str) -> tuple[nn.Module, bool]:
    """The attention ("attn") or MLP ("mlp") output projection of a layer; True if it is a
    GPT-2 Conv1D (weight [in, out]) rather than a Linear (weight [out, in])."""
    names = {
        "attn": ("self_attn.o_proj", "self_attn.dense", "attn.c_proj", "attention.dense"),
        "mlp": ("mlp.down_proj", "mlp.c_proj", "mlp.dense_4h_to_h", "mlp.fc2"),
    }[which]
    block = [m for m in model.modules() if isinstance(m, nn.ModuleList)][0][layer]
    module = next(block.get_submodule(name) for name in names if _has(block, name))
    return module, not isinstance(module, nn.Linear)


def _has(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


def zero_inputs(module: nn.Module, conv1d: bool, columns: slice | None) -> None:
    """Zero the weights reading input entries ``columns`` (all, with the bias, when None)."""
    with torch.no_grad():
        if columns is None:
            module.weight.zero_()
            if module.bias is not None:
                module.bias.zero_()
        elif conv1d:
            module.weight[columns] = 0
        else:
            module.weight[:, columns] = 0


def edit(model: nn.Module, granularity: str, unit: int) -> None:
    """Remove one unit of a granularity by editing weights."""
    if granularity == "heads":
        layer, head = divmod(unit, N_HEADS)
        module, conv1d = projection(model, layer, "attn")
        width = (module.weight.shape[0] if conv1d else module.weight.shape[1]) // N_HEADS
        zero_inputs(module, conv1d, slice(head * width, (head + 1) * width))
    elif granularity in ("attention blocks", "mlp blocks"):
        zero_inputs(
            *projection(model, unit, "attn" if granularity.startswith("attention") else "mlp"), None
        )
    elif granularity.startswith("mlp neurons"):
        layer = int(granularity.split()[-1].rstrip(")"))
        zero_inputs(*projection(model, layer, "mlp"), slice(unit, unit + 1))
    elif (
        granularity == "layers"
    ):  # a pre-norm residual block adds nothing once both projections are zero
        zero_inputs(*projection(model, unit, "attn"), None)
        zero_inputs(*projection(model, unit, "mlp"), None)


@pytest.mark.parametrize("family", DENSE)
def test_every_dense_granularity_lesion_equals_a_weight_edit(family):
    model = build(family)
    granularities = granularities_of(model)
    assert list(granularities) == TWO_LAYER_GRANULARITIES
    rng = np.random.default_rng(0)
    for granularity, specs in granularities.items():
        game = ModelGame(model, INPUTS, list(specs), output="logits")
        expected_players = {
            "heads": N_LAYERS * N_HEADS,
            "layers": N_LAYERS,
            "attention blocks": N_LAYERS,
            "mlp blocks": N_LAYERS,
        }.get(granularity, FFN)
        assert game.n_players == expected_players, granularity
        units = rng.choice(game.n_players, size=2, replace=False)
        rows = np.ones((3, game.n_players), bool)
        rows[0, units[0]] = False
        rows[1, units] = False  # two units at once
        values = game(rows)
        for row, value in zip(rows, values, strict=True):
            edited = copy.deepcopy(model)
            for unit in np.flatnonzero(~row):
                edit(edited, granularity, int(unit))
            with torch.no_grad():
                expected = edited(**INPUTS).logits
            torch.testing.assert_close(
                value, expected, atol=1e-5, rtol=1e-5, msg=f"{family} {granularity}"
            )
        assert not torch.allclose(values[0], values[2], atol=1e-4), (
            f"{family} {granularity}: lesion had no effect"
        )


def test_player_names_say_layer_and_unit():
    model = build("gpt2")
    names = {
        g: ModelGame(model, INPUTS, list(specs)).player_names
        for g, specs in granularities_of(model).items()
    }
    assert names["heads"][:2] == ["L0.H0", "L0.H1"]
    assert names["attention blocks"] == ["L0.attn", "L1.attn"]
    assert names["mlp blocks"] == ["L0.mlp", "L1.mlp"]
    assert names["mlp neurons (layer 1)"][:2] == ["L1.mlp.n0", "L1.mlp.n1"]


def test_moe_models_offer_experts_first_and_blocks():
    granularities = granularities_of(build("mixtral"))
    assert list(granularities) == [
        "experts (all layers)",
        "experts (layer 0)",
        "experts (layer 1)",
        "heads",
        "attention blocks",
        "mlp blocks",
        "layers",
    ]
    game = ModelGame(build("mixtral"), INPUTS, list(granularities["mlp blocks"]), output="logits")
    lesioned = game(np.array([[False, True]]))[0]
    model = build("mixtral")
    with torch.no_grad():  # an MoE block with every expert's down projection zero adds nothing
        model.model.layers[0].mlp.experts.down_proj.zero_()
        torch.testing.assert_close(lesioned, model(**INPUTS).logits, atol=1e-5, rtol=1e-5)


# -- loading a checkpoint folder: what it must hold before a model is built or used (issue 23)


@pytest.fixture
def saved(tmp_path):
    """A 2-layer Llama checkpoint folder (config.json + model.safetensors) and its config dict."""
    import json

    folder = tmp_path / "tiny-llama"
    build("llama").save_pretrained(folder)
    return folder, json.loads((folder / "config.json").read_text())


def write_config(folder, config: dict) -> None:
    import json

    (folder / "config.json").write_text(json.dumps(config))


def test_a_config_with_more_layers_than_its_weights_is_refused_naming_the_missing(saved):
    from msa_core.errors import MSAInputError
    from msa_core.zoo.hf import load_checkpoint

    folder, config = saved
    write_config(folder, {**config, "num_hidden_layers": N_LAYERS + 1})  # never random layers
    with pytest.raises(MSAInputError, match=r"lack 9 tensor\(s\).*model\.layers\.2\.mlp"):
        load_checkpoint(folder)


@pytest.mark.parametrize(
    "change",
    [{"num_hidden_layers": 100_000}, {"hidden_size": 10**9}, {"vocab_size": 10**12}],
)
def test_a_config_far_larger_than_its_weights_is_refused_before_building(saved, change):
    """Today a 100,000-layer config is built (5.7 GB, minutes): refused from the config alone."""
    import time

    from msa_core.errors import MSAInputError
    from msa_core.zoo.hf import load_checkpoint

    folder, config = saved
    write_config(folder, {**config, **change})
    start = time.perf_counter()
    with pytest.raises(MSAInputError, match="declares a model of at least .* but its weights hold"):
        load_checkpoint(folder)
    assert time.perf_counter() - start < 20  # generous for a loaded machine; minutes before


def test_a_checkpoint_larger_than_the_free_memory_is_refused(saved, monkeypatch):
    import msa_core.zoo.checkpoint_checks as checks
    from msa_core.errors import MSAInputError
    from msa_core.zoo.hf import load_checkpoint

    monkeypatch.setattr(checks, "available_bytes", lambda: 1000)
    with pytest.raises(
        MSAInputError, match=r"needs at least .* of memory to load; 1,000 bytes are available"
    ):
        load_checkpoint(saved[0])


@pytest.mark.parametrize("mapped", ["pytorch_model.bin", "../elsewhere.safetensors"])
def test_an_index_naming_a_pickle_or_a_file_elsewhere_is_refused_unopened(
    saved, monkeypatch, mapped
):
    import json

    from safetensors.torch import load_file

    from msa_core.errors import MSAInputError
    from msa_core.zoo.hf import load_checkpoint

    folder, _ = saved
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    torch.save({"lm_head.weight": tensors["lm_head.weight"]}, folder / "pytorch_model.bin")
    weight_map = {key: "model-00001-of-00002.safetensors" for key in tensors}
    weight_map["lm_head.weight"] = mapped
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    opened = []
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: opened.append(args))
    with pytest.raises(MSAInputError, match=rf"index.json maps weights to '{mapped}'"):
        load_checkpoint(folder)
    assert not opened


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_nan_or_infinite_weight_is_refused_naming_the_file_and_tensor(saved, bad):
    from safetensors.torch import load_file, save_file

    from msa_core.errors import MSAInputError
    from msa_core.zoo.hf import load_checkpoint

    folder, _ = saved
    tensors = load_file(folder / "model.safetensors")
    tensors["model.layers.1.self_attn.k_proj.weight"][0, 3] = bad
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        MSAInputError,
        match=r"model\.safetensors: tensor model\.layers\.1\.self_attn\.k_proj\.weight holds 1 NaN",
    ):
        load_checkpoint(folder)

"""Bring your own model: a local Hugging Face checkpoint directory (``config.json`` + safetensors).

>>> loaded = load_checkpoint("path/to/checkpoint")            # doctest: +SKIP
>>> loaded.card.granularities.keys()                           # doctest: +SKIP
dict_keys(['experts (all layers)', 'experts (layer 0)', ..., 'heads'])
>>> loaded.game("experts (all layers)", "target_logprob")     # doctest: +SKIP

Mixtral, OLMoE and Qwen2-MoE checkpoints offer their routed experts (all MoE layers, and each layer;
Qwen2-MoE's shared expert as one more player) and attention heads; a dense causal LM offers heads and
layers. Weights load only from safetensors, never from the network. Default inputs: ``input_ids`` of
``text`` through the directory's tokenizer when it has one, else a fixed seeded batch of token ids.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from msa_core.errors import MSAInputError
from msa_core.units import Experts, Heads, Layers, UnitSpec
from msa_core.zoo.card import LoadedModel, ModelCard
from msa_core.zoo.weights import check_safetensors, hub_offline, tensor_digest

hub_offline()  # before transformers is imported

DEFAULT_TEXT = ("The quick brown fox jumps over the lazy dog.", "Der schnelle braune Fuchs springt über den Hund.")
RANDOM_SHAPE = (2, 16)  # default input_ids without a tokenizer
OUTPUTS = ("target_logprob", "logits")
LAYER_PATH = re.compile(r"^(.*layers)\.(\d+)$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json",
                   "merges.txt")


def _check_directory(directory: Path) -> None:
    if not directory.is_dir():
        raise MSAInputError(f"{directory} is not a directory; give a local Hugging Face checkpoint folder")
    if not (directory / "config.json").exists():
        raise MSAInputError(f"{directory} has no config.json; a checkpoint folder needs config.json and "
                            "*.safetensors weights (model.save_pretrained(folder) writes both)")
    if not any(directory.glob("*.safetensors")):
        raise MSAInputError(f"{directory} has no *.safetensors weights (other formats are not loaded: they "
                            "may run code); convert them with save_pretrained(folder, safe_serialization=True)")
    for name in ("config.json", "tokenizer_config.json"):
        _refuse_code(directory / name)
    for path in sorted(directory.glob("*.safetensors")):
        check_safetensors(path)


def _refuse_code(path: Path) -> None:
    """Raise ``MSAInputError`` naming ``path`` when it is not a JSON object or names code to run
    (``auto_map``: classes in the folder's own .py files, which are never run here)."""
    if not path.exists():
        return
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise MSAInputError(f"{path} is not readable JSON ({err})") from None
    if not isinstance(config, dict):
        raise MSAInputError(f"{path} is not a JSON object")
    if "auto_map" in config:
        raise MSAInputError(f"{path} names code in the folder to run (auto_map: "
                            f"{sorted(config['auto_map'])}); checkpoints whose architecture needs "
                            "their own Python files are not loaded (never trust_remote_code). Use "
                            "an architecture transformers ships")


def decoder_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of each decoder layer (modules named ``...layers.<i>``), in order."""
    return [(path, module) for path, module in model.named_modules() if LAYER_PATH.match(path)]


def is_moe_block(module: Any) -> bool:
    """A sparse MoE block: routed ``experts`` plus a router ``gate`` with ``top_k``."""
    return hasattr(module, "experts") and hasattr(getattr(module, "gate", None), "top_k")


def layer_match(path: str) -> re.Match[str]:
    """``LAYER_PATH`` matched on a decoder layer's path (``decoder_layers`` gives only such paths)."""
    match = LAYER_PATH.match(path)
    if match is None:
        raise MSAInputError(f"{path!r} is not a decoder layer path '...layers.<i>'")
    return match


def granularities_of(model: nn.Module) -> dict[str, tuple[UnitSpec, ...]]:
    """Experts (all MoE layers, and each), heads and layers of a decoder-only transformers model."""
    layers = decoder_layers(model)
    if not layers:
        raise MSAInputError(f"{type(model).__name__} has no decoder layers named '...layers.<i>'; "
                            "use ModelGame with your own unit specs instead")
    container = layer_match(layers[0][0]).group(1)
    moe = [(f"{path}.mlp", module.mlp) for path, module in layers if is_moe_block(getattr(module, "mlp", None))]
    found: dict[str, tuple[UnitSpec, ...]] = {}
    if moe:
        shared = all(getattr(block, "shared_expert", None) is not None for _, block in moe)
        found["experts (all layers)"] = (Experts(tuple(path for path, _ in moe), shared_expert=shared),)
        for path, _ in moe:
            found[f"experts (layer {layer_match(path[:-4]).group(2)})"] = (Experts(path, shared_expert=shared),)
    if all(hasattr(module, "self_attn") for _, module in layers):
        found["heads"] = (Heads(f"{container}.*.self_attn"),)
    found["layers"] = (Layers(container),)
    return found


def default_inputs(directory: Path, vocab_size: int, text: tuple[str, ...] | None) -> dict[str, torch.Tensor]:
    """``{"input_ids": [B, T]}``: ``text`` through the folder's tokenizer, or seeded random ids without one."""
    has_tokenizer = any((directory / name).exists() for name in TOKENIZER_FILES[:2])
    if has_tokenizer:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True,
                                                      trust_remote_code=False)
            ids = [tokenizer(sentence)["input_ids"] for sentence in (text or DEFAULT_TEXT)]
        except Exception as err:  # noqa: BLE001  (each kind tokenizers raise means a bad file)
            files = ", ".join(name for name in TOKENIZER_FILES if (directory / name).exists())
            raise MSAInputError(f"cannot load the tokenizer of {directory} ({files}): "
                                f"{type(err).__name__}: {str(err).strip()[:300]}") from None
        length = min(len(row) for row in ids)
        return {"input_ids": torch.tensor([row[:length] for row in ids])}
    if text is not None:
        raise MSAInputError(f"{directory} has no tokenizer; pass inputs={{'input_ids': ...}} to game() instead of text")
    generator = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(0, vocab_size, RANDOM_SHAPE, generator=generator)}


def load_checkpoint(directory: str | Path, text: tuple[str, ...] | None = None) -> LoadedModel:
    """Load a local checkpoint folder as a ``LoadedModel`` (eval mode, on CPU; move ``.model`` to a GPU as you like)."""
    directory = Path(directory).expanduser()
    _check_directory(directory)
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(directory, local_files_only=True,
                                            trust_remote_code=False)
    except Exception as err:  # noqa: BLE001  (transformers raises many kinds for a bad config)
        raise MSAInputError(f"cannot use {directory / 'config.json'}: "
                            f"{type(err).__name__}: {err}") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(
            directory, local_files_only=True, use_safetensors=True, trust_remote_code=False).eval()
    except Exception as err:  # noqa: BLE001  (weights that do not fit the config, bad files, ...)
        files = ", ".join(path.name for path in sorted(directory.glob("*.safetensors")))
        raise MSAInputError(f"cannot load {directory} as a causal LM with transformers "
                            f"(config.json, {files}): "
                            f"{type(err).__name__}: {err}") from None
    granularities = granularities_of(model)
    inputs = default_inputs(directory, config.vocab_size, text)

    def not_trainable() -> nn.Module:
        raise MSAInputError(f"{directory.name} is a user checkpoint; it is not trained here")

    card = ModelCard(name=directory.name, family="hf", description=f"{config.model_type} checkpoint at {directory}",
                     granularities=granularities, outputs=OUTPUTS, build=lambda: model,
                     data=lambda: (inputs, None), train=not_trainable,
                     facts={"path": str(directory), "model_type": config.model_type})
    return LoadedModel(card, model, inputs, None, tensor_digest(model.state_dict()))


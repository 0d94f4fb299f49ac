"""Bring your own model: a local Hugging Face checkpoint directory (``config.json`` + safetensors).

>>> loaded = load_checkpoint("path/to/checkpoint")            # doctest: +SKIP
>>> loaded.card.granularities.keys()                           # doctest: +SKIP
dict_keys(['experts (all layers)', 'experts (layer 0)', ..., 'heads'])
>>> loaded.game("experts (all layers)", "target_logprob")     # doctest: +SKIP

Mixtral, OLMoE and Qwen2-MoE checkpoints offer their routed experts (all MoE layers, and each
layer; Qwen2-MoE's shared expert as one more player); every decoder-only LM (Llama, Mistral,
Qwen2/3, GPT-2, GPT-NeoX, Phi and the MoE families) offers heads, attention and MLP blocks, the
neurons of each dense MLP, and layers. Weights load only from safetensors, never from the network;
a folder is refused (``checkpoint_checks``) when an index names another file, when its config
declares far more than its weights hold, when a parameter is missing from them, or when one holds
NaN or infinity.
Default inputs: ``input_ids`` of ``text`` through the directory's tokenizer when it has one, else a
fixed seeded batch of token ids; ``task=`` (``msa_core.tasks``) makes a task the inputs instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from msa_core.errors import MSAInputError
from msa_core.tasks import TASK_OUTPUTS
from msa_core.units import Blocks, Experts, Heads, Layers, Neurons, UnitSpec, last_index
from msa_core.zoo.card import LoadedModel, ModelCard
from msa_core.zoo.checkpoint_checks import (
    check_config_fits_weights,
    check_finite,
    check_index_files,
    check_loaded_weights,
    weight_headers,
)
from msa_core.zoo.structure import BlockParts, find_blocks, is_moe_block
from msa_core.zoo.weights import check_safetensors, hub_offline, tensor_digest

hub_offline()  # before transformers is imported

DEFAULT_TEXT = (
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs springt über den Hund.",
)
RANDOM_SHAPE = (2, 16)  # default input_ids without a tokenizer
OUTPUTS = ("target_logprob", "logits")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)


def _check_directory(directory: Path) -> None:
    if not directory.is_dir():
        raise MSAInputError(
            f"{directory} is not a directory; give a local Hugging Face checkpoint folder"
        )
    if not (directory / "config.json").exists():
        raise MSAInputError(
            f"{directory} has no config.json; a checkpoint folder needs config.json and "
            "*.safetensors weights (model.save_pretrained(folder) writes both)"
        )
    if not any(directory.glob("*.safetensors")):
        raise MSAInputError(
            f"{directory} has no *.safetensors weights (other formats are not loaded: they "
            "may run code); convert them with save_pretrained(folder, safe_serialization=True)"
        )
    for name in ("config.json", "tokenizer_config.json"):
        _refuse_code(directory / name)
    for path in sorted(directory.glob("*.safetensors")):
        check_safetensors(path)
    check_index_files(directory)


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
        raise MSAInputError(
            f"{path} names code in the folder to run (auto_map: "
            f"{sorted(config['auto_map'])}); checkpoints whose architecture needs "
            "their own Python files are not loaded (never trust_remote_code). Use "
            "an architecture transformers ships"
        )


def granularities_of(model: nn.Module) -> dict[str, tuple[UnitSpec, ...]]:
    """The unit granularities of a transformers model, from its structure (``zoo.structure``).

    Returns:
        ``{name: specs}`` in this order: "experts (all layers)" and "experts (layer i)" where there
        are MoE blocks, "heads" (query heads, cut before the output projection), "attention blocks"
        and "mlp blocks" (one player per layer, its output zeroed), "mlp neurons (layer i)" for each
        dense MLP (entries of its down projection's input), "layers" (whole blocks skipped).
        Post-norm encoders (BERT style: the output projection sits in ``attention.output``) zero the
        output projections (players ``L<i>.attention``, ``L<i>.mlp``), before the residual add.
    Raises:
        MSAInputError: the model has no list of transformer blocks; the message names what is
            missing.
    """
    found_blocks = find_blocks(model)
    container, parts = found_blocks.container, found_blocks.blocks
    first = parts[0]
    blocks = [(found_blocks.path(i, "").rstrip("."), part) for i, part in enumerate(parts)]
    moe = [
        (f"{path}.{part.mlp}", model.get_submodule(f"{path}.{part.mlp}"))
        for path, part in blocks
        if part.mlp is not None and is_moe_block(model.get_submodule(f"{path}.{part.mlp}"))
    ]
    found: dict[str, tuple[UnitSpec, ...]] = {}
    if moe:
        shared = all(getattr(block, "shared_expert", None) is not None for _, block in moe)
        found["experts (all layers)"] = (
            Experts(tuple(path for path, _ in moe), shared_expert=shared),
        )
        for path, _ in moe:
            found[f"experts (layer {last_index(path)})"] = (Experts(path, shared_expert=shared),)
    post_norm = first.heads_at != first.attention
    if post_norm:
        n_heads = getattr(getattr(model, "config", None), "num_attention_heads", None)
        found["heads"] = tuple(
            Heads(f"{path}.{part.heads_at}", n_heads=n_heads, name=f"L{i}")
            for i, (path, part) in enumerate(blocks)
        )
        found["attention blocks"] = tuple(
            Blocks(f"{path}.{part.out_projection}", name=f"L{i}.attention")
            for i, (path, part) in enumerate(blocks)
        )
    else:
        found["heads"] = (Heads(_paths(container, blocks, "heads_at")),)
        found["attention blocks"] = (Blocks(_paths(container, blocks, "attention")),)
    if all(part.mlp is not None for part in parts):
        found["mlp blocks"] = (Blocks(_paths(container, blocks, "mlp")),)
    elif all(part.down is not None for part in parts):
        found["mlp blocks"] = tuple(
            Blocks(f"{path}.{part.down}", name=f"L{i}.mlp") for i, (path, part) in enumerate(blocks)
        )
    for i, (path, part) in enumerate(blocks):
        if part.down:
            found[f"mlp neurons (layer {i})"] = (
                Neurons(f"{path}.{part.down}", of="input", name=f"L{i}.mlp"),
            )
    found["layers"] = (Layers(container),)
    return found


def _paths(
    container: str, blocks: list[tuple[str, BlockParts]], part: str
) -> str | tuple[str, ...]:
    """One wildcard path over all blocks when their ``part`` agrees, else each block's own path."""
    names = [getattr(parts, part) for _, parts in blocks]
    if len(set(names)) == 1:
        return f"{container}.*.{names[0]}"
    return tuple(f"{path}.{name}" for (path, _), name in zip(blocks, names, strict=True))


def load_tokenizer(directory: Path) -> Any:
    """The folder's tokenizer, or None when it has none.

    Raises:
        MSAInputError: the tokenizer files cannot be loaded (naming them); never runs their code.
    """
    if not any((directory / name).exists() for name in TOKENIZER_FILES[:2]):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False
        )
    except Exception as err:  # noqa: BLE001  (each kind tokenizers raise means a bad file)
        files = ", ".join(name for name in TOKENIZER_FILES if (directory / name).exists())
        raise MSAInputError(
            f"cannot load the tokenizer of {directory} ({files}): "
            f"{type(err).__name__}: {str(err).strip()[:300]}"
        ) from None


def default_inputs(
    tokenizer: Any, vocab_size: int, text: tuple[str, ...] | None, directory: Path
) -> dict[str, torch.Tensor]:
    """``{"input_ids": [B, T]}``: ``text`` through the tokenizer, else seeded random ids."""
    if tokenizer is not None:
        ids = [tokenizer(sentence)["input_ids"] for sentence in (text or DEFAULT_TEXT)]
        length = min(len(row) for row in ids)
        return {"input_ids": torch.tensor([row[:length] for row in ids])}
    if text is not None:
        raise MSAInputError(
            f"{directory} has no tokenizer; pass inputs={{'input_ids': ...}} to game(), not text"
        )
    generator = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(0, vocab_size, RANDOM_SHAPE, generator=generator)}


def _not_trainable(name: str) -> Callable[[], nn.Module]:
    def refuse() -> nn.Module:
        raise MSAInputError(f"{name} is a user checkpoint; it is not trained here")

    return refuse


def checkpoint_card(
    directory: str | Path, name: str, description: str, facts: dict[str, Any]
) -> ModelCard:
    """The card of a checkpoint folder in the model store that scores a task, from its config alone.

    No weights are read: the model is built on the meta device to find its units.
    """
    directory = Path(directory)
    _check_directory(directory)
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    check_config_fits_weights(config, directory, weight_headers(directory))
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    return ModelCard(
        name=name,
        family="hf",
        description=description,
        granularities=granularities_of(skeleton),
        outputs=TASK_OUTPUTS,
        build=lambda: load_checkpoint(directory).model,
        data=lambda: (None, None),
        train=_not_trainable(name),
        checkpoint=str(directory),
        facts={"path": str(directory), "model_type": config.model_type, **facts},
    )


def load_checkpoint(
    directory: str | Path,
    text: tuple[str, ...] | None = None,
    name: str | None = None,
    task: str | None = None,
    facts: dict[str, Any] | None = None,
) -> LoadedModel:
    """Load a local checkpoint folder as a ``LoadedModel`` (eval mode, on CPU).

    Args:
        directory: ``config.json`` + ``*.safetensors`` (+ a tokenizer for text and tasks).
        text: sentences for the default inputs (default: two fixed sentences).
        name: the model's name (default: the folder's name).
        task: a task its games score by default (``msa_core.tasks.load_task``).
        facts: more facts for the card.
    Raises:
        MSAInputError: not a loadable checkpoint folder.
    """
    directory = Path(directory).expanduser()
    _check_directory(directory)
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False
        )
    except Exception as err:  # noqa: BLE001  (transformers raises many kinds for a bad config)
        raise MSAInputError(
            f"cannot use {directory / 'config.json'}: {type(err).__name__}: {err}"
        ) from None
    headers = weight_headers(directory)
    check_config_fits_weights(config, directory, headers)  # before anything is built
    try:
        built: tuple[nn.Module, dict[str, Any]] = AutoModelForCausalLM.from_pretrained(
            directory,
            local_files_only=True,
            use_safetensors=True,
            trust_remote_code=False,
            output_loading_info=True,
        )  # type: ignore[assignment]
    except Exception as err:  # noqa: BLE001  (weights that do not fit the config, bad files, ...)
        files = ", ".join(path.name for path in sorted(directory.glob("*.safetensors")))
        raise MSAInputError(
            f"cannot load {directory} as a causal LM with transformers "
            f"(config.json, {files}): "
            f"{type(err).__name__}: {err}"
        ) from None
    check_loaded_weights(
        built[1]["missing_keys"], directory, sorted({path for path, _ in headers.values()})
    )
    model = built[0].eval()
    check_finite(model, headers)
    granularities = granularities_of(model)
    tokenizer = load_tokenizer(directory)
    inputs = default_inputs(tokenizer, config.vocab_size, text, directory)
    name = name or directory.name
    card = ModelCard(
        name=name,
        family="hf",
        description=f"{config.model_type} checkpoint at {directory}",
        granularities=granularities,
        outputs=OUTPUTS,
        build=lambda: model,
        data=lambda: (inputs, None),
        train=_not_trainable(name),
        facts={"path": str(directory), "model_type": config.model_type, **(facts or {})},
    )
    loaded = LoadedModel(
        card, model, inputs, None, tensor_digest(model.state_dict()), tokenizer=tokenizer
    )
    if task is None:
        return loaded
    from msa_core.tasks import with_task

    return with_task(loaded, task)

"""What a checkpoint folder must satisfy before, and right after, transformers builds its model:
weights only from the folder's safetensors files (an index never names a pickle), a config no
larger than its weights (checked from the config alone, before anything is built), every parameter
of the built model read from the weights (none left randomly initialised), and finite weights.

>>> held_bytes([{"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}])
24
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from msa_core.errors import MSAInputError
from msa_core.memory import available_bytes
from msa_core.zoo.weights import safetensors_header

WEIGHTS_SUFFIX = ".safetensors"
SIZE_SLACK = 1.25  # a config may declare up to this much more than its weights hold (bound slack)
SHOWN_KEYS = 8  # missing tensors named in an error


def check_index_files(directory: Path) -> None:
    """Raise ``MSAInputError`` naming the index file and the entry when a ``*.index.json`` of the
    folder maps a tensor to anything but a safetensors file in the folder itself (a pickle such as
    ``pytorch_model.bin`` can run code when it is opened; it is never handed to a loader)."""
    for index in sorted(directory.glob("*.index.json")):
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError) as err:
            raise MSAInputError(f"{index} is not a readable index (JSON object): {err}") from None
        if not isinstance(weight_map, dict):
            raise MSAInputError(f"{index} has no weight_map object naming each tensor's file")
        for name in sorted(set(map(str, weight_map.values()))):
            path = directory / name
            if (
                Path(name).name != name
                or not name.endswith(WEIGHTS_SUFFIX)
                or not path.is_file()
                or path.is_symlink()
            ):
                raise MSAInputError(
                    f"{index} maps weights to {name!r}; only safetensors files in the folder "
                    "itself are loaded (never a pickle such as .bin, .pt or .ckpt: opening one "
                    "can run code). Convert them with save_pretrained(folder, "
                    "safe_serialization=True)"
                )


def weight_headers(directory: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """``{tensor name: (file, header entry)}`` over the folder's safetensors files (headers)."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in sorted(directory.glob(f"*{WEIGHTS_SUFFIX}")):
        for name, entry in safetensors_header(path).items():
            found.setdefault(name, (path, entry))
    return found


def held_bytes(entries: Iterable[dict[str, Any]]) -> int:
    """Bytes of tensor data of safetensors header entries."""
    return sum(int(entry["data_offsets"][1]) - int(entry["data_offsets"][0]) for entry in entries)


def _count(config: Any, name: str, config_path: Path) -> int | None:
    """The config's ``name`` as a positive whole number (None when the config has no such field)."""
    value = getattr(config, name, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MSAInputError(f"{config_path}: {name} must be a positive whole number; got {value!r}")
    return value


def least_parameters(config: Any, config_path: Path) -> int:
    """A lower bound on the parameter count of the decoder-only LM ``config`` describes: each
    layer's query and output projections (``2 x hidden x heads x head_dim``) and the token
    embedding (``vocab x hidden``); 0 for what the config does not state.

    Raises:
        MSAInputError: a size field that is not a positive whole number (naming it).
    """
    layers = _count(config, "num_hidden_layers", config_path) or 0
    hidden = _count(config, "hidden_size", config_path) or 0
    vocab = _count(config, "vocab_size", config_path) or 0
    heads = _count(config, "num_attention_heads", config_path)
    head_dim = _count(config, "head_dim", config_path)
    width = heads * (head_dim or hidden // heads) if heads else hidden
    return layers * 2 * hidden * width + vocab * hidden


def _format_bytes(count: float) -> str:
    if count >= 2**30:
        return f"{count / 2**30:,.2f} GiB"
    return f"{count / 2**20:,.1f} MiB" if count >= 2**20 else f"{int(count):,} bytes"


def check_config_fits_weights(
    config: Any, directory: Path, headers: dict[str, tuple[Path, dict[str, Any]]]
) -> None:
    """Refuse, from the config alone and before any model is built, a config that declares far more
    than its weights hold (e.g. 100,000 layers) or a model larger than the memory available now.

    Raises:
        MSAInputError: naming the config, what it declares, what the weights hold and what is free.
    """
    config_path = directory / "config.json"
    least = least_parameters(config, config_path)
    entries = [entry for _, entry in headers.values()]
    held = held_bytes(entries)
    itemsizes = [
        (int(entry["data_offsets"][1]) - int(entry["data_offsets"][0]))
        // max(1, math.prod(entry["shape"]))
        for entry in entries
        if math.prod(entry["shape"])
    ]
    itemsize = max(1, min(itemsizes, default=1))
    if least * itemsize > SIZE_SLACK * held:
        raise MSAInputError(
            f"{config_path} declares a model of at least {least:,} parameters "
            f"({getattr(config, 'num_hidden_layers', '?')} layers of hidden size "
            f"{getattr(config, 'hidden_size', '?')}, {_format_bytes(least * itemsize)}), but its "
            f"weights hold {_format_bytes(held)}: the config does not describe these weights"
        )
    needed, free = max(least * itemsize, held), available_bytes()
    if needed > free:
        raise MSAInputError(
            f"{directory} needs at least {_format_bytes(needed)} of memory to load; "
            f"{_format_bytes(free)} are available"
        )


def check_loaded_weights(missing: Iterable[str], directory: Path, files: Iterable[Path]) -> None:
    """Refuse a model some of whose parameters the weights did not hold (transformers would leave
    them randomly initialised), naming them."""
    missing = sorted(missing)
    if missing:
        shown = ", ".join(missing[:SHOWN_KEYS]) + (
            f" and {len(missing) - SHOWN_KEYS} more" if len(missing) > SHOWN_KEYS else ""
        )
        raise MSAInputError(
            f"{directory}: its weights ({', '.join(path.name for path in files)}) lack "
            f"{len(missing)} tensor(s) the config's model needs: {shown}. The config declares "
            "more (layers, heads...) than was saved; fix config.json or save the model again"
        )


def check_finite(model: nn.Module, headers: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    """Raise ``MSAInputError`` naming the file and the tensor when a loaded weight holds NaN or
    infinity (every game value computed from it would be meaningless)."""
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point() or bool(torch.isfinite(tensor.sum())):
            continue  # a NaN or infinity makes the sum one; a finite sum rules both out
        if not bool(torch.isfinite(tensor).all()):  # else the sum merely overflowed
            path = headers[name][0].name if name in headers else "the weights"
            bad = int((~torch.isfinite(tensor)).sum())
            raise MSAInputError(
                f"{path}: tensor {name} holds {bad:,} NaN or infinite value(s) of "
                f"{tensor.numel():,}; the checkpoint is damaged (save or convert it again)"
            )

"""Weights on disk: safetensors files in ``assets/`` and a digest that identifies a model's
numbers."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from msa_core.errors import MSAInputError
from msa_core.paths import ASSETS


def hub_offline() -> None:
    """Switch the Hugging Face hub off (``HF_HUB_OFFLINE=1`` unless set): models load from disk
    only.

    Called at import by the zoo modules that import transformers, before they do.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def weights_path(name: str) -> Path:
    """Where the bundled weights of model ``name`` live."""
    return ASSETS / f"{name}.safetensors"


def save_weights(model: nn.Module, name: str) -> Path:
    """Write the model's state dict (contiguous CPU tensors) as safetensors; returns the path."""
    path = weights_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}, path
    )
    return path


def load_weights(model: nn.Module, name: str) -> nn.Module:
    """Load bundled safetensors weights into ``model`` (strict) and return it in eval mode.

    Raises:
        MSAInputError: the file is damaged or does not fit the model (naming the file).
    """
    path = weights_path(name)
    check_safetensors(path)
    try:
        model.load_state_dict(load_file(path))
    except (SafetensorError, RuntimeError, OSError, ValueError) as err:
        raise MSAInputError(f"cannot load the weights {path}: {err}") from None
    return model.eval()


MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit on the JSON header


def check_safetensors(path: Path) -> None:
    """Raise ``MSAInputError`` naming ``path`` unless it is a complete safetensors file: an 8-byte
    header length, a JSON header of that length, and every tensor's bytes within the file (truncated
    files fail here, before any loader sees them)."""
    safetensors_header(path)


def safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """The tensors a complete safetensors file holds, read from its header alone.

    Returns:
        ``{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}}`` (no metadata).
    Raises:
        MSAInputError: not a complete safetensors file (see ``check_safetensors``), naming it.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if size < 8 or length > min(size - 8, MAX_HEADER_BYTES):
                raise ValueError(f"its header claims {length} bytes but the file has {size}")
            header = json.loads(handle.read(length))
        tensors = {key: entry for key, entry in header.items() if key != "__metadata__"}
        ends = [entry["data_offsets"][1] for entry in tensors.values()]
        needed = 8 + length + max(ends, default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise MSAInputError(f"{path} is not a readable safetensors file ({err})") from None
    if needed > size:
        raise MSAInputError(
            f"{path} is truncated: its tensors need {needed:,} bytes but the file "
            f"has {size:,}; copy or save it again"
        )
    return tensors


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of tensors, in sorted name order."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        value = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(
            value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b""
        )
    return digest.hexdigest()

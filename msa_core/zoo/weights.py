"""Weights on disk: safetensors files in ``assets/`` and a digest that identifies a model's numbers."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

ASSETS = Path(__file__).resolve().parent.parent.parent / "assets"


def hub_offline() -> None:
    """Switch the Hugging Face hub off (``HF_HUB_OFFLINE=1`` unless set): models load from disk only.

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
    save_file({key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}, path)
    return path


def load_weights(model: nn.Module, name: str) -> nn.Module:
    """Load bundled safetensors weights into ``model`` (strict) and return it in eval mode."""
    model.load_state_dict(load_file(weights_path(name)))
    return model.eval()


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of tensors, in sorted name order."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        value = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()

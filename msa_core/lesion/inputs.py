"""Model inputs: a tensor ``[B, ...]`` or an HF-style dict of tensors ``[B, ...]`` (plus plain
options)."""

from __future__ import annotations

from typing import Any, overload

import torch
from torch import nn

from msa_core.errors import MSAInputError

Inputs = torch.Tensor | dict[str, Any]


def model_device(model: nn.Module) -> torch.device | None:
    """Device of the model's first parameter or buffer; None for a model without any."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return None


def batch_size(inputs: Any, what: str = "inputs") -> int:
    """B of a tensor or of a dict of tensors, all with the same leading dimension; clear errors
    otherwise."""
    if isinstance(inputs, torch.Tensor):
        if inputs.ndim == 0:
            raise MSAInputError(f"{what} must have a batch dimension [B, ...]; got a scalar tensor")
        return _non_empty(inputs.shape[0], what)
    if not isinstance(inputs, dict):
        raise MSAInputError(
            f"{what} must be a tensor [B, ...] or a dict of tensors (HF style); got "
            f"{type(inputs).__name__}"
        )
    sizes = {
        key: value.shape[0]
        for key, value in inputs.items()
        if isinstance(value, torch.Tensor) and value.ndim
    }
    if not sizes:
        raise MSAInputError(
            f"{what} is a dict without any tensor; give e.g. {{'input_ids': ids [B, T]}}"
        )
    if len(set(sizes.values())) > 1:
        raise MSAInputError(
            f"every tensor in {what} must share the batch size B; got leading dimensions {sizes}"
        )
    return _non_empty(next(iter(sizes.values())), what)


def _non_empty(size: int, what: str) -> int:
    if size == 0:
        raise MSAInputError(f"{what} have an empty batch (B = 0); give at least one sample")
    return size


def describe(inputs: Inputs) -> str:
    """Shapes and dtypes of inputs, e.g. ``[4, 3] float32`` or ``input_ids [2, 16] int64``."""
    if isinstance(inputs, torch.Tensor):
        return f"{list(inputs.shape)} {str(inputs.dtype).removeprefix('torch.')}"
    return ", ".join(
        f"{key} {describe(value)}"
        for key, value in inputs.items()
        if isinstance(value, torch.Tensor)
    )


def check_device(tensors: Any, device: torch.device | None, what: str) -> None:
    """Raise a clear error when a tensor (or a dict's tensors) is not on the model's device."""
    if device is None:
        return
    items = tensors.items() if isinstance(tensors, dict) else [(None, tensors)]
    for key, value in items:
        if isinstance(value, torch.Tensor) and value.device != device:
            name = what if key is None else f"{what}[{key!r}]"
            raise MSAInputError(
                f"{name} is on {value.device} but the model is on {device}; move it with "
                f".to({str(device)!r})"
            )


@overload
def repeat_batch(inputs: torch.Tensor, copies: int) -> torch.Tensor: ...


@overload
def repeat_batch(inputs: dict[str, Any], copies: int) -> dict[str, Any]: ...


def repeat_batch(inputs: Inputs, copies: int) -> Inputs:
    """Each batch tensor repeated ``copies`` times along dim 0: ``[B, ...] -> [copies * B, ...]``,
    copy-major."""
    if isinstance(inputs, torch.Tensor):
        return inputs.repeat(copies, *([1] * (inputs.ndim - 1)))
    return {
        key: repeat_batch(value, copies)
        if isinstance(value, torch.Tensor) and value.ndim
        else value
        for key, value in inputs.items()
    }


def call_model(model: nn.Module, inputs: Inputs) -> Any:
    """``model(x)`` for a tensor, ``model(**inputs)`` for a dict."""
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def first_call(model: nn.Module, inputs: Inputs) -> Any:
    """``call_model``, with the error of a model that cannot run on these inputs (wrong shape,
    dtype or token ids) as an ``MSAInputError`` naming the inputs' shapes and dtypes."""
    try:
        return call_model(model, inputs)
    except (RuntimeError, IndexError, TypeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MSAInputError(
            f"the model cannot run on the inputs ({describe(inputs)}): "
            f"{first_line}. Give inputs of the shape and dtype the model's forward "
            "expects"
        ) from err

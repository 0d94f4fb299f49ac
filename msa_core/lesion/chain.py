"""Chain models: an ``nn.Sequential`` (nested ones flattened) whose forward feeds each element the
last.

For chains the game can run the part before the first lesioned element once, on the unrepeated
batch (prefix reuse), and push lesioned units through the affine elements that follow them once per
unit (linear push-forward). Models with any other forward run whole, lesioned by hooks.
"""

from __future__ import annotations

import torch
from torch import nn

Element = tuple[str, nn.Module]

# Elements that are affine in their input (in eval mode): pushing a unit through them is exact.
AFFINE = (
    nn.Linear,
    nn.modules.conv._ConvNd,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.modules.dropout._DropoutNd,
)


def is_chain(module: nn.Module) -> bool:
    """A plain ``nn.Sequential`` (a subclass that keeps Sequential's forward counts)."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def chain_elements(model: nn.Module) -> list[Element] | None:
    """``(path, module)`` of a chain model's elements in call order, nested chains flattened; else
    None."""
    if not is_chain(model):
        return None

    def flatten(seq: nn.Module, prefix: str) -> list[Element]:
        out = []
        for key, child in seq.named_children():
            path = f"{prefix}{key}"
            out += flatten(child, f"{path}.") if is_chain(child) else [(path, child)]
        return out

    return flatten(model, "")


def is_affine(module: nn.Module) -> bool:
    """True for elements affine in their input: Linear, conv / conv-transpose, reshapes, eval-mode
    dropout, and batch norms that use running statistics."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.track_running_stats and module.running_mean is not None
    return isinstance(module, AFFINE)


def contains(element_path: str, path: str) -> bool:
    """Whether the module at ``path`` is the element at ``element_path`` or inside it."""
    return path == element_path or path.startswith(f"{element_path}.")


def run_chain(elements: list[Element], x: torch.Tensor) -> torch.Tensor:
    """Feed ``x`` through ``elements`` in order; returns a contiguous tensor.

    Image batches ``[M, C, H, W]`` run in channels-last memory format, where convolutions with few
    output channels are several times faster on CPU (measured in bench/bench_lesion.py).
    """
    if x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    for _, module in elements:
        x = module(x)
    return x.contiguous()

"""Hook points: forward hooks registered for one call and removed in ``finally``.

Every lesion is a hook on one module that edits a tensor of the repeated batch. Rows of that tensor
are copy-major: copy ``c`` of the input batch owns rows ``c * R .. (c + 1) * R`` (R = B for a batch
of B samples, B * T once a block flattens tokens), so ``x.unflatten(0, (C, R))`` splits the copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from msa_core.errors import MSAInputError


class ForwardHook(Protocol):
    """``fn(module, args, out)`` after ``module`` runs: ``args`` its positional inputs, ``out`` its
    output (a tensor, or a tuple whose first element is one); returns the output to use instead,
    or None to keep ``out``."""

    def __call__(self, module: nn.Module, args: tuple[Any, ...], out: Any, /) -> object: ...


class ForwardPreHook(Protocol):
    """``fn(module, args)`` before ``module`` runs; returns the positional inputs to use instead
    (a tuple), or None to keep ``args``."""

    def __call__(self, module: nn.Module, args: tuple[Any, ...], /) -> tuple[Any, ...] | None: ...


class ForwardHookWithKwargs(Protocol):
    """``fn(module, args, kwargs, out)``: a ``ForwardHook`` that also sees keyword inputs (e.g.
    ``hidden_states`` of an HF decoder layer)."""

    def __call__(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, /
    ) -> object: ...


class ForwardPreHookWithKwargs(Protocol):
    """``fn(module, args, kwargs)``: a ``ForwardPreHook`` that also sees (and may replace) the
    keyword inputs; returns ``(args, kwargs)`` to use instead, or None."""

    def __call__(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], /
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None: ...


HookFn = ForwardHook | ForwardPreHook | ForwardHookWithKwargs | ForwardPreHookWithKwargs


@dataclass(frozen=True)
class Hook:
    """``fn`` as a forward hook on ``module``: a ``ForwardHook``, or with ``pre`` a
    ``ForwardPreHook``, with ``with_kwargs`` a ``ForwardHookWithKwargs``, with both a
    ``ForwardPreHookWithKwargs``."""

    module: nn.Module
    fn: HookFn
    pre: bool = False
    with_kwargs: bool = False


@contextmanager
def attached(hooks: Iterable[Hook]) -> Iterator[None]:
    """Register ``hooks`` for the body of the ``with``; they are removed even when the body
    raises."""
    handles = []
    try:
        for hook in hooks:
            handles.append(_register(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _register(hook: Hook) -> RemovableHandle:
    """Register one hook as the kind its flags say (``Hook``)."""
    if hook.pre and hook.with_kwargs:
        pre_with_kwargs = cast(ForwardPreHookWithKwargs, hook.fn)
        return hook.module.register_forward_pre_hook(pre_with_kwargs, with_kwargs=True)
    if hook.pre:
        return hook.module.register_forward_pre_hook(cast(ForwardPreHook, hook.fn))
    if hook.with_kwargs:
        with_kwargs = cast(ForwardHookWithKwargs, hook.fn)
        return hook.module.register_forward_hook(with_kwargs, with_kwargs=True)
    return hook.module.register_forward_hook(cast(ForwardHook, hook.fn))


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the body with every submodule in eval mode, then restore each one's own training flag
    (a model already in eval mode, the usual case, is left untouched: no flag is written)."""
    flags = [(module, module.training) for module in model.modules()]
    if not any(flag for _, flag in flags):
        yield
        return
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def split_copies(x: torch.Tensor, copies: int, where: str) -> torch.Tensor:
    """``x [C * R, ...] -> [C, R, ...]``, or a clear error when the rows are not copy-major."""
    if x.shape[0] % copies:
        raise MSAInputError(
            f"{where}: leading dimension {x.shape[0]} is not a multiple of the {copies} input "
            "copies; lesioned modules must keep the batch (or batch x tokens) as their first "
            "dimension"
        )
    return x.unflatten(0, (copies, -1))


def where_copies(
    x: torch.Tensor, keep: torch.Tensor, fill: torch.Tensor | float, where: str
) -> torch.Tensor:
    """Per copy, keep ``x`` where ``keep`` is True, else ``fill``.

    x: ``[C * R, ...]``; keep: bool ``[C, ...]`` broadcastable against ``[C, R, ...]``, or a float
    gate of 0s and 1s (``gated``); fill: a scalar or a tensor broadcastable against ``[R, ...]``.
    Returns ``[C * R, ...]``.
    """
    split = split_copies(x, keep.shape[0], where)
    if keep.dtype == torch.bool:
        return torch.where(keep, split, fill).flatten(0, 1)
    return gated(split, keep, fill).flatten(0, 1)


def gated(x: torch.Tensor, gate: torch.Tensor, fill: torch.Tensor | float) -> torch.Tensor:
    """The lesion as a function of a continuous gate, ``fill + gate * (x - fill)``, evaluated at a
    gate of 0s and 1s (``msa_core.lesion.gradients``): the value is exactly the lesioned one
    (``x`` where the gate is 1, ``fill`` where 0) and the derivative in the gate is ``x - fill``,
    the linearised effect of restoring (or lesioning) the unit there (attribution patching)."""
    exact = torch.where(gate > 0.5, x, fill)
    return exact + (gate - gate.detach()) * (x - fill)


def lesioned(keep: torch.Tensor) -> torch.Tensor:
    """``~keep`` for a bool keep matrix, ``1 - gate`` for a float gate."""
    return ~keep if keep.dtype == torch.bool else 1 - keep

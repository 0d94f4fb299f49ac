"""Hook points: forward hooks registered for one call and removed in ``finally``.

Every lesion is a hook on one module that edits a tensor of the repeated batch. Rows of that tensor
are copy-major: copy ``c`` of the input batch owns rows ``c * R .. (c + 1) * R`` (R = B for a batch
of B samples, B * T once a block flattens tokens), so ``x.unflatten(0, (C, R))`` splits the copies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from msa_core.errors import MSAInputError


@dataclass(frozen=True)
class Hook:
    """``fn`` as a forward hook on ``module`` (``pre``: a forward pre-hook), optionally with
    kwargs."""

    module: nn.Module
    fn: Callable
    pre: bool = False
    with_kwargs: bool = False


@contextmanager
def attached(hooks: Iterable[Hook]) -> Iterator[None]:
    """Register ``hooks`` for the body of the ``with``; they are removed even when the body
    raises."""
    handles = []
    try:
        for hook in hooks:
            register = (
                hook.module.register_forward_pre_hook
                if hook.pre
                else hook.module.register_forward_hook
            )
            handles.append(register(hook.fn, with_kwargs=hook.with_kwargs))
        yield
    finally:
        for handle in handles:
            handle.remove()


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

    x: ``[C * R, ...]``; keep: bool ``[C, ...]`` broadcastable against ``[C, R, ...]``; fill: a
    scalar or a tensor broadcastable against ``[R, ...]``. Returns ``[C * R, ...]``.
    """
    return torch.where(keep, split_copies(x, keep.shape[0], where), fill).flatten(0, 1)

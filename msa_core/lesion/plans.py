"""How one chunk of C coalitions runs: which part of the model runs per input copy.

- ``WholeModel``: the input batch repeated C times through the whole model, lesioned by hooks.
- ``ChainSuffix`` (prefix reuse): in a chain model, the elements before the first lesioned one ran
  once on the B samples at construction; only the rest runs on the ``C * B`` repeated rows.
- ``MaskedChain`` (prefix reuse): when that element is itself the module whose outputs are the
  units, its output is computed once too and masked per copy.
- ``PushForward``: when affine elements follow those units, each unit's contribution through them is
  computed once; a coalition's result is ``base + keep @ contributions`` (one matmul for all
  copies).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from msa_core.lesion.chain import Element, chain_elements, contains, is_affine, run_chain
from msa_core.lesion.inputs import Inputs, call_model, repeat_batch
from msa_core.lesion.sites import ActivationSite, Site


class Plan(ABC):
    """Runs C lesioned copies of the input batch; sites in ``hooked`` act through their hooks."""

    name: str
    hooked: list[Site]

    @abstractmethod
    def run(self, keep: torch.Tensor) -> Any:
        """keep: bool ``[C, N]`` over all players -> the raw model output for the ``C * B`` rows."""

    def copy_bytes(self, sizes: list[tuple[nn.Module, int]]) -> int:
        """Activation bytes one copy holds at most at once, from the bytes of each output of each
        leaf module in a pass over one copy: here all of them."""
        return sum(size for _, size in sizes)


class WholeModel(Plan):
    """``options``: keyword arguments passed to the model as they are (not repeated per copy)."""

    name = "whole model"

    def __init__(
        self, model: nn.Module, inputs: Inputs, sites: list[Site], options: dict | None = None
    ):
        self.model, self.inputs, self.hooked, self.options = model, inputs, sites, options or {}

    def run(self, keep: torch.Tensor) -> Any:
        repeated = repeat_batch(self.inputs, keep.shape[0])
        if self.options and not isinstance(repeated, torch.Tensor):  # they join HF-style inputs
            return call_model(self.model, {**repeated, **self.options})
        return call_model(self.model, repeated)


class ChainSuffix(Plan):
    name = "prefix reuse"

    def __init__(self, prefix_output: torch.Tensor, rest: list[Element], sites: list[Site]):
        self.x, self.rest, self.hooked = prefix_output, rest, sites

    def run(self, keep: torch.Tensor) -> torch.Tensor:
        return run_chain(self.rest, repeat_batch(self.x, keep.shape[0]))


class MaskedChain(Plan):
    name = "prefix reuse (masked activation)"

    def __init__(
        self,
        site: ActivationSite,
        activation: torch.Tensor,
        rest: list[Element],
        others: list[Site],
    ):
        self.site, self.activation, self.rest, self.hooked = site, activation, rest, others

    def run(self, keep: torch.Tensor) -> torch.Tensor:
        masked = self.site.apply(repeat_batch(self.activation, keep.shape[0]), self.site.own(keep))
        return run_chain(self.rest, masked)


class PushForward(Plan):
    """``rows [1 + n, B * prod(out)]``: the base (the affine elements' output with every unit
    lesioned), then each unit's contribution (that unit alone intact minus the base); a coalition's
    output is ``[1, keep] @ rows``, one matrix product with the base folded in (a separate bias
    add costs a pass over the output)."""

    name = "prefix reuse + push-forward"

    def __init__(
        self,
        site: ActivationSite,
        activation: torch.Tensor,
        affine: list[Element],
        rest: list[Element],
        others: list[Site],
    ):
        self.site, self.rest, self.hooked = site, rest, others
        n = site.size
        one_hot = torch.cat([torch.zeros(1, n), torch.eye(n)]).to(
            device=activation.device, dtype=torch.bool
        )
        pushed = run_chain(affine, site.apply(repeat_batch(activation, n + 1), one_hot)).unflatten(
            0, (n + 1, -1)
        )
        self.shape = pushed.shape[2:]  # one sample's output of the affine elements
        if len(self.shape) == 3:  # images [C, H, W]: kept channels-last, the layout run_chain uses
            pushed = pushed.permute(0, 1, 3, 4, 2)
        self.rows = torch.cat([pushed[:1], pushed[1:] - pushed[0]]).flatten(1)

    def run(self, keep: torch.Tensor) -> torch.Tensor:
        weights = torch.ones(
            keep.shape[0], 1 + self.site.size, dtype=self.rows.dtype, device=self.rows.device
        )
        weights[:, 1:] = self.site.own(keep)
        summed = weights @ self.rows  # [C, B * prod(out)]
        if len(self.shape) == 3:
            channels, height, width = self.shape
            return run_chain(
                self.rest, summed.view(-1, height, width, channels).permute(0, 3, 1, 2)
            )
        return run_chain(self.rest, summed.view(-1, *self.shape))


PUSHED_BYTES = 1 << 30  # largest per-unit contribution tensors push-forward may keep


def make_plan(
    model: nn.Module,
    inputs: Inputs,
    sites: list[Site],
    prefix_reuse: bool,
    push_forward: bool,
    options: dict | None = None,
) -> Plan:
    """The fastest exact plan for these sites; call under ``torch.inference_mode()`` and eval mode.

    Push-forward is used when its per-unit tensors take at most ``PUSHED_BYTES``. ``options`` go to
    a whole-model plan's calls (e.g. ``logits_to_keep``; dict inputs only).
    """
    if not prefix_reuse or not isinstance(inputs, torch.Tensor):
        return WholeModel(model, inputs, sites, options)
    elements = chain_elements(model)
    if elements is None:
        return WholeModel(model, inputs, sites, options)
    hit = [i for i, (path, _) in enumerate(elements) if any(contains(path, s.path) for s in sites)]
    if not hit or any(not any(contains(path, s.path) for path, _ in elements) for s in sites):
        return WholeModel(model, inputs, sites, options)
    first = hit[0]
    site = next(
        (s for s in sites if s.path == elements[first][0] and isinstance(s, ActivationSite)), None
    )
    if site is None:
        return ChainSuffix(run_chain(elements[:first], inputs), elements[first:], sites)
    activation = run_chain(elements[: first + 1], inputs)
    others = [s for s in sites if s is not site]
    stop = first + 1
    while (
        push_forward
        and stop < len(elements)
        and is_affine(elements[stop][1])
        and not any(contains(elements[stop][0], s.path) for s in others)
    ):
        stop += 1
    affine = elements[first + 1 : stop]
    if affine:
        pushed_bytes = (site.size + 1) * (activation.nbytes + run_chain(affine, activation).nbytes)
        if pushed_bytes <= PUSHED_BYTES:
            return PushForward(site, activation, affine, elements[stop:], others)
    return MaskedChain(site, activation, elements[first + 1 :], others)

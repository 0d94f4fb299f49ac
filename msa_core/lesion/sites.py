"""Lesion sites: one module of the model, its units, and the hooks that lesion them per input copy.

A ``Site`` is built from a unit spec (``msa_core.units``) and one module it covers. A probe forward
with ``probe_hooks`` tells its unit count (and checks the spec fits the module) and the units' mean
activation; ``lesion_hooks(keep)`` then lesions, in each copy c of the repeated batch, the units
with ``keep[c] == False``. Lesioned units take the value 0 or, when ``fill`` is set (lesion="mean"),
their mean over the reference batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from msa_core.errors import MSAInputError
from msa_core.lesion.hooks import Hook, lesioned, split_copies, where_copies
from msa_core.units import UNIT_KINDS, Blocks, Channels, Experts, Heads, Layers, Neurons, UnitSpec


class Site(ABC):
    """The units of one module: players ``offset .. offset + n_units - 1`` of the game."""

    def __init__(self, spec: UnitSpec, path: str, module: nn.Module, tag: str):
        self.spec, self.path, self.module, self.tag = spec, path, module, tag
        self.n_units: int | None = None  # set by the probe
        self.mean: torch.Tensor | None = None  # mean activation seen by the last probe with_mean
        self.fill: torch.Tensor | None = None  # lesioned units' values (lesion="mean"); None: 0
        self.offset = 0

    @property
    def size(self) -> int:
        """``n_units`` once the probe has set it."""
        if self.n_units is None:
            raise RuntimeError(
                f"the units of {self.path} are counted by a probe, which has not run"
            )
        return self.n_units

    def names(self) -> list[str]:
        return self.spec.unit_names(self.tag, self.size)

    def own(self, keep: torch.Tensor) -> torch.Tensor:
        """This site's columns ``[C, n_units]`` of a keep matrix ``[C, N]`` over all players."""
        return keep[:, self.offset : self.offset + self.size]

    def check_lesion(self, lesion: str) -> None:
        """Raise when this site cannot take the lesion kind (all sites take "zero" and "mean")."""
        return None  # the default: a site takes both kinds; subclasses refuse what they cannot do

    def check_gradients(self) -> None:
        """Raise when this site's lesion has no derivative in a continuous gate
        (``msa_core.lesion.gradients``); every lesion that replaces a value by its fill has one."""
        return None

    @abstractmethod
    def probe_hooks(self, with_mean: bool) -> list[Hook]:
        """Hooks that set ``n_units`` (and ``mean`` when ``with_mean``) during an unrepeated
        forward."""

    @abstractmethod
    def lesion_hooks(self, keep: torch.Tensor) -> list[Hook]:
        """Hooks lesioning this site; keep: bool ``[C, n_units]``, True = intact."""

    def _error(self, problem: str) -> MSAInputError:
        return MSAInputError(f"{type(self.spec).__name__}({self.path!r}): {problem}")


def mean_except(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Mean of ``x`` over every dimension but ``axis`` (accumulated in float32, returned in x's
    dtype)."""
    axis %= x.ndim
    return x.float().mean([d for d in range(x.ndim) if d != axis]).to(x.dtype)


class ActivationSite(Site):
    """Neurons (``axis=-1``) or channels (``axis=1``) of a module's output tensor."""

    def __init__(self, spec: UnitSpec, path: str, module: nn.Module, tag: str, axis: int):
        super().__init__(spec, path, module, tag)
        self.axis = axis
        if axis == 1 and isinstance(module, nn.Linear):
            raise self._error("a Linear layer has no channels; use Neurons for its outputs")
        if axis == -1 and isinstance(module, nn.modules.conv._ConvNd):
            raise self._error(f"{type(module).__name__} outputs channels [B, C, ...]; use Channels")

    def _checked(self, out: object) -> torch.Tensor:
        if not isinstance(out, torch.Tensor):
            raise self._error(
                f"the module returns {type(out).__name__}; unit lesions need a tensor output"
            )
        if self.axis == 1 and out.ndim < 3:
            raise self._error(
                f"Channels need an output [B, C, *spatial]; the module returns {list(out.shape)}. "
                "Use Neurons for a [B, features] output"
            )
        if out.ndim < 2:
            raise self._error(
                f"the output {list(out.shape)} has no unit dimension besides the batch"
            )
        return out

    def probe_hooks(self, with_mean: bool) -> list[Hook]:
        def probe(module: nn.Module, args: tuple, out: object) -> None:
            out = self._checked(out)
            self.n_units = out.shape[self.axis]
            if with_mean:
                self.mean = mean_except(out, self.axis)

        return [Hook(self.module, probe)]

    def apply(self, out: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Lesion a module output ``[C * R, ...]`` per copy; keep: bool ``[C, n_units]``."""
        shape = [1] * out.ndim
        shape[self.axis] = self.size
        fill = 0.0 if self.fill is None else self.fill.view(shape)
        return where_copies(out, keep.view(keep.shape[0], *shape), fill, self.path)

    def lesion_hooks(self, keep: torch.Tensor) -> list[Hook]:
        return [Hook(self.module, lambda module, args, out: self.apply(out, keep))]


def first_tensor(value: Any) -> torch.Tensor:
    """A tensor, or the first element of a tuple output."""
    return value[0] if isinstance(value, (tuple, list)) else value


class InputNeuronSite(Site):
    """Entries of the last dimension of a module's first input (``Neurons(path, of="input")``)."""

    def probe_hooks(self, with_mean: bool) -> list[Hook]:
        def probe(module: nn.Module, args: tuple) -> None:
            if not args or not isinstance(args[0], torch.Tensor) or args[0].ndim < 2:
                raise self._error(
                    "Neurons(of='input') need a module whose first input is a tensor "
                    "[B, ..., units]"
                )
            self.n_units = args[0].shape[-1]
            if with_mean:
                self.mean = mean_except(args[0], -1)

        return [Hook(self.module, probe, pre=True)]

    def lesion_hooks(self, keep: torch.Tensor) -> list[Hook]:
        def lesion(module: nn.Module, args: tuple) -> tuple:
            x = args[0]
            fill = 0.0 if self.fill is None else self.fill
            # [C, 1, ..., units] against [C, R, ..., units]
            shape = [keep.shape[0], *[1] * (x.ndim - 1), self.size]
            return (where_copies(x, keep.view(shape), fill, self.path), *args[1:])

        return [Hook(self.module, lesion, pre=True)]


class BlockSite(Site):
    """A sublayer as one unit: lesioned, its output (the first tensor of a tuple) is zero or its
    mean."""

    def probe_hooks(self, with_mean: bool) -> list[Hook]:
        def probe(module: nn.Module, args: tuple, out: Any) -> None:
            y = first_tensor(out)
            if not isinstance(y, torch.Tensor) or y.ndim < 2:
                raise self._error(
                    "Blocks need a module whose output (or its first element) is a tensor "
                    "[B, ..., d]"
                )
            self.n_units = 1
            if with_mean:
                self.mean = mean_except(y, -1)

        return [Hook(self.module, probe)]

    def lesion_hooks(self, keep: torch.Tensor) -> list[Hook]:
        def lesion(module: nn.Module, args: tuple, out: Any) -> Any:
            y = first_tensor(out)
            fill = 0.0 if self.fill is None else self.fill
            kept = where_copies(y, keep.view(-1, *[1] * y.ndim), fill, self.path)
            return (kept, *out[1:]) if isinstance(out, (tuple, list)) else kept

        return [Hook(self.module, lesion)]


OUT_PROJECTIONS = ("o_proj", "out_proj", "c_proj", "dense", "out_lin")  # out_lin: DistilBERT
HEAD_COUNTS = ("num_heads", "num_attention_heads", "n_head", "n_heads")


class HeadSite(Site):
    """Attention heads, lesioned in the input ``[..., heads * head_dim]`` of the output
    projection."""

    def __init__(self, spec: Heads, path: str, module: nn.Module, tag: str):
        super().__init__(spec, path, module, tag)
        if isinstance(module, nn.MultiheadAttention):
            raise self._error(
                "nn.MultiheadAttention applies out_proj functionally, so no hook can reach it; "
                "use an attention module that calls its output projection (HF attention)"
            )
        proj = next(
            (
                getattr(module, name)
                for name in OUT_PROJECTIONS
                if isinstance(getattr(module, name, None), nn.Module)
            ),
            None,
        )
        if proj is None:
            raise self._error(
                f"Heads need an attention module with an output projection "
                f"({' / '.join(OUT_PROJECTIONS)}); this is a {type(module).__name__}"
            )
        self.proj = proj
        self.n_heads = spec.n_heads

    def _head_count(self, width: int) -> int:
        count = self.n_heads or next(
            (
                getattr(self.module, a)
                for a in HEAD_COUNTS
                if isinstance(getattr(self.module, a, None), int)
            ),
            None,
        )
        head_dim = getattr(self.module, "head_dim", None)
        if count is None and isinstance(head_dim, int):
            count = width // head_dim
        if count is None:
            count = getattr(getattr(self.module, "config", None), "num_attention_heads", None)
        if not count or width % count:
            raise self._error(
                f"cannot split the output projection's input width {width} into heads "
                f"(head count {count}); pass Heads(..., n_heads=H)"
            )
        return count

    def probe_hooks(self, with_mean: bool) -> list[Hook]:
        def probe(module: nn.Module, args: tuple) -> None:
            self.n_units = self._head_count(args[0].shape[-1])
            if with_mean:
                self.mean = mean_except(args[0], -1)

        return [Hook(self.proj, probe, pre=True)]

    def lesion_hooks(self, keep: torch.Tensor) -> list[Hook]:
        def lesion(module: nn.Module, args: tuple) -> tuple:
            heads = args[0].unflatten(-1, (self.size, -1))  # [C * R, ..., H, D]
            shape = [1] * (heads.ndim - 1)  # keep: [C, 1, ..., H, 1] against [C, R, ..., H, D]
            shape[-1] = self.size
            fill = 0.0 if self.fill is None else self.fill.view(self.size, -1)
            lesioned = where_copies(heads, keep.view(keep.shape[0], *shape, 1), fill, self.path)
            return (lesioned.flatten(-2), *args[1:])

        return [Hook(self.proj, lesion, pre=True)]


class LayerSite(Site):
    """A residual block as one unit: lesioned, its output is its input (plus its mean update for
    "mean")."""

    @staticmethod
    def _block_input(args: tuple, kwargs: dict) -> torch.Tensor:
        return args[0] if args else kwargs["hidden_states"]

    def probe_hooks(self, with_mean: bool) -> list[Hook]:
        def probe(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            x, y = self._block_input(args, kwargs), first_tensor(out)
            if not isinstance(y, torch.Tensor) or y.shape != x.shape:
                shape = list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                raise self._error(
                    "skipping a block needs output shape = input shape; "
                    f"got {list(x.shape)} -> {shape}"
                )
            self.n_units = 1
            if with_mean:
                self.mean = mean_except(y - x, -1)

        return [Hook(self.module, probe, with_kwargs=True)]

    def lesion_hooks(self, keep: torch.Tensor) -> list[Hook]:
        def lesion(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> Any:
            x, y = self._block_input(args, kwargs), first_tensor(out)
            skipped = x if self.fill is None else x + self.fill
            kept = where_copies(
                y,
                keep.view(-1, *[1] * y.ndim),
                split_copies(skipped, keep.shape[0], self.path),
                self.path,
            )
            return (kept, *out[1:]) if isinstance(out, (tuple, list)) else kept

        return [Hook(self.module, lesion, with_kwargs=True)]


class ExpertSite(Site):
    """Routed experts of a transformers-5.x MoE block (router ``gate``, fused ``experts``).

    Units ``0 .. E-1`` are the routed experts, lesioned at the router's output (mode "remove":
    routed weight 0; "reroute": logit -inf, then softmax / top-k / renormalisation as the router
    does). With ``shared_expert``, unit E is the block's shared expert, lesioned at its output. Mean
    lesion (mode "remove" only): a lesioned expert's per-token contribution becomes its mean over
    the reference tokens (routed weight x expert output, 0 where not routed).
    """

    spec: Experts

    def __init__(self, spec: Experts, path: str, module: nn.Module, tag: str):
        super().__init__(spec, path, module, tag)
        self.gate: Any = getattr(module, "gate", None)  # checked below: a router module
        self.experts: Any = getattr(module, "experts", None)
        if not (
            isinstance(self.gate, nn.Module)
            and isinstance(self.experts, nn.Module)
            and hasattr(self.gate, "top_k")
            and hasattr(self.gate, "num_experts")
        ):
            raise self._error(
                "Experts need a mixture-of-experts block with a router `gate` (top_k, "
                "num_experts) and fused `experts`, as in transformers 5.x Mixtral / OLMoE / "
                f"Qwen2-MoE; this is a {type(module).__name__}"
            )
        n_experts: Any = self.gate.num_experts  # an int attribute of the router
        self.n_routed = int(n_experts)
        self.shared = getattr(module, "shared_expert", None) if spec.shared_expert else None
        if spec.shared_expert and not isinstance(self.shared, nn.Module):
            raise self._error(
                f"shared_expert=True but {type(module).__name__} has no `shared_expert`"
            )

    def check_lesion(self, lesion: str) -> None:
        if lesion == "mean" and self.spec.mode == "reroute":
            raise self._error(
                "lesion='mean' replaces an expert's output by its mean, which needs mode='remove'; "
                "a rerouted expert has no output to replace"
            )

    def check_gradients(self) -> None:
        if self.spec.mode == "reroute":
            raise self._error(
                "a rerouted expert changes which experts the router picks, a jump with no "
                "derivative; gradients need mode='remove' (its routed weight scaled by a gate)"
            )

    def _routing(self, out: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not (isinstance(out, tuple) and len(out) == 3):
            raise self._error(
                "the router `gate` must return (router_logits, routing_weights, expert_indices) "
                "as transformers 5.x TopKRouters do"
            )
        return out

    def _mean_contributions(
        self, hidden: torch.Tensor, weights: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        """Mean over tokens of each expert's weighted output ``[E, hidden]``, run by the block's own
        experts."""
        means = []
        for e in range(self.n_routed):
            weight = (weights * (index == e)).sum(-1, keepdim=True)
            contribution = self.experts(hidden, torch.full_like(index[:, :1], e), weight)
            means.append(mean_except(contribution, -1))
        return torch.stack(means)

    def probe_hooks(self, with_mean: bool) -> list[Hook]:
        parts: dict[str, torch.Tensor] = {}  # the shared expert may run before or after the router

        def probe_gate(module: nn.Module, args: tuple, out: object) -> None:
            _, weights, index = self._routing(out)
            self.n_units = self.n_routed + (self.shared is not None)
            if with_mean:
                parts["routed"] = self._mean_contributions(args[0], weights, index)

        def probe_shared(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            parts["shared"] = mean_except(out, -1)[None]

        def probe_block(module: nn.Module, args: tuple, out: object) -> None:
            if with_mean:
                self.mean = torch.cat(
                    [parts["routed"], *([parts["shared"]] if self.shared else [])]
                )

        hooks = [Hook(self.gate, probe_gate), Hook(self.module, probe_block)]
        return hooks + ([Hook(self.shared, probe_shared)] if self.shared else [])

    def lesion_hooks(self, keep: torch.Tensor) -> list[Hook]:
        routed = keep[:, : self.n_routed]
        hooks = [
            Hook(
                self.gate,
                lambda module, args, out: self._lesion_routing(self._routing(out), routed),
            )
        ]
        if self.fill is not None:
            hooks.append(
                Hook(self.module, lambda module, args, out: self._add_means(out, lesioned(routed)))
            )
        if self.shared is not None:
            shared_fill = 0.0 if self.fill is None else self.fill[-1]
            hooks.append(
                Hook(
                    self.shared,
                    lambda module, args, out: where_copies(
                        out, keep[:, -1].view(-1, *[1] * out.ndim), shared_fill, self.path
                    ),
                )
            )
        return hooks

    def _lesion_routing(self, routing: tuple, routed: torch.Tensor) -> tuple:
        logits, weights, index = routing
        copies = routed.shape[0]
        if self.spec.mode == "remove":  # a removed expert's routed weight becomes 0
            hit = routed.gather(1, split_copies(index, copies, self.path).flatten(1)).view_as(
                split_copies(index, copies, self.path)
            )
            return logits, where_copies(weights, hit, 0.0, self.path), index
        masked = split_copies(logits, copies, self.path).masked_fill(
            ~routed[:, None, :], float("-inf")
        )
        # a token whose experts are all lesioned gets none
        probs = masked.float().softmax(-1).nan_to_num(0.0)
        top, chosen = probs.topk(self.gate.top_k, dim=-1)
        # Mixtral always renormalises; OLMoE / Qwen2-MoE if set
        if getattr(self.gate, "norm_topk_prob", True):
            top = top / top.sum(-1, keepdim=True).clamp_min(torch.finfo(top.dtype).tiny)
        return logits, top.to(weights.dtype).flatten(0, 1), chosen.flatten(0, 1)

    def _add_means(self, out: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
        """Block output ``[C * R, ..., hidden]`` plus, per copy, the mean contributions of its
        lesioned experts (``off [C, E]``: 1 or True where lesioned)."""
        assert self.fill is not None  # hooked only with lesion="mean"
        added = off.to(self.fill.dtype) @ self.fill[: self.n_routed]  # [C, hidden]
        per_copy = split_copies(out, off.shape[0], self.path)
        return (per_copy + added.view(-1, *[1] * (per_copy.ndim - 2), added.shape[-1])).flatten(
            0, 1
        )


def _neuron_site(spec: Neurons, path: str, module: nn.Module, tag: str) -> Site:
    if spec.of == "input":
        return InputNeuronSite(spec, path, module, tag)
    return ActivationSite(spec, path, module, tag, axis=-1)


# the site that lesions each unit kind (``msa_core.units.UNIT_KINDS``): a new kind is a spec class
# there and one entry here; ``(spec, path, module, tag) -> Site``
SITES: dict[type[UnitSpec], Callable[..., Site]] = {
    Neurons: _neuron_site,
    Channels: partial(ActivationSite, axis=1),
    Heads: HeadSite,
    Experts: ExpertSite,
    Blocks: BlockSite,
    Layers: LayerSite,
}


def make_site(spec: UnitSpec, path: str, module: nn.Module, tag: str) -> Site:
    """The site of a spec's unit kind (a subclass of a kind is lesioned as that kind)."""
    kind = next((kind for kind in type(spec).__mro__ if kind in SITES), None)
    if kind is None:
        raise MSAInputError(
            f"{type(spec).__name__} has no lesion site; unit kinds: {', '.join(_kind_names())}"
        )
    return SITES[kind](spec, path, module, tag)


def _kind_names() -> list[str]:
    return [kind.__name__ for kind in UNIT_KINDS.values()]


def bind(model: nn.Module, units: UnitSpec | Sequence[UnitSpec]) -> list[Site]:
    """One site per module covered by the specs, in spec order; each module at most once."""
    specs = (
        [units]
        if isinstance(units, UnitSpec)
        else list(units)
        if isinstance(units, (list, tuple))
        else None
    )
    if not specs:
        raise MSAInputError(
            "units must be a unit spec or a non-empty list of them, e.g. Neurons('fc1')"
        )
    sites = []
    for spec in specs:
        if not isinstance(spec, UnitSpec):
            raise MSAInputError(
                f"units must be msa_core.units specs ({', '.join(_kind_names())}); "
                f"got {type(spec).__name__}"
            )
        found = spec.modules(model)
        sites += [
            make_site(spec, path, module, spec.tag(path, len(found))) for path, module in found
        ]
    paths = [site.path for site in sites]
    twice = sorted({path for path in paths if paths.count(path) > 1})
    if twice:
        raise MSAInputError(
            f"each module may appear in one unit spec only; {', '.join(twice)} appear(s) twice"
        )
    return sites

"""Layer reuse for decoder-only transformers (HF ``*ForCausalLM``: ``model.layers``, ``model.norm``,
``lm_head``).

Coalitions that agree on every unit of layers ``0 .. l-1`` feed layer ``l`` the same residual
stream. A pass over C coalitions therefore runs layer ``l`` once per *group*: a distinct pattern
of the coalitions' units in layers ``0 .. l`` (layer l's groups split those of layer l-1 by the
units of layer l; a layer without units keeps them). The groups come from the keep matrix by
``np.unique``, so the order of the coalitions in a call does not matter: the prefixes of one
permutation (each adds one unit) share every layer before the added unit's layer, and prefixes
of different permutations share a layer's groups where they agree below it (e.g. "all of layer 0
intact"). Exact: every group runs the operations the plain forward runs for its coalitions; only
the number of rows per matmul changes (float32 rounding of a reordered sum, not more).

The residual stream entering layer 0 and the keyword arguments each layer receives (causal mask,
rotary embeddings) are recorded from plain forwards on 1 and 2 copies of the batch; tensors whose
first dimension doubles are per sample and are repeated per group. After the last layer the final
norm and the LM head run once per distinct coalition and only at the scored positions. The plan is
used only when every site lies inside a decoder layer and it reproduces the plain forward's logits
on the intact model (checked once, at construction); otherwise ``layer_plan`` returns None.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from msa_core.lesion.chain import contains
from msa_core.lesion.hooks import Hook, attached
from msa_core.lesion.inputs import Inputs, batch_size, call_model, repeat_batch
from msa_core.lesion.outputs import logits_of
from msa_core.lesion.plans import Plan
from msa_core.lesion.sites import Site, first_tensor

CACHES = (
    "cache",
    "past_key_values",
    "past_key_value",
)  # layer kwargs that must not carry a KV cache
CHECK_TOLERANCE = (
    1e-4  # relative: the intact plan's logits against the plain forward's (a structure check)
)

PerGroup = Callable[[int], Any]  # groups -> a layer argument for that many copies of the batch
LayerCall = tuple[
    tuple[PerGroup, ...], dict[str, PerGroup]
]  # a layer's positional and keyword arguments


def decoder_stack(model: nn.Module) -> tuple[list[nn.Module], nn.Module, nn.Module] | None:
    """``(decoder layers, final norm, LM head)`` of an HF causal LM laid out as ``model.layers`` /
    ``model.norm`` / ``lm_head``; None for any other model."""
    base = getattr(model, "model", None)
    layers, norm, head = (
        getattr(base, "layers", None),
        getattr(base, "norm", None),
        getattr(model, "lm_head", None),
    )
    if (
        isinstance(layers, nn.ModuleList)
        and len(layers)
        and isinstance(norm, nn.Module)
        and isinstance(head, nn.Module)
    ):
        return list(layers), norm, head
    return None


def accepts(model: nn.Module, argument: str) -> bool:
    """Whether ``model.forward`` names ``argument`` in its signature."""
    return argument in inspect.signature(model.forward).parameters


def head_options(model: nn.Module, inputs: Inputs, positions: torch.Tensor | None) -> dict | None:
    """``{"logits_to_keep": positions}`` for a whole-model plan of an HF causal LM, so that its LM
    head runs only at the scored positions; None when that does not apply."""
    if positions is None or not isinstance(inputs, dict) or "logits_to_keep" in inputs:
        return None
    return {"logits_to_keep": positions} if accepts(model, "logits_to_keep") else None


def _record(
    model: nn.Module, layers: list[nn.Module], inputs: dict
) -> tuple[Any, list[tuple | None]]:
    """A plain forward's output and, per layer, the ``(hidden_states, args, kwargs)`` it got."""
    seen: dict[int, tuple] = {}

    def recorder(index: int) -> Callable:
        def record(module: nn.Module, args: tuple, kwargs: dict) -> None:
            kwargs = dict(kwargs)
            hidden = args[0] if args else kwargs.pop("hidden_states", None)
            seen.setdefault(index, (hidden, args[1:], kwargs))

        return record

    with attached(
        [Hook(layer, recorder(i), pre=True, with_kwargs=True) for i, layer in enumerate(layers)]
    ):
        out = call_model(model, inputs)
    return out, [seen.get(i) for i in range(len(layers))]


def _per_group(one: Any, two: Any, rows: int) -> PerGroup | None:
    """How a layer argument seen with 1 and 2 copies of a batch of ``rows`` samples looks for G
    copies: per-sample tensors (first dimension doubled) repeated, everything else as it is. None
    when the two calls disagree in structure."""
    if isinstance(one, torch.Tensor) and isinstance(two, torch.Tensor):
        if (
            one.ndim
            and two.shape[0] == 2 * rows
            and one.shape[0] == rows
            and two.shape[1:] == one.shape[1:]
        ):
            return lambda groups: repeat_batch(one, groups)
        return (lambda groups: one) if two.shape == one.shape else None
    if isinstance(one, (tuple, list)) and isinstance(two, (tuple, list)) and len(one) == len(two):
        parts = [_per_group(a, b, rows) for a, b in zip(one, two, strict=True)]
        known = [part for part in parts if part is not None]
        if len(known) != len(parts):
            return None
        return lambda groups: type(one)(part(groups) for part in known)
    if isinstance(one, torch.Tensor) or isinstance(two, torch.Tensor):
        return None
    return lambda groups: one


def _pick(x: torch.Tensor, groups: np.ndarray, rows: int) -> torch.Tensor:
    """Copies ``groups`` (indices ``[G']``) of ``x [G * rows, ...]`` -> ``[G' * rows, ...]``."""
    index = torch.from_numpy(groups).to(x.device)
    return x.unflatten(0, (-1, rows)).index_select(0, index).flatten(0, 1)


class LayerReuse(Plan):
    """Runs each decoder layer once per group of coalitions that agree on the units up to it.

    The last coalition of each pass is carried to the next: its residual stream entering every
    layer is kept (``L + 1`` tensors ``[B, T, H]``), so a pass reruns no layer below the first one
    where its coalitions differ from that coalition. ``order`` sorts a call's coalitions so that
    passes follow each other in that way (lexicographically by units, layer 0 first).
    """

    name = "layer reuse"
    fewest_per_pass = (
        8  # default pass size at least this: a layer runs only the groups, so passes may be wider
    )

    def __init__(
        self,
        layers: list[nn.Module],
        norm: nn.Module,
        head: nn.Module,
        hidden: torch.Tensor,
        calls: list[tuple[tuple[PerGroup, ...], dict[str, PerGroup]]],
        sites: list[Site],
        site_layers: list[int],
        positions: torch.Tensor | None,
    ):
        self.layers, self.norm, self.head, self.hidden, self.calls = (
            layers,
            norm,
            head,
            hidden,
            calls,
        )
        self.rows = hidden.shape[0]
        self.hooked: list[Site] = []  # the plan attaches each layer's hooks around that layer only
        self.positions = positions
        self.sites = [
            [s for s, at in zip(sites, site_layers, strict=True) if at == i]
            for i in range(len(layers))
        ]
        self.columns = [
            np.concatenate([np.arange(s.offset, s.offset + (s.n_units or 0)) for s in here])
            if here
            else np.zeros(0, np.int64)
            for here in self.sites
        ]
        self.carried: tuple[np.ndarray, list[torch.Tensor]] | None = None  # (keep row [N], streams)

    def order(self, coalitions: np.ndarray) -> np.ndarray:
        """Order ``[C]`` to run coalitions ``[C, N]`` in: by layer 0's units, then 1's..."""
        keys = coalitions[:, np.concatenate(self.columns)]
        return np.lexsort(keys[:, ::-1].T)

    def run(self, keep: torch.Tensor) -> torch.Tensor:
        """keep: bool ``[C, N]`` -> logits ``[C * B, P, V]`` (P: scored positions, or all T)."""
        rows = keep.cpu().numpy()
        carried = self.carried
        if carried is not None:  # row 0: the carried coalition, whose streams are known
            rows = np.concatenate([carried[0][None], rows])
            keep = torch.cat([torch.from_numpy(carried[0][None]).to(keep.device), keep])
        group = np.zeros(len(rows), np.int64)  # each coalition's group at the current layer
        h, streams = self.hidden, []
        for i, (layer, (args, kwargs), sites, columns) in enumerate(
            zip(self.layers, self.calls, self.sites, self.columns, strict=True)
        ):
            if columns.size:
                key = np.concatenate([group[:, None], rows[:, columns]], axis=1)
                _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
                h = _pick(h, group[first], self.rows)
                group = inverse.ravel()
            else:
                first = np.unique(group, return_index=True)[1]
            streams.append(_pick(h, group[-1:], self.rows))
            run = (
                np.arange(len(first))
                if carried is None
                else np.delete(np.arange(len(first)), group[0])
            )
            if run.size:
                own = keep.index_select(0, torch.from_numpy(first[run]).to(keep.device))
                hooks = [hook for site in sites for hook in site.lesion_hooks(site.own(own))]
                x = h if carried is None else _pick(h, run, self.rows)
                with attached(hooks):
                    out = first_tensor(
                        layer(
                            x,
                            *(a(len(run)) for a in args),
                            **{k: v(len(run)) for k, v in kwargs.items()},
                        )
                    )
            if carried is None:
                h = out
            else:  # the carried coalition's group takes its known stream
                parts = h.unflatten(0, (-1, self.rows)).clone()
                parts[group[0]] = carried[1][i + 1]
                if run.size:
                    parts[torch.from_numpy(run).to(h.device)] = out.unflatten(0, (-1, self.rows))
                h = parts.flatten(0, 1)
        streams.append(_pick(h, group[-1:], self.rows))
        self.carried = (rows[-1].copy(), streams)
        if carried is not None:
            group = group[1:]
        if self.positions is not None:
            h = h.index_select(1, self.positions.to(h.device))
        return _pick(self.head(self.norm(h)), group, self.rows)


def _no_cache(kwargs: dict) -> dict:
    return {k: None if k in CACHES else False if k == "use_cache" else v for k, v in kwargs.items()}


def _layer_calls(once: list[tuple], twice: list[tuple], rows: int) -> list[LayerCall] | None:
    """Per layer, its positional and keyword arguments for G copies; None if any cannot be told."""
    calls: list[LayerCall] = []
    for (_, args, kwargs), (_, args2, kwargs2) in zip(once, twice, strict=True):
        kwargs, kwargs2 = _no_cache(kwargs), _no_cache(kwargs2)
        if len(args) != len(args2) or kwargs.keys() != kwargs2.keys():
            return None
        per_arg = [_per_group(a, b, rows) for a, b in zip(args, args2, strict=True)]
        per_kwarg = {k: _per_group(v, kwargs2[k], rows) for k, v in kwargs.items()}
        known_args = [a for a in per_arg if a is not None]
        known_kwargs = {k: v for k, v in per_kwarg.items() if v is not None}
        if len(known_args) != len(per_arg) or len(known_kwargs) != len(per_kwarg):
            return None
        calls.append((tuple(known_args), known_kwargs))
    return calls


def layer_plan(
    model: nn.Module, inputs: Inputs, sites: list[Site], positions: torch.Tensor | None
) -> LayerReuse | None:
    """A ``LayerReuse`` plan when it applies (see the module docstring), else None. Call under
    ``torch.inference_mode()`` and eval mode, after the sites are numbered (``n_units`` known)."""
    stack = decoder_stack(model)
    if stack is None or not isinstance(inputs, dict):
        return None
    layers, norm, head = stack
    paths = {id(module): path for path, module in model.named_modules()}
    layer_paths = [paths.get(id(layer)) for layer in layers]
    site_layers = [
        next((i for i, path in enumerate(layer_paths) if path and contains(path, s.path)), -1)
        for s in sites
    ]
    if -1 in site_layers:
        return None
    options = (
        {"use_cache": False} if accepts(model, "use_cache") and "use_cache" not in inputs else {}
    )
    rows = batch_size(inputs)
    plain, once = _record(model, layers, inputs | options)
    _, twice = _record(model, layers, dict(repeat_batch(inputs, 2)) | options)
    seen = [call for call in once + twice if call is not None]
    calls = _layer_calls(once, twice, rows) if len(seen) == 2 * len(layers) else None  # type: ignore[arg-type]
    if calls is None:
        return None
    plan = LayerReuse(layers, norm, head, seen[0][0], calls, sites, site_layers, positions)
    expected = logits_of(plain)
    if positions is not None:
        expected = expected.index_select(1, positions.to(expected.device))
    players = sum(s.n_units or 0 for s in sites)
    mine = plan.run(torch.ones(1, players, dtype=torch.bool, device=expected.device))
    scale = CHECK_TOLERANCE * float(expected.abs().max())
    if mine.shape != expected.shape or not torch.allclose(
        mine, expected, rtol=CHECK_TOLERANCE, atol=scale
    ):
        return None
    plan.carried = None  # so that the game's dry run measures a pass that runs every layer
    return plan

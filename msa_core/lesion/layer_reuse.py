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
the number of rows per matmul changes (float32 rounding of a reordered sum, not more). Passes
follow each other in sorted order and each carries its last coalition's streams to the next.

Within layer l, what runs before its first lesion depends on the layer's input only, so it runs
once per *parent* (distinct pattern of layers < l) and is repeated per copy (``shared_modules``);
fused experts lesioned by removal run once per parent too and are weighed per copy, and a layer
whose units are heads runs its attention once per parent up to the output projection. This
sharing is switched on only when it reproduces the unshared plan on test coalitions (one per layer
with units, on the batch's first ``SHARING_PROBE_ROWS`` rows).

The residual stream entering layer 0 and the keyword arguments each layer receives (causal mask,
rotary embeddings) are recorded from plain forwards on 1 and 2 copies of the batch; tensors whose
first dimension doubles are per sample and are repeated per group. After the last layer the final
norm and the LM head run once per distinct coalition of the call (not for a carried one) and only
at the scored positions; positions after the last scored one do not run at all (``up_to``: a
causal LM's earlier positions never see them). The plan is
used only when every site lies inside a decoder layer and it reproduces the plain forward's logits
on the intact model (checked once, at construction); otherwise ``layer_plan`` returns None.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from msa_core.lesion.chain import contains
from msa_core.lesion.hooks import ForwardPreHookWithKwargs, Hook, attached
from msa_core.lesion.inputs import Inputs, batch_size, call_model, repeat_batch
from msa_core.lesion.outputs import logits_of
from msa_core.lesion.plans import Plan
from msa_core.lesion.sites import ExpertSite, HeadSite, Site, first_tensor
from msa_core.units import Experts

# layer kwargs that must not carry a KV cache
CACHES = ("cache", "past_key_values", "past_key_value")
# relative: the plan's logits against the plain ones' (a check of structure, not of rounding)
CHECK_TOLERANCE = 1e-4
# rows of the batch on which sharing within layers is decided and checked (see ``layer_plan``)
SHARING_PROBE_ROWS = 2

# groups -> a layer argument for that many copies of the batch
PerGroup = Callable[[int], Any]
# a layer's positional and keyword arguments
LayerCall = tuple[tuple[PerGroup, ...], dict[str, PerGroup]]


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

    def recorder(index: int) -> ForwardPreHookWithKwargs:
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


class Sharing:
    """Forwards of a layer's modules for ``copies`` copies whose inputs agree within each parent:
    ``rep [P]`` is one copy per parent, ``expand [copies]`` each copy's parent among them."""

    def __init__(self, copies: int, rep: torch.Tensor, expand: torch.Tensor):
        self.copies, self.rep, self.expand = copies, rep, expand

    def _down(self, value: Any, rows: int) -> Any:
        if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == rows:
            return value.unflatten(0, (self.copies, -1)).index_select(0, self.rep).flatten(0, 1)
        if isinstance(value, (tuple, list)):
            return type(value)(self._down(v, rows) for v in value)
        return value

    def _up(self, value: Any, rows: int) -> Any:
        if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == rows:
            picked = value.unflatten(0, (len(self.rep), -1)).index_select(0, self.expand)
            return picked.flatten(0, 1)
        if isinstance(value, (tuple, list)):
            return type(value)(self._up(v, rows) for v in value)
        return value

    def once_per_parent(self, forward: Callable) -> Callable:
        """``forward`` run on one copy per parent, its output repeated for every copy. Tensor
        arguments with the first one's first dimension (the rows) are cut to those copies."""

        def shared(*args: Any, **kwargs: Any) -> Any:
            main = next((v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)), None)
            if main is None or not main.ndim or main.shape[0] % self.copies:
                return forward(*args, **kwargs)
            rows = main.shape[0]
            out = forward(
                *self._down(args, rows), **{k: self._down(v, rows) for k, v in kwargs.items()}
            )
            return self._up(out, rows // self.copies * len(self.rep))

        return shared

    def split_input(self, module: nn.Module, args: tuple) -> tuple | None:
        """Forward pre-hook: a first argument with one copy per parent repeated for every copy."""
        x = args[0]
        if not isinstance(x, torch.Tensor) or not x.ndim or x.shape[0] % len(self.rep):
            return None
        return (
            x.unflatten(0, (len(self.rep), -1)).index_select(0, self.expand).flatten(0, 1),
            *args[1:],
        )

    def weighted_per_copy(self, forward: Callable) -> Callable:
        """Fused experts ``forward(hidden, top_k_index, top_k_weights)``, linear in the weights, run
        once per parent and slot with weight 1; each copy then weighs the slots with its own weights
        (removed experts: weight 0). Needs the same top-k indices in every copy of a parent."""

        def weighted(
            hidden: torch.Tensor, index: torch.Tensor, weights: torch.Tensor
        ) -> torch.Tensor:
            if hidden.shape[0] % self.copies:
                return forward(hidden, index, weights)
            rows = hidden.shape[0]
            x, chosen = self._down(hidden, rows), self._down(index, rows)  # [P * R, ...]
            k = chosen.shape[1]
            ones = torch.ones(k * chosen.shape[0], 1, dtype=weights.dtype, device=weights.device)
            # one call, slot-major: row j * P * R + r is token r sent to its j-th expert alone
            slots = forward(x.repeat(k, 1), chosen.T.reshape(-1, 1), ones).unflatten(0, (k, -1))
            per_copy = self._up(slots.transpose(0, 1), x.shape[0])  # [copies * R, k, hidden]
            return (per_copy * weights[..., None].to(per_copy.dtype)).sum(1)

        return weighted


def shared_modules(
    layer: nn.Module, sites: list[Site], run_layer: Callable[[], Any]
) -> list[nn.Module]:
    """The largest submodules of ``layer`` whose every call ends before the first lesion of
    ``sites`` would act (seen in one call ``run_layer()``): their inputs depend on the layer's
    input only, so copies that enter the layer with the same stream can share their outputs."""
    events: list[tuple[str, int]] = []
    every = list(layer.named_modules())  # the layer itself too: a Layers unit lesions its output
    hooks = [Hook(m, lambda *a, m=m: events.append(("enter", id(m))), pre=True) for _, m in every]
    hooks += [Hook(m, lambda *a, m=m: events.append(("exit", id(m)))) for _, m in every]
    named = every[1:]
    with attached(hooks):
        run_layer()
    lesions = [
        hook
        for site in sites
        for hook in site.lesion_hooks(torch.ones(1, site.n_units or 0, dtype=torch.bool))
    ]
    points = [
        events.index(("enter" if h.pre else "exit", id(h.module)))
        for h in lesions
        if ("enter" if h.pre else "exit", id(h.module)) in events
    ]
    if not points:
        return []
    point = min(points)
    done = [
        (name, m)
        for name, m in named
        if ("exit", id(m)) in events[: point + 1] and ("enter", id(m)) not in events[point + 1 :]
    ]
    names = [name for name, _ in done]
    return [m for name, m in done if not any(name.startswith(f"{other}.") for other in names)]


class LayerReuse(Plan):
    """Runs each decoder layer once per group of coalitions that agree on the units up to it.

    The last coalition of each pass is carried to the next: its residual stream entering every
    layer is kept (``L + 1`` tensors ``[B, T, H]``), so a pass reruns no layer below the first one
    where its coalitions differ from that coalition. ``order`` sorts a call's coalitions so that
    passes follow each other in that way (lexicographically by units, layer 0 first).
    """

    name = "layer reuse"
    # Passes of a transformer do not fit CPU caches anyway; wider ones share more (each pass
    # recomputes the shared work of the groups it has in common with the carried coalition).
    cpu_budget = 256 << 20

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
        self.share = False  # set by layer_plan once sharing within layers is checked
        self.early: list[list[nn.Module]] = [[] for _ in layers]
        self.experts: list[list[nn.Module]] = [[] for _ in layers]
        self.splits: list[list[nn.Module]] = [[] for _ in layers]  # copies split at their input

    @contextmanager
    def _sharing(self, layer: int, parents: np.ndarray, device: torch.device) -> Iterator[None]:
        """While layer ``layer`` runs copies whose streams come from ``parents [G]``: the work
        before its first lesion is done once per parent (see ``shared_modules``)."""
        _, rep, expand = np.unique(parents, return_index=True, return_inverse=True)
        early, experts, splits = self.early[layer], self.experts[layer], self.splits[layer]
        if not self.share or len(rep) == len(parents) or not (early or experts):
            yield
            return
        shares = Sharing(
            len(parents),
            torch.from_numpy(rep).to(device),
            torch.from_numpy(expand.ravel()).to(device),
        )
        swapped = [(m, shares.once_per_parent(m.forward)) for m in early]
        swapped += [(m, shares.weighted_per_copy(m.forward)) for m in experts]
        handles = []
        # forwards set on the instance (e.g. accelerate's), put back afterwards
        own = [(module, module.__dict__.get("forward")) for module, _ in swapped]
        try:
            for module, forward in swapped:
                module.forward = forward
            for module in splits:  # before the lesion hooks there: they need every copy's rows
                handles.append(module.register_forward_pre_hook(shares.split_input, prepend=True))
            yield
        finally:
            for handle in handles:
                handle.remove()
            for module, before in own:  # back to the instance's own forward, or the class's
                if before is None:
                    del module.forward
                else:
                    module.forward = before

    def call_layer(self, index: int, x: torch.Tensor, groups: int) -> torch.Tensor:
        """Layer ``index`` on a stream ``x [groups * B, T, H]`` with its recorded arguments."""
        args, kwargs = self.calls[index]
        layer = self.layers[index]
        return first_tensor(
            layer(x, *(a(groups) for a in args), **{k: v(groups) for k, v in kwargs.items()})
        )

    def copy_bytes(self, sizes: list[tuple[nn.Module, int]]) -> int:
        """Layers run one after the other: a copy holds one layer's activations at a time (the
        largest layer's), its stream in and out, and what runs outside the layers (head, norm)."""
        layer_of = {id(m): i for i, layer in enumerate(self.layers) for m in layer.modules()}
        per_layer = np.zeros(len(self.layers), np.int64)
        outside = 0
        for module, size in sizes:
            if id(module) in layer_of:
                per_layer[layer_of[id(module)]] += size
            else:
                outside += size
        return outside + int(per_layer.max()) + 2 * self.hidden.nbytes

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
        for i, (sites, columns) in enumerate(zip(self.sites, self.columns, strict=True)):
            if columns.size:
                key = np.concatenate([group[:, None], rows[:, columns]], axis=1)
                _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
                parent = group[first]
                h = _pick(h, parent, self.rows)
                group = inverse.ravel()
            else:
                first = np.unique(group, return_index=True)[1]
                parent = np.arange(len(first))
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
                with attached(hooks), self._sharing(i, parent[run], x.device):
                    out = self.call_layer(i, x, len(run))
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
        needed, group = np.unique(group, return_inverse=True)  # the carried one may not be
        h = _pick(h, needed, self.rows)
        if self.positions is not None:
            h = h.index_select(1, self.positions.to(h.device))
        return _pick(self.head(self.norm(h)), group.ravel(), self.rows)


def up_to(inputs: dict, length: int) -> dict:
    """The first ``length`` positions of HF inputs whose tensors are ``[B, T]`` or ``[B, T, H]``
    (ids, masks, position ids, embeddings); the inputs as they are if any tensor has another shape.

    A causal LM's logits at positions below ``length`` do not depend on the positions dropped.
    """
    tensors = [v for v in inputs.values() if isinstance(v, torch.Tensor) and v.ndim]
    lengths = {v.shape[1] if v.ndim in (2, 3) else -1 for v in tensors}
    if len(lengths) != 1 or -1 in lengths or length >= lengths.pop():
        return inputs
    return {
        k: v[:, :length] if isinstance(v, torch.Tensor) and v.ndim else v for k, v in inputs.items()
    }


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
    ``torch.inference_mode()`` and eval mode, after the sites are numbered (``n_units`` known).

    The plan is checked against the plain forward on the whole batch (one coalition); which
    modules run once per parent (``_share_within_layers``: one coalition per layer with units) is
    decided and checked on the batch's first ``SHARING_PROBE_ROWS`` rows, since it depends on the
    layers' structure, not on their inputs (on SmolLM2's study task: 1.5 s instead of 13 s).
    """
    stack = decoder_stack(model)
    if stack is None or not isinstance(inputs, dict):
        return None
    layers = stack[0]
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
    built = _recorded_plan(model, stack, inputs, sites, site_layers, positions, options)
    if built is None:
        return None
    plan, _ = built
    expected = logits_of(call_model(model, inputs | options))
    if positions is not None:
        expected = expected.index_select(1, positions.to(expected.device))
    players = sum(s.n_units or 0 for s in sites)
    mine = plan.run(torch.ones(1, players, dtype=torch.bool, device=expected.device))
    scale = CHECK_TOLERANCE * float(expected.abs().max())
    if mine.shape != expected.shape or not torch.allclose(
        mine, expected, rtol=CHECK_TOLERANCE, atol=scale
    ):
        return None
    first_rows = {
        k: v[:SHARING_PROBE_ROWS] if isinstance(v, torch.Tensor) and v.ndim else v
        for k, v in inputs.items()
    }
    probe = _recorded_plan(model, stack, first_rows, sites, site_layers, positions, options)
    if probe is not None:
        _share_within_layers(*probe, players)
        plan.early, plan.splits, plan.experts, plan.share = (
            probe[0].early,
            probe[0].splits,
            probe[0].experts,
            probe[0].share,
        )
    plan.carried = None  # so that the game's dry run measures a pass that runs every layer
    return plan


def _recorded_plan(
    model: nn.Module,
    stack: tuple[list[nn.Module], nn.Module, nn.Module],
    inputs: dict,
    sites: list[Site],
    site_layers: list[int],
    positions: torch.Tensor | None,
    options: dict,
) -> tuple[LayerReuse, list[torch.Tensor]] | None:
    """The plan on ``inputs`` from plain forwards on 1 and 2 copies of them, and each layer's
    recorded input ``[B, T, H]``; None when a layer's arguments cannot be told apart per sample."""
    layers, norm, head = stack
    rows = batch_size(inputs)
    trimmed = inputs if positions is None else up_to(inputs, int(positions.max()) + 1)
    _, once = _record(model, layers, trimmed | options)
    _, twice = _record(model, layers, dict(repeat_batch(trimmed, 2)) | options)
    seen = [call for call in once + twice if call is not None]
    calls = _layer_calls(once, twice, rows) if len(seen) == 2 * len(layers) else None  # type: ignore[arg-type]
    if calls is None:
        return None
    plan = LayerReuse(layers, norm, head, seen[0][0], calls, sites, site_layers, positions)
    return plan, [call[0] for call in once]  # type: ignore[index]


def _share_within_layers(plan: LayerReuse, inputs: list[torch.Tensor], players: int) -> None:
    """Find each layer's shared modules (and fused experts weighed per copy), then switch sharing
    on if it reproduces the plain plan's logits on coalitions that lesion one unit of a layer."""
    for i, (layer, sites) in enumerate(zip(plan.layers, plan.sites, strict=True)):
        if sites:
            plan.early[i] = shared_modules(layer, sites, partial(plan.call_layer, i, inputs[i], 1))
            heads = [site for site in sites if isinstance(site, HeadSite)]
            if len(heads) == len(sites) == 1:  # the attention runs once per parent up to its o_proj
                inside = {id(m) for m in heads[0].module.modules()}
                plan.early[i] = [m for m in plan.early[i] if id(m) not in inside]
                plan.early[i].append(heads[0].module)
                plan.splits[i] = [heads[0].proj]
            plan.experts[i] = [
                site.experts
                for site in sites
                if isinstance(site, ExpertSite)
                and isinstance(site.spec, Experts)
                and site.spec.mode == "remove"
                and isinstance(site.experts, nn.Module)
            ]
    rows = np.ones((1 + sum(1 for c in plan.columns if c.size), players), dtype=bool)
    for row, columns in zip(rows[1:], [c for c in plan.columns if c.size], strict=True):
        row[columns[0]] = False
    keep = torch.from_numpy(rows).to(plan.hidden.device)
    plan.carried = None
    plain = plan.run(keep)
    plan.share, plan.carried = True, None
    shared = plan.run(keep)
    scale = CHECK_TOLERANCE * float(plain.abs().max())
    plan.share = bool(torch.allclose(shared, plain, rtol=CHECK_TOLERANCE, atol=scale))

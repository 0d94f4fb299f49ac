"""``ModelGame``: a PyTorch model as an MSA game whose players are its units.

>>> import numpy as np, torch
>>> from msa_core.units import Neurons
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> game = ModelGame(model, torch.randn(5, 4), Neurons("1"))
>>> game.player_names, game.output_shape
(['1.n0', '1.n1', '1.n2'], (5, 2))
>>> game(np.array([[True, True, True], [False, False, False]])).shape
torch.Size([2, 5, 2])
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from msa_core.checks import check_positive_int
from msa_core.errors import MSAInputError
from msa_core.games import Game
from msa_core.lesion.hooks import Hook, attached, eval_mode
from msa_core.lesion.inputs import (
    Inputs,
    batch_size,
    check_device,
    first_call,
    model_device,
)
from msa_core.lesion.layer_reuse import LayerReuse, head_options, layer_plan
from msa_core.lesion.outputs import ColumnScores, CustomOutput, make_output
from msa_core.lesion.plans import Plan, make_plan
from msa_core.lesion.sites import Site, bind
from msa_core.names import LESIONS
from msa_core.units import UnitSpec, check_unique

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
# bytes of activations per forward pass on CPU (cache-sized); on CUDA half the free memory
CPU_BUDGET = 8 << 20


class ModelGame(Game):
    """Values ``[C, B, ...]`` of a model on a fixed batch with each coalition's lesioned units
    knocked out.

    Args:
        model: any ``nn.Module``, run on its own device, in eval mode, under
            ``torch.inference_mode()``.
        inputs: a tensor ``[B, ...]`` or a dict of tensors ``[B, ...]`` (HF style,
            ``model(**inputs)``), on the model's device.
        units: a spec from ``msa_core.units`` or a list of them; players follow their order.
        output: a name from ``msa_core.lesion.NAMED_OUTPUTS``, ``fn(raw) -> tensor [C * B, ...]``,
            or a ``CustomOutput`` (``fn(raw, copies)``, told what the named outputs are told), or a
            ``ColumnScores`` (values read from an LM's logits at chosen positions, e.g. a
            ``TokenScores``: log-probs of chosen tokens there).
        lesion: ``"zero"``, or ``"mean"`` (each unit's mean over ``reference``, default ``inputs``;
            the means are kept in each site's ``fill``).
        labels: integer targets ``[B]`` or ``[B, T]`` for ``correct`` / ``target_logprob``.
        reference: inputs whose mean activations a ``"mean"`` lesion uses (default ``inputs``).
        memory_budget: bytes of activations per forward pass, which sets how many coalitions share
            one pass (default 8 MiB on CPU, where passes that fit the caches run fastest, or the
            plan's own ``cpu_budget``; half the free memory on CUDA). A pass that runs out of GPU
            memory is retried with half as many coalitions (down to one), and later passes keep the
            smaller number.
        coalitions_per_pass: that number directly.
        prefix_reuse, push_forward: False switches the shortcuts off (for measurements): prefix
            reuse covers chain models and, for decoder-only transformers, layer reuse
            (``msa_core.lesion.layer_reuse``).
        scored_positions: run an LM's head only at the positions the output reads (a
            ``ColumnScores``), and under layer reuse no position after the last of them.
        precision: ``"float32"``, or ``"bfloat16"`` / ``"float16"`` to run the passes under
            ``torch.autocast`` (meant for CUDA; values then differ from float32 by the half type's
            rounding, bounded in tests/test_lesion_reuse.py for dense models; an MoE token whose
            router scores tie within that rounding may switch experts, a jump, not a rounding
            error).

    Raises:
        MSAInputError: a model that is not an ``nn.Module``, an unknown lesion or output, inputs or
            labels on another device or of another batch size, unit specs naming modules that do not
            run, or a budget that is not a positive integer (all before any coalition is evaluated).

    Calling the game with bool coalitions ``[C, N]`` (True = intact) returns values ``[C, B, ...]``
    (``output_shape`` per coalition) on the model's device. Each call repeats the batch once per
    coalition (in chunks) and gives each copy its own mask through hooks that exist only during the
    call. ``forward_seconds`` accumulates the time spent running the model (hooks included), the
    rest of a call being mask and output handling.
    """

    output_shape: tuple[int, ...]  # one coalition's values [B, ...], from a dry run

    def __init__(
        self,
        model: nn.Module,
        inputs: Inputs,
        units: UnitSpec | Sequence[UnitSpec],
        output: str | CustomOutput | ColumnScores | Callable[[Any], torch.Tensor] = "logits",
        lesion: str = "zero",
        labels: torch.Tensor | None = None,
        reference: Inputs | None = None,
        memory_budget: int | None = None,
        coalitions_per_pass: int | None = None,
        prefix_reuse: bool = True,
        push_forward: bool = True,
        scored_positions: bool = True,
        precision: str = "float32",
    ):
        if not isinstance(model, nn.Module):
            raise MSAInputError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if lesion not in LESIONS:
            raise MSAInputError(f"unknown lesion {lesion!r}; allowed: {', '.join(LESIONS)}")
        if precision not in PRECISIONS:
            raise MSAInputError(
                f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}"
            )
        self.precision = precision
        self.model, self.inputs, self.lesion = model, inputs, lesion
        self.device = model_device(model)
        self.batch_size = batch_size(inputs)
        for name, value in (("inputs", inputs), ("labels", labels), ("reference", reference)):
            if value is not None:
                check_device(value, self.device, name)
        if labels is not None and batch_size(labels, "labels") != self.batch_size:
            raise MSAInputError(
                f"labels have batch size {labels.shape[0]} but inputs have {self.batch_size}"
            )
        self.sites: list[Site] = bind(model, units)
        for site in self.sites:
            site.check_lesion(lesion)
        self.output_fn = make_output(output, inputs, labels)
        self.forward_seconds = 0.0
        check_positive_int(memory_budget, "memory_budget", optional=True)
        check_positive_int(coalitions_per_pass, "coalitions_per_pass", optional=True)

        with torch.inference_mode(), eval_mode(model):
            if lesion == "mean" and reference is not None:
                self._probe(reference, with_mean=True)
            self._probe(inputs, with_mean=lesion == "mean" and reference is None)
            for site in self.sites:
                site.fill = site.mean if lesion == "mean" else None
            self._number_players()
            positions = getattr(self.output_fn, "positions", None) if scored_positions else None
            reuse = layer_plan(model, inputs, self.sites, positions) if prefix_reuse else None
            self.plan = reuse or make_plan(
                model,
                inputs,
                self.sites,
                prefix_reuse,
                push_forward,
                head_options(model, inputs, positions),
            )
            values, copy_bytes = self.dry_run(self.plan)
        self.output_shape = tuple(values.shape)
        self.memory_budget = memory_budget
        budget = memory_budget or self.default_budget()
        self.coalitions_per_pass = coalitions_per_pass or max(1, budget // copy_bytes)

    def _number_players(self) -> None:
        offset = 0
        for site in self.sites:
            site.offset, offset = offset, offset + site.size
        self.n_players = offset
        self.player_names = [name for site in self.sites for name in site.names()]
        check_unique(self.player_names)

    def evaluate(self, coalitions: np.ndarray) -> torch.Tensor:
        """bool ``[C, N]`` (True = intact) -> values ``[C, B, ...]`` on the model's device."""
        order = self.plan.order(coalitions) if isinstance(self.plan, LayerReuse) else None
        keep = torch.from_numpy(coalitions if order is None else coalitions[order]).to(self.device)
        parts: list[torch.Tensor] = []
        start = 0
        with torch.inference_mode(), eval_mode(self.model):
            while start < keep.shape[0]:
                step = self.coalitions_per_pass
                try:
                    parts.append(self._run(keep[start : start + step]))
                    start += step
                    continue
                except torch.OutOfMemoryError:
                    if step == 1:
                        raise
                self.coalitions_per_pass = step // 2  # the failed pass's tensors are freed by now
                if self.device is not None and self.device.type == "cuda":
                    torch.cuda.empty_cache()
        if len(parts) != 1:
            parts = [
                torch.cat(parts)
                if parts
                else torch.empty(0, *self.output_shape, device=self.device)
            ]
        values = parts[0].view(keep.shape[0], *self.output_shape)
        if order is None:
            return values
        return values.index_select(0, torch.from_numpy(np.argsort(order)).to(values.device))

    def with_gradients(self) -> Game:
        """This game with every unit's first-order marginal effect at each coalition
        (``msa_core.lesion.gradients.GradientGame``; values ``[C, N + 1, B, ...]``)."""
        from msa_core.lesion.gradients import GradientGame  # it builds on this module

        return GradientGame(self)

    def _run(self, keep: torch.Tensor, plan: Plan | None = None) -> torch.Tensor:
        """Values ``[C * B, ...]`` of one chunk ``keep [C, N]`` under ``plan`` (default: the
        game's)."""
        plan = plan or self.plan
        hooks = [hook for site in plan.hooked for hook in site.lesion_hooks(site.own(keep))]
        start = time.perf_counter()
        with attached(hooks), self.autocast():
            raw = plan.run(keep)
        if raw_device := getattr(raw, "device", None):
            if raw_device.type == "cuda":
                torch.cuda.synchronize(raw_device)
        self.forward_seconds += time.perf_counter() - start
        return self.output_values(raw, keep.shape[0])

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The passes' precision: ``torch.autocast`` to the half type of ``precision``, or
        nothing for float32."""
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type if self.device else "cpu", dtype=dtype)

    def output_values(self, raw: Any, copies: int) -> torch.Tensor:
        """The output ``[copies * B, ...]`` of the model's raw output for ``copies`` input copies,
        checked."""
        values = self.output_fn(raw, copies)
        if (
            not isinstance(values, torch.Tensor)
            or values.ndim == 0
            or values.shape[0] != copies * self.batch_size
        ):
            shape = (
                list(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            )
            raise MSAInputError(
                f"the output must map the model's output to a tensor [C * B, ...] = "
                f"[{copies * self.batch_size}, ...]; got {shape}"
            )
        return values

    def _probe(self, inputs: Inputs, with_mean: bool) -> None:
        """One unrepeated forward in which every site learns its unit count (and mean
        activation)."""
        for site in self.sites:
            site.n_units = None
        with attached([hook for site in self.sites for hook in site.probe_hooks(with_mean)]):
            first_call(self.model, inputs)
        silent = [site.path for site in self.sites if site.n_units is None]
        if silent:
            raise MSAInputError(
                f"module(s) {', '.join(silent)} never ran when the model ran on the inputs; "
                "unit specs must name modules the forward pass calls"
            )

    def dry_run(self, plan: Plan) -> tuple[torch.Tensor, int]:
        """``plan`` run on one all-intact copy: its values ``[B, ...]`` and an upper bound on the
        activation memory per copy (from the bytes of every leaf module's outputs, as the plan
        holds them at once, plus the values)."""
        sizes: list[tuple[nn.Module, int]] = []

        def count(module: nn.Module, args: tuple, out: Any) -> None:
            sizes.extend(
                (module, t.nbytes)
                for t in (out if isinstance(out, (tuple, list)) else [out])
                if isinstance(t, torch.Tensor)
            )

        leaves = [Hook(m, count) for m in self.model.modules() if next(m.children(), None) is None]
        with attached(leaves):
            values = self._run(
                torch.ones(1, self.n_players, dtype=torch.bool, device=self.device), plan
            )
        self.forward_seconds = 0.0
        return values, plan.copy_bytes(sizes) + values.nbytes

    def default_budget(self) -> int:
        """Activation bytes per pass when none is given (``memory_budget``)."""
        if self.device is not None and self.device.type == "cuda":
            return torch.cuda.mem_get_info(self.device)[0] // 2
        return getattr(self.plan, "cpu_budget", CPU_BUDGET)

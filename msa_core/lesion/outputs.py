"""Named outputs: per-sample values ``[C * B, ...]`` from the model's raw output for C input copies.

``logits`` (a tensor output, ``.logits`` of an HF output, or the first element of a tuple),
``probs`` and ``log_probs`` (softmax over the last dim, float32), ``correct`` (1.0 where the argmax
hits the target, else 0.0), ``target_logprob`` (float32 log-probability of the target), ``image`` (a
generator's output tensor as is). Targets are ``labels`` (one class per sample ``[B]``, or one per
position ``[B, T]``); without labels, an LM fed ``input_ids [B, T]`` is scored on the next token,
giving ``[B, T - 1]`` values per copy. A callable ``output(raw) -> tensor [C * B, ...]`` is used as
is; a ``CustomOutput(fn)`` is told what the named outputs are told, ``fn(raw, copies)``.
Per-position targets make a ``TokenScores``, whose ``positions`` let a plan compute the LM head only
where it is read; a ``TokenScores`` built by hand scores any positions. A ``ColumnScores`` reads the
logits at some positions with a function of its own (a task's per-example targets,
``msa_core.tasks``), and lets plans skip the other positions likewise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from msa_core.errors import MSAInputError
from msa_core.lesion.inputs import Inputs, repeat_batch

OutputFn = Callable[[Any, int], torch.Tensor]  # (raw output for C copies, C) -> values [C * B, ...]
NAMED_OUTPUTS = ("logits", "probs", "log_probs", "correct", "target_logprob", "image")


@dataclass(frozen=True)
class CustomOutput:
    """A custom output that receives what the named outputs receive: ``fn(raw, copies)``.

    ``raw`` is the model's output for ``copies`` copies of the batch (copy-major), ``fn`` returns
    values ``[copies * B, ...]``. Build it from a named output (``make_output``) to reuse its
    scoring.
    """

    fn: OutputFn


def logits_of(raw: Any) -> torch.Tensor:
    """The logits tensor of a raw model output."""
    if isinstance(raw, torch.Tensor):
        return raw
    logits = getattr(raw, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], torch.Tensor):
        return raw[0]
    raise MSAInputError(
        f"cannot find logits in a model output of type {type(raw).__name__}; expected a tensor, an "
        "object with .logits or a tuple starting with a tensor. Pass output=callable(raw) -> "
        "tensor instead"
    )


def image_of(raw: Any) -> torch.Tensor:
    """A generator's output tensor."""
    if not isinstance(raw, torch.Tensor):
        raise MSAInputError(
            f"output='image' needs a model that returns a tensor; got {type(raw).__name__}"
        )
    return raw


def make_output(
    output: str | CustomOutput | ColumnScores | Callable[[Any], torch.Tensor],
    inputs: Inputs,
    labels: torch.Tensor | None,
) -> OutputFn:
    """The function mapping ``(raw output, copies)`` to values ``[copies * B, ...]``.

    Args:
        output: a name of ``NAMED_OUTPUTS``, a ``CustomOutput``, a ``TokenScores``, or a callable
            ``fn(raw)``.
        inputs: the batch the model runs on (``input_ids`` give next-token targets).
        labels: integer targets ``[B]`` or ``[B, T]`` for ``correct`` / ``target_logprob``, or None.

    Returns:
        ``fn(raw, copies) -> values [copies * B, ...]``.

    Raises:
        MSAInputError: an unknown name, or targets the output needs and cannot find.
    """
    if isinstance(output, CustomOutput):
        return output.fn
    if isinstance(output, ColumnScores):
        return output
    if callable(output):
        return lambda raw, copies: output(raw)
    if output not in NAMED_OUTPUTS:
        raise MSAInputError(
            f"unknown output {output!r}; allowed: {', '.join(NAMED_OUTPUTS)}, or a callable"
        )
    if output == "image":
        return lambda raw, copies: image_of(raw)
    if output == "logits":
        return lambda raw, copies: logits_of(raw)
    if output == "probs":
        return lambda raw, copies: logits_of(raw).float().softmax(-1)
    if output == "log_probs":
        return lambda raw, copies: logits_of(raw).float().log_softmax(-1)
    targets, next_token = _targets(output, inputs, labels)
    if targets.ndim == 2:  # a target per position: the LM head is needed only where one is scored
        positions = torch.arange(targets.shape[1], device=targets.device)
        return TokenScores(
            positions,
            targets,
            correct=output == "correct",
            name=output,
            length=targets.shape[1] + next_token,
        )
    in_range: list[int] = []  # the class count the targets were checked against (on the first call)

    def scored(raw: Any, copies: int) -> torch.Tensor:
        logits = logits_of(raw)
        wanted = repeat_batch(targets, copies)
        if logits.shape[:-1] != wanted.shape:
            raise MSAInputError(
                f"output={output!r}: logits {list(logits.shape)} do not fit targets "
                f"{list(wanted.shape)}; labels must have the logits' shape without the last "
                "(class) dimension"
            )
        if in_range != [logits.shape[-1]]:
            _check_range(targets, logits.shape[-1])
            in_range[:] = [logits.shape[-1]]
        if output == "correct":
            return (logits.argmax(-1) == wanted).float()
        return logits.float().log_softmax(-1).gather(-1, wanted[..., None]).squeeze(-1)

    return scored


def _check_range(targets: torch.Tensor, classes: int) -> None:
    low, high = int(targets.min()), int(targets.max())
    if low < 0 or high >= classes:
        raise MSAInputError(
            f"labels must be class indices from 0 to {classes - 1} (the logits "
            f"have {classes} classes); got values from {low} to {high}"
        )


class ColumnScores:
    """An output that reads a language model's logits at some positions only.

    ``positions``: long ``[P]``, the sequence positions read (the same for every sample);
    ``fn(logits [C * B, P, V]) -> values [C * B, ...]``. Called on a raw output whose logits cover
    only those positions ``[C * B, P, V]`` (a plan that knows ``positions`` computes the LM head
    only there, and may drop the positions after the last one, which a causal model's earlier
    positions never see) or every position ``[C * B, T, V]``, from which it picks them.
    """

    def __init__(
        self,
        positions: torch.Tensor,
        fn: Callable[[torch.Tensor], torch.Tensor],
        name: str = "output",
    ):
        if positions.ndim != 1 or positions.numel() == 0:
            raise MSAInputError(f"{name}: positions must be [P] with P >= 1")
        self.positions, self.fn, self.name = positions, fn, name

    def columns(self, raw: Any) -> torch.Tensor:
        """The logits of ``raw`` at ``positions``: ``[C * B, P, V]``."""
        logits = logits_of(raw)
        if logits.ndim == 3 and logits.shape[1] != self.positions.shape[0]:
            if logits.shape[1] <= int(self.positions.max()):
                raise MSAInputError(
                    f"output={self.name!r}: logits {list(logits.shape)} do not reach position "
                    f"{int(self.positions.max())}"
                )
            logits = logits.index_select(1, self.positions.to(logits.device))
        return logits

    def __call__(self, raw: Any, copies: int) -> torch.Tensor:
        return self.fn(self.columns(raw))


class TokenScores(ColumnScores):
    """Output of a language model scored at some positions: values ``[C * B, P]``.

    ``positions``: long ``[P]``, the sequence positions whose logits are read (the same for every
    sample); ``targets``: long ``[B, P]``, the token scored at each of them. Values: the float32
    log-probability of the target (``correct=False``) or 1.0 where the argmax is the target.
    Called on a raw output whose logits cover every position ``[C * B, T, V]`` (T = ``length`` when
    given, else any T past the last position) or only the scored ones ``[C * B, P, V]``; plans that
    know ``positions`` compute the LM head only there.
    """

    def __init__(
        self,
        positions: torch.Tensor,
        targets: torch.Tensor,
        correct: bool = False,
        name: str = "target_logprob",
        length: int | None = None,
    ):
        if positions.ndim != 1 or targets.ndim != 2 or targets.shape[1] != positions.shape[0]:
            raise MSAInputError(
                f"{name}: positions must be [P] and targets [B, P]; "
                f"got {list(positions.shape)} and {list(targets.shape)}"
            )
        super().__init__(positions, self._score, name)
        self.targets, self.correct, self.length = targets, correct, length
        self._in_range: int | None = None  # the class count the targets were checked against

    def columns(self, raw: Any) -> torch.Tensor:
        logits = logits_of(raw)
        if (
            self.length
            and logits.ndim == 3
            and logits.shape[1] not in (self.length, len(self.positions))
        ):
            raise MSAInputError(
                f"output={self.name!r}: logits {list(logits.shape)} cover neither the "
                f"{self.length} positions of the inputs nor the {len(self.positions)} scored ones"
            )
        return super().columns(raw) if logits.ndim == 3 else logits

    def _score(self, logits: torch.Tensor) -> torch.Tensor:
        wanted = repeat_batch(self.targets, logits.shape[0] // self.targets.shape[0])
        if logits.shape[:-1] != wanted.shape:
            raise MSAInputError(
                f"output={self.name!r}: logits {list(logits.shape)} do not fit targets "
                f"{list(wanted.shape)}; "
                "labels must have the logits' shape without the last (class) dimension"
            )
        if self._in_range != logits.shape[-1]:
            _check_range(self.targets, logits.shape[-1])
            self._in_range = logits.shape[-1]
        if self.correct:
            return (logits.argmax(-1) == wanted).float()
        return logits.float().log_softmax(-1).gather(-1, wanted[..., None]).squeeze(-1)


def _targets(output: str, inputs: Inputs, labels: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
    """Target indices ``[B, ...]`` and whether they are next tokens of ``input_ids``."""
    if labels is not None:
        if (
            not isinstance(labels, torch.Tensor)
            or labels.dtype.is_floating_point
            or labels.dtype == torch.bool
        ):
            raise MSAInputError("labels must be an integer tensor of class indices [B] or [B, T]")
        return labels, False
    if isinstance(inputs, dict) and isinstance(inputs.get("input_ids"), torch.Tensor):
        return inputs["input_ids"][:, 1:], True
    raise MSAInputError(
        f"output={output!r} needs targets: pass labels= (a class per sample [B] or per position "
        "[B, T]), or HF inputs with 'input_ids' to score the next token"
    )

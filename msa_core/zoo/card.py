"""``ModelCard`` (what a bundled model is, without loading it) and ``LoadedModel`` (it, ready to
play)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from msa_core.errors import MSAInputError
from msa_core.lesion import CustomOutput, ModelGame
from msa_core.lesion.outputs import ColumnScores
from msa_core.units import UnitSpec
from msa_core.zoo.weights import weights_path

# (the game's inputs, labels) -> its output
OutputFactory = Callable[[Any, "torch.Tensor | None"], CustomOutput | ColumnScores]


@dataclass(frozen=True)
class ModelCard:
    """What a bundled model is, without loading it.

    ``outputs`` lists output names (the first is the default); a name is either one of
    ``msa_core.lesion.NAMED_OUTPUTS`` or a key of ``output_fns`` (a family's own output, e.g. the
    per-language mean log-prob of an LM), built for the game's own inputs and labels so that it
    never scores other inputs against the defaults' labels. ``train`` runs the family's
    deterministic recipe.
    """

    name: str
    family: str
    description: str
    granularities: dict[str, tuple[UnitSpec, ...]]  # e.g. {"hidden neurons": (Neurons("hidden"),)}
    outputs: tuple[str, ...]
    build: Callable[[], nn.Module] = field(repr=False)
    # default inputs and labels
    data: Callable[[], tuple[Any, torch.Tensor | None]] = field(repr=False)
    train: Callable[[], nn.Module] = field(repr=False)
    output_fns: dict[str, OutputFactory] = field(default_factory=dict, repr=False)
    facts: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None  # a checkpoint folder in the model store (fetched LLMs)

    @property
    def bundled(self) -> bool:
        """Whether its weights are here: in ``assets/``, or in its checkpoint folder."""
        if self.checkpoint is not None:
            return Path(self.checkpoint, "model.safetensors").exists()
        return weights_path(self.name).exists()


@dataclass
class LoadedModel:
    """A bundled model in eval mode with its default inputs, ready to become a game."""

    card: ModelCard
    model: nn.Module
    inputs: Any
    labels: torch.Tensor | None
    digest: str  # sha256 of the weights: the model's identity in the run store
    tokenizer: Any = None  # a language model's tokenizer, when it has one
    task: Any = None  # the ``msa_core.tasks.EncodedTask`` its inputs are, when they are a task

    def units(self, granularity: str | None = None) -> tuple[UnitSpec, ...]:
        """The unit specs of a granularity (default: the first)."""
        granularity = granularity or next(iter(self.card.granularities))
        if granularity not in self.card.granularities:
            raise MSAInputError(
                f"model {self.card.name!r} has no granularity {granularity!r}; "
                f"allowed: {', '.join(self.card.granularities)}"
            )
        return self.card.granularities[granularity]

    def game(
        self,
        granularity: str | None = None,
        output: str | None = None,
        lesion: str = "zero",
        inputs: Any = None,
        labels: torch.Tensor | None = None,
    ) -> ModelGame:
        """A ``ModelGame`` over the units of ``granularity`` with values ``output`` (default inputs
        unless given)."""
        output = output or self.card.outputs[0]
        if output not in self.card.outputs:
            raise MSAInputError(
                f"model {self.card.name!r} has no output {output!r}; "
                f"allowed: {', '.join(self.card.outputs)}"
            )
        if inputs is None:
            inputs, labels = self.inputs, self.labels
        factory = self.card.output_fns.get(output)
        return ModelGame(
            self.model,
            inputs,
            list(self.units(granularity)),
            output=output if factory is None else factory(inputs, labels),
            lesion=lesion,
            labels=labels,
        )

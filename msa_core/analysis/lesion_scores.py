"""How a lesion is scored for each kind of model: one rule the Lesion lab (and anything else that
lesions units by hand) reads instead of deciding it itself.

``lesion_score(loaded)`` names the output a lesion curve plays and what its score is: accuracy for a
classifier (logits and one class label per input), the mean log-prob of the targets for a model with
``target_logprob`` (the byte-level LM), else the mean absolute change of the default output against
the intact model (generators, encoders, ...). ``LesionScore.evaluate`` turns a game's values
``[C, B, ...]`` into one score per coalition ``[C]``. ``lesion_view(loaded)`` says which of the
lab's views shows the lesioned output.

>>> score = LesionScore("target_logprob", "mean log-prob per byte")
>>> score.evaluate(np.array([[[-1.0, -3.0]], [[-2.0, -2.0]]]), np.zeros((1, 1, 2)), None).tolist()
[-2.0, -2.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from msa_core.analysis.modes import classification
from msa_core.zoo import LoadedModel

LesionView = Literal["classifier", "image", "language model", "none"]


@dataclass(frozen=True)
class LesionScore:
    """The output a lesion is scored on and the score's name (e.g. ``"accuracy"``)."""

    output: str
    name: str

    def evaluate(
        self, values: np.ndarray, intact: np.ndarray, labels: torch.Tensor | np.ndarray | None
    ) -> np.ndarray:
        """One score per coalition ``[C]`` from the game's values ``[C, B, ...]``.

        Args:
            values: the output of ``output`` for C coalitions, ``[C, B, ...]``.
            intact: the same output with every unit intact, ``[1, B, ...]``.
            labels: the class of each input ``[B]`` (classifiers only).
        """
        if self.name == "accuracy":
            return classification(values, labels)[1]
        if self.output == "target_logprob":
            return values.reshape(len(values), -1).mean(1)
        return np.abs(values - intact).reshape(len(values), -1).mean(1)


def is_classifier(loaded: LoadedModel) -> bool:
    """A model with logits and one class label per input (predictions and accuracy make sense)."""
    return "logits" in loaded.card.outputs and loaded.labels is not None and loaded.labels.ndim == 1


def lesion_score(loaded: LoadedModel) -> LesionScore:
    """The output and score of a lesion curve of ``loaded`` (see the module docstring)."""
    if is_classifier(loaded):
        return LesionScore("logits", "accuracy")
    if "target_logprob" in loaded.card.outputs:
        return LesionScore("target_logprob", "mean log-prob per byte")
    return LesionScore(loaded.card.outputs[0], "mean |change| of the output")


def lesion_view(loaded: LoadedModel) -> LesionView:
    """Which view shows the lesioned output: predictions and per-class accuracy (classifiers),
    images (generators), per-token log-probs and continuations (the bundled byte-level LM), or
    none."""
    if is_classifier(loaded):
        return "classifier"
    if "image" in loaded.card.outputs:
        return "image"
    if loaded.card.family == "moe":
        return "language model"
    return "none"

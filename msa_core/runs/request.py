"""``RunRequest``: everything that determines a run's result, and its fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from msa_core.checks import check_known_fields, check_method, check_positive_int, check_seed
from msa_core.errors import MSAInputError
from msa_core.estimators.plan import RunPlan, request_budget
from msa_core.estimators.stopping import TopK
from msa_core.lesion.game import LESIONS
from msa_core.lesion.inputs import Inputs
from msa_core.version import __version__
from msa_core.zoo import HF_PREFIX, LoadedModel, get_card, load_model, scored_on
from msa_core.zoo.weights import tensor_digest

STORE_FORMAT = 1  # bump when stored entries change meaning; older entries are then recomputed
# target fields with their defaults: left out of fingerprints, which stay as before targets existed
TARGET_FIELDS: dict[str, Any] = {"top_k": None, "per_group": False}


@dataclass(frozen=True)
class RunRequest:
    """A run of a bundled model: which units, lesion, output, estimator, budget and seed.

    Args:
        model: a bundled model's name (``msa_core.zoo.list_models``) or ``"hf:<folder>"``.
        units: one of the model's granularities (None: its first).
        output: one of the model's outputs (None: its first).
        lesion: ``"zero"`` or ``"mean"`` (``LESIONS``).
        method: ``"auto"`` or an estimator name (``METHODS``).
        n_permutations, max_evaluations: the budget, as in ``shapley_modes`` (positive integers
            or None).
        seed: the estimator's seed (a non-negative integer).
        task: a task file (``.jsonl``/``.csv``) or bundled task set that a language model is scored
            on (``msa_core.tasks``); for a sentence encoder a pairs file (``zoo.encoder``), for an
            image classifier a folder with ``labels.csv`` (``zoo.vision``). Its content hash, not
            its path, is part of the run's identity.
        top_k: stop as soon as the top_k units of highest score are resolved at 95% (a
            ``stopping.TopK`` target; the budget is the most the run may use); None: no target.
        per_group: with ``top_k``, one top k per index of the first output axis.

    Raises:
        MSAInputError: a field out of its allowed values (units and output are checked against the
            model by ``resolved``).
    """

    model: str
    units: str | None = None
    output: str | None = None
    lesion: str = "zero"
    method: str = "auto"
    n_permutations: int | None = None
    max_evaluations: int | None = None
    seed: int = 0
    task: str | None = None
    top_k: int | None = None
    per_group: bool = False

    def __post_init__(self) -> None:
        if self.lesion not in LESIONS:
            raise MSAInputError(f"unknown lesion {self.lesion!r}; allowed: {', '.join(LESIONS)}")
        check_method(self.method)
        for name in ("n_permutations", "max_evaluations"):
            check_positive_int(getattr(self, name), name, optional=True)
        check_seed(self.seed)
        for name in (
            "n_permutations",
            "max_evaluations",
            "seed",
        ):  # numpy integers as ints: JSON-ready
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, int(value))
        check_positive_int(self.top_k, "top_k", optional=True)
        if self.top_k is not None:
            object.__setattr__(self, "top_k", int(self.top_k))
        if not isinstance(self.per_group, bool) or (self.per_group and self.top_k is None):
            raise MSAInputError(
                f"per_group must be True (with top_k) or False; got {self.per_group!r}"
            )
        if self.task is not None and (not isinstance(self.task, str) or not self.task):
            raise MSAInputError(
                f"task must be a task file path or a bundled task name; got {self.task!r}"
            )

    def check_names(self) -> None:
        """Refuse an unknown model, granularity or output from the model's card alone, before any
        weights or data load (an ``hf:`` folder's are checked as it loads).

        Raises:
            MSAInputError: naming what is unknown and what is allowed.
        """
        if self.model.startswith(HF_PREFIX):
            return
        card = get_card(self.model)
        if self.units is not None and self.units not in card.granularities:
            raise MSAInputError(
                f"model {self.model!r} has no granularity {self.units!r}; "
                f"allowed: {', '.join(card.granularities)}"
            )
        if self.task is None and self.output is not None and self.output not in card.outputs:
            raise MSAInputError(
                f"model {self.model!r} has no output {self.output!r}; "
                f"allowed: {', '.join(card.outputs)}"
            )

    def load(self) -> LoadedModel:
        """The request's model (cached per process), with its task as inputs when it names one."""
        loaded = load_model(self.model)
        return loaded if self.task is None else scored_on(loaded, self.task)

    def resolved(self, loaded: LoadedModel) -> RunRequest:
        """The request with the model's default granularity and output filled in (and both
        checked)."""
        units = self.units or next(iter(loaded.card.granularities))
        loaded.units(units)
        output = self.output or loaded.card.outputs[0]
        if output not in loaded.card.outputs:
            raise MSAInputError(
                f"model {self.model!r} has no output {output!r}; "
                f"allowed: {', '.join(loaded.card.outputs)}"
            )
        return replace(self, units=units, output=output)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRequest:
        """The request ``to_dict`` gave (unknown keys are an ``MSAInputError``)."""
        check_known_fields(data, cls.__dataclass_fields__, "run request")
        return cls(**data)

    def budget(self, n_players: int) -> int:
        """Evaluations the run may use, full and empty coalitions included, as ``shapley_modes``
        counts them (``plan.request_budget``: 2^N for exact).
        """
        return request_budget(self.method, n_players, self.n_permutations, self.max_evaluations)

    def plan(self, n_players: int) -> RunPlan:
        """The run plan of this request on a game of ``n_players`` (see ``RunPlan.make``; raises the
        same errors).
        """
        return RunPlan.make(
            self.method,
            n_players,
            self.n_permutations,
            self.max_evaluations,
            self.seed,
            None if self.top_k is None else TopK(self.top_k, self.per_group),
        )

    def fingerprint(self, loaded: LoadedModel) -> str:
        """sha256 of everything that determines the result: weights, inputs, units, request,
        versions.
        """
        request = self.resolved(loaded)
        fields = {
            key: value
            for key, value in request.to_dict().items()
            if key != "task"  # its path: no
            and not (key in TARGET_FIELDS and value == TARGET_FIELDS[key])  # as before targets
        }
        payload = {
            "format": STORE_FORMAT,
            "request": fields,
            "weights": loaded.digest,
            "inputs": inputs_digest(loaded.inputs, loaded.labels),
            "units": [repr(spec) for spec in loaded.units(request.units)],
            "versions": {
                "msa_core": __version__,
                "torch": torch.__version__,
                "numpy": np.__version__,
            },
        }
        if loaded.task is not None:  # the task's content, whatever file it came from
            payload["task"] = loaded.task.task.digest()
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def family(self) -> RunRequest:
        """The request without its budget: runs of one family can extend each other."""
        return replace(self, n_permutations=None, max_evaluations=None)


def inputs_digest(inputs: Inputs, labels: torch.Tensor | None) -> str:
    """sha256 of the input tensors (a tensor or the tensors of a dict) and the labels."""
    tensors = dict(inputs) if isinstance(inputs, dict) else {"inputs": inputs}
    if labels is not None:
        tensors["labels"] = labels
    return tensor_digest(
        {key: value for key, value in tensors.items() if isinstance(value, torch.Tensor)}
    )

"""``ZooGame``: the recipe of a bundled model's game, built where it is played (e.g. on a Ray
worker).

Shipping the recipe instead of the game loads the model once per worker, on the worker's GPU when it
has one, instead of sending the model.

>>> ZooGame("mlp-digits-h32-none-s0", "hidden neurons").build().n_players
32
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

import torch

from msa_core.games import GameFactory
from msa_core.lesion import ModelGame
from msa_core.zoo import LoadedModel, load_model


@dataclass
class ZooGame(GameFactory):
    """A bundled model's game (``msa_core.zoo``): model name, granularity, output, lesion, and for a
    language model optionally a task."""

    name: str
    granularity: str | None = None
    output: str | None = None
    lesion: str = "zero"
    task: str | None = None  # a task file or bundled task set (msa_core.tasks) for a language model

    def build(self, loaded: LoadedModel | None = None) -> ModelGame:
        """The game, on this process's GPU when it has one (the cached model stays on the CPU).

        Args:
            loaded: this recipe's model, already loaded and scored on its task (so the task is
                parsed once per run: ``runs.prepared``); None loads both here (e.g. on a worker).
        """
        if loaded is None:
            loaded = load_model(self.name)
            if self.task is not None:
                from msa_core.zoo import scored_on

                loaded = scored_on(loaded, self.task)
        if torch.cuda.is_available():
            device = torch.device("cuda")
            loaded = replace(
                loaded,
                model=copy.deepcopy(loaded.model).to(device),
                inputs=on_device(loaded.inputs, device),
                labels=on_device(loaded.labels, device),
            )
        return loaded.game(self.granularity, self.output, self.lesion)


def on_device(tensors: Any, device: torch.device) -> Any:
    """A tensor, a dict of tensors or None, moved to ``device``."""
    if isinstance(tensors, dict):
        return {key: value.to(device) for key, value in tensors.items()}
    return tensors.to(device) if tensors is not None else None

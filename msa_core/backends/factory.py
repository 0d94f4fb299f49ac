"""Games built where they are played: what a distributed backend ships to its workers.

A ``ModelGame`` holds a model (possibly large, possibly meant for a GPU the driver lacks); shipping
a small recipe and building the game on each worker loads the model once per worker instead of
sending it. ``GameFactory`` wraps any picklable ``build() -> game``; ``ZooGame`` names a bundled model.

>>> ZooGame("mlp-digits-h32-none-s0", "hidden neurons").build().n_players
32
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from msa_core.lesion import ModelGame


class GameFactory:
    """A picklable recipe ``build() -> game`` (a ``Game`` or a callable with ``n_players`` given to the run)."""

    def __init__(self, build: Callable[[], Any]):
        self._build = build

    def build(self) -> Any:
        """The game, built in this process."""
        return self._build()


@dataclass
class ZooGame(GameFactory):
    """A bundled model's game (``msa_core.zoo``), on the worker's GPU when it has one."""

    name: str
    granularity: str | None = None
    output: str | None = None
    lesion: str = "zero"
    task: str | None = None  # a task file or bundled task set (msa_core.tasks) for a language model

    def build(self) -> ModelGame:
        from msa_core.zoo import load_model  # the zoo loads data and weights: only where the game is built

        loaded = load_model(self.name)
        if self.task is not None:
            from msa_core.tasks import with_task

            loaded = with_task(loaded, self.task)
        if torch.cuda.is_available():  # a copy on the GPU: the cached model stays on the CPU
            device = torch.device("cuda")
            loaded = replace(loaded, model=copy.deepcopy(loaded.model).to(device),
                             inputs=on_device(loaded.inputs, device), labels=on_device(loaded.labels, device))
        return loaded.game(self.granularity, self.output, self.lesion)


def on_device(tensors: Any, device: torch.device) -> Any:
    """A tensor, a dict of tensors or None, moved to ``device``."""
    if isinstance(tensors, dict):
        return {key: value.to(device) for key, value in tensors.items()}
    return tensors.to(device) if tensors is not None else None

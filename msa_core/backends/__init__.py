"""Where a run's coalitions are evaluated: in this process (``backend=None`` / ``"local"``) or on Ray.

``shapley_modes(game, backend="ray")`` (or ``backend=RayBackend(workers=4)``) spreads the blocks of
a run over Ray actors, each holding the game; the result equals the local one for the same seed.
Ray is optional: this package imports it only when a Ray run starts.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from msa_core.backends.factory import GameFactory, ZooGame
from msa_core.errors import MSAInputError
from msa_core.games import Game, as_game

__all__ = ["GameFactory", "RayBackend", "ZooGame", "import_ray", "resolve_backend"]

BACKENDS = (None, "local", "ray")


def import_ray() -> ModuleType:
    """The ``ray`` module, or a clear error saying how to get it."""
    try:
        return importlib.import_module("ray")
    except ImportError as err:
        raise MSAInputError("backend='ray' is not available: it needs the ray package, which is not installed "
                            "here; `pip install ray` (or run with backend='local')") from err


@dataclass(frozen=True)
class RayBackend:
    """Options of a Ray run.

    workers: actors, each holding one copy of the game (default: one per CPU of the cluster, or two
    per GPU where it has GPUs). gpus_per_worker: GPU share of each actor (default: the cluster's
    GPUs over ``workers``, at most 1; 0 without GPUs). blocks_per_chunk: blocks per task (default:
    about 4 tasks per worker, at most 64 blocks; 1 with ``target_stderr`` so the run stops where a
    local one does). address: the cluster (default: ``RAY_ADDRESS``, else a Ray instance started here).
    """

    workers: int | None = None
    gpus_per_worker: float | None = None
    blocks_per_chunk: int | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        for name in ("workers", "blocks_per_chunk"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise MSAInputError(f"RayBackend {name} must be a positive integer or None; got {value!r}")
        share = self.gpus_per_worker
        if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1):
            raise MSAInputError(f"RayBackend gpus_per_worker must be a number in [0, 1] or None; got {share!r}")

    def game(self, game: Any, n_players: int | None) -> Game:
        """Start the workers of one run; returns a ``Game`` that evaluates on them (its ``pool``).

        game: a ``GameFactory`` (built on every worker) or a picklable game (checked here, shipped as is).
        """
        from msa_core.backends.ray_pool import RayGame

        ray = import_ray()
        if not isinstance(game, GameFactory):
            game = as_game(game, n_players)
        return RayGame.start(ray, self, game, n_players, self.address or os.environ.get("RAY_ADDRESS"))

    @staticmethod
    def runner() -> type:
        """The runner class that plays a ``RayGame``'s blocks (``BlockRunner``'s interface)."""
        from msa_core.backends.ray_pool import RayBlockRunner

        return RayBlockRunner


def resolve_backend(backend: Any) -> RayBackend | None:
    """None for a local run, the ``RayBackend`` of a Ray run, or a clear error (also when ray is missing)."""
    if isinstance(backend, RayBackend):
        import_ray()
        return backend
    if backend not in BACKENDS:
        raise MSAInputError(f"unknown backend {backend!r}; allowed: None, 'local', 'ray' or a RayBackend(...)")
    if backend == "ray":
        import_ray()
        return RayBackend()
    return None

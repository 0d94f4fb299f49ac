"""Where a run's coalitions are evaluated beyond this process: Ray.

``shapley_modes(game, backend="ray")`` (or ``backend=RayBackend(workers=4)``) spreads the blocks of
a run over Ray actors, each holding the game; the result equals the local one for the same seed.
Ray is optional: this package imports it only when a Ray run starts. Importing the package registers
``"ray"`` as a backend name (``msa_core.estimators.runner.register_backend``).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from msa_core.checks import check_positive_int
from msa_core.errors import MSAInputError
from msa_core.estimators.runner import Runner, register_backend
from msa_core.games import Game, GameFactory, as_game

__all__ = ["GameFactory", "RayBackend", "ZooGame", "import_ray"]


def import_ray() -> ModuleType:
    """The ``ray`` module, or a clear error saying how to get it."""
    try:
        return importlib.import_module("ray")
    except ImportError as err:
        raise MSAInputError(
            "backend='ray' is not available: it needs the ray package, which is not installed "
            "here; `pip install ray` (or run with backend='local')"
        ) from err


@dataclass(frozen=True)
class RayBackend:
    """Options of a Ray run (a ``Backend``: ``game``, ``runner``, ``meta``).

    Args:
        workers: actors, each holding one copy of the game (default: one per CPU of the cluster, or
            two per GPU where it has GPUs).
        gpus_per_worker: GPU share of each actor (default: the cluster's GPUs over ``workers``, at
            most 1; 0 without GPUs).
        blocks_per_chunk: blocks per task (default: about 4 tasks per worker, at most 64 blocks; 1
            with ``target_stderr`` so the run stops where a local one does).
        address: the cluster (default: ``RAY_ADDRESS``, else a Ray instance started here).

    Raises:
        MSAInputError: an option out of range (before Ray starts).
    """

    workers: int | None = None
    gpus_per_worker: float | None = None
    blocks_per_chunk: int | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        for name in ("workers", "blocks_per_chunk"):
            check_positive_int(getattr(self, name), f"RayBackend {name}", optional=True)
        share = self.gpus_per_worker
        if share is not None and (
            isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1
        ):
            raise MSAInputError(
                f"RayBackend gpus_per_worker must be a number in [0, 1] or None; got {share!r}"
            )

    def game(self, game: Any, n_players: int | None) -> Game:
        """Start the workers of one run; returns a ``Game`` that evaluates on them (its ``pool``).

        game: a ``GameFactory`` (built on every worker) or a picklable game (checked here, shipped
        as is).
        """
        from msa_core.backends.ray_pool import RayGame

        ray = import_ray()
        if not isinstance(game, GameFactory):
            game = as_game(game, n_players)
        return RayGame.start(
            ray, self, game, n_players, self.address or os.environ.get("RAY_ADDRESS")
        )

    def runner(self) -> type[Runner]:
        """``RayBlockRunner``: plays a ``RayGame``'s blocks on its actors."""
        from msa_core.backends.ray_pool import RayBlockRunner

        return RayBlockRunner

    def meta(self, game: Game) -> dict[str, Any] | None:
        """The workers, their GPU share and how many were replaced or retried (``RayGame.meta``)."""
        from msa_core.backends.ray_pool import RayGame

        return game.meta() if isinstance(game, RayGame) else None


register_backend("ray", RayBackend)


def __getattr__(name: str) -> Any:
    """``ZooGame`` lives in ``msa_core.zoo.recipe``; importable from here too without loading the
    zoo (and its model families) with this package."""
    if name == "ZooGame":
        from msa_core.zoo.recipe import ZooGame

        return ZooGame
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

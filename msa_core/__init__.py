"""msa_core: Multiperturbation Shapley-value Analysis of neural-network units, without any UI.

>>> import numpy as np
>>> from msa_core import shapley_modes
>>> res = shapley_modes(lambda c: c.astype(float) * [1.0, 2.0], n_players=2, method="exact")
>>> res.modes.tolist()
[[1.0, 0.0], [0.0, 2.0]]
"""

from msa_core.backends import (
           RayBackend,  # also registers backend="ray" (Ray is imported only when used)
)
from msa_core.errors import MSAInputError
from msa_core.estimators import METHODS, shapley_modes
from msa_core.estimators.checkpoint import Checkpoint, FileCheckpoint
from msa_core.estimators.interactions import interaction_modes
from msa_core.games import AdditiveGame, FunctionGame, Game, UnanimityGame, as_game
from msa_core.interaction_result import InteractionResult
from msa_core.lesion import ModelGame
from msa_core.result import ModesResult
from msa_core.version import __version__

__all__ = ["METHODS", "AdditiveGame", "Checkpoint", "FileCheckpoint", "FunctionGame", "Game",
           "InteractionResult", "MSAInputError", "ModelGame", "ModesResult", "RayBackend",
           "UnanimityGame", "__version__", "as_game", "interaction_modes", "shapley_modes"]

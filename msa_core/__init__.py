"""msa_core: Multiperturbation Shapley-value Analysis of neural-network units, without any UI.

>>> import numpy as np
>>> from msa_core import shapley_modes
>>> res = shapley_modes(lambda c: c.astype(float) * [1.0, 2.0], n_players=2, method="exact")
>>> res.modes.tolist()
[[1.0, 0.0], [0.0, 2.0]]
"""

import os

__version__ = "0.1.0"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never fetch weights or data from a hub at run time

from msa_core.errors import MSAInputError  # noqa: E402
from msa_core.estimators import METHODS, shapley_modes  # noqa: E402
from msa_core.estimators.checkpoint import Checkpoint, FileCheckpoint  # noqa: E402
from msa_core.estimators.interactions import interaction_modes  # noqa: E402
from msa_core.games import AdditiveGame, FunctionGame, Game, UnanimityGame, as_game  # noqa: E402
from msa_core.interaction_result import InteractionResult  # noqa: E402
from msa_core.lesion import ModelGame  # noqa: E402
from msa_core.result import ModesResult  # noqa: E402

__all__ = ["AdditiveGame", "Checkpoint", "FileCheckpoint", "FunctionGame", "Game",
           "InteractionResult", "METHODS", "MSAInputError", "ModelGame", "ModesResult",
           "UnanimityGame", "as_game", "interaction_modes", "shapley_modes"]

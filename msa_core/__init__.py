"""msa_core: Multiperturbation Shapley-value Analysis of neural-network units, without any UI.

>>> import numpy as np
>>> from msa_core import shapley_modes
>>> res = shapley_modes(lambda c: c.astype(float) * [1.0, 2.0], n_players=2, method="exact")
>>> res.modes.tolist()
[[1.0, 0.0], [0.0, 2.0]]

The names below are imported when first used, so ``import msa_core`` (and the CLI's argument
parsing) does not import torch.
"""

from importlib import import_module
from typing import Any

from msa_core.errors import MSAInputError
from msa_core.version import __version__

HOMES = {
    "METHODS": "msa_core.estimators",
    "shapley_modes": "msa_core.estimators",
    "Checkpoint": "msa_core.estimators.checkpoint",
    "FileCheckpoint": "msa_core.estimators.checkpoint",
    "AdditiveGame": "msa_core.games",
    "FunctionGame": "msa_core.games",
    "Game": "msa_core.games",
    "UnanimityGame": "msa_core.games",
    "as_game": "msa_core.games",
    "ModelGame": "msa_core.lesion",
    "ModesResult": "msa_core.result",
    "TopK": "msa_core.estimators.stopping",
    "top_k_status": "msa_core.estimators.stopping",
    "RayBackend": "msa_core.backends",
    "interaction_modes": "msa_core.estimators.interactions",
    "InteractionResult": "msa_core.interaction_result",
}

__all__ = [
    "METHODS",
    "AdditiveGame",
    "Checkpoint",
    "FileCheckpoint",
    "FunctionGame",
    "Game",
    "InteractionResult",
    "MSAInputError",
    "ModelGame",
    "ModesResult",
    "RayBackend",
    "TopK",
    "top_k_status",
    "UnanimityGame",
    "__version__",
    "as_game",
    "interaction_modes",
    "shapley_modes",
]


def __getattr__(name: str) -> Any:
    """The public names of ``HOMES``, imported from their modules on first use."""
    if name not in HOMES:
        raise AttributeError(f"module 'msa_core' has no attribute {name!r}")
    value = getattr(import_module(HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *HOMES})

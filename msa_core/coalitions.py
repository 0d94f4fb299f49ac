"""Coalition matrices: ``np.ndarray[bool]`` of shape ``[C, N]``, True = unit intact."""

from __future__ import annotations

import sys

import numpy as np

from msa_core.errors import MSAInputError


def check_coalitions(coalitions: object, n_players: int) -> np.ndarray:
    """Return ``coalitions`` as a bool ``[C, N]`` numpy array, or raise a clear error.

    >>> check_coalitions(np.array([[True, False]]), 2).shape
    (1, 2)
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(coalitions, torch.Tensor):
        coalitions = coalitions.detach().cpu().numpy()
    if not isinstance(coalitions, np.ndarray):
        raise MSAInputError(
            f"coalitions must be a numpy bool array of shape [C, {n_players}] (True = intact); "
            f"got {type(coalitions).__name__}"
        )
    if coalitions.dtype != np.bool_:
        raise MSAInputError(
            "coalitions must have dtype bool (True = intact, False = lesioned); got "
            f"{coalitions.dtype}. Convert 0/1 matrices with `.astype(bool)`."
        )
    if coalitions.ndim != 2 or coalitions.shape[1] != n_players:
        raise MSAInputError(
            f"coalitions must have shape [C, {n_players}] (one column per player); got "
            f"{list(coalitions.shape)}"
        )
    return coalitions


def full_and_empty(n_players: int) -> np.ndarray:
    """The two end coalitions as a ``[2, N]`` matrix: row 0 all intact, row 1 all lesioned."""
    ends = np.zeros((2, n_players), dtype=bool)
    ends[0] = True
    return ends


def from_ranks(ranks: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Coalitions holding, per row, the units whose rank is below a size.

    ranks: int ``[P, N]``, each row a permutation's rank of every unit (0 = first).
    sizes: int ``[K]``. Returns bool ``[P * K, N]``: row ``p * K + k`` keeps the first ``sizes[k]``
    units of permutation ``p`` intact.
    """
    return (ranks[:, None, :] < sizes[None, :, None]).reshape(-1, ranks.shape[1])


def from_indices(indices: np.ndarray, n_players: int) -> np.ndarray:
    """Coalitions whose bit ``i`` of the integer index says whether unit ``i`` is intact.

    indices: int64 ``[C]`` with values below ``2 ** n_players``. Returns bool ``[C, N]``.
    """
    return ((indices[:, None] >> np.arange(n_players, dtype=np.int64)) & 1).astype(bool)

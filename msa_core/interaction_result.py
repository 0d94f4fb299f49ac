"""``InteractionResult``: pairwise Shapley interaction modes of K units, shaped like the output."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from msa_core.errors import MSAInputError

NPZ_KEYS = (
    "interactions",
    "stderr",
    "summed_stderr",
    "players",
    "player_names",
    "v_full",
    "v_empty",
    "meta",
)


@dataclass
class InteractionResult:
    """Interaction modes ``[K, K, *out]`` of the pairs among K units of an N-unit game.

    ``interactions[a, b]`` is the Shapley interaction index of units ``players[a]`` and
    ``players[b]`` (indices into the game's N players): the weighted mean over coalitions S without
    both of ``v(S+a+b) - v(S+a) - v(S+b) + v(S)``. Symmetric; the diagonal is 0 (no pair).
    Positive: the two units do more together than apart (synergy); negative: less (redundancy).
    ``stderr`` has the same shape (zeros for exact runs); ``summed_stderr`` ``[K, K]`` is the
    standard error of each pair's interaction summed over outputs (not a sum of ``stderr``: the
    elements' errors are correlated). ``n_evaluations`` counts coalitions whose
    values entered the result (full and empty included); ``n_samples`` is the number of sampled
    coalitions per pair (0 for exact).
    """

    interactions: np.ndarray
    stderr: np.ndarray
    summed_stderr: np.ndarray
    players: np.ndarray
    player_names: list[str]
    v_full: np.ndarray
    v_empty: np.ndarray
    n_evaluations: int
    n_samples: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_units(self) -> int:
        """K, the number of chosen units."""
        return self.interactions.shape[0]

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.interactions.shape[2:]

    def pairs(self) -> list[tuple[int, int]]:
        """The K(K-1)/2 pairs ``(a, b)``, a < b, as positions among the chosen units."""
        rows, cols = np.triu_indices(self.n_units, 1)
        return list(zip(rows.tolist(), cols.tolist(), strict=True))

    def save(self, path: str | Path | BinaryIO) -> None:
        """Write an ``.npz`` with ``NPZ_KEYS`` (meta a JSON string holding the counts too)."""
        meta = {**self.meta, "n_evaluations": self.n_evaluations, "n_samples": self.n_samples}
        np.savez_compressed(
            path,
            interactions=self.interactions,
            stderr=self.stderr,
            summed_stderr=self.summed_stderr,
            players=np.asarray(self.players, dtype=np.int64),
            player_names=np.array(self.player_names, dtype=str),
            v_full=self.v_full,
            v_empty=self.v_empty,
            meta=np.array(json.dumps(meta)),
        )

    @classmethod
    def load(cls, path: str | Path | BinaryIO) -> InteractionResult:
        """Read a result written by ``save`` (never unpickles).

        Raises:
            MSAInputError: the file is not an interaction result.
        """
        try:
            data = np.load(path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise MSAInputError(f"{path} is a single array, not an MSA interaction result .npz")
            with data:
                missing = [key for key in NPZ_KEYS if key not in data.files]
                if missing:
                    raise MSAInputError(
                        f"{path} is not an MSA interaction result: it lacks {missing}; "
                        f"expected keys {list(NPZ_KEYS)}"
                    )
                arrays = {key: data[key] for key in NPZ_KEYS}
            meta = json.loads(str(arrays["meta"]))
        except MSAInputError:
            raise
        except (OSError, ValueError) as err:
            raise MSAInputError(
                f"cannot read {path} as an MSA interaction result .npz: {err}"
            ) from err
        return cls(
            interactions=arrays["interactions"],
            stderr=arrays["stderr"],
            summed_stderr=arrays["summed_stderr"],
            players=arrays["players"],
            player_names=[str(name) for name in arrays["player_names"]],
            v_full=arrays["v_full"],
            v_empty=arrays["v_empty"],
            n_evaluations=int(meta.pop("n_evaluations", 0)),
            n_samples=int(meta.pop("n_samples", 0)),
            meta=meta,
        )

"""Checkpoints: everything a run has absorbed, saved every few seconds so a killed run resumes.

A state is a flat dict of numpy arrays: ``run.*`` (next block, counts, end values, what run it is)
and ``est.*`` (the estimator's running sums). Blocks are fixed by the seed, so resuming from a state
finishes with exactly the result of an uninterrupted run.

>>> import tempfile, pathlib
>>> from msa_core import UnanimityGame, shapley_modes
>>> path = pathlib.Path(tempfile.mkdtemp()) / "run.npz"
>>> game = UnanimityGame.random(12, 20, 3, seed=0)
>>> first = shapley_modes(game, method="permutation", n_permutations=50, checkpoint=FileCheckpoint(path))
>>> again = shapley_modes(game, method="permutation", n_permutations=50, checkpoint=FileCheckpoint(path))
>>> bool((first.modes == again.modes).all())
True
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np

from msa_core.errors import MSAInputError

State = dict[str, np.ndarray]


class Checkpoint(Protocol):
    """Where a run keeps its state: ``load`` the last one (or None), ``save`` a newer one."""

    every_seconds: float

    def load(self) -> State | None: ...

    def save(self, state: State) -> None: ...


class FileCheckpoint:
    """A checkpoint in one ``.npz`` file, replaced atomically; never unpickled.

    A file that cannot be read is reported with a warning and the run starts over.
    """

    def __init__(self, path: str | Path, every_seconds: float = 5.0):
        self.path = Path(path)
        self.every_seconds = every_seconds

    def load(self) -> State | None:
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError) as err:
            warnings.warn(f"checkpoint {self.path} cannot be read ({err}); starting the run over", stacklevel=2)
            return None

    def save(self, state: State) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **state)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def run_identity(method: str, n_players: int, seed: int, budget: int) -> State:
    """The ``run.*`` entries that say which run a state belongs to."""
    return {"run.method": np.array(method), "run.n_players": np.array(n_players), "run.seed": np.array(seed),
            "run.budget": np.array(budget)}


def check_resumable(state: State, method: str, n_players: int, seed: int, budget: int, extendable: bool) -> None:
    """Raise unless ``state`` was written by this run (or, for extendable methods, a smaller one)."""
    saved = {key[4:]: state[key].item() for key in run_identity(method, n_players, seed, budget) if key in state}
    wanted = {"method": method, "n_players": n_players, "seed": seed}
    if any(saved.get(key) != value for key, value in wanted.items()):
        raise MSAInputError(f"the checkpoint belongs to another run ({saved}); this run is {wanted}")
    if saved.get("budget") != budget and not (extendable and saved.get("budget", budget + 1) < budget):
        raise MSAInputError(
            f"the checkpoint was written with a budget of {saved.get('budget')} evaluations and this run asks for "
            f"{budget}; only permutation-type runs can be extended to a larger budget"
        )

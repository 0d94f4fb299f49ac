"""Checkpoints: everything a run has absorbed, saved every few seconds so a killed run resumes.

A state is a flat dict of numpy arrays, written and read only by ``msa_core.estimators.plan``
(``RunPlan.state``, ``CheckpointSummary``); a checkpoint keeps it without looking inside. Blocks are
fixed by the seed, so resuming from a state finishes with exactly the result of an uninterrupted
run.

>>> import tempfile, pathlib
>>> from msa_core import UnanimityGame, shapley_modes
>>> path = pathlib.Path(tempfile.mkdtemp()) / "run.npz"
>>> game = UnanimityGame.random(12, 20, 3, seed=0)
>>> first = shapley_modes(
...     game, method="permutation", n_permutations=50, checkpoint=FileCheckpoint(path)
... )
>>> again = shapley_modes(
...     game, method="permutation", n_permutations=50, checkpoint=FileCheckpoint(path)
... )
>>> bool((first.modes == again.modes).all())
True
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

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
            warnings.warn(
                f"checkpoint {self.path} cannot be read ({err}); starting the run over",
                stacklevel=2,
            )
            return None

    def save(self, state: State) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                # keys are names, never savez options
                np.savez(handle, **cast(dict[str, Any], state))
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

"""``ckpt:<owner>`` rows (``work/``): the checkpoint of a run in progress, as npz bytes; and
``base:<family>`` rows (``results/``): the last checkpoint of a family's largest finished
permutation-type run, which a larger run of that family starts from."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

from msa_core.estimators.checkpoint import State
from msa_core.estimators.plan import CheckpointSummary
from msa_core.runs.rows import UnreadableRow
from msa_core.runs.store.caches import Caches
from msa_core.runs.store.disk import UNREADABLE, npz_arrays, npz_bytes
from msa_core.runs.store.namespace import Namespace
from msa_core.runs.store.problems import WRITE_ERRORS

CHECKPOINTS = Namespace("ckpt:")
BASES = Namespace("base:")
SAVE_ATTEMPTS = 3  # a failed checkpoint write is tried this often before the run goes on without it
SAVE_RETRY_SECONDS = 0.5


class StoreCheckpoint:
    """The ``Checkpoint`` of one run, kept in the store's work cache; ``on_save(state)`` is told
    each save.

    A write that fails (a full disk) is tried ``SAVE_ATTEMPTS`` times; then the run goes on with a
    warning, its progress kept in memory (only an interruption would lose the unsaved part).
    """

    def __init__(
        self,
        caches: Caches,
        owner: str,
        every_seconds: float,
        on_save: Callable[[State], None] | None = None,
    ):
        self.caches, self.key, self.every_seconds, self.on_save = (
            caches,
            CHECKPOINTS.key(owner),
            every_seconds,
            on_save,
        )
        self.failed_saves = 0

    def load(self) -> State | None:
        try:
            blob = self.caches.work.get(self.key)
            if blob is None:
                return None
            return npz_arrays(blob)
        except UNREADABLE as err:
            warnings.warn(
                f"the checkpoint of run {CHECKPOINTS.owner(self.key)[:12]} is corrupt ({err}); "
                "the run starts over",
                stacklevel=2,
            )
            self.caches.work.delete(self.key)
            return None

    def save(self, state: State) -> None:
        blob = npz_bytes(state)
        for attempt in range(SAVE_ATTEMPTS):
            try:
                self.caches.work.set(self.key, blob)
                break
            except WRITE_ERRORS as err:
                if attempt + 1 < SAVE_ATTEMPTS:
                    time.sleep(SAVE_RETRY_SECONDS)
                    continue
                self.failed_saves += 1
                warnings.warn(
                    f"checkpoint of run {CHECKPOINTS.owner(self.key)[:12]} not saved after "
                    f"{SAVE_ATTEMPTS} tries ({type(err).__name__}: {err}); the run goes on, but an "
                    f"interruption now would lose the work since its last saved checkpoint. Free "
                    f"space in {self.caches.directory}",
                    stacklevel=2,
                )
                return
        if self.on_save is not None:
            self.on_save(state)


class Checkpoints:
    """The checkpoints of one store's runs in progress, and its family bases."""

    def __init__(self, caches: Caches):
        self.caches = caches

    def summary(self, owner: str) -> CheckpointSummary | None:
        """The run's saved checkpoint, read (None: none, or unreadable); never writes."""
        try:
            blob = self.caches.rows["work"].get(CHECKPOINTS.key(owner))
            return CheckpointSummary.of(npz_arrays(blob)) if blob is not None else None
        except (UnreadableRow, *UNREADABLE):
            return None

    def has(self, owner: str) -> bool:
        return CHECKPOINTS.key(owner) in self.caches.work

    def drop(self, owner: str) -> None:
        self.caches.work.delete(CHECKPOINTS.key(owner))

    def keep_as_base(self, owner: str, family: str) -> None:
        """Keep a finished run's last checkpoint as its family's base, unless the base has a larger
        budget."""
        blob = self.caches.work.pop(CHECKPOINTS.key(owner))
        if blob is not None and _budget_of(blob) >= self.base_budget(family):
            self.caches.results.set(BASES.key(family), blob)

    def base_budget(self, family: str) -> int:
        """The budget (evaluations) of the family's base checkpoint; -1 when there is none or it is
        unreadable."""
        try:
            blob = self.caches.results.get(BASES.key(family))
        except UnreadableRow:
            return -1
        return _budget_of(blob) if blob is not None else -1

    def seed_from_base(self, owner: str, family: str, budget: int) -> bool:
        """Start a run of ``budget`` evaluations from its family's base checkpoint, if that base is
        smaller and the run has no checkpoint of its own; True if seeded."""
        if self.has(owner) or not 0 <= self.base_budget(family) < budget:
            return False
        blob = self.caches.results.get(BASES.key(family))
        return blob is not None and bool(self.caches.work.add(CHECKPOINTS.key(owner), blob))


def _budget_of(blob: bytes) -> int:
    """The budget of the run that wrote a checkpoint blob (-1 if unreadable)."""
    try:
        return CheckpointSummary.of(npz_arrays(blob)).plan.budget
    except UNREADABLE:
        return -1

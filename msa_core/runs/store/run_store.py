"""``RunStore``: the one public face of the run store; each key namespace is owned by a module of
this package (see ``msa_core.runs.store``), and this class only combines them."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from msa_core.errors import MSAInputError
from msa_core.estimators.checkpoint import State
from msa_core.estimators.plan import CheckpointSummary
from msa_core.result import ModesResult
from msa_core.runs.formats import NewerFormat
from msa_core.runs.request import RunRequest
from msa_core.runs.rows import repair_hint
from msa_core.runs.store.analyses import ANALYSES, Analyses, analysis_key
from msa_core.runs.store.caches import Caches
from msa_core.runs.store.checkpoints import BASES, CHECKPOINTS, Checkpoints, StoreCheckpoint
from msa_core.runs.store.disk import UNREADABLE, row_size
from msa_core.runs.store.index import INDEX, Index, index_entry
from msa_core.runs.store.interactions import INTERACTION_INDEX, INTERACTIONS, Interactions
from msa_core.runs.store.locks import LOCKS, Locks
from msa_core.runs.store.namespace import Namespace
from msa_core.runs.store.progress import PROGRESS, ProgressRecords
from msa_core.runs.store.results import is_result_key, result_bytes, result_of
from msa_core.runs.store.space import check_free_space

WORK_NAMESPACES: tuple[Namespace, ...] = (
    INDEX,
    CHECKPOINTS,
    PROGRESS,
    LOCKS,
    INTERACTION_INDEX,
    ANALYSES,
)
RUN_RECORDS = (INDEX, CHECKPOINTS, PROGRESS)  # the work/ rows a deleted run takes with it


class RunStore(Caches):
    """Results, checkpoints and progress of MSA runs in one directory, safe for many processes.

    Args:
        directory: the store's folder (None: ``msa_core.paths.default_cache_dir()``).
        size_limit: bytes of finished results kept (default ``cache_size_limit()``: checked here,
            before any work).
        readonly: read through read-only connections (never writes, not even to a full disk; a
            missing folder reads as an empty store); the methods that write raise
            ``MSAInputError``.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        size_limit: int | None = None,
        readonly: bool = False,
    ):
        super().__init__(directory, size_limit, readonly)
        self._index = Index(self)
        self._checkpoints = Checkpoints(self)
        self._progress = ProgressRecords(self)
        self._analyses = Analyses(self)
        self._locks = Locks(self)
        self._interactions = Interactions(self)

    # -- finished results -------------------------------------------------------------------
    def get(self, fingerprint: str) -> ModesResult | None:
        """The stored result, or None. A corrupt or older-format entry is dropped with a warning
        (kept, in a read-only store).

        Raises:
            NewerFormat: the entry was written by a newer msa_core (it is kept, never dropped).
        """
        if not is_result_key(fingerprint):
            return None
        try:
            blob = self.results.get(fingerprint)
            return None if blob is None else result_of(blob, fingerprint)
        except NewerFormat:
            raise  # never dropped: a newer msa_core sharing this store reads it
        except UNREADABLE as err:
            if self.readonly:
                warnings.warn(
                    f"stored run {fingerprint[:12]} cannot be read ({err}); "
                    f"{repair_hint(self.directory)} removes it",
                    stacklevel=2,
                )
            else:
                warnings.warn(
                    f"stored run {fingerprint[:12]} cannot be read ({err}); it will be recomputed",
                    stacklevel=2,
                )
                self.delete(fingerprint)
            return None

    def __contains__(self, fingerprint: str) -> bool:
        return fingerprint in self.results

    def put(
        self, fingerprint: str, result: ModesResult, request: RunRequest, family: str | None = None
    ) -> None:
        """Store a finished result and its index entry (``family``: the fingerprint of the run's
        family, whose base checkpoint ``delete`` removes with the family's last run).

        Raises:
            MSAInputError: the result is larger than ``size_limit`` (it would be evicted at once).
            OSError, sqlite3.OperationalError: the disk refused the write.
        """
        self.require_writable("store a result")
        blob = result_bytes(result, fingerprint, request)
        if len(blob) > self.size_limit:  # it would be evicted as it is stored
            raise MSAInputError(
                f"run {fingerprint[:12]} takes {len(blob) / 1e6:.1f} MB, more than "
                f"the store keeps ({self.size_limit / 1e6:.1f} MB: $MSA_CACHE_SIZE_LIMIT)"
            )
        self.results.set(fingerprint, blob)
        entry = index_entry(result, time.time(), len(blob))
        self._index.put(fingerprint, {**entry, "family": family})

    def list(self) -> list[dict[str, Any]]:
        """Index entries of the stored results, newest first; never writes.

        A result without a readable index entry (``work/`` lost or damaged) is listed from the
        result itself; an index entry without its result (evicted) is left out; a row that cannot
        be read is left out with a warning naming it.
        """
        entries = self._index.entries()
        listed = []
        for fingerprint in self.rows["results"].keys():
            if not is_result_key(fingerprint):
                continue
            if fingerprint in entries:
                listed.append(entries[fingerprint])
                continue
            try:
                result = self.get(fingerprint)
            except NewerFormat as err:
                warnings.warn(f"not listed: {err}", stacklevel=2)
                continue
            row = self.rows["results"].row(fingerprint)
            if result is not None and row is not None:
                listed.append(
                    index_entry(result, row.store_time or 0.0, row_size(self.rows["results"], row))
                )
        return sorted(listed, key=lambda entry: -entry["created"])

    def resolve(self, prefix: str) -> str:
        """The fingerprint of the one stored run whose fingerprint starts with ``prefix``."""
        stored = self.list()
        matches = [
            entry["fingerprint"] for entry in stored if entry["fingerprint"].startswith(prefix)
        ]
        if len(matches) != 1 or not prefix:
            known = ", ".join(entry["fingerprint"][:12] for entry in stored) or "none"
            what = "no stored run" if not matches else f"{len(matches)} stored runs"
            raise MSAInputError(f"{what} matches {prefix!r}; stored runs: {known}")
        return matches[0]

    def delete(self, fingerprint: str) -> None:
        """Forget a run: its result, index entry, checkpoint, progress and kept analyses (not a run
        in progress)."""
        self.require_writable("delete a run")
        if self.running(fingerprint):
            raise MSAInputError(
                f"run {fingerprint[:12]} is in progress; cancel it before deleting it"
            )
        families = self._index.families()
        family = families.pop(fingerprint, None)
        self.free("results", fingerprint)
        for namespace in RUN_RECORDS:
            self.free("work", namespace.key(fingerprint))
        for key in self._analyses.keys_of(fingerprint):
            self.free("work", key)
        if family is not None and family not in families.values():
            self.free("results", BASES.key(family))  # the family's last run: its base goes too

    def clear(self) -> tuple[str, ...]:
        """Delete every stored run and interaction run with their index entries, checkpoints,
        progress records and the family base checkpoints, except what runs in progress use.

        Returns:
            The fingerprints of the runs and the keys (``ix:...``) of the interaction runs deleted.
        """
        self.require_writable("delete runs")
        self._locks.drop_stale_reserves()
        deleted: tuple[str, ...] = ()
        for key in tuple(self.rows["results"].keys()):
            if not BASES.owns(key) and self.running(key):
                continue
            self.free("results", key)
            if is_result_key(key) or INTERACTIONS.owns(key):
                deleted += (key,)
        for key in tuple(self.rows["work"].keys()):
            if LOCKS.owns(key) or self.running(key.partition(":")[2]):
                continue
            self.free("work", key)
        return deleted

    def volume(self) -> int:
        """Bytes the finished results take on disk (what ``size_limit`` bounds)."""
        return int(self.results.volume())

    def check_free_space(self, needed: int) -> None:
        """Raise ``MSAInputError`` unless the store's disk has ``needed`` bytes free (plus 5%
        headroom)."""
        check_free_space(self.directory, needed)

    # -- interaction runs (``msa_core.runs.interaction_runs`` gives the bytes their meaning) ------
    def interaction_blob(self, key: str) -> bytes | None:
        """The stored bytes of interaction run ``key`` (``ix:<sha>``), or None."""
        return self._interactions.blob(key)

    def put_interaction(self, key: str, blob: bytes, entry: dict[str, Any]) -> None:
        """Store an interaction run's result bytes and its index entry (JSON-ready)."""
        self.require_writable("store an interaction run")
        self._interactions.put(key, blob, entry)

    def delete_interaction(self, key: str) -> None:
        """Forget an interaction run: its result, index entry, checkpoint and progress record."""
        self.require_writable("delete an interaction run")
        self._interactions.delete(key)
        for namespace in (CHECKPOINTS, PROGRESS):
            self.free("work", namespace.key(key))

    def interaction_entries(self) -> tuple[dict[str, Any], ...]:
        """The index entries of the stored interaction runs (one whose result is gone is
        dropped)."""
        return self._interactions.entries()

    # -- runs in progress (``owner``: a fingerprint, or an interaction run's ``ix:`` key) -------
    def checkpoint(
        self,
        fingerprint: str,
        every_seconds: float = 5.0,
        on_save: Callable[[State], None] | None = None,
    ) -> StoreCheckpoint:
        """The ``Checkpoint`` a run saves its state to every ``every_seconds``."""
        return StoreCheckpoint(self, fingerprint, every_seconds, on_save)

    def checkpoint_summary(self, fingerprint: str) -> CheckpointSummary | None:
        """The run's saved checkpoint, read (None: none, or unreadable); never writes."""
        return self._checkpoints.summary(fingerprint)

    def has_checkpoint(self, fingerprint: str) -> bool:
        return self._checkpoints.has(fingerprint)

    def keep_as_base(self, fingerprint: str, family: str) -> None:
        """Keep a finished run's last checkpoint as its family's base, unless the base has a larger
        budget."""
        self._checkpoints.keep_as_base(fingerprint, family)

    def base_budget(self, family: str) -> int:
        """The budget (evaluations) of the family's base checkpoint; -1 when there is none or it is
        unreadable."""
        return self._checkpoints.base_budget(family)

    def seed_from_base(self, fingerprint: str, family: str, budget: int) -> bool:
        """Start a run of ``budget`` evaluations from its family's base checkpoint, if that base is
        smaller and the run has no checkpoint of its own; True if seeded."""
        return self._checkpoints.seed_from_base(fingerprint, family, budget)

    def drop_checkpoint(self, fingerprint: str) -> None:
        self._checkpoints.drop(fingerprint)

    def analysis(self, fingerprint: str, name: str) -> dict[str, Any] | None:
        """The analysis ``name`` kept with stored run ``fingerprint`` (``keep_analysis``); None
        when none is kept, it cannot be read, or the run is gone.

        Raises:
            MSAInputError: a malformed fingerprint or name (``analyses.analysis_key``).
        """
        kept = self._analyses.get(fingerprint, name)
        return kept if kept is not None and fingerprint in self else None

    def keep_analysis(self, fingerprint: str, name: str, value: dict[str, Any]) -> None:
        """Keep ``value`` (a JSON object) as analysis ``name`` of run ``fingerprint``, deleted with
        the run; nothing is written for a read-only store or a run that is not stored, and a failed
        write (a full disk) is a warning.

        Raises:
            MSAInputError: a malformed fingerprint or name (``analyses.analysis_key``).
        """
        analysis_key(fingerprint, name)  # checked before anything else
        if not self.readonly and fingerprint in self:
            self._analyses.put(fingerprint, name, value)

    def set_progress(self, fingerprint: str, **fields: Any) -> None:
        """Record a run's progress (``state``, ``done``, ``total``, ...) for any process to read; a
        failed write (a full disk) is a warning, not the end of the run."""
        self._progress.set(fingerprint, **fields)

    def progress_fingerprints(self) -> tuple[str, ...]:
        """Fingerprints of the runs that have a progress record (this process's, other apps' and
        the CLI's); never writes."""
        return self._progress.owners()

    def progress(self, fingerprint: str) -> dict[str, Any] | None:
        """The last progress record of a run: ``state``, ``done``, ``total``, ``max_stderr``,
        ``eta_seconds``, ``resumed_from``, ``error``, ``updated`` (None if the run never started
        here)."""
        return self._progress.get(fingerprint)

    def holder(self, fingerprint: str) -> dict[str, Any] | None:
        """The lock record of a run (``pid``, ``host``, ``heartbeat``, ``token``), None when
        unlocked or unreadable."""
        return self._locks.holder(fingerprint)

    def running(self, fingerprint: str) -> bool:
        """True while a live process holds the run's lock (one that heartbeats, see ``lock``)."""
        return self._locks.running(fingerprint)

    def lock(
        self, fingerprint: str, poll_seconds: float = 0.2, timeout: float | None = None
    ) -> AbstractContextManager[None]:
        """Hold the run's lock while the body runs (``locks.Locks.lock`` says how it waits and when
        it breaks a dead or stale holder)."""
        return self._locks.lock(fingerprint, poll_seconds, timeout)

    def free_reserve(self, fingerprint: str) -> None:
        """Give back the disk space set aside while the run's lock is held."""
        self._locks.free_reserve(fingerprint)

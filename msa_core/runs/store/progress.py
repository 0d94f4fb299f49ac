"""``progress:<owner>`` rows: the last progress record of a run (``state``, ``done``, ``total``,
...) as JSON, for any process to read (this app's, other apps' and the CLI's)."""

from __future__ import annotations

import json
import sqlite3
import time
import warnings
from typing import Any

import diskcache

from msa_core.runs.rows import UnreadableRow
from msa_core.runs.store.caches import Caches
from msa_core.runs.store.namespace import Namespace

PROGRESS = Namespace("progress:")


class ProgressRecords:
    """The progress records of one store."""

    def __init__(self, caches: Caches):
        self.caches = caches

    def set(self, owner: str, **fields: Any) -> None:
        """Record a run's progress; a failed write (a full disk) is a warning, not the end of the
        run."""
        try:
            record = json.dumps({**fields, "updated": time.time()})
            self.caches.work.set(PROGRESS.key(owner), record)
        except (OSError, sqlite3.OperationalError, diskcache.Timeout) as err:
            warnings.warn(
                f"progress of run {owner[:12]} not recorded ({type(err).__name__}: {err})",
                stacklevel=3,
            )

    def owners(self) -> tuple[str, ...]:
        """The runs that have a progress record; never writes."""
        return tuple(PROGRESS.owner(key) for key in self.caches.rows["work"].keys(PROGRESS.prefix))

    def get(self, owner: str) -> dict[str, Any] | None:
        """The last progress record of a run (None if the run never started here, or its record
        cannot be read: then with a warning)."""
        try:
            raw = self.caches.work.get(PROGRESS.key(owner))
            record = json.loads(raw) if raw is not None else None
        except (UnreadableRow, ValueError, TypeError) as err:
            warnings.warn(
                f"the progress record of run {owner[:12]} cannot be read ({err})", stacklevel=3
            )
            return None
        return record if isinstance(record, dict) else None

"""``progress:<owner>`` rows: the last progress record of a run (``state``, ``done``, ``total``,
...) as JSON, for any process to read (this app's, other apps' and the CLI's)."""

from __future__ import annotations

import time
from typing import Any

from msa_core.runs.store.caches import Caches, read_record, write_record
from msa_core.runs.store.namespace import Namespace

PROGRESS = Namespace("progress:")


class ProgressRecords:
    """The progress records of one store."""

    def __init__(self, caches: Caches):
        self.caches = caches

    def set(self, owner: str, **fields: Any) -> None:
        """Record a run's progress; a failed write (a full disk) is a warning, not the end of the
        run."""
        record = {**fields, "updated": time.time()}
        failed = f"progress of run {owner[:12]} not recorded"
        write_record(self.caches.work, PROGRESS.key(owner), record, failed)

    def owners(self) -> tuple[str, ...]:
        """The runs that have a progress record; never writes."""
        return tuple(PROGRESS.owner(key) for key in self.caches.rows["work"].keys(PROGRESS.prefix))

    def get(self, owner: str) -> dict[str, Any] | None:
        """The last progress record of a run (None if the run never started here, or its record
        cannot be read: then with a warning)."""
        what = f"the progress record of run {owner[:12]}"
        return read_record(self.caches.work, PROGRESS.key(owner), what)

"""``analysis:<fingerprint>:<name>`` rows: slow work derived from a stored run (the Experts page's
selective lesions and greedy continuations) computed once, then read back by every session and
process. Each is a JSON object, kept in ``work/`` beside the run's index entry and deleted with
the run (``RunStore.delete``, ``clear``). Only JSON is read, never pickles.
"""

from __future__ import annotations

import re
from typing import Any

from msa_core.errors import MSAInputError
from msa_core.runs.store.caches import Caches, read_record, write_record
from msa_core.runs.store.namespace import Namespace
from msa_core.runs.store.results import is_result_key

ANALYSES = Namespace("analysis:")
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


def analysis_key(fingerprint: str, name: str) -> str:
    """The row key of analysis ``name`` of run ``fingerprint``, both checked.

    Raises:
        MSAInputError: ``fingerprint`` is not 64 hex digits, or ``name`` not 1-100 of a-z, 0-9,
            ``_``, ``-``, ``.``.
    """
    if not is_result_key(fingerprint):
        raise MSAInputError(f"not a run fingerprint: {fingerprint!r} (64 hex digits)")
    if not NAME.match(name) or ".." in name:
        raise MSAInputError(
            f"analysis name {name!r} must be 1-100 of a-z, 0-9, '_', '-', '.' (no '..')"
        )
    return ANALYSES.key(f"{fingerprint}:{name}")


class Analyses:
    """The analyses kept with the runs of one store."""

    def __init__(self, caches: Caches):
        self.caches = caches

    def get(self, fingerprint: str, name: str) -> dict[str, Any] | None:
        """The analysis ``name`` of run ``fingerprint``; None when none is kept or it cannot be
        read (then with a warning)."""
        key = analysis_key(fingerprint, name)
        return read_record(self.caches.work, key, f"analysis {name} of run {fingerprint[:12]}")

    def put(self, fingerprint: str, name: str, value: dict[str, Any]) -> None:
        """Keep ``value`` (JSON-serialisable); a failed write (a full disk) is a warning: the
        caller still has the value, and the next session computes it again."""
        key = analysis_key(fingerprint, name)
        failed = f"analysis {name} of run {fingerprint[:12]} not kept"
        write_record(self.caches.work, key, value, failed)

    def keys_of(self, fingerprint: str) -> tuple[str, ...]:
        """The row keys of every analysis of run ``fingerprint`` (for the store to free)."""
        prefix = ANALYSES.key(f"{fingerprint}:")
        return tuple(self.caches.rows["work"].keys(prefix))

"""``index:<fingerprint>`` rows (``work/``): what ``list`` shows of each stored result (its request,
method, size, ...) as JSON, and the family of the run (whose base checkpoint goes with the family's
last run)."""

from __future__ import annotations

import contextlib
import json
import warnings
from typing import Any

from msa_core.result import ModesResult
from msa_core.runs.rows import UnreadableRow
from msa_core.runs.store.caches import Caches
from msa_core.runs.store.namespace import Namespace

INDEX = Namespace("index:")
REQUEST_TEXT = ("model", "lesion", "method")  # request fields every index entry must name as text


def index_entry(result: ModesResult, created: float, size: int) -> dict[str, Any]:
    """The index entry of a stored result (what ``list`` shows)."""
    return {
        "fingerprint": result.meta.get("fingerprint"),
        "request": result.meta.get("request"),
        "created": created,
        "method": result.meta.get("method"),
        "n_players": result.n_players,
        "output_shape": list(result.output_shape),
        "n_evaluations": result.n_evaluations,
        "n_permutations": result.n_permutations,
        "wall_seconds": result.meta.get("wall_seconds"),
        "bytes": size,
    }


def checked_entry(entry: object, fingerprint: str) -> dict[str, Any]:
    """``entry`` if it is a well-formed index entry of ``fingerprint``; else ``ValueError`` saying
    why."""
    if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
        raise ValueError("not an index entry of this run")
    request = entry.get("request")
    if not isinstance(request, dict) or not all(
        isinstance(request.get(key), str) for key in REQUEST_TEXT
    ):
        raise ValueError("its request is malformed")
    for key in ("created", "n_evaluations", "n_players"):
        if not isinstance(entry.get(key), (int, float)) or isinstance(entry.get(key), bool):
            raise ValueError(f"its {key} is not a number")
    return entry


class Index:
    """The index entries of one store."""

    def __init__(self, caches: Caches):
        self.caches = caches

    def put(self, fingerprint: str, entry: dict[str, Any]) -> None:
        self.caches.work.set(INDEX.key(fingerprint), json.dumps(entry))

    def entries(self) -> dict[str, dict[str, Any]]:
        """The readable index entries (fingerprint: entry); never writes. One that cannot be read
        is left out with a warning naming it."""
        work = self.caches.rows["work"]
        entries = {}
        for key in work.keys(INDEX.prefix):
            fingerprint = INDEX.owner(key)
            try:
                entries[fingerprint] = checked_entry(json.loads(work.get(key)), fingerprint)
            except (UnreadableRow, ValueError, TypeError) as err:
                warnings.warn(
                    f"index entry {fingerprint[:12]} of {self.caches.directory} cannot be read "
                    f"({err}); the run is listed from its result if that can be read",
                    stacklevel=3,
                )
        return entries

    def families(self) -> dict[str, str]:
        """The family of each run whose index entry records one (fingerprint: family)."""
        work = self.caches.rows["work"]
        families = {}
        for key in work.keys(INDEX.prefix):
            with contextlib.suppress(UnreadableRow, ValueError, TypeError, AttributeError):
                family = json.loads(work.get(key)).get("family")
                if isinstance(family, str):
                    families[INDEX.owner(key)] = family
        return families

    def delete(self, fingerprint: str) -> None:
        self.caches.free("work", INDEX.key(fingerprint))

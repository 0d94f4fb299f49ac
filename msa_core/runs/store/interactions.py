"""Interaction runs' rows: ``ix:<sha256>`` (``results/``) the result bytes, which
``msa_core.runs.interaction_runs`` gives their meaning, and ``ixindex:<sha256>`` (``work/``) their
index entries as JSON. Their checkpoints, locks and progress records are those of runs, owned by
``ix:<sha256>``."""

from __future__ import annotations

import json
from typing import Any

from msa_core.runs.store.caches import Caches
from msa_core.runs.store.namespace import Namespace

INTERACTIONS = Namespace("ix:")
INTERACTION_INDEX = Namespace("ixindex:")


def interaction_index_key(key: str) -> str:
    """The ``work/`` key of interaction run ``key``'s index entry (``ix:<sha>`` ->
    ``ixindex:<sha>``)."""
    return INTERACTION_INDEX.key(INTERACTIONS.owner(key))


class Interactions:
    """The interaction runs of one store (their results and index entries)."""

    def __init__(self, caches: Caches):
        self.caches = caches

    def blob(self, key: str) -> bytes | None:
        """The stored bytes of interaction run ``key`` (``ix:<sha>``), or None."""
        blob = self.caches.results.get(key)
        return blob if isinstance(blob, bytes) else None

    def put(self, key: str, blob: bytes, entry: dict[str, Any]) -> None:
        """Store an interaction run's result bytes and its index entry (JSON-ready)."""
        self.caches.results.set(key, blob)
        self.caches.work.set(interaction_index_key(key), json.dumps(entry))

    def delete(self, key: str) -> None:
        """Forget an interaction run's result and index entry."""
        self.caches.free("results", key)
        self.caches.free("work", interaction_index_key(key))

    def entries(self) -> tuple[dict[str, Any], ...]:
        """The index entries of the stored interaction runs (one whose result is gone is
        dropped)."""
        work = self.caches.work
        entries = []
        for name in list(work.iterkeys()):
            if not INTERACTION_INDEX.owns(name):
                continue
            raw = work.get(name)
            if raw is None:
                continue
            entry = json.loads(raw)
            if entry["key"] not in self.caches.results:
                work.delete(name)
            else:
                entries.append(entry)
        return tuple(entries)

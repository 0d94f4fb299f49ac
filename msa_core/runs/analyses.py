"""Analyses kept with a stored run: slow work derived from a run (the Experts page's selective
lesions and greedy continuations) computed once, then read back by every session and process.

Each analysis is a JSON object in ``<store>/analyses/<fingerprint>/<name>.json``, written
atomically (a temporary file, then a rename). It belongs to its run: ``get`` answers None once the
run is no longer in the store and removes what was kept for it. Only JSON is read, never pickles.

>>> import tempfile
>>> from msa_core.runs.store import RunStore
>>> analyses = RunAnalyses(RunStore(tempfile.mkdtemp()))
>>> analyses.get("0" * 64, "selective-lesions-k4") is None
True
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from msa_core.errors import MSAInputError
from msa_core.runs.store import RunStore

FOLDER = "analyses"
FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


class RunAnalyses:
    """Analyses of the runs of one ``RunStore`` (see the module docstring)."""

    def __init__(self, store: RunStore):
        self.store = store
        self.directory = Path(store.directory) / FOLDER

    def _path(self, fingerprint: str, name: str) -> Path:
        if not FINGERPRINT.match(fingerprint):
            raise MSAInputError(f"not a run fingerprint: {fingerprint!r} (64 hex digits)")
        if not NAME.match(name) or ".." in name:
            raise MSAInputError(
                f"analysis name {name!r} must be 1-100 of a-z, 0-9, '_', '-', '.' (no '..')"
            )
        return self.directory / fingerprint / f"{name}.json"

    def get(self, fingerprint: str, name: str) -> dict[str, Any] | None:
        """The analysis ``name`` kept for run ``fingerprint``; None when there is none, it cannot be
        read, or the run is gone (then everything kept for it is removed)."""
        path = self._path(fingerprint, name)
        if fingerprint not in self.store:
            if path.parent.is_dir() and not self.store.readonly:
                shutil.rmtree(path.parent, ignore_errors=True)
            return None
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def put(self, fingerprint: str, name: str, value: dict[str, Any]) -> None:
        """Keep ``value`` (JSON-serialisable) as the analysis ``name`` of run ``fingerprint``;
        nothing is written for a read-only store or a run that is not stored."""
        path = self._path(fingerprint, name)
        if self.store.readonly or fingerprint not in self.store:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(value)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

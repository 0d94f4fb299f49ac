"""``RunStore``: finished results, checkpoints, locks and progress in diskcache, shared by processes.

Layout under one directory (default ``$MSA_CACHE_DIR``, else ``$XDG_CACHE_HOME/msa-dashboard``, else
``~/.cache/msa-dashboard``):

- ``results/``: finished results as ``.npz`` bytes keyed by fingerprint; least-recently-used runs are
  evicted past ``size_limit`` bytes. Only finished results live here, so a run in progress is never
  evicted.
- ``work/``: never evicted; ``ckpt:`` checkpoints (npz bytes), ``lock:`` owners, ``progress:`` and
  ``index:`` JSON, ``base:`` the checkpoint a permutation run can be extended from.

Only bytes, strings and numbers are stored, so nothing is ever unpickled.
"""

from __future__ import annotations

import io
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import diskcache
import numpy as np

from msa_core.errors import MSAInputError
from msa_core.estimators.checkpoint import State
from msa_core.result import ModesResult
from msa_core.runs.request import STORE_FORMAT, RunRequest

DEFAULT_SIZE_LIMIT = 2 << 30  # bytes of finished results kept before the least recently used go


def default_cache_dir() -> Path:
    """``$MSA_CACHE_DIR``, else ``$XDG_CACHE_HOME/msa-dashboard``, else ``~/.cache/msa-dashboard``."""
    if os.environ.get("MSA_CACHE_DIR"):
        return Path(os.environ["MSA_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "msa-dashboard"


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npz_arrays(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


class StoreCheckpoint:
    """The ``Checkpoint`` of one run, kept in the store's work cache."""

    def __init__(self, store: RunStore, fingerprint: str, every_seconds: float):
        self.store, self.key, self.every_seconds = store, f"ckpt:{fingerprint}", every_seconds

    def load(self) -> State | None:
        blob = self.store.work.get(self.key)
        if blob is None:
            return None
        try:
            return npz_arrays(blob)
        except (OSError, ValueError) as err:
            warnings.warn(f"the checkpoint of run {self.key[5:17]} is corrupt ({err}); the run starts over",
                          stacklevel=2)
            self.store.work.delete(self.key)
            return None

    def save(self, state: State) -> None:
        self.store.work.set(self.key, npz_bytes(state))


class RunStore:
    """Results, checkpoints and progress of MSA runs in one directory, safe for many processes."""

    def __init__(self, directory: str | Path | None = None, size_limit: int | None = None):
        self.directory = Path(directory) if directory else default_cache_dir()
        limit = size_limit or int(os.environ.get("MSA_CACHE_SIZE_LIMIT", DEFAULT_SIZE_LIMIT))
        self.results = diskcache.Cache(self.directory / "results", size_limit=limit,
                                       eviction_policy="least-recently-used")
        self.work = diskcache.Cache(self.directory / "work", eviction_policy="none")

    # -- finished results -------------------------------------------------------------------
    def get(self, fingerprint: str) -> ModesResult | None:
        """The stored result, or None. A corrupt or older-format entry is dropped with a warning."""
        blob = self.results.get(fingerprint)
        if blob is None:
            return None
        try:
            result = ModesResult.load(io.BytesIO(blob))
            if result.meta.get("store_format") != STORE_FORMAT:
                raise MSAInputError(f"format {result.meta.get('store_format')}, this version reads {STORE_FORMAT}")
            return result
        except MSAInputError as err:
            warnings.warn(f"stored run {fingerprint[:12]} cannot be read ({err}); it will be recomputed", stacklevel=2)
            self.delete(fingerprint)
            return None

    def put(self, fingerprint: str, result: ModesResult, request: RunRequest) -> None:
        """Store a finished result and its index entry."""
        result.meta.update(store_format=STORE_FORMAT, fingerprint=fingerprint, request=request.to_dict())
        buffer = io.BytesIO()
        result.save(buffer)
        self.results.set(fingerprint, buffer.getvalue())
        self.work.set(f"index:{fingerprint}", json.dumps({
            "fingerprint": fingerprint, "request": request.to_dict(), "created": time.time(),
            "method": result.meta.get("method"), "n_players": result.n_players,
            "output_shape": list(result.output_shape), "n_evaluations": result.n_evaluations,
            "wall_seconds": result.meta.get("wall_seconds"),
        }))

    def list(self) -> list[dict[str, Any]]:
        """Index entries of the stored results, newest first (entries whose result was evicted are dropped)."""
        entries = []
        for key in list(self.work.iterkeys()):
            if not key.startswith("index:"):
                continue
            entry = json.loads(self.work.get(key, "{}"))
            if entry.get("fingerprint") in self.results:
                entries.append(entry)
            else:
                self.work.delete(key)
        return sorted(entries, key=lambda entry: -entry["created"])

    def resolve(self, prefix: str) -> str:
        """The fingerprint of the one stored run whose fingerprint starts with ``prefix``."""
        matches = [entry["fingerprint"] for entry in self.list() if entry["fingerprint"].startswith(prefix)]
        if len(matches) != 1:
            known = ", ".join(entry["fingerprint"][:12] for entry in self.list()) or "none"
            what = "no stored run" if not matches else f"{len(matches)} stored runs"
            raise MSAInputError(f"{what} matches {prefix!r}; stored runs: {known}")
        return matches[0]

    def delete(self, fingerprint: str) -> None:
        """Forget a run: its result, index entry, checkpoint and progress."""
        self.results.delete(fingerprint)
        for prefix in ("index", "ckpt", "progress", "base"):
            self.work.delete(f"{prefix}:{fingerprint}")

    # -- runs in progress ---------------------------------------------------------------------
    def checkpoint(self, fingerprint: str, every_seconds: float = 5.0) -> StoreCheckpoint:
        return StoreCheckpoint(self, fingerprint, every_seconds)

    def keep_as_base(self, fingerprint: str, family: str) -> None:
        """Keep a finished permutation run's last checkpoint so a larger run of its family can extend it."""
        blob = self.work.pop(f"ckpt:{fingerprint}")
        if blob is not None:
            self.work.set(f"base:{family}", blob)

    def seed_from_base(self, fingerprint: str, family: str) -> bool:
        """Start a run from its family's base checkpoint if it has none of its own; True if seeded."""
        base = self.work.get(f"base:{family}")
        if base is None or f"ckpt:{fingerprint}" in self.work:
            return False
        return self.work.add(f"ckpt:{fingerprint}", base)

    def drop_checkpoint(self, fingerprint: str) -> None:
        self.work.delete(f"ckpt:{fingerprint}")

    def set_progress(self, fingerprint: str, **fields: Any) -> None:
        self.work.set(f"progress:{fingerprint}", json.dumps({**fields, "updated": time.time()}))

    def progress(self, fingerprint: str) -> dict[str, Any] | None:
        raw = self.work.get(f"progress:{fingerprint}")
        return json.loads(raw) if raw is not None else None

    @contextmanager
    def lock(self, fingerprint: str, poll_seconds: float = 0.2) -> Iterator[None]:
        """Hold the run's lock (wait while another live process holds it; a dead holder's lock is broken)."""
        key = f"lock:{fingerprint}"
        owner = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        while not self.work.add(key, owner):
            if fingerprint in self.results:  # the holder finished while we waited: let the caller read it
                break
            with self.work.transact():  # break a lock left by a killed process, unless someone took it since
                held = self.work.get(key)
                holder = json.loads(held) if held else {}
                if holder.get("host") == socket.gethostname() and not _alive(holder.get("pid", -1)):
                    self.work.delete(key)
            time.sleep(poll_seconds)
        try:
            yield
        finally:
            if self.work.get(key) == owner:
                self.work.delete(key)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

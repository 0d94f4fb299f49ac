"""``RunStore``: finished results, checkpoints, locks and progress in diskcache, shared by processes.

Layout under one directory (default ``$MSA_CACHE_DIR``, else ``$XDG_CACHE_HOME/msa-dashboard``, else
``~/.cache/msa-dashboard``):

- ``results/``: finished results as ``.npz`` bytes keyed by fingerprint, and ``base:<family>`` the last
  checkpoint of a finished permutation-type run (a larger run of its family extends it). The least
  recently used entries go past ``size_limit`` bytes. Only finished runs live here, so a run in
  progress is never evicted.
- ``work/``: never evicted; ``ckpt:`` checkpoints (npz bytes), ``lock:`` owners, ``progress:`` and
  ``index:`` JSON.

Only bytes, strings and numbers are stored, and the disk layer refuses anything else, so nothing is
ever unpickled.

>>> import tempfile
>>> store = RunStore(tempfile.mkdtemp())
>>> store.list(), store.get("0" * 64) is None
([], True)
"""

from __future__ import annotations

import io
import json
import os
import socket
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import diskcache
import numpy as np

from msa_core.errors import MSAInputError
from msa_core.estimators.checkpoint import State
from msa_core.estimators.plan import CheckpointSummary
from msa_core.result import ModesResult
from msa_core.runs.request import STORE_FORMAT, RunRequest

DEFAULT_SIZE_LIMIT = 2 << 30  # bytes of finished results kept before the least recently used go
UNREADABLE = (MSAInputError, OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)  # a damaged npz


def default_cache_dir() -> Path:
    """``$MSA_CACHE_DIR``, else ``$XDG_CACHE_HOME/msa-dashboard``, else ``~/.cache/msa-dashboard``."""
    if os.environ.get("MSA_CACHE_DIR"):
        return Path(os.environ["MSA_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "msa-dashboard"


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **cast(dict[str, Any], arrays))  # keys are names, never savez options
    return buffer.getvalue()


def npz_arrays(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


class RawDisk(diskcache.Disk):
    """diskcache's disk layer restricted to raw keys and values (str, bytes, int, float): never pickles."""

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) not in (str, bytes, int, float):
            raise TypeError(f"run store keys are str/bytes/int/float, got {type(key).__name__}")
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise ValueError("the run store holds a pickled key; it was not written by msa_core")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> tuple:
        if type(value) not in (str, bytes, int, float):
            raise TypeError(f"run store values are str/bytes/int/float, got {type(value).__name__}")
        return super().store(value, read, key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode == diskcache.core.MODE_PICKLE:
            raise ValueError("the run store holds a pickled value; it was not written by msa_core")
        return super().fetch(mode, filename, value, read)


class StoreCheckpoint:
    """The ``Checkpoint`` of one run, kept in the store's work cache; ``on_save(state)`` is told each save."""

    def __init__(self, store: RunStore, fingerprint: str, every_seconds: float,
                 on_save: Callable[[State], None] | None = None):
        self.store, self.key, self.every_seconds, self.on_save = store, f"ckpt:{fingerprint}", every_seconds, on_save

    def load(self) -> State | None:
        blob = self.store.work.get(self.key)
        if blob is None:
            return None
        try:
            return npz_arrays(blob)
        except UNREADABLE as err:
            warnings.warn(f"the checkpoint of run {self.key[5:17]} is corrupt ({err}); the run starts over",
                          stacklevel=2)
            self.store.work.delete(self.key)
            return None

    def save(self, state: State) -> None:
        self.store.work.set(self.key, npz_bytes(state))
        if self.on_save is not None:
            self.on_save(state)


class RunStore:
    """Results, checkpoints and progress of MSA runs in one directory, safe for many processes.

    ``size_limit``: bytes of finished results kept (default ``$MSA_CACHE_SIZE_LIMIT`` or 2 GiB).
    """

    def __init__(self, directory: str | Path | None = None, size_limit: int | None = None):
        self.directory = Path(directory) if directory else default_cache_dir()
        self.size_limit = size_limit or int(os.environ.get("MSA_CACHE_SIZE_LIMIT", DEFAULT_SIZE_LIMIT))
        try:
            self.results = diskcache.Cache(self.directory / "results", size_limit=self.size_limit,
                                           eviction_policy="least-recently-used", disk=RawDisk)
            self.work = diskcache.Cache(self.directory / "work", eviction_policy="none", disk=RawDisk)
        except OSError as err:
            raise MSAInputError(f"cannot use {self.directory} as the run cache: {err}") from err

    # -- finished results -------------------------------------------------------------------
    def get(self, fingerprint: str) -> ModesResult | None:
        """The stored result, or None. A corrupt or older-format entry is dropped with a warning."""
        try:
            blob = self.results.get(fingerprint)
            if blob is None:
                return None
            result = ModesResult.load(io.BytesIO(blob))
            if result.meta.get("store_format") != STORE_FORMAT:
                raise MSAInputError(f"format {result.meta.get('store_format')}, this version reads {STORE_FORMAT}")
            return result
        except UNREADABLE as err:
            warnings.warn(f"stored run {fingerprint[:12]} cannot be read ({err}); it will be recomputed", stacklevel=2)
            self.delete(fingerprint)
            return None

    def __contains__(self, fingerprint: str) -> bool:
        return fingerprint in self.results

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
            "n_permutations": result.n_permutations, "wall_seconds": result.meta.get("wall_seconds"),
            "bytes": buffer.getbuffer().nbytes,
        }))

    def list(self) -> list[dict[str, Any]]:
        """Index entries of the stored results, newest first (entries whose result was evicted are dropped)."""
        entries = []
        for key in list(self.work.iterkeys()):
            if not key.startswith("index:"):
                continue
            raw = self.work.get(key)
            if raw is None:
                continue
            entry = json.loads(raw)
            if entry.get("fingerprint") in self.results:
                entries.append(entry)
            else:
                self.work.delete(key)
        return sorted(entries, key=lambda entry: -entry["created"])

    def resolve(self, prefix: str) -> str:
        """The fingerprint of the one stored run whose fingerprint starts with ``prefix``."""
        stored = self.list()
        matches = [entry["fingerprint"] for entry in stored if entry["fingerprint"].startswith(prefix)]
        if len(matches) != 1 or not prefix:
            known = ", ".join(entry["fingerprint"][:12] for entry in stored) or "none"
            what = "no stored run" if not matches else f"{len(matches)} stored runs"
            raise MSAInputError(f"{what} matches {prefix!r}; stored runs: {known}")
        return matches[0]

    def delete(self, fingerprint: str) -> None:
        """Forget a run: its result, index entry, checkpoint and progress (not a run in progress)."""
        if self.running(fingerprint):
            raise MSAInputError(f"run {fingerprint[:12]} is in progress; cancel it before deleting it")
        self.results.delete(fingerprint)
        for prefix in ("index", "ckpt", "progress"):
            self.work.delete(f"{prefix}:{fingerprint}")

    def volume(self) -> int:
        """Bytes the finished results take on disk (what ``size_limit`` bounds)."""
        return self.results.volume()

    # -- runs in progress ---------------------------------------------------------------------
    def checkpoint(self, fingerprint: str, every_seconds: float = 5.0,
                   on_save: Callable[[State], None] | None = None) -> StoreCheckpoint:
        return StoreCheckpoint(self, fingerprint, every_seconds, on_save)

    def has_checkpoint(self, fingerprint: str) -> bool:
        return f"ckpt:{fingerprint}" in self.work

    def keep_as_base(self, fingerprint: str, family: str) -> None:
        """Keep a finished run's last checkpoint as its family's base, unless the base has a larger budget."""
        blob = self.work.pop(f"ckpt:{fingerprint}")
        if blob is not None and _budget_of(blob) >= self.base_budget(family):
            self.results.set(f"base:{family}", blob)

    def base_budget(self, family: str) -> int:
        """The budget (evaluations) of the family's base checkpoint; -1 when there is none or it is unreadable."""
        blob = self.results.get(f"base:{family}")
        return _budget_of(blob) if blob is not None else -1

    def seed_from_base(self, fingerprint: str, family: str, budget: int) -> bool:
        """Start a run of ``budget`` evaluations from its family's base checkpoint, if that base is smaller
        and the run has no checkpoint of its own; True if seeded."""
        if self.has_checkpoint(fingerprint) or not 0 <= self.base_budget(family) < budget:
            return False
        blob = self.results.get(f"base:{family}")
        return blob is not None and self.work.add(f"ckpt:{fingerprint}", blob)

    def drop_checkpoint(self, fingerprint: str) -> None:
        self.work.delete(f"ckpt:{fingerprint}")

    def set_progress(self, fingerprint: str, **fields: Any) -> None:
        """Record a run's progress (``state``, ``done``, ``total``, ...) for any process to read."""
        self.work.set(f"progress:{fingerprint}", json.dumps({**fields, "updated": time.time()}))

    def progress(self, fingerprint: str) -> dict[str, Any] | None:
        """The last progress record of a run: ``state``, ``done``, ``total``, ``max_stderr``,
        ``eta_seconds``, ``resumed_from``, ``error``, ``updated`` (None if the run never started here)."""
        raw = self.work.get(f"progress:{fingerprint}")
        return json.loads(raw) if raw is not None else None

    def running(self, fingerprint: str) -> bool:
        """True while a live process holds the run's lock."""
        held = self.work.get(f"lock:{fingerprint}")
        return held is not None and _holder_alive(json.loads(held))

    @contextmanager
    def lock(self, fingerprint: str, poll_seconds: float = 0.2) -> Iterator[None]:
        """Hold the run's lock (wait while another live process holds it; a dead holder's lock is broken).

        Stops waiting as soon as the result is stored, so the caller can read it instead.
        """
        key = f"lock:{fingerprint}"
        owner = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        while not self.work.add(key, owner):
            if fingerprint in self.results:
                break
            with self.work.transact():  # break a lock left by a killed process, unless someone took it since
                held = self.work.get(key)
                if held is not None and not _holder_alive(json.loads(held)):
                    self.work.delete(key)
            time.sleep(poll_seconds)
        try:
            yield
        finally:
            with self.work.transact():
                if self.work.get(key) == owner:
                    self.work.delete(key)


def _budget_of(blob: bytes) -> int:
    """The budget of the run that wrote a checkpoint blob (-1 if unreadable)."""
    try:
        return CheckpointSummary.of(npz_arrays(blob)).plan.budget
    except UNREADABLE:
        return -1


def _holder_alive(holder: dict[str, Any]) -> bool:
    """Whether a lock holder may still be alive (a holder on another host is assumed alive)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

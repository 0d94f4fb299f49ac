"""``RunStore``: finished results, checkpoints, locks and progress in diskcache, shared by
processes.

Layout under one directory (default ``$MSA_CACHE_DIR``, else ``$XDG_CACHE_HOME/msa-dashboard``, else
``~/.cache/msa-dashboard``):

- ``results/``: finished results as ``.npz`` bytes keyed by fingerprint, and ``base:<family>`` the
last
  checkpoint of a finished permutation-type run (a larger run of its family extends it). The least
  recently used entries go past ``size_limit`` bytes. Only finished runs live here, so a run in
  progress is never evicted.
- ``work/``: never evicted; ``ckpt:`` checkpoints (npz bytes), ``lock:`` owners, ``progress:`` and
  ``index:`` JSON.

Only bytes, strings and numbers are stored, and the disk layer refuses anything else, so nothing is
ever unpickled. Every row and file name read is checked (``msa_core.runs.rows``): a row the store
did not write, or cannot read, costs that one entry and a warning naming it, never a file outside
the store. ``RunStore(directory, readonly=True)`` (what ``list``, ``show`` and ``export`` use) reads
through a read-only connection and never writes; ``msa_core.runs.repair`` checks a store and
rebuilds its index from the result files.

>>> import tempfile
>>> store = RunStore(tempfile.mkdtemp())
>>> store.list(), store.get("0" * 64) is None
([], True)
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import socket
import sqlite3
import threading
import time
import uuid
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
from msa_core.paths import default_cache_dir
from msa_core.result import ModesResult
from msa_core.runs.formats import NewerFormat, check_format
from msa_core.runs.request import STORE_FORMAT, RunRequest
from msa_core.runs.rows import RowReader, UnreadableRow, repair_hint, safe_file
from msa_core.runs.signals import signals_deferred

INTERACTION_KEY, INTERACTION_INDEX = "ix:", "ixindex:"  # msa_core.runs.interaction_runs' rows
WORK_PREFIXES = ("index:", "ckpt:", "progress:", "lock:", INTERACTION_INDEX)  # every work/ key


def interaction_index_key(key: str) -> str:
    """The ``work/`` key of interaction run ``key``'s index entry (``ix:<sha>`` ->
    ``ixindex:<sha>``)."""
    return INTERACTION_INDEX + key[len(INTERACTION_KEY) :]


DEFAULT_SIZE_LIMIT = 2 << 30  # bytes of finished results kept before the least recently used go
MIN_SIZE_LIMIT = 64 << 20  # the smallest $MSA_CACHE_SIZE_LIMIT accepted
UNREADABLE = (
    MSAInputError,
    OSError,
    ValueError,
    EOFError,
    KeyError,
    zipfile.BadZipFile,
)  # a damaged npz
FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
HEARTBEAT_SECONDS = 5.0  # a lock holder rewrites its heartbeat this often
DEFAULT_STALE_SECONDS = 60.0  # a lock whose heartbeat is older is broken ($MSA_LOCK_STALE_SECONDS)
SAVE_ATTEMPTS = 3  # a failed checkpoint write is tried this often before the run goes on without it
SAVE_RETRY_SECONDS = 0.5
RESERVE_BYTES = 1 << 20  # disk set aside while a run holds its lock (see ``RunStore._reserve``)


def cache_size_limit() -> int:
    """Bytes of finished results a store keeps: ``$MSA_CACHE_SIZE_LIMIT``, else 2 GiB.

    Raises:
        MSAInputError: the variable is not a whole number of bytes (digits only) of at least
            ``MIN_SIZE_LIMIT`` (64 MiB: a smaller store would evict the run it just stored).
    """
    raw = os.environ.get("MSA_CACHE_SIZE_LIMIT")
    if raw is None:
        return DEFAULT_SIZE_LIMIT
    limit = int(raw.strip()) if raw.strip().isdigit() else -1
    if limit < MIN_SIZE_LIMIT:
        raise MSAInputError(
            f"MSA_CACHE_SIZE_LIMIT must be a whole number of bytes (digits only) of at least "
            f"{MIN_SIZE_LIMIT} (64 MiB), e.g. {DEFAULT_SIZE_LIMIT} for the default 2 GiB; got "
            f"{raw!r}"
        )
    return limit


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **cast(dict[str, Any], arrays))  # keys are names, never savez options
    return buffer.getvalue()


def npz_arrays(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


class RawDisk(diskcache.Disk):
    """diskcache's disk layer restricted to raw keys and values (str, bytes, int, float): never
    pickles, and never reads or removes a file that is not one of its folder's own value files."""

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) not in (str, bytes, int, float):
            raise TypeError(f"run store keys are str/bytes/int/float, got {type(key).__name__}")
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise UnreadableRow("the run store holds a pickled key; it was not written by msa_core")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> tuple:
        if type(value) not in (str, bytes, int, float):
            raise TypeError(f"run store values are str/bytes/int/float, got {type(value).__name__}")
        stored = super().store(value, read, key)
        self.written.filename = stored[2]  # None: kept in its row
        return stored

    @property
    def written(self) -> threading.local:
        """This thread's last value file written (``.filename``), until its row names it."""
        if "_written" not in self.__dict__:
            self.__dict__["_written"] = threading.local()
        return cast(threading.local, self.__dict__["_written"])

    def _write(self, full_path: str, iterator: Any, mode: str, encoding: str | None = None) -> int:
        """Write a value file; one that cannot be written whole (a full disk) is removed."""
        try:
            return cast(int, super()._write(full_path, iterator, mode, encoding))
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(full_path)
            raise

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode == diskcache.core.MODE_PICKLE:
            raise UnreadableRow(
                "the run store holds a pickled value; it was not written by msa_core"
            )
        if mode != diskcache.core.MODE_RAW and safe_file(self._directory, filename) is None:
            raise UnreadableRow(
                f"a row names the file {filename!r}, not one of the store's own files"
            )
        try:
            return super().fetch(mode, filename, value, read)
        except FileNotFoundError as err:  # diskcache would answer "no such key" without a word
            raise UnreadableRow(f"its file {filename} is missing") from err

    def remove(self, file_path: str) -> None:
        if safe_file(self._directory, file_path) is None:
            warnings.warn(
                f"the run store did not delete {file_path!r}: not one of its own files",
                stacklevel=2,
            )
            return
        super().remove(file_path)


class StoreCheckpoint:
    """The ``Checkpoint`` of one run, kept in the store's work cache; ``on_save(state)`` is told
    each save.

    A write that fails (a full disk) is tried ``SAVE_ATTEMPTS`` times; then the run goes on with a
    warning, its progress kept in memory (only an interruption would lose the unsaved part).
    """

    def __init__(
        self,
        store: RunStore,
        fingerprint: str,
        every_seconds: float,
        on_save: Callable[[State], None] | None = None,
    ):
        self.store, self.key, self.every_seconds, self.on_save = (
            store,
            f"ckpt:{fingerprint}",
            every_seconds,
            on_save,
        )
        self.failed_saves = 0

    def load(self) -> State | None:
        try:
            blob = self.store.work.get(self.key)
            if blob is None:
                return None
            return npz_arrays(blob)
        except UNREADABLE as err:
            warnings.warn(
                f"the checkpoint of run {self.key[5:17]} is corrupt ({err}); the run starts over",
                stacklevel=2,
            )
            self.store.work.delete(self.key)
            return None

    def save(self, state: State) -> None:
        blob = npz_bytes(state)
        for attempt in range(SAVE_ATTEMPTS):
            try:
                self.store.work.set(self.key, blob)
                break
            except (OSError, sqlite3.OperationalError, diskcache.Timeout) as err:
                if attempt + 1 < SAVE_ATTEMPTS:
                    time.sleep(SAVE_RETRY_SECONDS)
                    continue
                self.failed_saves += 1
                warnings.warn(
                    f"checkpoint of run {self.key[5:17]} not saved after {SAVE_ATTEMPTS} tries "
                    f"({type(err).__name__}: {err}); the run goes on, but an interruption now "
                    f"would lose the work since its last saved checkpoint. Free space in "
                    f"{self.store.directory}",
                    stacklevel=2,
                )
                return
        if self.on_save is not None:
            self.on_save(state)


class RawCache(diskcache.Cache):
    """A diskcache whose writes an interrupt cannot split: Ctrl-C or SIGTERM during ``set``,
    ``add``, ``delete``, ``pop`` or a ``transact`` block is handled once it ends (no transaction
    left open, no value file without its row)."""

    def set(self, *args: Any, **kwargs: Any) -> bool:
        with signals_deferred(), self._no_orphan():
            return super().set(*args, **kwargs)

    def add(self, *args: Any, **kwargs: Any) -> bool:
        with signals_deferred(), self._no_orphan():
            return super().add(*args, **kwargs)

    @contextmanager
    def _no_orphan(self) -> Iterator[None]:
        """Remove the value file a failed write left without its row (the disk filled up)."""
        written = cast(RawDisk, self._disk).written
        written.filename = None
        try:
            yield
        except BaseException:
            filename = getattr(written, "filename", None)
            if filename is not None:
                with contextlib.suppress(sqlite3.Error):  # unsure: the file stays
                    named = self._sql("SELECT 1 FROM Cache WHERE filename = ?", (filename,))
                    if named.fetchone() is None:
                        self._disk.remove(filename)
            raise
        finally:
            written.filename = None

    def delete(self, *args: Any, **kwargs: Any) -> bool:
        with signals_deferred():
            return super().delete(*args, **kwargs)

    def pop(self, *args: Any, **kwargs: Any) -> Any:
        with signals_deferred():
            return super().pop(*args, **kwargs)

    @contextmanager
    def transact(self, retry: bool = False) -> Iterator[None]:
        with signals_deferred(), super().transact(retry):
            yield


FULL_DISK_ADVICE = (
    "free space (`python -m msa_core delete --all{option}` removes every stored run with its "
    "checkpoints; `delete RUN` one run) and run the command again: an interrupted run resumes "
    "from its last saved checkpoint"
)


def store_problem(err: BaseException, directory: Path) -> str:
    """What a failed write or open of the store at ``directory`` means, and what to do (a
    sentence): a full disk, a folder this user cannot write, or else a damaged database."""
    text = str(err).lower()
    option = f" --cache-dir {directory}"
    if getattr(err, "errno", None) == errno.ENOSPC or "full" in text:
        return f"the disk holding the run store {directory} is full ({err}); " + (
            FULL_DISK_ADVICE.format(option=option)
        )
    if (
        getattr(err, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS)
        or "readonly" in text
        or "read-only" in text
        or not _writable_folder(directory)
    ):
        return (
            f"the run store {directory} is read-only for this user ({err}); give this user write "
            "permission on it, or use a writable folder (--cache-dir / $MSA_CACHE_DIR). Reading "
            "commands (list, show, export) work as they are"
        )
    return (
        f"the run store's database in {directory} is damaged ({err}); "
        f"{repair_hint(directory)} rebuilds it from the result files"
    )


def _writable_folder(directory: Path) -> bool:
    """Whether this user may write the store's folders and databases (those that exist)."""
    paths = [directory, *(directory / name for name in ("results", "work"))]
    paths += [path / "cache.db" for path in paths[1:]]
    return all(os.access(path, os.W_OK) for path in paths if path.exists())


def free_files(directory: Path, owners: set[str] | None = None) -> int:
    """Remove the value files of runs about to be deleted, through read-only connections: a disk
    too full for the store's databases to open gets the space back first. Their rows, until
    deleted, read as missing (that entry alone is then dropped).

    Args:
        directory: the store.
        owners: the fingerprints (or interaction keys) whose results, checkpoints and records go;
            None: every entry (family base checkpoints included).

    Returns:
        Bytes freed. Runs in progress (a live lock) keep their files.
    """
    readers = {name: RowReader(directory / name) for name in ("results", "work")}
    running = set()
    for key in readers["work"].keys("lock:"):
        with contextlib.suppress(UnreadableRow, ValueError, TypeError):
            held = json.loads(readers["work"].get(key))
            if isinstance(held, dict) and stale_because(held) is None:
                running.add(key[len("lock:") :])
    freed = 0
    for name, reader in readers.items():
        for row in reader.rows():
            if not isinstance(row.key, str) or row.key.startswith("lock:"):
                continue
            owner = row.key if name == "results" else row.key.partition(":")[2]
            wanted = owners is None or owner in owners
            path = safe_file(reader.folder, row.filename)
            if wanted and owner not in running and path is not None and path.exists():
                freed += path.stat().st_size
                path.unlink()
    return freed


def open_cache(folder: Path, **settings: Any) -> diskcache.Cache:
    """A writable diskcache of raw values; a database that cannot be opened is an ``MSAInputError``
    saying why (read-only, a full disk, or damaged: then naming the repair)."""
    try:
        return RawCache(folder, disk=RawDisk, **settings)
    except (sqlite3.DatabaseError, OSError) as err:
        raise MSAInputError(store_problem(err, folder.parent)) from err


class RunStore:
    """Results, checkpoints and progress of MSA runs in one directory, safe for many processes.

    ``size_limit``: bytes of finished results kept (default ``cache_size_limit()``: checked here,
    before any work).
    ``readonly``: read through read-only connections (never writes, not even to a full disk; a
    missing folder reads as an empty store); the methods that write raise ``MSAInputError``.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        size_limit: int | None = None,
        readonly: bool = False,
    ):
        self.directory = Path(directory) if directory else default_cache_dir()
        if size_limit is not None and (
            isinstance(size_limit, bool) or not isinstance(size_limit, int) or size_limit <= 0
        ):
            raise MSAInputError(
                f"size_limit must be a positive number of bytes; got {size_limit!r}"
            )
        self.size_limit = size_limit or cache_size_limit()
        self.readonly = readonly
        self._reserves: dict[str, Path] = {}  # fingerprint: its reserve file, while locked here
        self.results: Any
        self.work: Any
        if readonly:
            self.results, self.work = (
                RowReader(self.directory / "results"),
                RowReader(self.directory / "work"),
            )
            self.results.check()
            self.work.check()
        else:
            try:
                self.results = open_cache(
                    self.directory / "results",
                    size_limit=self.size_limit,
                    eviction_policy="least-recently-used",
                )
                self.work = open_cache(self.directory / "work", eviction_policy="none")
            except OSError as err:
                if not _writable_folder(self.directory) or err.errno == errno.ENOSPC:
                    raise MSAInputError(store_problem(err, self.directory)) from err
                raise MSAInputError(f"cannot use {self.directory} as the run cache: {err}") from err
        # read-only views for listing keys (a writable store shares its databases with writers)
        self.rows = {
            name: RowReader(self.directory / name, shared=not readonly)
            for name in ("results", "work")
        }

    def _writable(self, what: str) -> None:
        if self.readonly:
            raise MSAInputError(
                f"cannot {what}: the run store {self.directory} was opened read-only"
            )

    # -- finished results -------------------------------------------------------------------
    def get(self, fingerprint: str) -> ModesResult | None:
        """The stored result, or None. A corrupt or older-format entry is dropped with a warning
        (kept, in a read-only store).

        Raises:
            NewerFormat: the entry was written by a newer msa_core (it is kept, never dropped).
        """
        if not isinstance(fingerprint, str) or not FINGERPRINT.match(fingerprint):
            return None
        try:
            blob = self.results.get(fingerprint)
            if blob is None:
                return None
            if not isinstance(blob, bytes):
                raise MSAInputError(
                    f"its value is a {type(blob).__name__}, not the bytes of a result"
                )
            result = ModesResult.load(io.BytesIO(blob))
            check_format(result.meta.get("store_format"), STORE_FORMAT, f"run {fingerprint[:12]}")
            if result.meta.get("fingerprint") != fingerprint:
                raise MSAInputError(f"it holds run {str(result.meta.get('fingerprint'))[:12]}")
            return result
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
        self._writable("store a result")
        result.meta.update(
            store_format=STORE_FORMAT, fingerprint=fingerprint, request=request.to_dict()
        )
        buffer = io.BytesIO()
        result.save(buffer)
        if buffer.getbuffer().nbytes > self.size_limit:  # it would be evicted as it is stored
            raise MSAInputError(
                f"run {fingerprint[:12]} takes {buffer.getbuffer().nbytes / 1e6:.1f} MB, more than "
                f"the store keeps ({self.size_limit / 1e6:.1f} MB: $MSA_CACHE_SIZE_LIMIT)"
            )
        self.results.set(fingerprint, buffer.getvalue())
        entry = index_entry(result, time.time(), buffer.getbuffer().nbytes)
        self.work.set(f"index:{fingerprint}", json.dumps({**entry, "family": family}))

    def list(self) -> list[dict[str, Any]]:
        """Index entries of the stored results, newest first; never writes.

        A result without a readable index entry (``work/`` lost or damaged) is listed from the
        result itself; an index entry without its result (evicted) is left out; a row that cannot be
        read is left out with a warning naming it.
        """
        entries = {}
        for key in self.rows["work"].keys("index:"):
            fingerprint = key[6:]
            try:
                entries[fingerprint] = checked_entry(
                    json.loads(self.rows["work"].get(key)), fingerprint
                )
            except (UnreadableRow, ValueError, TypeError) as err:
                warnings.warn(
                    f"index entry {fingerprint[:12]} of {self.directory} cannot be read ({err}); "
                    f"the run is listed from its result if that can be read",
                    stacklevel=2,
                )
        listed = []
        for fingerprint in self.rows["results"].keys():
            if not FINGERPRINT.match(fingerprint):
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
        """Forget a run: its result, index entry, checkpoint and progress (not a run in
        progress)."""
        self._writable("delete a run")
        if self.running(fingerprint):
            raise MSAInputError(
                f"run {fingerprint[:12]} is in progress; cancel it before deleting it"
            )
        families = self._families()
        family = families.pop(fingerprint, None)
        self._free(self.results, fingerprint)
        for prefix in ("index", "ckpt", "progress"):
            self._free(self.work, f"{prefix}:{fingerprint}")
        if family is not None and family not in families.values():
            self._free(self.results, f"base:{family}")  # the family's last run: its base goes too

    def _families(self) -> dict[str, str]:
        """The family of each run whose index entry records one (fingerprint: family)."""
        families = {}
        for key in self.rows["work"].keys("index:"):
            with contextlib.suppress(UnreadableRow, ValueError, TypeError, AttributeError):
                family = json.loads(self.rows["work"].get(key)).get("family")
                if isinstance(family, str):
                    families[key[len("index:") :]] = family
        return families

    def clear(self) -> tuple[str, ...]:
        """Delete every stored run and interaction run with their index entries, checkpoints,
        progress records and the family base checkpoints, except what runs in progress use.

        Returns:
            The fingerprints of the runs and the keys (``ix:...``) of the interaction runs deleted.
        """
        self._writable("delete runs")
        self._drop_stale_reserves()
        deleted: tuple[str, ...] = ()
        for key in tuple(self.rows["results"].keys()):
            if not key.startswith("base:") and self.running(key):
                continue
            self._free(self.results, key)
            if FINGERPRINT.match(key) or key.startswith(INTERACTION_KEY):
                deleted += (key,)
        for key in tuple(self.rows["work"].keys()):
            prefix, _, owner = key.partition(":")
            if prefix == "lock" or self.running(owner):
                continue
            self._free(self.work, key)
        return deleted

    def _free(self, cache: diskcache.Cache, key: str) -> None:
        """Delete a row, its value file first: a full disk, which may refuse to change the
        database, still gets the file's space back (the row, if left, reads as missing)."""
        row = self.rows["results" if cache is self.results else "work"].row(key)
        if row is not None and row.filename and safe_file(cache.directory, row.filename):
            cache._disk.remove(row.filename)
        cache.delete(key)

    def volume(self) -> int:
        """Bytes the finished results take on disk (what ``size_limit`` bounds)."""
        return self.results.volume()

    def check_free_space(self, needed: int) -> None:
        """Raise ``MSAInputError`` unless the store's disk has ``needed`` bytes free (plus 5%
        headroom)."""
        folder = self.directory if self.directory.exists() else self.directory.parent
        free = shutil.disk_usage(folder).free
        if free < needed * 1.05:
            raise MSAInputError(
                f"the run needs about {needed / 1e6:.1f} MB in {self.directory} for its result and "
                f"checkpoints, but only {free / 1e6:.1f} MB are free; free some space (e.g. "
                f"`python -m msa_core delete ...`) or set --cache-dir / $MSA_CACHE_DIR elsewhere"
            )

    # -- interaction runs (``msa_core.runs.interaction_runs`` gives the bytes their meaning) ------
    def interaction_blob(self, key: str) -> bytes | None:
        """The stored bytes of interaction run ``key`` (``ix:<sha>``), or None."""
        blob = self.results.get(key)
        return blob if isinstance(blob, bytes) else None

    def put_interaction(self, key: str, blob: bytes, entry: dict[str, Any]) -> None:
        """Store an interaction run's result bytes and its index entry (JSON-ready)."""
        self._writable("store an interaction run")
        self.results.set(key, blob)
        self.work.set(interaction_index_key(key), json.dumps(entry))

    def delete_interaction(self, key: str) -> None:
        """Forget an interaction run: its result, index entry, checkpoint and progress record."""
        self._writable("delete an interaction run")
        self._free(self.results, key)
        for name in (interaction_index_key(key), f"ckpt:{key}", f"progress:{key}"):
            self._free(self.work, name)

    def interaction_entries(self) -> tuple[dict[str, Any], ...]:
        """The index entries of the stored interaction runs (one whose result is gone is
        dropped)."""
        entries = []
        for name in list(self.work.iterkeys()):
            if not name.startswith(INTERACTION_INDEX):
                continue
            raw = self.work.get(name)
            if raw is None:
                continue
            entry = json.loads(raw)
            if entry["key"] not in self.results:
                self.work.delete(name)
            else:
                entries.append(entry)
        return tuple(entries)

    # -- runs in progress ---------------------------------------------------------------------
    def checkpoint(
        self,
        fingerprint: str,
        every_seconds: float = 5.0,
        on_save: Callable[[State], None] | None = None,
    ) -> StoreCheckpoint:
        return StoreCheckpoint(self, fingerprint, every_seconds, on_save)

    def checkpoint_summary(self, fingerprint: str) -> CheckpointSummary | None:
        """The run's saved checkpoint, read (None: none, or unreadable); never writes."""
        try:
            blob = self.rows["work"].get(f"ckpt:{fingerprint}")
            return CheckpointSummary.of(npz_arrays(blob)) if blob is not None else None
        except (UnreadableRow, *UNREADABLE):
            return None

    def has_checkpoint(self, fingerprint: str) -> bool:
        return f"ckpt:{fingerprint}" in self.work

    def keep_as_base(self, fingerprint: str, family: str) -> None:
        """Keep a finished run's last checkpoint as its family's base, unless the base has a larger
        budget."""
        blob = self.work.pop(f"ckpt:{fingerprint}")
        if blob is not None and _budget_of(blob) >= self.base_budget(family):
            self.results.set(f"base:{family}", blob)

    def base_budget(self, family: str) -> int:
        """The budget (evaluations) of the family's base checkpoint; -1 when there is none or it is
        unreadable."""
        try:
            blob = self.results.get(f"base:{family}")
        except UnreadableRow:
            return -1
        return _budget_of(blob) if blob is not None else -1

    def seed_from_base(self, fingerprint: str, family: str, budget: int) -> bool:
        """Start a run of ``budget`` evaluations from its family's base checkpoint, if that base is
        smaller and the run has no checkpoint of its own; True if seeded."""
        if self.has_checkpoint(fingerprint) or not 0 <= self.base_budget(family) < budget:
            return False
        blob = self.results.get(f"base:{family}")
        return blob is not None and self.work.add(f"ckpt:{fingerprint}", blob)

    def drop_checkpoint(self, fingerprint: str) -> None:
        self.work.delete(f"ckpt:{fingerprint}")

    def set_progress(self, fingerprint: str, **fields: Any) -> None:
        """Record a run's progress (``state``, ``done``, ``total``, ...) for any process to read; a
        failed write (a full disk) is a warning, not the end of the run."""
        try:
            self.work.set(f"progress:{fingerprint}", json.dumps({**fields, "updated": time.time()}))
        except (OSError, sqlite3.OperationalError, diskcache.Timeout) as err:
            warnings.warn(
                f"progress of run {fingerprint[:12]} not recorded ({type(err).__name__}: {err})",
                stacklevel=2,
            )

    def progress_fingerprints(self) -> tuple[str, ...]:
        """Fingerprints of the runs that have a progress record (this process's, other apps' and the
        CLI's); never writes."""
        return tuple(key[len("progress:") :] for key in self.rows["work"].keys("progress:"))

    def progress(self, fingerprint: str) -> dict[str, Any] | None:
        """The last progress record of a run: ``state``, ``done``, ``total``, ``max_stderr``,
        ``eta_seconds``, ``resumed_from``, ``error``, ``updated`` (None if the run never started
        here)."""
        try:
            raw = self.work.get(f"progress:{fingerprint}")
            record = json.loads(raw) if raw is not None else None
        except (UnreadableRow, ValueError, TypeError) as err:
            warnings.warn(
                f"the progress record of run {fingerprint[:12]} cannot be read ({err})",
                stacklevel=2,
            )
            return None
        return record if isinstance(record, dict) else None

    def holder(self, fingerprint: str) -> dict[str, Any] | None:
        """The lock record of a run (``pid``, ``host``, ``heartbeat``, ``token``), None when
        unlocked or unreadable."""
        try:
            held = json.loads(self.work.get(f"lock:{fingerprint}") or "null")
        except (UnreadableRow, ValueError, TypeError):
            return None
        return held if isinstance(held, dict) else None

    def running(self, fingerprint: str) -> bool:
        """True while a live process holds the run's lock (one that heartbeats, see ``lock``)."""
        held = self.holder(fingerprint)
        return held is not None and stale_because(held) is None

    @contextmanager
    def lock(
        self, fingerprint: str, poll_seconds: float = 0.2, timeout: float | None = None
    ) -> Iterator[None]:
        """Hold the run's lock while the body runs; the lock records host, pid and a heartbeat that
        a thread rewrites every ``HEARTBEAT_SECONDS``.

        Waits while another live process holds it, at most ``timeout`` seconds (None: as long as the
        holder heartbeats; then ``MSAInputError`` saying who holds it). A holder found dead (same
        host, no such process) or whose heartbeat is older than ``$MSA_LOCK_STALE_SECONDS`` (default
        60 s, e.g. a container restarted or another machine on a shared folder stopped) is broken
        with a warning. Stops waiting as soon as the result is stored, so the caller can read it
        instead.
        """
        self._writable("run")
        key = f"lock:{fingerprint}"
        token = uuid.uuid4().hex
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.work.add(key, _lock_record(token)):
            if fingerprint in self.results:
                break
            with self.work.transact():  # break a dead or stale lock, unless someone took it since
                held = self.holder(fingerprint)
                why = stale_because(held) if held is not None else "unreadable"
                if why is not None:
                    self.work.delete(key)
            if why is not None:
                warnings.warn(f"broke the lock of run {fingerprint[:12]}: {why}", stacklevel=3)
                continue
            if deadline is not None and time.monotonic() > deadline:
                raise MSAInputError(
                    f"run {fingerprint[:12]} is being computed by {_describe(held)}; gave up "
                    f"waiting after {timeout:g} s. Run the command again to wait longer (or "
                    f"without a wait limit); its result is then read from the store"
                )
            time.sleep(poll_seconds)
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat,
            args=(key, token, stop),
            daemon=True,
            name=f"msa-lock-{fingerprint[:8]}",
        )
        beat.start()
        self._reserve(fingerprint, token)
        try:
            yield
        finally:
            stop.set()
            beat.join()
            self.free_reserve(fingerprint)
            try:
                with self.work.transact():
                    if (self.holder(fingerprint) or {}).get("token") == token:
                        self.work.delete(key)
            except (OSError, sqlite3.OperationalError, diskcache.Timeout) as err:
                warnings.warn(
                    f"the lock of run {fingerprint[:12]} could not be released "
                    f"({type(err).__name__}: {err}); the next process to run it breaks it once "
                    f"this one (pid {os.getpid()}) has exited",
                    stacklevel=3,
                )

    def _reserve(self, fingerprint: str, token: str) -> Path | None:
        """Set ``RESERVE_BYTES`` of disk aside for as long as the run's lock is held (None when
        the disk has not even that): ``free_reserve`` gives it back when a write fails, so the
        progress record and the lock's release are written even on a disk that filled up."""
        self._drop_stale_reserves()
        path = self.directory / f".reserve-{token}"
        try:
            with open(path, "xb") as handle:
                handle.write(bytes(RESERVE_BYTES))
        except OSError:
            path.unlink(missing_ok=True)
            return None
        self._reserves[fingerprint] = path
        return path

    def _drop_stale_reserves(self) -> None:
        """Remove the reserve files of runs whose lock is gone (a process killed with -9)."""
        live = set()
        for key in self.rows["work"].keys("lock:"):
            held = self.holder(key[len("lock:") :])
            if held is not None and stale_because(held) is None:
                live.add(held.get("token"))
        for path in self.directory.glob(".reserve-*"):
            if path.name[len(".reserve-") :] not in live:
                path.unlink(missing_ok=True)

    def free_reserve(self, fingerprint: str) -> None:
        """Give back the disk space set aside while the run's lock is held (see ``_reserve``)."""
        path = self._reserves.pop(fingerprint, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def _heartbeat(self, key: str, token: str, stop: threading.Event) -> None:
        """Rewrite the lock's heartbeat until ``stop`` (only while the lock is still ours)."""
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                with self.work.transact():
                    if (self.holder(key[5:]) or {}).get("token") == token:
                        self.work.set(key, _lock_record(token))
            except (OSError, sqlite3.OperationalError, diskcache.Timeout):
                continue  # a missed beat; the lock goes stale only after many


def _lock_record(token: str) -> str:
    return json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "heartbeat": time.time(), "token": token}
    )


def stale_seconds() -> float:
    """Seconds without a heartbeat after which a lock is broken: ``$MSA_LOCK_STALE_SECONDS``, else
    60."""
    raw = os.environ.get("MSA_LOCK_STALE_SECONDS")
    try:
        seconds = float(raw) if raw is not None else DEFAULT_STALE_SECONDS
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise MSAInputError(
            f"MSA_LOCK_STALE_SECONDS must be a positive number of seconds; got {raw!r}"
        )
    return seconds


def stale_because(holder: dict[str, Any]) -> str | None:
    """Why a lock holder is dead or stale (a sentence), or None while it may be alive.

    Dead: on this host, its pid names no process. Stale: its last heartbeat is older than
    ``stale_seconds()`` (a lock without a heartbeat counts as stale unless its process is alive
    here).
    """
    here = holder.get("host") == socket.gethostname()
    pid = holder.get("pid")
    if here and (not isinstance(pid, int) or pid <= 0 or not _process_exists(pid)):
        return f"its holder, pid {pid} on this host ({holder.get('host')}), no longer runs"
    beat = holder.get("heartbeat")
    if not isinstance(beat, (int, float)):
        return None if here else f"its holder {_describe(holder)} records no heartbeat"
    age = time.time() - beat
    limit = stale_seconds()
    if age > limit:
        return (
            f"its holder {_describe(holder)} last sent a heartbeat {age:.0f} s ago "
            f"(stale after {limit:g} s)"
        )
    return None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process"
    beat = holder.get("heartbeat")
    age = f", heartbeat {time.time() - beat:.0f} s ago" if isinstance(beat, (int, float)) else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')}{age}"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def index_entry(result: ModesResult, created: float, size: int) -> dict[str, Any]:
    """The ``index:`` entry of a stored result (what ``list`` shows)."""
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


REQUEST_TEXT = ("model", "lesion", "method")  # request fields every index entry must name as text


def checked_entry(entry: Any, fingerprint: str) -> dict[str, Any]:
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


def row_size(rows: RowReader, row: Any) -> int:
    """Bytes of a row's value (its file, or inline)."""
    path = safe_file(rows.folder, row.filename)
    return path.stat().st_size if path is not None and path.exists() else len(row.value or b"")


def _budget_of(blob: bytes) -> int:
    """The budget of the run that wrote a checkpoint blob (-1 if unreadable)."""
    try:
        return CheckpointSummary.of(npz_arrays(blob)).plan.budget
    except UNREADABLE:
        return -1

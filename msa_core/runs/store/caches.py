"""``Caches``: the run store's two databases in one directory, which every namespace owner of this
package reads and writes through.

- ``results/``: finished results (``results.RESULTS``, ``interactions.INTERACTIONS``) and family
  base checkpoints (``checkpoints.BASES``); the least recently used go past ``size_limit`` bytes.
  Only finished runs live here, so a run in progress is never evicted.
- ``work/``: never evicted; checkpoints, lock owners, progress records and index entries.
"""

from __future__ import annotations

import errno
import json
import os
import warnings
from pathlib import Path
from typing import Any

import diskcache

from msa_core.errors import MSAInputError
from msa_core.paths import default_cache_dir
from msa_core.runs.rows import RowReader, UnreadableRow, safe_file
from msa_core.runs.store.problems import WRITE_ERRORS, open_cache, store_problem, writable_folder

DEFAULT_SIZE_LIMIT = 2 << 30  # bytes of finished results kept before the least recently used go
MIN_SIZE_LIMIT = 64 << 20  # the smallest $MSA_CACHE_SIZE_LIMIT accepted
FOLDERS = ("results", "work")


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


class Caches:
    """The ``results/`` and ``work/`` databases of the store in ``directory``.

    ``results`` and ``work`` are diskcaches (``RowReader``s when ``readonly``: those never write,
    not even to a full disk, and a missing folder reads as an empty store); ``rows`` are read-only
    views of both for listing keys (a writable store shares its databases with writers).

    Args:
        directory: the store's folder (None: ``default_cache_dir()``).
        size_limit: bytes of finished results kept (None: ``cache_size_limit()``, checked here,
            before any work).
        readonly: read through read-only connections; ``require_writable`` then raises.
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
        self.results: Any  # a diskcache, or a RowReader when read-only
        self.work: Any
        if readonly:
            self.results, self.work = (RowReader(self.directory / name) for name in FOLDERS)
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
                if not writable_folder(self.directory) or err.errno == errno.ENOSPC:
                    raise MSAInputError(store_problem(err, self.directory)) from err
                raise MSAInputError(f"cannot use {self.directory} as the run cache: {err}") from err
        self.rows = {
            name: RowReader(self.directory / name, shared=not readonly) for name in FOLDERS
        }

    def require_writable(self, what: str) -> None:
        """Raise ``MSAInputError`` (saying the store cannot ``what``) when opened read-only."""
        if self.readonly:
            raise MSAInputError(
                f"cannot {what}: the run store {self.directory} was opened read-only"
            )

    def free(self, folder: str, key: str) -> None:
        """Delete row ``key`` of ``folder`` (``results`` or ``work``), its value file first: a full
        disk, which may refuse to change the database, still gets the file's space back (the row,
        if left, reads as missing)."""
        cache = self.results if folder == "results" else self.work
        row = self.rows[folder].row(key)
        if row is not None and row.filename and safe_file(cache.directory, row.filename):
            cache._disk.remove(row.filename)
        cache.delete(key)


def read_record(cache: diskcache.Cache, key: str, what: str) -> dict[str, Any] | None:
    """The JSON object kept at ``key``: None when there is none, or when it cannot be read (then
    with the warning "``what`` cannot be read (why)", pointing at the caller's caller)."""
    try:
        raw = cache.get(key)
        record = json.loads(raw) if raw is not None else None
    except (UnreadableRow, ValueError, TypeError) as err:
        warnings.warn(f"{what} cannot be read ({err})", stacklevel=4)
        return None
    return record if isinstance(record, dict) else None


def write_record(cache: diskcache.Cache, key: str, record: dict[str, Any], failed: str) -> None:
    """Keep ``record`` at ``key`` as JSON; a write the disk refuses (``WRITE_ERRORS``) is the
    warning "``failed`` (error)", pointing at the caller's caller, for callers that go on
    without it."""
    text = json.dumps(record)
    try:
        cache.set(key, text)
    except WRITE_ERRORS as err:
        warnings.warn(f"{failed} ({type(err).__name__}: {err})", stacklevel=4)

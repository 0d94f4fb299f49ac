"""Reading one diskcache folder of the run store row by row, safely and without writing to it.

diskcache keeps each row in ``<folder>/cache.db`` (table ``Cache``: ``key``, ``raw``, ``mode``,
``filename``, ``value``); values over 32 KiB live in files ``<folder>/ab/cd/<28 hex>.val`` named by
the row. The store trusts neither: ``safe_file`` accepts only a file name of that exact form that
resolves inside the folder (no absolute path, no ``..``, no symbolic link), and ``RowReader`` reads
rows through a read-only SQLite connection, skipping (with a warning naming the row) a pickled key
or value, an unsafe or missing file. A damaged ``cache.db`` is an ``MSAInputError`` that names the
repair command.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> safe_file(folder, "/etc/passwd") is None, safe_file(folder, "../x.val") is None
(True, True)
>>> own = "ab/cd/0123456789abcdef0123456789ab.val"
>>> safe_file(folder, own) == folder / own
True
>>> RowReader(folder / "missing").get("k") is None  # a folder without a database reads as empty
True
"""

from __future__ import annotations

import os
import re
import sqlite3
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from msa_core.errors import MSAInputError

DB_NAME = "cache.db"
FILE_NAME = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{28}\.val$")  # diskcache.Disk.filename's
MODE_RAW, MODE_BINARY, MODE_TEXT, MODE_PICKLE = 1, 2, 3, 4  # diskcache.core's value modes
RAW_TYPES = (str, bytes, int, float)


class UnreadableRow(ValueError):
    """A row the store did not write or cannot read (pickled, unsafe file name, missing file)."""


def repair_hint(directory: Path) -> str:
    """The command that rebuilds a store's index from its result files."""
    return f"`python -m msa_core store repair --cache-dir {directory}`"


def safe_file(folder: str | Path, filename: object) -> Path | None:
    """The path of a row's value file if ``filename`` is one of the folder's own file names, else
    None.

    Args:
        folder: the diskcache folder (``results/`` or ``work/``).
        filename: the ``filename`` column of a row (diskcache writes ``ab/cd/<28 hex>.val``).
    Returns:
        ``folder / filename`` when the name has diskcache's form and the path, symbolic links
        resolved, stays inside ``folder``; None otherwise.
    """
    if not isinstance(filename, str) or not FILE_NAME.match(filename):
        return None
    folder = Path(folder)
    path = folder / filename
    try:
        inside = path.resolve().is_relative_to(folder.resolve()) and not path.is_symlink()
    except (OSError, RuntimeError):
        return None
    return path if inside else None


def value_of(folder: Path, mode: int, filename: Any, value: Any) -> Any:
    """A row's value (str/bytes/int/float) from its ``mode``/``filename``/``value`` columns.

    Raises:
        UnreadableRow: a pickled value, an unsafe file name, or a file that is missing or
            unreadable.
    """
    if mode == MODE_RAW:
        return bytes(value) if isinstance(value, memoryview) else value
    if mode not in (MODE_BINARY, MODE_TEXT):
        raise UnreadableRow("it holds a pickled value (msa_core never writes one)")
    path = safe_file(folder, filename)
    if path is None:
        raise UnreadableRow(
            f"its file name {filename!r} is not one of the store's own files inside {folder}"
        )
    try:
        data = path.read_bytes()
        return data.decode("utf-8") if mode == MODE_TEXT else data
    except FileNotFoundError as err:
        raise UnreadableRow(f"its file {path} is missing") from err
    except (OSError, UnicodeDecodeError) as err:
        raise UnreadableRow(
            f"its file {path} cannot be read ({type(err).__name__}: {err})"
        ) from err


@dataclass(frozen=True)
class Row:
    """One row of a ``Cache`` table, as stored (nothing read from its file yet)."""

    rowid: int
    key: Any
    raw: int
    store_time: float | None
    mode: int
    filename: Any
    value: Any


class RowReader:
    """The rows of one diskcache folder through a read-only SQLite connection (never writes to it).

    With ``shared=True`` (the reader of a store this process also writes), or while another process
    writes (``cache.db-wal`` exists), the connection is read-only with SQLite's usual locking;
    otherwise the file is opened immutable, so not even SQLite's lock files are created (for a
    short-lived reader such as a CLI command). A folder without ``cache.db`` reads as empty.

    With ``file_alone=True`` a read that SQLite refuses with "disk I/O error" (on a full disk it
    cannot set up the log's shared memory) is retried on the database file alone, opened immutable:
    rows still only in the write-ahead log are then not seen (for freeing space on a full disk),
    and ``log_unread`` says so.
    """

    def __init__(self, folder: str | Path, shared: bool = False, file_alone: bool = False):
        self.folder = Path(folder)
        self.db = self.folder / DB_NAME
        self.shared = shared
        self.file_alone = file_alone
        self.log_unread = False  # set when a read fell back to the database file alone
        self._connection: sqlite3.Connection | None = None

    def _connect(self, live: bool) -> sqlite3.Connection:
        flags = "mode=ro" if live else "mode=ro&immutable=1"
        return sqlite3.connect(
            f"file:{quote(str(self.db.resolve()))}?{flags}",
            uri=True,
            timeout=60,
            check_same_thread=False,
        )

    def _sql(self, query: str, args: tuple = ()) -> list[tuple]:
        if not self.db.is_file():
            return []
        try:
            if self._connection is None:
                live = self.shared or self.db.with_name(DB_NAME + "-wal").exists()
                self._connection = self._connect(live)
            try:
                return self._connection.execute(query, args).fetchall()
            except sqlite3.OperationalError as err:
                if not (self.file_alone and "disk i/o error" in str(err).lower()):
                    raise
                self._connection.close()
                self._connection = self._connect(live=False)
                self.log_unread = True
                return self._connection.execute(query, args).fetchall()
        except sqlite3.DatabaseError as err:
            raise MSAInputError(
                f"the run store's database {self.db} is damaged ({err}); "
                f"{repair_hint(self.folder.parent)} rebuilds it from the result files"
            ) from err

    def check(self) -> None:
        """Raise ``MSAInputError`` (naming the repair command) unless the database can be read."""
        self._sql("SELECT count(*) FROM Cache")

    def rows(self) -> Iterator[Row]:
        """Every row, in insertion order."""
        for fields in self._sql(
            "SELECT rowid, key, raw, store_time, mode, filename, value FROM Cache ORDER BY rowid"
        ):
            yield Row(*fields)

    def keys(self, prefix: str = "") -> Iterator[str]:
        """The raw string keys starting with ``prefix``; a pickled or foreign key is skipped with a
        warning."""
        for rowid, key, raw in self._sql("SELECT rowid, key, raw FROM Cache ORDER BY rowid"):
            if raw != 1 or not isinstance(key, str):
                warnings.warn(
                    f"row {rowid} of {self.db} has a pickled or non-text key; it is skipped "
                    f"({repair_hint(self.folder.parent)} removes it)",
                    stacklevel=2,
                )
            elif key.startswith(prefix):
                yield key

    def row(self, key: str) -> Row | None:
        found = self._sql(
            "SELECT rowid, key, raw, store_time, mode, filename, value FROM Cache "
            "WHERE key = ? AND raw = 1",
            (key,),
        )
        return Row(*found[0]) if found else None

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (``default`` when absent).

        Raises:
            UnreadableRow: the row holds a pickle, names an unsafe file, or its file is gone.
        """
        row = self.row(key)
        return default if row is None else value_of(self.folder, row.mode, row.filename, row.value)

    def __contains__(self, key: str) -> bool:
        return self.row(key) is not None

    def volume(self) -> int:
        """Bytes of the values (files and inline) plus the database pages."""
        ((size,),) = self._sql("SELECT coalesce(sum(size), 0) FROM Cache") or [(0,)]
        return int(size) + (self.db.stat().st_size if self.db.is_file() else 0)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def value_files(folder: Path) -> Iterator[Path]:
    """Every file under ``folder`` named like one of its value files (symbolic links skipped)."""
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if safe_file(folder, path.relative_to(folder).as_posix()) is not None:
                yield path

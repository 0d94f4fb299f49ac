"""The disk layer of the run store: diskcache restricted to raw keys and values (never pickles,
never touches a file that is not its own), writes an interrupt cannot split, and the npz bytes
that results and checkpoints are kept as."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import threading
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import diskcache
import numpy as np

from msa_core.errors import MSAInputError
from msa_core.runs.rows import RowReader, UnreadableRow, safe_file
from msa_core.runs.signals import signals_deferred

UNREADABLE = (
    MSAInputError,
    OSError,
    ValueError,
    EOFError,
    KeyError,
    zipfile.BadZipFile,
)  # what reading a damaged npz raises


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


def row_size(rows: RowReader, row: Any) -> int:
    """Bytes of a row's value (its file, or inline)."""
    path = safe_file(rows.folder, row.filename)
    return path.stat().st_size if path is not None and path.exists() else len(row.value or b"")

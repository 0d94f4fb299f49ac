"""What a failed open or write of the run store means (a full disk, a folder this user cannot
write, a damaged database) and what to do about it, in one sentence; ``open_cache`` says it."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import diskcache

from msa_core.errors import MSAInputError
from msa_core.runs.rows import repair_hint
from msa_core.runs.store.disk import RawCache, RawDisk

# what a write the disk refused raises (full, read-only, locked too long): callers that can go on
# without the write warn instead
WRITE_ERRORS = (OSError, sqlite3.OperationalError, diskcache.Timeout)
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
    full = getattr(err, "errno", None) == errno.ENOSPC or "full" in text
    if full or out_of_space(err, directory):
        return f"the disk holding the run store {directory} is full ({err}); " + (
            FULL_DISK_ADVICE.format(option=option)
        )
    if (
        getattr(err, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS)
        or "readonly" in text
        or "read-only" in text
        or not writable_folder(directory)
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


FULL_BYTES = 1 << 20  # a disk with less than this free counts as full


def out_of_space(err: BaseException, directory: Path) -> bool:
    """Whether an SQLite "disk I/O error" came from a full disk: SQLite reports a journal it could
    not write for want of space so as often as "database or disk is full"."""
    if "disk i/o error" not in str(err).lower():
        return False
    folder = next((path for path in (directory, *directory.parents) if path.exists()), None)
    return folder is not None and shutil.disk_usage(folder).free < FULL_BYTES


def writable_folder(directory: Path) -> bool:
    """Whether this user may write the store's folders and databases (those that exist)."""
    paths = [directory, *(directory / name for name in ("results", "work"))]
    paths += [path / "cache.db" for path in paths[1:]]
    return all(os.access(path, os.W_OK) for path in paths if path.exists())


def open_cache(folder: Path, **settings: Any) -> diskcache.Cache:
    """A writable diskcache of raw values; a database that cannot be opened is an ``MSAInputError``
    saying why (read-only, a full disk, or damaged: then naming the repair)."""
    try:
        return RawCache(folder, disk=RawDisk, **settings)
    except (sqlite3.DatabaseError, OSError) as err:
        raise MSAInputError(store_problem(err, folder.parent)) from err

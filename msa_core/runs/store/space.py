"""Disk space: what a run needs free before it starts, and getting space back from a disk too full
for the store's databases to open (``free_files``, what ``delete`` does first)."""

from __future__ import annotations

import shutil
from pathlib import Path

from msa_core.errors import MSAInputError
from msa_core.runs.rows import RowReader, safe_file
from msa_core.runs.store.caches import FOLDERS
from msa_core.runs.store.locks import LOCKS, live_owners


def check_free_space(directory: Path, needed: int) -> None:
    """Raise ``MSAInputError`` unless the disk of the store at ``directory`` has ``needed`` bytes
    free (plus 5% headroom)."""
    folder = directory if directory.exists() else directory.parent
    free = shutil.disk_usage(folder).free
    if free < needed * 1.05:
        raise MSAInputError(
            f"the run needs about {needed / 1e6:.1f} MB in {directory} for its result and "
            f"checkpoints, but only {free / 1e6:.1f} MB are free; free some space (e.g. "
            f"`python -m msa_core delete ...`) or set --cache-dir / $MSA_CACHE_DIR elsewhere"
        )


def free_files(directory: Path, owners: set[str] | None = None) -> int:
    """Remove the value files of runs about to be deleted, through read-only connections: a disk
    too full for the store's databases to open gets the space back first (where even reading
    needs space, the database files are read without their write-ahead logs). Their rows, until
    deleted, read as missing (that entry alone is then dropped).

    Args:
        directory: the store.
        owners: the fingerprints (or interaction keys) whose results, checkpoints and records go;
            None: every entry (family base checkpoints included).

    Returns:
        Bytes freed. Runs in progress (a live lock) keep their files; where the work database can
        be read only without its log (locks unknown), every checkpoint stays.
    """
    readers = {name: RowReader(directory / name, file_alone=True) for name in FOLDERS}
    running = live_owners(readers["work"])
    # read without its log, the work database can miss a live run's lock or fresh heartbeat (every
    # lock would look stale): checkpoints then stay, finished results are freed
    folders = ("results",) if readers["work"].log_unread else FOLDERS
    freed = 0
    for name in folders:
        reader = readers[name]
        for row in reader.rows():
            if not isinstance(row.key, str) or LOCKS.owns(row.key):
                continue
            owner = row.key if name == "results" else row.key.partition(":")[2]
            wanted = owners is None or owner in owners
            path = safe_file(reader.folder, row.filename)
            if wanted and owner not in running and path is not None and path.exists():
                freed += path.stat().st_size
                path.unlink()
    return freed

"""``python -m msa_core store check`` / ``store repair``: find what is damaged in a run store and
rebuild its databases from what can still be read, the result files above all.

``check`` only reads (``RunStore(readonly=True)`` rules). ``repair`` writes fresh ``results/`` and
``work/`` folders holding every readable result (from its row, or from a value file no row names any
more, e.g. after ``cache.db`` was deleted or garbled), family bases, checkpoints and progress
records, and a rebuilt index; the old folders are moved to ``damaged-<time>/`` for the user to
delete. It refuses while a run holds a live lock.
"""

from __future__ import annotations

import io
import json
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from msa_core.errors import MSAInputError
from msa_core.interaction_result import InteractionResult
from msa_core.runs.formats import NewerFormat
from msa_core.runs.rows import RowReader, UnreadableRow, safe_file, value_files, value_of
from msa_core.runs.store import RunStore
from msa_core.runs.store.checkpoints import BASES, CHECKPOINTS
from msa_core.runs.store.disk import UNREADABLE, npz_arrays
from msa_core.runs.store.index import INDEX, index_entry
from msa_core.runs.store.interactions import INTERACTION_INDEX, INTERACTIONS
from msa_core.runs.store.locks import LOCKS, stale_because
from msa_core.runs.store.progress import PROGRESS
from msa_core.runs.store.results import result_of
from msa_core.runs.store.run_store import WORK_NAMESPACES

KEPT_WORK = (CHECKPOINTS, PROGRESS, INTERACTION_INDEX)  # work/ rows a repair carries over as is


@dataclass
class Survey:
    """What a store holds: ``problems`` (sentences), and the readable entries worth keeping."""

    problems: list[str] = field(default_factory=list)
    # fingerprint: (its value file when no row names it, its row key, when it was stored)
    results: dict[str, tuple[Path | None, str, float]] = field(default_factory=dict)
    kept_work: list[str] = field(default_factory=list)  # ckpt:/progress:/ixindex: keys to keep
    bases: list[str] = field(default_factory=list)
    interactions: list[str] = field(default_factory=list)  # ix: results (interaction runs)
    newer: list[str] = field(default_factory=list)  # results of a newer store format: kept as is
    live_locks: list[str] = field(default_factory=list)


def _rows(reader: RowReader, survey: Survey) -> Iterator:
    try:
        reader.check()
        yield from reader.rows()
    except MSAInputError as err:
        survey.problems.append(str(err))


def survey(directory: Path) -> Survey:
    """Read every row and value file of the store at ``directory`` (never writes)."""
    found = Survey()
    results, work = RowReader(directory / "results"), RowReader(directory / "work")
    named: set[Path] = set()
    for row in _rows(results, found):
        where = f"results row {row.rowid}"
        path = safe_file(results.folder, row.filename)
        if path is not None:
            named.add(path.resolve())
        if row.raw != 1 or not isinstance(row.key, str):
            found.problems.append(f"{where} has a pickled or non-text key")
            continue
        try:
            blob = value_of(results.folder, row.mode, row.filename, row.value)
            if BASES.owns(row.key):
                npz_arrays(blob)
                found.bases.append(row.key)
                continue
            if INTERACTIONS.owns(row.key):
                InteractionResult.load(io.BytesIO(blob))
                found.interactions.append(row.key)
                continue
            result_of(blob, row.key)
            found.results[row.key] = (None, row.key, row.store_time or time.time())
        except NewerFormat:
            found.newer.append(row.key)  # kept as it is, for the newer msa_core that wrote it
        except (UnreadableRow, *UNREADABLE) as err:
            found.problems.append(f"{where} ({row.key[:17]!r}) cannot be read: {err}")
    for path in value_files(results.folder):
        if path.resolve() in named:
            continue
        try:
            fingerprint = result_of(path.read_bytes(), None).meta["fingerprint"]
        except NewerFormat:
            continue  # a newer msa_core's file: never touched
        except UNREADABLE:
            found.problems.append(f"{path} belongs to no row and is not a readable result")
            continue
        if fingerprint not in found.results:
            found.problems.append(f"result {fingerprint[:12]} is in {path} but not in the database")
            found.results[fingerprint] = (path, fingerprint, path.stat().st_mtime)
    indexed = set()
    for row in _rows(work, found):
        where = f"work row {row.rowid}"
        if row.raw != 1 or not any(namespace.owns(row.key) for namespace in WORK_NAMESPACES):
            found.problems.append(
                f"{where} has a key the store does not write: {str(row.key)[:40]!r}"
            )
            continue
        try:
            value = value_of(work.folder, row.mode, row.filename, row.value)
            if CHECKPOINTS.owns(row.key):
                npz_arrays(value)
            else:
                record = json.loads(value)
                if LOCKS.owns(row.key) and stale_because(record) is None:
                    found.live_locks.append(LOCKS.owner(row.key))
                indexed |= {INDEX.owner(row.key)} if INDEX.owns(row.key) else set()
            newer = INDEX.owns(row.key) and INDEX.owner(row.key) in found.newer
            if newer or any(namespace.owns(row.key) for namespace in KEPT_WORK):
                found.kept_work.append(row.key)
        except (UnreadableRow, *UNREADABLE) as err:
            found.problems.append(f"{where} ({row.key[:17]!r}) cannot be read: {err}")
    for fingerprint in sorted(set(found.results) - indexed):
        found.problems.append(f"result {fingerprint[:12]} has no index entry")
    for fingerprint in sorted(indexed - set(found.results) - set(found.newer)):
        found.problems.append(f"index entry {fingerprint[:12]} has no readable result")
    return found


def check(directory: Path) -> list[str]:
    """The problems of the store at ``directory`` (empty when healthy); only reads."""
    return survey(directory).problems


def repair(directory: Path) -> tuple[list[str], Path | None]:
    """Rebuild the store at ``directory`` from what can be read (see the module docstring).

    Returns:
        The problems found (empty: nothing was changed) and the folder the old databases were moved
        to (None when nothing was changed).
    Raises:
        MSAInputError: a run holds a live lock (stop it first).
    """
    found = survey(directory)
    if found.live_locks:
        raise MSAInputError(
            f"run(s) {', '.join(f[:12] for f in found.live_locks)} are in progress; stop them "
            "before repairing the store"
        )
    if not found.problems:
        return [], None
    staging = directory / f"repair-{time.strftime('%Y%m%d-%H%M%S')}"
    fresh = RunStore(staging)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the problems were listed by the survey
        for fingerprint, (path, key, created) in found.results.items():
            blob = (
                path.read_bytes() if path is not None else RowReader(directory / "results").get(key)
            )
            fresh.results.set(fingerprint, blob)
            result = result_of(blob, fingerprint)
            fresh.work.set(
                INDEX.key(fingerprint), json.dumps(index_entry(result, created, len(blob)))
            )
        for key in (*found.bases, *found.interactions, *found.newer):
            fresh.results.set(key, RowReader(directory / "results").get(key))
        for key in found.kept_work:
            fresh.work.set(key, RowReader(directory / "work").get(key))
    fresh.results.close()
    fresh.work.close()
    damaged = directory / f"damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    damaged.mkdir()
    for name in ("results", "work"):
        if (directory / name).exists():
            shutil.move(directory / name, damaged / name)
        shutil.move(staging / name, directory / name)
    staging.rmdir()
    return found.problems, damaged

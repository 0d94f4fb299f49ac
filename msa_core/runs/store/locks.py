"""``lock:<owner>`` rows: which process computes a run (host, pid, heartbeat, token), so that many
processes share one store without computing a run twice; a dead or stale holder is broken.

While a run's lock is held here, ``RESERVE_BYTES`` of disk are set aside (``.reserve-<token>``), so
the progress record and the lock's release are written even on a disk that filled up.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from msa_core.errors import MSAInputError
from msa_core.runs.rows import RowReader, UnreadableRow
from msa_core.runs.store.caches import Caches
from msa_core.runs.store.namespace import Namespace
from msa_core.runs.store.problems import WRITE_ERRORS

LOCKS = Namespace("lock:")
HEARTBEAT_SECONDS = 5.0  # a lock holder rewrites its heartbeat this often
DEFAULT_STALE_SECONDS = 60.0  # a lock whose heartbeat is older is broken ($MSA_LOCK_STALE_SECONDS)
RESERVE_BYTES = 1 << 20  # disk set aside while a run holds its lock
RESERVE_PREFIX = ".reserve-"


class Locks:
    """The lock rows of one store, and the disk reserves of the locks this process holds."""

    def __init__(self, caches: Caches):
        self.caches = caches
        self._reserves: dict[str, Path] = {}  # owner: its reserve file, while locked here

    def holder(self, owner: str) -> dict[str, Any] | None:
        """The lock record of a run (``pid``, ``host``, ``heartbeat``, ``token``), None when
        unlocked or unreadable."""
        try:
            held = json.loads(self.caches.work.get(LOCKS.key(owner)) or "null")
        except (UnreadableRow, ValueError, TypeError):
            return None
        return held if isinstance(held, dict) else None

    def running(self, owner: str) -> bool:
        """True while a live process holds the run's lock (one that heartbeats, see ``lock``)."""
        held = self.holder(owner)
        return held is not None and stale_because(held) is None

    @contextmanager
    def lock(
        self, owner: str, poll_seconds: float = 0.2, timeout: float | None = None
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
        self.caches.require_writable("run")
        work, key = self.caches.work, LOCKS.key(owner)
        token = uuid.uuid4().hex
        deadline = None if timeout is None else time.monotonic() + timeout
        while not work.add(key, _lock_record(token)):
            if owner in self.caches.results:
                break
            with work.transact():  # break a dead or stale lock, unless someone took it since
                held = self.holder(owner)
                why = stale_because(held) if held is not None else "unreadable"
                if why is not None:
                    work.delete(key)
            if why is not None:
                warnings.warn(f"broke the lock of run {owner[:12]}: {why}", stacklevel=3)
                continue
            if deadline is not None and time.monotonic() > deadline:
                raise MSAInputError(
                    f"run {owner[:12]} is being computed by {_describe(held)}; gave up "
                    f"waiting after {timeout:g} s. Run the command again to wait longer (or "
                    f"without a wait limit); its result is then read from the store"
                )
            time.sleep(poll_seconds)
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat,
            args=(owner, token, stop),
            daemon=True,
            name=f"msa-lock-{owner[:8]}",
        )
        beat.start()
        self._reserve(owner, token)
        try:
            yield
        finally:
            stop.set()
            beat.join()
            self.free_reserve(owner)
            try:
                with work.transact():
                    if (self.holder(owner) or {}).get("token") == token:
                        work.delete(key)
            except WRITE_ERRORS as err:
                warnings.warn(
                    f"the lock of run {owner[:12]} could not be released "
                    f"({type(err).__name__}: {err}); the next process to run it breaks it once "
                    f"this one (pid {os.getpid()}) has exited",
                    stacklevel=3,
                )

    def live_tokens(self) -> set[str]:
        """The tokens of the locks whose holders may still be alive."""
        live = set()
        for key in self.caches.rows["work"].keys(LOCKS.prefix):
            held = self.holder(LOCKS.owner(key))
            if held is not None and stale_because(held) is None:
                live.add(str(held.get("token")))
        return live

    def _reserve(self, owner: str, token: str) -> Path | None:
        """Set ``RESERVE_BYTES`` of disk aside for as long as the run's lock is held (None when
        the disk has not even that): ``free_reserve`` gives it back when a write fails."""
        self.drop_stale_reserves()
        path = self.caches.directory / f"{RESERVE_PREFIX}{token}"
        try:
            with open(path, "xb") as handle:
                handle.write(bytes(RESERVE_BYTES))
        except OSError:
            path.unlink(missing_ok=True)
            return None
        self._reserves[owner] = path
        return path

    def drop_stale_reserves(self) -> None:
        """Remove the reserve files of runs whose lock is gone (a process killed with -9)."""
        live = self.live_tokens()
        for path in self.caches.directory.glob(f"{RESERVE_PREFIX}*"):
            if path.name[len(RESERVE_PREFIX) :] not in live:
                path.unlink(missing_ok=True)

    def free_reserve(self, owner: str) -> None:
        """Give back the disk space set aside while the run's lock is held (see ``_reserve``)."""
        path = self._reserves.pop(owner, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def _heartbeat(self, owner: str, token: str, stop: threading.Event) -> None:
        """Rewrite the lock's heartbeat until ``stop`` (only while the lock is still ours)."""
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                with self.caches.work.transact():
                    if (self.holder(owner) or {}).get("token") == token:
                        self.caches.work.set(LOCKS.key(owner), _lock_record(token))
            except WRITE_ERRORS:
                continue  # a missed beat; the lock goes stale only after many


def live_owners(work: RowReader) -> set[str]:
    """The owners (fingerprints, ``ix:`` keys) whose lock among the ``work/`` rows ``work`` is held
    by a holder that may still be alive."""
    running = set()
    for key in work.keys(LOCKS.prefix):
        try:
            held = json.loads(work.get(key))
        except (UnreadableRow, ValueError, TypeError):
            continue
        if isinstance(held, dict) and stale_because(held) is None:
            running.add(LOCKS.owner(key))
    return running


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
    if here and not process_alive(pid):
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


def process_alive(pid: object) -> bool:
    """Whether ``pid`` (read from a record: any value) names a process that runs on this host."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs, as another user
    return True

"""Interaction runs of stored runs: requests, fingerprints, the store, background jobs and export.

An ``InteractionRequest`` refines a finished run (its ``parent`` fingerprint): the pairs among the
parent's top-K units, on the parent's game (model, units, output, lesion, task). Results live in the
run store beside runs, under their own keys, so run lists never show them:

- ``results``: ``ix:<sha256>`` the ``InteractionResult`` npz bytes;
- ``work``: ``ixindex:<sha256>`` JSON index entries, and, as for runs, ``ckpt:ix:<sha256>``,
  ``lock:ix:<sha256>``, ``progress:ix:<sha256>``.

The key ``ix:<sha256>`` is the interaction run's id (the job manager's and the CLI's).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msa_core.analysis.interactions import DEFAULT_TOP, top_players
from msa_core.checks import check_known_fields, check_method
from msa_core.errors import MSAInputError
from msa_core.estimators.dispatch import Play, run_plan
from msa_core.estimators.interactions import interaction_result
from msa_core.estimators.plan import RunPlan
from msa_core.interaction_result import InteractionResult
from msa_core.names import INTERACTION_METHODS
from msa_core.result import ModesResult
from msa_core.runs.execute import ProgressRecorder, checkpoint_seconds_default, stored_resume
from msa_core.runs.export import already_exists, replacing
from msa_core.runs.formats import NewerFormat, check_format
from msa_core.runs.prepared import PreparedRun
from msa_core.runs.request import RunRequest
from msa_core.runs.store import INTERACTION_KEY, UNREADABLE, RunStore
from msa_core.version import __version__

INTERACTION_FORMAT = 2  # bump when stored interaction entries change meaning
KEY_PREFIX = INTERACTION_KEY  # the store owns its key layout
DEFAULT_COST = 2.0  # evaluations of an interaction run, as a multiple of the parent run's
EXPORT_FORMATS = ("npz", "csv")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class InteractionRequest:
    """Pairs among the ``top`` units of the stored run ``parent`` (its full fingerprint).

    Budget: ``n_samples`` samples per pair, or else ``cost`` times the parent's evaluations.
    ``method``: ``auto`` (exact when all 2^N coalitions fit the budget), ``exact`` or ``sampled``.
    """

    parent: str
    top: int = DEFAULT_TOP
    method: str = "auto"
    cost: float = DEFAULT_COST
    n_samples: int | None = None
    seed: int = 0
    kind: str = "interactions"  # tells job workers this is not a ``RunRequest``

    def __post_init__(self) -> None:
        if not isinstance(self.parent, str) or len(self.parent) != 64:
            raise MSAInputError(
                "parent must be a stored run's full fingerprint (64 hex digits); "
                f"got {self.parent!r}"
            )
        if isinstance(self.top, bool) or not isinstance(self.top, int) or self.top < 2:
            raise MSAInputError(f"top must be a whole number >= 2; got {self.top!r}")
        check_method(self.method, INTERACTION_METHODS)
        if (
            isinstance(self.cost, bool)
            or not isinstance(self.cost, (int, float))
            or not self.cost > 0
        ):
            raise MSAInputError(
                "cost must be a positive multiple of the parent run's evaluations; "
                f"got {self.cost!r}"
            )
        if self.n_samples is not None and (
            isinstance(self.n_samples, bool)
            or not isinstance(self.n_samples, int)
            or self.n_samples < 2
        ):
            raise MSAInputError(
                f"n_samples must be a whole number >= 2 or None; got {self.n_samples!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise MSAInputError(f"seed must be a non-negative integer; got {self.seed!r}")
        if self.kind != "interactions":
            raise MSAInputError(f"an InteractionRequest has kind 'interactions'; got {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InteractionRequest:
        check_known_fields(data, cls.__dataclass_fields__, "interaction request")
        return cls(**data)

    def plan(self, parent: ModesResult) -> tuple[np.ndarray, int | None, int | None]:
        """``(players [K], n_samples, max_evaluations)`` for ``interaction_modes``."""
        players = top_players(parent, self.top)
        if self.n_samples is not None:
            return players, self.n_samples, None
        return players, None, max(4, int(round(self.cost * parent.n_evaluations)))

    def key(self, parent: ModesResult) -> str:
        """The run's id: ``ix:`` + sha256 of parent, units, method, budget, seed, versions."""
        players, n_samples, max_evaluations = self.plan(parent)
        payload = {
            "format": INTERACTION_FORMAT,
            "parent": self.parent,
            "players": players.tolist(),
            "method": self.method,
            "n_samples": n_samples,
            "max_evaluations": max_evaluations,
            "seed": self.seed,
            "versions": {"msa_core": __version__, "numpy": np.__version__},
        }
        return KEY_PREFIX + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def parent_of(request: InteractionRequest, store: RunStore) -> ModesResult:
    """The stored run the request refines.

    Raises:
        MSAInputError: the store does not hold it (deleted, evicted, or never run).
    """
    parent = store.get(request.parent)
    if parent is None:
        raise MSAInputError(
            f"run {request.parent[:12]} is not in the store {store.directory}; run it first "
            "(interaction runs refine a finished run)"
        )
    if "request" not in parent.meta:
        raise MSAInputError(
            f"run {request.parent[:12]} has no request in its meta data; only runs of bundled "
            "models made through the store can be refined"
        )
    return parent


def interaction_key(request: InteractionRequest, store: RunStore) -> str:
    """The id under which ``request``'s result is (or will be) stored."""
    return request.key(parent_of(request, store))


def stored_interactions(store: RunStore, key: str) -> InteractionResult | None:
    """The stored interaction result ``key`` (``ix:...``), or None (unreadable ones are dropped).

    Raises:
        NewerFormat: the entry was written by a newer msa_core (it is kept, never dropped).
    """
    blob = store.interaction_blob(key)
    if blob is None:
        return None
    try:
        result = InteractionResult.load(io.BytesIO(blob))
        check_format(
            result.meta.get("store_format"), INTERACTION_FORMAT, f"interaction run {key[:15]}"
        )
        return result
    except NewerFormat:
        raise  # never dropped: a newer msa_core sharing this store reads it
    except UNREADABLE as err:
        warnings.warn(
            f"stored interaction run {key[:15]} cannot be read ({err}); it will be recomputed",
            stacklevel=2,
        )
        store.delete_interaction(key)
        return None


def list_interactions(store: RunStore, parent: str | None = None) -> list[dict[str, Any]]:
    """Index entries of stored interaction runs (of ``parent`` only, if given), newest first."""
    entries = [
        entry
        for entry in store.interaction_entries()
        if parent is None or entry["request"]["parent"] == parent
    ]
    return sorted(entries, key=lambda entry: -entry["created"])


def resolve_interactions(store: RunStore, prefix: str) -> str:
    """The key of the stored interaction run whose id begins with ``prefix`` (``ix:`` optional)."""
    bare = prefix[len(KEY_PREFIX) :] if prefix.startswith(KEY_PREFIX) else prefix
    keys = [entry["key"] for entry in list_interactions(store)]
    matches = [key for key in keys if key[len(KEY_PREFIX) :].startswith(bare)]
    if len(matches) != 1 or not bare:
        known = ", ".join(key[:15] for key in keys) or "none"
        raise MSAInputError(
            f"{'no' if not matches else len(matches)} stored interaction runs match {prefix!r}; "
            f"stored: {known}"
        )
    return matches[0]


def execute_interactions(
    request: InteractionRequest,
    store: RunStore,
    progress: Progress | None = None,
    checkpoint_seconds: float | None = None,
    backend: str | None = None,
) -> InteractionResult:
    """The result of ``request``: from the store at once, or computed with checkpoints and stored.

    The run goes through the pipeline of ``runs.execute``: the parent's game built once
    (``PreparedRun``: its model and task loaded once), its plan, a checkpoint that cannot continue
    it dropped with a warning, the backend.

    Args:
        request: what to compute; its parent run must be in ``store``.
        store: the run store (results, checkpoints, progress, locks).
        progress: ``progress(done, total)`` in evaluations.
        checkpoint_seconds: seconds of work between checkpoints (default
            ``$MSA_CHECKPOINT_SECONDS`` or 5).
        backend: None / ``"local"``, or ``"ray"`` (the workers build the parent's game from its
            recipe).

    Returns:
        ``InteractionResult`` ``[K, K, *out]``; its meta holds the parent, the request and the
        cost ratio.

    Raises:
        MSAInputError: the parent is not stored or the request is bad.
    """
    parent = parent_of(request, store)
    key = request.key(parent)
    result = stored_interactions(store, key)
    if result is not None:
        return result
    seconds = checkpoint_seconds if checkpoint_seconds is not None else checkpoint_seconds_default()
    players, n_samples, max_evaluations = request.plan(parent)
    with store.lock(key):
        result = stored_interactions(store, key)
        if result is not None:
            return result
        prepared = PreparedRun.of(RunRequest.from_dict(parent.meta["request"]))
        run, game = prepared.request, prepared.game()
        recorder = ProgressRecorder(store, key, progress)
        with recorder.recording():
            plan = RunPlan.make_interactions(
                request.method,
                game.n_players,
                players.tolist(),
                n_samples,
                max_evaluations,
                request.seed,
            )
            checkpoint, resume = stored_resume(store, key, plan, seconds, recorder)
            where, played = prepared.on_backend(backend, game)
            options = Play(progress=recorder, checkpoint=checkpoint)
            result = run_plan(plan, played, where, interaction_result, resume, options)
        result.meta.update(
            store_format=INTERACTION_FORMAT,
            key=key,
            request=request.to_dict(),
            parent=request.parent,
            parent_request=run.to_dict(),
            parent_evaluations=parent.n_evaluations,
            cost_ratio=result.n_evaluations / max(parent.n_evaluations, 1),
            model=run.model,
            units=run.units,
            output=run.output,
            lesion=run.lesion,
            device=str(game.device),
        )
        result.meta["versions"] = {**result.meta.get("versions", {}), "torch": torch.__version__}
        _put(store, key, result, request)
        store.drop_checkpoint(key)
        finite = result.stderr[np.isfinite(result.stderr)]
        recorder.finish(
            "done",
            done=result.n_evaluations,
            total=result.n_evaluations,
            max_stderr=float(finite.max()) if finite.size else None,
        )
    return result


def _put(store: RunStore, key: str, result: InteractionResult, request: InteractionRequest) -> None:
    buffer = io.BytesIO()
    result.save(buffer)
    store.put_interaction(
        key,
        buffer.getvalue(),
        {
            "key": key,
            "request": request.to_dict(),
            "created": time.time(),
            "method": result.meta.get("method"),
            "n_units": result.n_units,
            "player_names": result.player_names,
            "output_shape": list(result.output_shape),
            "n_evaluations": result.n_evaluations,
            "n_samples": result.n_samples,
            "cost_ratio": result.meta.get("cost_ratio"),
            "wall_seconds": result.meta.get("wall_seconds"),
        },
    )


def delete_interactions(store: RunStore, key: str) -> None:
    """Forget an interaction run: its result, index entry, checkpoint and progress."""
    if store.running(key):
        raise MSAInputError(
            f"interaction run {key[:15]} is in progress; cancel it before deleting it"
        )
    store.delete_interaction(key)


def check_interaction_target(path: Path, fmt: str | None = None, overwrite: bool = False) -> str:
    """The format to write ``path`` in, checked before any work.

    Raises:
        MSAInputError: unknown format, missing folder, or an existing file or symlink without
            ``overwrite``.
    """
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in EXPORT_FORMATS:
        raise MSAInputError(
            f"unknown interaction export format {fmt!r} (from {path.name!r}); "
            f"allowed: {', '.join(EXPORT_FORMATS)}"
        )
    if not path.parent.is_dir():
        raise MSAInputError(f"cannot write {path}: folder {path.parent} does not exist")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise MSAInputError(already_exists(path))
    return fmt


def export_interactions(
    result: InteractionResult, path: str | Path, fmt: str | None = None, overwrite: bool = False
) -> Path:
    """Write ``result`` as ``.npz`` (``InteractionResult.save``) or long-format ``.csv``, as
    ``msa_core.runs.export.export`` writes: never over an existing file or through a symlink
    unless ``overwrite`` (then the link itself is replaced).

    CSV columns: ``unit_a``, ``unit_b`` (each pair once, a before b in the run's unit order), one
    ``output_<axis>`` index column per output axis, ``value``, ``stderr`` (17 significant digits).

    Raises:
        MSAInputError: as ``check_interaction_target``.
    """
    path = Path(path)
    fmt = check_interaction_target(path, fmt, overwrite)
    with replacing(path, overwrite) as partial:
        _write_interactions(result, partial, fmt)
    return path


def _write_interactions(result: InteractionResult, path: Path, fmt: str) -> None:
    if fmt == "npz":
        with open(path, "wb") as handle:
            result.save(handle)
        return
    shape = result.output_shape
    index = np.indices(shape).reshape(len(shape), -1).T if shape else np.zeros((1, 0), dtype=int)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "unit_a",
                "unit_b",
                *(f"output_{axis}" for axis in range(len(shape))),
                "value",
                "stderr",
            ]
        )
        for a, b in result.pairs():
            values, errors = result.interactions[a, b].ravel(), result.stderr[a, b].ravel()
            names = (result.player_names[a], result.player_names[b])
            writer.writerows(
                [*names, *map(int, position), f"{value:.17g}", f"{error:.17g}"]
                for position, value, error in zip(index, values, errors, strict=True)
            )

"""Run a request through the store: return the stored result, or compute it once, resumably."""

from __future__ import annotations

import time
from collections.abc import Callable

from msa_core.estimators import shapley_modes
from msa_core.estimators.dispatch import ESTIMATORS
from msa_core.result import ModesResult
from msa_core.runs.request import RunRequest
from msa_core.runs.store import RunStore
from msa_core.zoo import load_model

Progress = Callable[[int, int], None]


def fingerprint_of(request: RunRequest) -> str:
    """The fingerprint of a request (loads its model, cached per process)."""
    return request.fingerprint(load_model(request.model))


def execute(request: RunRequest, store: RunStore, progress: Progress | None = None,
            checkpoint_seconds: float = 5.0) -> ModesResult:
    """The result of ``request``: from the store at once, or computed with checkpoints and stored.

    Concurrent callers of the same request (other threads or processes) wait for one computation.
    A request that only raises ``n_permutations`` of a stored permutation-type run starts from that
    run's last checkpoint instead of from scratch.
    """
    loaded = load_model(request.model)
    request = request.resolved(loaded)
    fingerprint = request.fingerprint(loaded)
    result = store.get(fingerprint)
    if result is not None:
        return result
    with store.lock(fingerprint):
        result = store.get(fingerprint)
        if result is not None:
            return result
        family = request.family().fingerprint(loaded)
        extendable = request.method in ESTIMATORS and ESTIMATORS[request.method].extendable
        if extendable:
            store.seed_from_base(fingerprint, family, budget_below=budget_of(request, loaded.units(request.units)))
        started = time.time()

        def report(done: int, total: int) -> None:
            store.set_progress(fingerprint, done=done, total=total, started=started, state="running")
            if progress is not None:
                progress(done, total)

        result = shapley_modes(
            loaded.game(request.units, request.output, request.lesion), method=request.method,
            n_permutations=request.n_permutations, max_evaluations=request.max_evaluations, seed=request.seed,
            progress=report, checkpoint=store.checkpoint(fingerprint, checkpoint_seconds),
        )
        result.meta.update(model=request.model, model_digest=loaded.digest)
        store.put(fingerprint, result, request)
        if extendable:
            store.keep_as_base(fingerprint, family)
        else:
            store.drop_checkpoint(fingerprint)
        store.set_progress(fingerprint, done=result.n_evaluations, total=result.n_evaluations, started=started,
                           state="done")
    return result

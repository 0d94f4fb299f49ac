"""Before launch: what a run will cost (estimator, evaluations, time, memory), or why it cannot run.

``probe_game`` times a few game evaluations once per game; ``plan_run`` turns a request and that
probe into a ``Plan`` and raises ``MSAInputError`` for budgets that cannot work (too small for the
estimator, exact on too many players, more memory than the machine has, or longer than
``MAX_SECONDS``), so a page or the CLI can say so beside the form instead of a worker failing
later.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from math import comb
from typing import Any

import numpy as np

from msa_core.errors import MSAInputError
from msa_core.estimators.base import samples_per_block
from msa_core.estimators.dispatch import BATCH_VALUES, with_gradients
from msa_core.estimators.kernel import GROUP_VALUES, GROUPS, border_sizes
from msa_core.estimators.plan import BEST_SAMPLER, ESTIMATORS
from msa_core.estimators.runner import LocalBackend
from msa_core.runs.request import RunRequest

PROBE_COALITIONS = 8  # coalitions per timed probe call
MAX_SECONDS = 30 * 24 * 3600.0  # a run estimated to take longer than this is refused as impossible
MEMORY_SHARE = 0.8  # of the machine's physical memory a run may plan to use
PROGRESS_SECONDS = 1.0  # a run reports progress about this often (each game call takes about this)


@dataclass(frozen=True)
class Probe:
    """What one game costs: ``n_players``, ``n_outputs`` values per evaluation, seconds per one."""

    n_players: int
    n_outputs: int
    seconds_per_evaluation: float


@dataclass(frozen=True)
class Plan:
    """What a request will do: the estimator ``method`` (``reason``: why, in words), ``evaluations``
    (full and empty coalitions included), ``seconds`` of game evaluations and estimator
    ``memory_bytes``."""

    method: str
    reason: str
    evaluations: int
    n_players: int
    seconds: float
    memory_bytes: int


def probe_game(
    game: Any,
    n_coalitions: int = PROBE_COALITIONS,
    seed: int = 0,
    repeats: int = 3,
    method: str | None = None,
) -> Probe:
    """Time ``game`` (a ``Game``: ``n_players``, called on bool coalitions ``[C, N]``) on random
    coalitions.

    Args:
        game: the game of the run (built as the worker builds it).
        n_coalitions: coalitions per timed call; one untimed call warms the game up first.
        seed: of the random coalitions.
        repeats: timed calls.
        method: the run's method; one that needs gradients times the game with them
            (``game.with_gradients()``, a backward pass per evaluation and output number of a
            sample: slower, so a quarter of the coalitions, one timed call).

    Returns:
        The ``Probe``: players, values per evaluation ``prod(out)`` (of the game's own output),
        median seconds per evaluation.

    Raises:
        MSAInputError: a method that needs gradients on a game without them.
    """
    if needs_gradients(method):
        played = with_gradients(game, LocalBackend())
        timed = probe_game(played, max(1, n_coalitions // 4), seed, repeats=1)
        return replace(timed, n_outputs=timed.n_outputs // (game.n_players + 1))
    rng = np.random.default_rng(seed)
    coalitions = rng.random((n_coalitions, game.n_players)) < 0.5
    values = game(coalitions)  # warm-up (lazy buffers, first-call kernels)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        game(coalitions)
        seconds.append(time.perf_counter() - start)
    n_outputs = int(np.prod(tuple(values.shape[1:])))
    return Probe(game.n_players, n_outputs, float(np.median(seconds)) / n_coalitions)


def needs_gradients(method: str | None) -> bool:
    """Whether a run of ``method`` plays its game with gradients (a backward pass per
    evaluation)."""
    return method in ESTIMATORS and ESTIMATORS[method].needs_gradients


def progress_batch_size(probe: Probe) -> int | None:
    """Coalitions per game call such that a call, and so a progress report, takes about
    ``PROGRESS_SECONDS``; None where ``shapley_modes``'s default batch is already that quick.
    Results never depend on the batch size."""
    default = int(np.clip(BATCH_VALUES // max(1, probe.n_outputs), 1, 1024))
    rows = int(PROGRESS_SECONDS / max(probe.seconds_per_evaluation, 1e-12))
    return max(1, rows) if rows < default else None


def machine_memory() -> int:
    """Bytes of physical memory of this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def plan_run(request: RunRequest, probe: Probe, memory_limit: int | None = None) -> Plan:
    """The ``Plan`` of ``request`` on the probed game, or ``MSAInputError`` saying why it cannot
    run.

    Args:
        request: the run (its method and budget are what is checked).
        probe: ``probe_game`` of the request's game.
        memory_limit: bytes the estimator may plan to hold (default ``MEMORY_SHARE`` of this
            machine's).

    Returns:
        The plan: estimator (``auto`` resolved as ``shapley_modes`` resolves it), evaluations,
        seconds, memory.

    Raises:
        MSAInputError: a budget too small for the estimator, exact on more than 20 players or with
            a cap below 2^N, more memory than ``memory_limit``, or more than ``MAX_SECONDS``.
    """
    n, d = probe.n_players, probe.n_outputs
    run_plan = request.plan(n).for_outputs(d)  # as shapley_modes settles it
    method, budget = run_plan.method, run_plan.budget
    evaluations = _evaluations(method, n, budget)
    seconds = evaluations * probe.seconds_per_evaluation
    memory = _estimator_bytes(method, n, d, budget)
    limit = memory_limit if memory_limit is not None else int(MEMORY_SHARE * machine_memory())
    if memory > limit:
        raise MSAInputError(
            f"this budget ({budget:,} evaluations, method {method!r}) needs about "
            f"{format_bytes(memory)} of memory for the estimator; at most {format_bytes(limit)} "
            "is available. Lower the permutations or set a cap on evaluations."
        )
    if seconds > MAX_SECONDS:
        raise MSAInputError(
            f"this budget ({evaluations:,} evaluations at {probe.seconds_per_evaluation * 1e3:.2g} "
            "ms "
            f"each) would take about {seconds / 86400:,.0f} days; at most "
            f"{MAX_SECONDS / 86400:.0f} days are allowed. Lower the permutations or set a cap."
        )
    return Plan(
        method, _reason(request.method, method, n, d, budget), evaluations, n, seconds, memory
    )


def _evaluations(method: str, n: int, budget: int) -> int:
    """Evaluations the estimator really uses (a permutation run uses whole permutations only)."""
    if method == "exact":  # one player included; its budget is every coalition (exact_budget)
        return budget
    if method in ("permutation", "antithetic"):
        per_sample = ESTIMATORS[method].permutations_per_sample * (n - 1)  # type: ignore[attr-defined]
        return 2 + (budget - 2) // per_sample * per_sample
    enumerated, pairs = _kernel_rows(n, budget)
    return 2 + sum(comb(n, s) for s in enumerated) + 2 * pairs


def _kernel_rows(n: int, budget: int) -> tuple[list[int], int]:
    """Coalition sizes the kernel estimator enumerates, and the pairs it samples (as it does)."""
    inner = budget - 2  # the estimator's budget: full and empty are evaluated before it starts
    enumerated = border_sizes(n, inner)
    sampled = [s for s in range(1, n // 2 + 1) if s not in enumerated]
    return enumerated, (inner - sum(comb(n, s) for s in enumerated)) // 2 if sampled else 0


def _estimator_bytes(method: str, n: int, d: int, budget: int) -> int:
    """Bytes the estimator holds (float64 sums, a block of values, kernel's pair schedule)."""
    if method == "exact":
        return 8 * (n * d + 2 * samples_per_block(1, d) * d)
    if method in ("permutation", "antithetic"):
        pps = ESTIMATORS[method].permutations_per_sample  # type: ignore[attr-defined]
        rows = samples_per_block(pps * (n - 1), d) * pps * n
        return 8 * (5 * n * d + 3 * rows * d)
    pairs = _kernel_rows(n, budget)[1]
    groups = int(np.clip(GROUP_VALUES // max(1, n * (n + d)), 2, GROUPS))
    return 8 * (3 * pairs + (groups + 1) * n * (n + d) + 2 * samples_per_block(2, d) * d)


def _reason(requested: str, method: str, n: int, d: int, budget: int) -> str:
    if requested != "auto":
        return f"{method}, as chosen"
    if method == "exact":
        return f"auto picked exact: all 2^{n} = {2**n:,} coalitions fit the budget of {budget:,}"
    if method == BEST_SAMPLER:
        return (
            f"auto picked {method}: the sampler with the lowest error per evaluation "
            f"(exact would need 2^{n} evaluations)"
        )
    return (
        f"auto picked {method}: {n} units x {d:,} output values exceed 2^20, where kernel's "
        "regression "
        "would cost more time than its lower error saves"
    )


def format_bytes(size: float) -> str:
    """``512 B``, ``3.2 MiB``, ``471 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1024
    raise AssertionError("unreachable")

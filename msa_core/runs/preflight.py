"""Checks before a run starts evaluating: its budget is one that can finish, and its store's disk
has room for what it will write.

``MAX_EVALUATIONS`` bounds a run's budget; a larger one is refused with an estimate of the time it
would take, measured on a few coalitions of the run's own game. ``needed_bytes`` estimates the disk
a run takes (result plus checkpoints) from its number of players and output size.
"""

from __future__ import annotations

import math

from msa_core.deployment import deployment
from msa_core.errors import MSAInputError
from msa_core.games import Game
from msa_core.runs.budget import probe_game
from msa_core.runs.store import RunStore

# coalitions per run; beyond that a run takes days even for the smallest models
MAX_EVALUATIONS = 10**9
TIMED_COALITIONS = 8  # coalitions evaluated to estimate the time per evaluation
STATE_COPIES = (
    3  # arrays [N, out] of float64 in a checkpoint (running sums, squares, counts); one more
)
#   for the family base kept after the run, and the result's modes and stderr


def needed_bytes(n_players: int, n_outputs: int) -> int:
    """Disk bytes a run of ``n_players`` x ``n_outputs`` values writes at most: its result (modes
    and stderr, uncompressed) and two checkpoints at once (the new one written before the old
    goes)."""
    per_array = 8 * n_players * n_outputs
    return 2 * per_array + 2 * STATE_COPIES * per_array + (1 << 20)


def describe_seconds(seconds: float) -> str:
    """``"3.2 hours"``, ``"12 days"``, ... (the largest unit that is at least 1)."""
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def check_run(game: Game, budget: int, store: RunStore) -> None:
    """Refuse a run before it evaluates anything when its budget is above the deployment's cap or
    ``MAX_EVALUATIONS`` (with an estimate of its time) or its store's disk lacks the room
    ``needed_bytes`` says it needs.

    Args:
        game: the run's game (players and output shape known).
        budget: evaluations the run may use, full and empty coalitions included.
        store: where its result and checkpoints go.
    Raises:
        MSAInputError: saying what was asked, what is allowed, and the estimate.
    """
    deployment().check_budget(budget)  # a shared server's cap, whoever submitted the run
    if budget > MAX_EVALUATIONS:
        estimate = describe_seconds(
            budget * probe_game(game, TIMED_COALITIONS, repeats=1).seconds_per_evaluation
        )
        raise MSAInputError(
            f"a budget of {budget:,} evaluations would take about {estimate} here; a run may use "
            f"at most {MAX_EVALUATIONS:,}. Lower the permutations or set a cap on evaluations"
        )
    n_outputs = math.prod(game.output_shape or (1,))
    store.check_free_space(needed_bytes(game.n_players, n_outputs))

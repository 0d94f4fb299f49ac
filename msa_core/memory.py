"""How much memory a run's estimate needs, checked against what the machine has before it is
allocated.

>>> estimate_bytes(10, 1000)  # 10 players x 1,000 outputs
240000
>>> check_fits(10, 1000)  # raises only when that is more than the memory available
"""

from __future__ import annotations

import os

from msa_core.errors import MSAInputError

ARRAYS_PER_PLAYER = (
    3  # float64 arrays [N, out] every estimator keeps at least (sums, squares, estimate)
)


def available_bytes() -> int:
    """Bytes of memory available to a new allocation: ``MemAvailable`` of /proc/meminfo, else all
    the physical memory (where /proc is missing)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def estimate_bytes(n_rows: int, n_outputs: int) -> int:
    """A lower bound on the memory of an estimate of ``n_rows`` x ``n_outputs`` values."""
    return ARRAYS_PER_PLAYER * 8 * n_rows * n_outputs


def check_fits(
    n_rows: int, n_outputs: int, what: str = "Shapley modes", rows: str = "players"
) -> None:
    """Raise ``MSAInputError`` when the estimate of ``n_rows`` x ``n_outputs`` values cannot fit
    in the memory available now (saying how much it needs and what to reduce).

    Args:
        n_rows: rows of the estimate: players (modes) or pairs of players (interactions).
        n_outputs: values per row (one coalition's value, flattened).
        what, rows: how the error names the estimate and its rows.
    """
    needed, free = estimate_bytes(n_rows, n_outputs), available_bytes()
    if needed > free:
        raise MSAInputError(
            f"the {what} of {n_rows} {rows} x {n_outputs:,} output values need at least "
            f"{needed / 1e9:.3g} GB of memory, but {free / 1e9:.3g} GB are available; "
            "measure fewer outputs (e.g. a summary output instead of every logit or pixel) or "
            f"fewer {rows}"
        )

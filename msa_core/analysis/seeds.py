"""Runs of the same setup over several training seeds: per-seed concentration metrics, their mean
with a 95% t-interval, and Welch's t-test of the difference between two setups.

A *setup* is a run request without its model's seed (``mlp-digits-h32-l1-s0`` and ``-s1`` share
``mlp-digits-h32-l1``). With three seeds per setup the t-interval has 2 degrees of freedom, so it is
wide (the mean +- 4.3 standard errors): that is the honest width for three seeds.

>>> setup_of({"model": "mlp-digits-h32-l1-s2", "units": "hidden neurons", "output": "logits",
...           "lesion": "zero"})
('mlp-digits-h32-l1', 'hidden neurons', 'logits', 'zero')
>>> mean, low, high = t_interval([1.0, 2.0, 3.0])
>>> mean, round(low, 3), round(high, 3)
(2.0, -0.484, 4.484)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from msa_core.analysis.modes import ModesView, concentration, unit_scores
from msa_core.errors import MSAInputError

METRICS = ("gini", "units for 50%", "units for 80%", "units for 90%", "top unit share", "idc")
METRIC_NAMES = {"gini": "Gini", "idc": "IDC"}  # how every table names a metric (others as is)
LEVEL = 0.95
SEED_SUFFIX = re.compile(r"-s(\d+)$")


def setup_of(request: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """The setup of a run request: (model without its ``-sN`` seed, units, output, lesion)."""
    model = SEED_SUFFIX.sub("", str(request.get("model", "")))
    return (
        model,
        str(request.get("units")),
        str(request.get("output")),
        str(request.get("lesion", "zero")),
    )


def metric_name(metric: str) -> str:
    """The metric's column name in every table (``Gini``, ``IDC``, others as they are)."""
    return METRIC_NAMES.get(metric, metric)


def comparable_runs(entries: Sequence[Mapping[str, Any]], k: int = 3) -> list[str]:
    """Fingerprints of up to ``k`` runs worth comparing with the newest: the newest entry (store
    index entries, newest first) and the next newest of the same units, output, lesion and output
    shape (so they share views), whichever model they are of."""
    if not entries:
        return []

    def kind(entry: Mapping[str, Any]) -> tuple[Any, ...]:
        request = entry["request"]
        shape = tuple(entry.get("output_shape") or ())
        return request.get("units"), request.get("output"), request.get("lesion"), shape

    first = kind(entries[0])
    return [entry["fingerprint"] for entry in entries if kind(entry) == first][:k]


def seed_of(model: str) -> int | None:
    """The training seed in a bundled model's name (``-s2`` -> 2), None without one."""
    found = SEED_SUFFIX.search(model)
    return int(found[1]) if found else None


def view_metrics(view: ModesView) -> dict[str, float]:
    """The ``METRICS`` of one run's view: concentration of |contribution| and the IDC of the units'
    mean modes (``msa_core.analysis.study1.idc``; NaN when every mode is 0)."""
    from msa_core.analysis.study1 import idc

    metrics = {key: float(value) for key, value in concentration(view).items() if key in METRICS}
    try:
        metrics["idc"] = idc(unit_scores(view))
    except MSAInputError:
        metrics["idc"] = float("nan")
    return metrics


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values [n]`` and its two-sided t-interval (n - 1 degrees of
    freedom); low = high = mean for one value or no spread.

    Raises:
        MSAInputError: no values.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise MSAInputError("an interval needs at least one value")
    mean = float(x.mean())
    if x.size < 2 or float(x.std()) == 0.0:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return mean, mean - half, mean + half


def welch_test(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> dict[str, float]:
    """Welch's two-sample t-test of mean(a) - mean(b) (unequal variances, Welch-Satterthwaite
    degrees of freedom): the difference, its ``level`` interval, t, df and the two-sided p-value.

    With no spread in either sample t is infinite (p = 0) for a non-zero difference and undefined
    (NaN, p = 1) for none.

    Raises:
        MSAInputError: fewer than 2 values in a sample.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        raise MSAInputError(
            f"Welch's test needs at least 2 values per group; got {x.size} and {y.size}"
        )
    difference = float(x.mean() - y.mean())
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = float(np.sqrt(vx + vy))
    if se == 0.0:
        return {
            "difference": difference,
            "low": difference,
            "high": difference,
            "t": float("inf") if difference else float("nan"),
            "df": float(x.size + y.size - 2),
            "p": 0.0 if difference else 1.0,
        }
    df = float((vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1)))
    t = difference / se
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return {
        "difference": difference,
        "low": difference - half,
        "high": difference + half,
        "t": t,
        "df": df,
        "p": float(2 * stats.t.sf(abs(t), df)),
    }

"""Lesion curves: a model's score after lesioning the k units with the highest Shapley value, the k
with the lowest, and k random units, for a grid of k.

If the ranking means something, lesioning the top k hurts more than k random units, which hurt more
than the bottom k. ``k_curves`` takes any ``evaluate(coalitions [C, N]) -> scores [C]`` (accuracy of
a classifier, mean log-prob of an LM, ...), so the lesion kind (zero, mean) is the game's business.

>>> scores = np.array([3.0, 1.0, 2.0])
>>> curves = k_curves(lambda c: c.astype(float) @ scores, scores, [0, 1, 3], n_random=2)
>>> curves.top.tolist(), curves.bottom.tolist()
([6.0, 3.0, 0.0], [6.0, 5.0, 0.0])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from msa_core.errors import MSAInputError

CHUNK = 32  # coalitions evaluated at once
COLOURS = {"top": "#d6604d", "random": "#7f7f7f", "bottom": "#4393c3"}


def k_grid(n_units: int, max_points: int = 17) -> np.ndarray:
    """Unit counts ``[M]`` from 0 to ``n_units``: every k for small N, else ``max_points`` k."""
    if n_units < 1:
        raise MSAInputError(f"a lesion curve needs at least one unit; got {n_units}")
    return np.unique(np.linspace(0, n_units, min(n_units + 1, max_points)).round().astype(int))


@dataclass
class KCurves:
    """Scores after lesioning k units: top-k and bottom-k by Shapley value, and k random units."""

    ks: np.ndarray  # [M]
    top: np.ndarray  # [M]
    bottom: np.ndarray  # [M]
    random_mean: np.ndarray  # [M] mean over the random draws
    random_low: np.ndarray  # [M] the lowest draw
    random_high: np.ndarray  # [M] the highest draw


def k_coalitions(scores: np.ndarray, ks: Sequence[int], n_random: int, seed: int) -> np.ndarray:
    """Coalitions ``[(2 + n_random) * M, N]`` (True = intact): per k of ``ks`` the top k lesioned,
    the bottom k lesioned, then ``n_random`` draws of k random units lesioned (block order: top,
    bottom, random draw by draw)."""
    scores = np.asarray(scores, dtype=float)
    n = len(scores)
    counts = np.asarray(ks, dtype=int)
    if counts.size == 0 or counts.min() < 0 or counts.max() > n:
        raise MSAInputError(f"ks must be unit counts between 0 and {n}; got {counts.tolist()}")
    order = np.argsort(-scores, kind="stable")
    rng = np.random.default_rng(seed)
    orders = [order, order[::-1]] + [rng.permutation(n) for _ in range(n_random)]
    coalitions = np.ones((len(orders), len(counts), n), dtype=bool)
    for block, ranked in enumerate(orders):
        for row, k in enumerate(counts):
            coalitions[block, row, ranked[:k]] = False
    return coalitions.reshape(-1, n)


def k_curves(
    evaluate: Callable[[np.ndarray], np.ndarray],
    scores: np.ndarray,
    ks: Sequence[int] | None = None,
    n_random: int = 5,
    seed: int = 0,
) -> KCurves:
    """The three lesion curves over ``ks`` (default ``k_grid``) of ``evaluate``, called on chunks of
    ``CHUNK`` coalitions ``[C, N]`` and returning one score per coalition ``[C]``."""
    counts = k_grid(len(scores)) if ks is None else np.asarray(ks, dtype=int)
    coalitions = k_coalitions(scores, counts.tolist(), n_random, seed)
    values = np.concatenate(
        [
            np.asarray(evaluate(coalitions[start : start + CHUNK]), dtype=float).reshape(-1)
            for start in range(0, len(coalitions), CHUNK)
        ]
    )
    blocks = values.reshape(2 + n_random, len(counts))
    random = blocks[2:] if n_random else np.full((1, len(counts)), np.nan)
    return KCurves(counts, blocks[0], blocks[1], random.mean(0), random.min(0), random.max(0))


def k_curve_figure(curves: KCurves, score_name: str, n_units: int) -> go.Figure:
    """The score against k for top-k, random-k (mean and the range of the draws) and bottom-k."""
    figure = go.Figure()
    ks = curves.ks.tolist()
    figure.add_scatter(
        x=ks + ks[::-1],
        y=curves.random_high.tolist() + curves.random_low.tolist()[::-1],
        fill="toself",
        fillcolor="rgba(127,127,127,0.2)",
        line={"width": 0},
        hoverinfo="skip",
        name="random k: range of the draws",
    )
    for name, values in (
        ("top k by Shapley value", curves.top),
        ("random k (mean)", curves.random_mean),
        ("bottom k by Shapley value", curves.bottom),
    ):
        colour = COLOURS[name.split()[0]]
        figure.add_scatter(
            x=ks,
            y=values,
            mode="lines+markers",
            name=name,
            line={"color": colour},
            hovertemplate="k = %{x}: %{y:.4g}<extra>" + name + "</extra>",
        )
    figure.update_layout(
        title=f"{score_name} after lesioning k of {n_units} units",
        xaxis_title="k (units lesioned)",
        yaxis_title=score_name,
        height=380,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": -0.25},
    )
    return figure

"""Reading interaction runs: top units of a run, pair matrices, strongest pairs, and plotly figures.

The K x K matrix of an ``InteractionResult`` is read for one output element or summed over outputs
(signed: synergy minus redundancy); a pair's *strength* is the sum of |interaction| over outputs.
A pair's interaction mode is shown in its output's form next to the two units' Shapley modes.

>>> import numpy as np
>>> from msa_core.estimators.interactions import interaction_modes
>>> res = interaction_modes(lambda c: c[:, :2].all(1, keepdims=True) * 1.0, n_players=3)
>>> [(row["unit a"], row["unit b"], round(row["summed"], 6)) for row in strongest_pairs(res, 1)]
[('u0', 'u1', 1.0)]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from msa_core.analysis.modes import NOISE_LEGEND_PLACE, unit_order
from msa_core.analysis.ranking import noise_marks, unit_ranking
from msa_core.errors import MSAInputError
from msa_core.interaction_result import InteractionResult
from msa_core.result import ModesResult

DEFAULT_TOP = 16  # units whose pairs an interaction run measures, unless told otherwise
IMAGE_MIN_SIDE = 8  # outputs whose last two axes are at least this large are drawn as images


def top_players(result: ModesResult, k: int = DEFAULT_TOP) -> np.ndarray:
    """The first ``min(k, N)`` units of the run's one ranking (``ranking.unit_ranking``, the
    ranking every page shows).

    Args:
        result: a finished run (modes ``[N, *out]``).
        k: how many (>= 2).

    Returns:
        int64 ``[K]`` unit indices, largest first.

    Raises:
        MSAInputError: k < 2 or the run has fewer than 2 units.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise MSAInputError(
            f"top must be a whole number >= 2 (units whose pairs are measured); got {k!r}"
        )
    if result.n_players < 2:
        raise MSAInputError(f"the run has {result.n_players} unit; interactions need at least 2")
    return unit_ranking(result).order[: min(int(k), result.n_players)].astype(np.int64)


def pair_values(result: InteractionResult, element: tuple[int, ...] | None = None) -> np.ndarray:
    """The ``[K, K]`` matrix of one output element (``element``, an index per output axis), or
    summed over outputs (None).

    Raises:
        MSAInputError: ``element`` does not index the output shape.
    """
    values = np.asarray(result.interactions, dtype=float)
    if element is None:
        return values.reshape(result.n_units, result.n_units, -1).sum(-1)
    element = tuple(int(i) for i in element)
    shape = result.output_shape
    if len(element) != len(shape) or any(
        not 0 <= i < n for i, n in zip(element, shape, strict=True)
    ):
        raise MSAInputError(
            f"output element {list(element)} is not inside the output shape {list(shape)}"
        )
    return values.reshape(result.n_units, result.n_units, -1)[
        :, :, int(np.ravel_multi_index(element, shape))
    ]


def pair_stderr(result: InteractionResult, element: tuple[int, ...] | None = None) -> np.ndarray:
    """The standard errors ``[K, K]`` of ``pair_values(result, element)``."""
    if element is None:
        return np.asarray(result.summed_stderr, dtype=float)
    errors = np.asarray(result.stderr, dtype=float).reshape(result.n_units, result.n_units, -1)
    flat = np.ravel_multi_index(tuple(int(i) for i in element), result.output_shape)
    return errors[:, :, int(flat)]


def strength(result: InteractionResult) -> np.ndarray:
    """``[K, K]``: the sum of |interaction| over output elements (zero diagonal)."""
    return (
        np.abs(np.asarray(result.interactions, dtype=float))
        .reshape(result.n_units, result.n_units, -1)
        .sum(-1)
    )


def strongest_pairs(result: InteractionResult, n: int = 10) -> list[dict[str, Any]]:
    """The ``n`` pairs of largest strength: rows with positions ``a``, ``b``, names, ``strength``,
    ``summed`` (signed sum over outputs) and ``summed stderr`` (its standard error)."""
    power, summed = strength(result), pair_values(result)
    rows, cols = np.triu_indices(result.n_units, 1)
    order = np.argsort(-power[rows, cols], kind="stable")[:n]
    return [
        {
            "a": int(rows[i]),
            "b": int(cols[i]),
            "unit a": result.player_names[rows[i]],
            "unit b": result.player_names[cols[i]],
            "strength": float(power[rows[i], cols[i]]),
            "summed": float(summed[rows[i], cols[i]]),
            "summed stderr": float(result.summed_stderr[rows[i], cols[i]]),
        }
        for i in order
    ]


def mean_strength(result: InteractionResult) -> float:
    """Mean pair strength over the K(K-1)/2 pairs (how much the chosen units interact overall)."""
    rows, cols = np.triu_indices(result.n_units, 1)
    return float(strength(result)[rows, cols].mean())


def interaction_matrix_figure(
    result: InteractionResult,
    values: np.ndarray,
    order: str = "cluster",
    title: str | None = None,
    stderr: np.ndarray | None = None,
) -> go.Figure:
    """K x K heatmap of ``values`` on a diverging scale centred on 0 (red synergy, blue redundancy),
    units ordered by ``order`` (``msa_core.analysis.modes.ORDERS``; cluster: similar rows
    together); with ``stderr [K, K]`` the pairs within noise carry a grey dot."""
    index = unit_order(values, order)
    z = np.asarray(values, dtype=float)[np.ix_(index, index)]
    names = [result.player_names[i] for i in index]
    limit = float(np.max(np.abs(z), initial=0.0)) or 1.0
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            zmin=-limit,
            zmax=limit,
            zmid=0.0,
            colorscale="RdBu_r",
            colorbar={"title": {"text": "interaction"}},
            hovertemplate="%{y} × %{x}<br>interaction %{z:.4g}<extra></extra>",
        )
    )
    if stderr is not None:
        errors = np.asarray(stderr, dtype=float)[np.ix_(index, index)]  # 0 on the diagonal
        marks = noise_marks(names, names, z, errors)
        if marks is not None:
            figure.add_trace(marks)
    figure.update_layout(
        title=title,
        xaxis={"type": "category"},
        yaxis={"type": "category", "autorange": "reversed"},
        height=min(800, 200 + 22 * len(names)),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend=NOISE_LEGEND_PLACE,
    )
    return figure


def network_figure(result: InteractionResult, n_edges: int = 20) -> go.Figure:
    """The chosen units on a circle joined by their ``n_edges`` strongest pairs (width: strength;
    red: synergy, blue: redundancy, by the sign of the summed interaction)."""
    k = result.n_units
    angle = 2 * np.pi * np.arange(k) / k
    x, y = np.cos(angle), np.sin(angle)
    pairs = strongest_pairs(result, n_edges)
    top = max((row["strength"] for row in pairs), default=0.0) or 1.0
    figure = go.Figure()
    for row in pairs:
        a, b = row["a"], row["b"]
        figure.add_trace(
            go.Scatter(
                x=[x[a], x[b]],
                y=[y[a], y[b]],
                mode="lines",
                showlegend=False,
                hoverinfo="text",
                line={
                    "width": 1 + 7 * row["strength"] / top,
                    "color": "#d62728" if row["summed"] >= 0 else "#1f77b4",
                },
                text=f"{row['unit a']} × {row['unit b']}: strength {row['strength']:.3g}, "
                f"sum {row['summed']:.3g}",
            )
        )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="markers+text",
            text=result.player_names,
            textposition="top center",
            marker={"size": 10, "color": "#444"},
            showlegend=False,
            hoverinfo="text",
        )
    )
    figure.update_layout(
        xaxis={"visible": False},
        yaxis={"visible": False, "scaleanchor": "x"},
        height=520,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title="Strongest pairs",
    )
    return figure


def pair_and_units(result: InteractionResult, parent: ModesResult, a: int, b: int) -> ModesResult:
    """The pair's interaction mode and the two units' Shapley modes as one 3-unit ``ModesResult``
    (for the Modes page's views and heatmaps): rows ``a × b``, ``a``, ``b``; ``a``, ``b`` are
    positions among the K units.

    Raises:
        MSAInputError: not two different positions.
    """
    if not (0 <= a < result.n_units and 0 <= b < result.n_units) or a == b:
        raise MSAInputError(
            f"a pair needs two different positions in 0..{result.n_units - 1}; got {a}, {b}"
        )
    units = result.players[[a, b]]
    name_a, name_b = result.player_names[a], result.player_names[b]
    return ModesResult(
        modes=np.stack([result.interactions[a, b], *parent.modes[units]]),
        stderr=np.stack([result.stderr[a, b], *parent.stderr[units]]),
        v_full=parent.v_full,
        v_empty=parent.v_empty,
        n_evaluations=result.n_evaluations,
        n_permutations=0,
        player_names=[f"{name_a} × {name_b}", name_a, name_b],
        meta=dict(parent.meta),
    )


def is_image(output_shape: tuple[int, ...]) -> bool:
    """Whether outputs ``[..., H, W]`` are images (H, W >= ``IMAGE_MIN_SIDE``, at least 3 axes)."""
    return len(output_shape) >= 3 and min(output_shape[-2:]) >= IMAGE_MIN_SIDE


def image_figure(modes: ModesResult) -> go.Figure:
    """Each row of ``modes`` (``[3, ..., H, W]``) as an image, averaged over leading output axes,
    side by side on one diverging scale."""
    from plotly.subplots import make_subplots

    planes = [np.asarray(m, dtype=float).reshape(-1, *m.shape[-2:]).mean(0) for m in modes.modes]
    limit = max(float(np.abs(p).max(initial=0.0)) for p in planes) or 1.0
    figure = make_subplots(
        rows=1, cols=len(planes), subplot_titles=modes.player_names, horizontal_spacing=0.03
    )
    for col, plane in enumerate(planes, start=1):
        figure.add_trace(
            go.Heatmap(
                z=plane,
                zmin=-limit,
                zmax=limit,
                zmid=0.0,
                colorscale="RdBu_r",
                showscale=col == len(planes),
                hovertemplate="x %{x}, y %{y}: %{z:.3g}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        figure.update_yaxes(
            autorange="reversed", scaleanchor=f"x{col}", visible=False, row=1, col=col
        )
        figure.update_xaxes(visible=False, row=1, col=col)
    figure.update_layout(height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure

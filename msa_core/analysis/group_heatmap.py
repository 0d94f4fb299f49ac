"""One heatmap of a group x unit matrix (task groups or languages x heads, experts, neurons, layers)
for the LLM study (``analysis.llm``) and Study 2 (``analysis.study2``).

Units are named ``L<layer>`` or ``L<layer>.<unit>``; ``unit_layers`` reads their layers, and
``group_matrix_figure`` lays the matrix out by layer so that every label is readable.

>>> unit_layers(["L0.H1", "L1.H0", "L2"]).tolist()
[0, 1, 2]
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from msa_core.analysis.modes import NOISE_LEGEND_PLACE
from msa_core.analysis.ranking import noise_marks
from msa_core.errors import MSAInputError

LAYER_OF_NAME = re.compile(r"^L(\d+)(?:\.|$)")


def unit_layers(player_names: Sequence[str]) -> np.ndarray:
    """``[N]`` layer index of each player named ``L<i>`` or ``L<i>.<unit>``.

    Raises:
        MSAInputError: a name without a layer.
    """
    layers = []
    for name in player_names:
        match = LAYER_OF_NAME.match(name)
        if match is None:
            raise MSAInputError(
                f"player {name!r} is not named L<layer>.<unit>; the LLM study needs layered units"
            )
        layers.append(int(match.group(1)))
    return np.array(layers)


def _layer_lines(layers: np.ndarray) -> list[dict]:
    return [
        dict(type="line", x0=b, x1=b, yref="paper", y0=0, y1=1, line=dict(color="black", width=0.5))
        for b in np.flatnonzero(np.diff(layers)) + 0.5
    ]


def group_matrix_figure(
    matrix: np.ndarray,
    player_names: Sequence[str],
    groups: Sequence[str],
    stderr: np.ndarray | None = None,
    title: str = "Group x unit contribution (target log-prob)",
    value: str = "mode (nats)",
) -> go.Figure:
    """The group x unit matrix ``[G, N]`` on one colour scale centred on 0, cells within noise
    (with ``stderr [G, N]``) dotted.

    Units named ``L<layer>.<unit>`` with the same units in every layer (heads, experts) are drawn
    as one layer x unit grid per group, side by side, so every layer and unit is labelled; other
    units as one heatmap with every unit labelled and lines between layers.

    Args:
        matrix: ``[G, N]`` values (contributions, selectivities) of each group and unit.
        player_names: the N units' names, ``L<layer>`` or ``L<layer>.<unit>``.
        groups: the G groups' names (task groups, languages).
        stderr: ``[G, N]`` standard errors of ``matrix``; None draws no noise marks.
        title: the figure's title; ``value``: what a cell is (the colour bar's title).
    Raises:
        MSAInputError: a unit name without a layer.
    """
    limit = float(np.abs(matrix).max()) or 1.0
    layers = unit_layers(player_names)
    units = [name.partition(".")[2] for name in player_names]
    per_layer = {
        layer: [u for u, at in zip(units, layers, strict=True) if at == layer] for layer in layers
    }
    names = list(per_layer.values())
    grid = all(names[0]) and all(row == names[0] for row in names)
    scale = {"zmid": 0, "zmin": -limit, "zmax": limit, "colorscale": "RdBu_r"}
    if not grid:
        figure = go.Figure(
            go.Heatmap(
                z=matrix,
                x=list(player_names),
                y=list(groups),
                colorbar={"title": value},
                **scale,
            )
        )
        figure.update_layout(
            title=title,
            xaxis={
                "title": "unit (by layer)",
                "tickmode": "array",
                "tickvals": list(player_names),
                "tickfont": {"size": 9},
            },
            yaxis_title="group",
            shapes=_layer_lines(layers),
            legend=NOISE_LEGEND_PLACE,
        )
        marks = None if stderr is None else noise_marks(player_names, groups, matrix, stderr)
        if marks is not None:
            figure.add_trace(marks)
        return figure
    from plotly.subplots import make_subplots

    order = sorted(per_layer)
    rows, columns = [f"L{layer}" for layer in order], names[0]
    position = {
        name: (order.index(layer), columns.index(unit))
        for name, layer, unit in zip(player_names, layers, units, strict=True)
    }
    figure = make_subplots(rows=1, cols=len(groups), horizontal_spacing=0.04)
    for g, group in enumerate(groups):
        z = np.full((len(rows), len(columns)), np.nan)
        e = np.zeros_like(z)
        for n, name in enumerate(player_names):
            z[position[name]] = matrix[g, n]
            if stderr is not None:
                e[position[name]] = stderr[g, n]
        figure.add_trace(
            go.Heatmap(
                z=z,
                x=columns,
                y=rows,
                showscale=g == 0,
                colorbar={"title": value},
                hovertemplate=f"{group}<br>%{{y}}.%{{x}}: %{{z:.3g}}<extra></extra>",
                **scale,
            ),
            row=1,
            col=g + 1,
        )
        figure.update_xaxes(title_text=f"<b>{group}</b>: unit", row=1, col=g + 1)
        marks = None if stderr is None else noise_marks(columns, rows, np.nan_to_num(z), e)
        if marks is not None:
            marks.update(showlegend=g == 0)
            figure.add_trace(marks, row=1, col=g + 1)
    figure.update_xaxes(
        type="category",
        tickmode="array",
        tickvals=columns,
        tickfont={"size": 10},
    )
    figure.update_yaxes(
        type="category",
        tickmode="array",
        tickvals=rows,
        autorange="reversed",
        tickfont={"size": 10},
        showticklabels=False,
    )
    figure.update_yaxes(showticklabels=True, title_text="layer", row=1, col=1)
    figure.update_layout(
        title=f"{title}: one layer x unit grid per group",
        height=200 + 16 * len(rows),
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend=NOISE_LEGEND_PLACE,
        plot_bgcolor="white",
    )
    return figure

"""Views and metrics any ``ModesResult`` has: 2-D unit x output views, orders, top units,
concentration.

A *view* turns modes ``[N, *out]`` into a matrix ``[N, K]`` (one row per unit, one column per output
element): ``sum`` and ``mean`` add up or average over every axis but the last (over samples for
``[N, B, K]`` logits; the sum is the mode of the total, e.g. of per-class accuracy when each image
carries its share of it), ``class`` groups samples by their label (for ``[N, B, K]`` it keeps, per
sample, the mode on that sample's own class), ``sample`` takes one sample. By linearity, the mode of
a mean over samples is the mean of the per-sample modes, so every view is itself a set of Shapley
modes.

>>> import numpy as np
>>> from msa_core import shapley_modes
>>> res = shapley_modes(
...     lambda c: c.astype(float) @ np.diag([3.0, 1.0, 0.0]), n_players=3, method="exact"
... )
>>> view = view_of(res)
>>> view.values.shape, round(gini(unit_contributions(view.values)), 3)
((3, 3), 0.5)
>>> units_for_share(unit_contributions(view.values), 0.5)
1
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import plotly.graph_objects as go

from msa_core.analysis.ranking import UnitRanking, noise_marks, ranking_of
from msa_core.errors import MSAInputError
from msa_core.result import ModesResult

VIEWS = ("sum", "mean", "class", "sample")
OUTPUT_UNITS = {  # what a mode of each named output is measured in (colour bars, axis titles)
    "logits": "logit",
    "log_probs": "nats",
    "probs": "probability",
    "correct": "fraction correct",
    "class_accuracy": "accuracy",
    "target_logprob": "nats",
    "language_logprob": "nats",
    "image": "pixel value",
}
ROW_PITCH = 16  # pixels per heatmap row or column: room for one 11 px tick label each
ORDERS = ("index", "total", "cluster")
# the legend of a map's noise marks: one line under the figure, clear of the axes' labels
NOISE_LEGEND_PLACE = {
    "orientation": "h",
    "yref": "container",
    "y": 0.0,
    "yanchor": "bottom",
    "x": 0.0,
    "xanchor": "left",
}
SHARES = (0.5, 0.8, 0.9)
# distinct, colour-blind aware
CURVE_COLOURS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
)


@dataclass(frozen=True)
class ModesView:
    """Modes as a unit x output matrix ``values [N, K]`` with a stderr ``[N, K]`` and names for both
    axes.

    ``stderr_is_bound`` is True when ``stderr`` is an upper bound: a mean of sampled modes has at
    most the mean of their standard errors (equality when the errors are perfectly correlated).
    """

    values: np.ndarray
    stderr: np.ndarray
    units: list[str]
    outputs: list[str]
    title: str
    stderr_is_bound: bool = False
    value_unit: str = ""  # what one unit of the values means, e.g. "logit" (colour-bar label)

    def ordered(self, order: Sequence[int] | np.ndarray) -> ModesView:
        """The view with its units (rows) in ``order``."""
        order = list(order)
        return replace(
            self,
            values=self.values[order],
            stderr=self.stderr[order],
            units=[self.units[i] for i in order],
        )


def available_views(result: ModesResult, labels: np.ndarray | None = None) -> tuple[str, ...]:
    """The views that make sense for this result (``class`` needs labels and per-sample outputs)."""
    views = ["sum", "mean"] if result.modes.ndim >= 3 else ["mean"]
    if labels is not None and result.modes.ndim in (2, 3) and result.output_shape[0] == len(labels):
        views.append("class")
    if result.modes.ndim >= 3:
        views.append("sample")
    return tuple(views)


def view_of(
    result: ModesResult,
    view: str | None = None,
    labels: np.ndarray | None = None,
    sample: int = 0,
    class_names: Sequence[str] | None = None,
) -> ModesView:
    """The unit x output matrix of ``result`` under ``view`` (see the module docstring).

    labels: one integer class per sample ``[B]`` (needed by ``class``); sample: the sample index of
    ``sample``; view None: the first of ``available_views``. Output names are the last axis' indices
    (or ``class_names``).
    """
    modes, stderr = np.asarray(result.modes, dtype=float), np.asarray(result.stderr, dtype=float)
    view = view or available_views(result, labels)[0]
    if view not in VIEWS:
        raise MSAInputError(f"unknown view {view!r}; allowed: {', '.join(VIEWS)}")
    if view not in available_views(result, labels):
        raise MSAInputError(
            f"view {view!r} does not fit a result with outputs {list(result.output_shape)}"
            f"{'' if labels is not None else ' and no labels'}; allowed: "
            f"{', '.join(available_views(result, labels))}"
        )
    n = result.n_players
    if view == "sample":
        if not 0 <= sample < modes.shape[1]:
            raise MSAInputError(
                f"sample {sample} is out of range; the result has {modes.shape[1]} samples"
            )
        values, errors, bound = (
            modes[:, sample].reshape(n, -1),
            stderr[:, sample].reshape(n, -1),
            False,
        )
        names, title = _names(values.shape[1], class_names), f"sample {sample}"
    elif view == "class":
        labels = np.asarray(labels)
        if modes.ndim == 3:  # per sample, keep the mode on the sample's own class
            rows = np.arange(len(labels))
            modes, stderr = modes[:, rows, labels], stderr[:, rows, labels]
        classes = np.unique(labels)
        values = np.stack([modes[:, labels == c].mean(1) for c in classes], axis=1)
        errors = np.stack([stderr[:, labels == c].mean(1) for c in classes], axis=1)
        names = [class_names[c] if class_names is not None else str(c) for c in classes]
        bound, title = True, "per class (mean over the class's samples)"
    elif modes.ndim <= 2:
        values, errors, bound, title = modes.reshape(n, -1), stderr.reshape(n, -1), False, "modes"
        names = _names(values.shape[1], class_names)
    else:
        reduce = np.sum if view == "sum" else np.mean
        values = reduce(modes.reshape(n, -1, modes.shape[-1]), axis=1)
        errors = reduce(stderr.reshape(n, -1, modes.shape[-1]), axis=1)
        bound, names, title = True, _names(values.shape[1], class_names), f"{view} over samples"
    return ModesView(
        values, errors, list(result.player_names), names, title, bound, output_unit(result)
    )


def output_unit(result: ModesResult) -> str:
    """The unit of the result's output (``OUTPUT_UNITS``), "" when the output is not a named one."""
    request = result.meta.get("request") or {}
    return OUTPUT_UNITS.get(str(request.get("output") or result.meta.get("output") or ""), "")


def output_names(result: ModesResult) -> list[str] | None:
    """Readable names of the result's last output axis, where the run knows them: a task run's
    examples as ``"<i> <group>: <prompt>"`` (``tasks.example_names``); None otherwise."""
    task = result.meta.get("task")
    if not isinstance(task, dict) or not result.output_shape:
        return None
    from msa_core.tasks import example_names, task_of_meta

    names = example_names(task_of_meta(task))
    return names if len(names) == result.output_shape[-1] else None


def _names(k: int, class_names: Sequence[str] | None) -> list[str]:
    return (
        list(class_names)
        if class_names is not None and len(class_names) == k
        else [str(i) for i in range(k)]
    )


def unit_contributions(values: np.ndarray) -> np.ndarray:
    """Each unit's total |contribution| ``[N]``: the sum of |mode| over the view's outputs
    ``[N, K]``."""
    return np.abs(np.asarray(values, dtype=float)).reshape(len(values), -1).sum(1)


def unit_order(values: np.ndarray, order: str = "index") -> np.ndarray:
    """Row order ``[N]``: ``index`` as stored, ``total`` by |contribution| (largest first),
    ``cluster`` by average-linkage clustering of the rows' correlation (similar units side by side).
    """
    values = np.asarray(values, dtype=float)
    if order == "index":
        return np.arange(len(values))
    if order == "total":
        return np.argsort(-unit_contributions(values), kind="stable")
    if order == "cluster":
        tree = cluster_tree(values)
        if tree is None:
            return np.arange(len(values))
        from scipy.cluster.hierarchy import leaves_list

        return leaves_list(tree)
    raise MSAInputError(f"unknown order {order!r}; allowed: {', '.join(ORDERS)}")


def cluster_tree(values: np.ndarray) -> np.ndarray | None:
    """The average-linkage tree ``[N-1, 4]`` (scipy linkage, optimal leaf order) of the rows of
    ``values [N, K]`` by correlation (Euclidean distance for one column); None for fewer than 3
    rows."""
    values = np.asarray(values, dtype=float)
    if len(values) < 3:
        return None
    from scipy.cluster.hierarchy import linkage, optimal_leaf_ordering
    from scipy.spatial.distance import pdist

    centred = values - values.mean(1, keepdims=True)
    flat = np.linalg.norm(centred, axis=1) < 1e-12  # constant rows have no correlation: apart
    distances = (
        pdist(np.where(flat[:, None], 0.0, centred), "cosine")
        if values.shape[1] > 1
        else pdist(values, "euclidean")
    )
    distances = np.nan_to_num(distances, nan=1.0)
    return optimal_leaf_ordering(linkage(distances, "average"), distances)


def dendrogram_traces(tree: np.ndarray) -> list[go.Scatter]:
    """Line traces of the tree's dendrogram with leaf i at y = i (the i-th row of the ordered
    heatmap) and the merge height on x."""
    from scipy.cluster.hierarchy import dendrogram

    drawn = dendrogram(tree, no_plot=True)
    return [
        go.Scatter(
            x=heights,
            y=(np.asarray(positions) - 5.0) / 10.0,
            mode="lines",
            showlegend=False,
            line={"color": "#555", "width": 1},
            hoverinfo="skip",
        )
        for positions, heights in zip(drawn["icoord"], drawn["dcoord"], strict=True)
    ]


def heatmap_size(n_rows: int, n_columns: int) -> tuple[int, int]:
    """(width, height) in pixels giving every row and column ``ROW_PITCH`` pixels plus room for the
    title, labels and colour bar."""
    return 260 + max(420, ROW_PITCH * n_columns), 190 + max(160, ROW_PITCH * n_rows)


def heatmap_figure(
    view: ModesView | ModesResult,
    order: str = "index",
    zmax: float | None = None,
    stderr: bool = False,
    title: str | None = None,
    height: int | None = None,
    colorbar: bool = True,
) -> go.Figure:
    """Units x outputs heatmap on a diverging scale centred at 0 (red up, blue down).

    zmax: the colour limit (share it between figures to compare them); default the view's max
    |value|.
    stderr: show the standard errors instead of the modes (on a sequential scale from 0).
    colorbar: False leaves the colour bar out (side-by-side figures on one scale need only one).
    Cells within noise (``ranking.within_noise``) carry a grey dot, named in the legend.
    order ``cluster`` adds the dendrogram on the right. Every unit and output is labelled; the
    height gives each row ``ROW_PITCH`` pixels and ``layout.meta["natural_width"]`` the width that
    does the same for the columns (exports use it).
    """
    view = view_of(view) if isinstance(view, ModesResult) else view
    tree = cluster_tree(view.values) if order == "cluster" else None
    view = view.ordered(unit_order(view.values, order).tolist())
    z, other = (view.stderr, view.values) if stderr else (view.values, view.stderr)
    limit = float(zmax) if zmax is not None else float(np.max(np.abs(z), initial=0.0)) or 1.0
    what = (
        ("stderr (upper bound)" if view.stderr_is_bound else "stderr") if stderr else "Shapley mode"
    )
    unit = f" ({view.value_unit})" if view.value_unit else ""
    heatmap = go.Heatmap(
        z=z,
        x=view.outputs,
        y=view.units,
        zmin=0.0 if stderr else -limit,
        zmax=limit,
        customdata=other,
        colorscale="Viridis" if stderr else "RdBu_r",
        zmid=None if stderr else 0.0,
        colorbar={"title": {"text": f"{what}<br>{unit.strip()}", "side": "right"}},
        showscale=colorbar,
        hovertemplate=f"unit %{{y}}<br>output %{{x}}<br>{what} %{{z:.4g}}{unit}<br>"
        f"{'mode' if stderr else 'stderr'} %{{customdata:.3g}}<extra></extra>",
    )
    every = {"type": "category", "tickmode": "array", "automargin": True, "tickfont": {"size": 11}}
    width, natural_height = heatmap_size(len(view.units), len(view.outputs))
    if tree is None:
        figure = go.Figure(heatmap)
    else:  # the dendrogram on the right, its leaves facing the rows they order
        from plotly.subplots import make_subplots

        figure = make_subplots(rows=1, cols=2, column_widths=[0.85, 0.15], horizontal_spacing=0.01)
        figure.add_trace(heatmap, row=1, col=1)
        for trace in dendrogram_traces(tree):
            figure.add_trace(trace, row=1, col=2)
        rows = len(view.units)
        top = float(tree[:, 2].max()) or 1.0
        figure.update_layout(
            xaxis2={"visible": False, "autorange": False, "range": [0, top]},
            yaxis2={"visible": False, "range": [rows - 0.5, -0.5]},
        )
        width += 120
    marks = None if stderr else noise_marks(view.outputs, view.units, z, other)
    if marks is not None:
        figure.add_trace(marks)
    figure.update_layout(
        yaxis={
            **every,
            "tickvals": view.units,
            "ticktext": view.units,
            "autorange": "reversed",
            "title": "unit",
        },
        xaxis={**every, "tickvals": view.outputs, "ticktext": view.outputs, "title": "output"},
    )
    figure.update_layout(
        title={
            "text": title if title is not None else f"{what}: {view.title}",
            "automargin": True,
            "yref": "paper",
            "pad": {"b": 12},  # clear of the first row's cells
        },
        height=height or natural_height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        meta={"natural_width": width},
        plot_bgcolor="white",
        legend=NOISE_LEGEND_PLACE,
    )
    return figure


MAX_CLICK_TARGETS = 20_000  # cells; a larger heatmap is read by hover and the unit picker only


def with_click_targets(figure: go.Figure) -> go.Figure:
    """``figure`` (a ``heatmap_figure``) with an invisible marker on every cell that carries the
    cell's hover text, so a click selects the cell's unit (plotly reports clicks on markers, not on
    heatmap cells); unchanged above ``MAX_CLICK_TARGETS`` cells."""
    heat = figure.data[0]
    rows, columns = list(heat.y), list(heat.x)
    if len(rows) * len(columns) > MAX_CLICK_TARGETS:
        return figure
    z, other = np.asarray(heat.z), np.asarray(heat.customdata)
    figure.add_trace(
        go.Scatter(
            x=np.tile(columns, len(rows)),
            y=np.repeat(rows, len(columns)),
            mode="markers",
            marker={"size": 14, "opacity": 0.0, "symbol": "square"},
            showlegend=False,
            customdata=np.stack([z.ravel(), other.ravel()], axis=1),
            hovertemplate=heat.hovertemplate.replace("%{z", "%{customdata[0]").replace(
                "%{customdata:", "%{customdata[1]:"
            ),
        )
    )
    figure.update_traces(hoverinfo="skip", hovertemplate=None, selector={"type": "heatmap"})
    return figure


def shared_zmax(views: Sequence[ModesView]) -> float:
    """One colour limit for several views: the largest |value| among them."""
    return (
        max((float(np.max(np.abs(view.values), initial=0.0)) for view in views), default=0.0) or 1.0
    )


def top_units(view: ModesView, k: int = 3) -> list[dict[str, Any]]:
    """Per output, the ``k`` units pushing it up most and the ``k`` pushing it down most (rows of a
    table)."""
    rows = []
    for column, output in enumerate(view.outputs):
        values = view.values[:, column]
        up, down = np.argsort(-values, kind="stable")[:k], np.argsort(values, kind="stable")[:k]
        rows.append(
            {
                "output": output,
                "top units (+)": ", ".join(
                    f"{view.units[i]} ({values[i]:+.3g})" for i in up if values[i] > 0
                )
                or "none",
                "top units (-)": ", ".join(
                    f"{view.units[i]} ({values[i]:+.3g})" for i in down if values[i] < 0
                )
                or "none",
            }
        )
    return rows


def gini(contributions: np.ndarray) -> float:
    """Gini coefficient of non-negative contributions ``[N]``: 0 = all equal, (N-1)/N = one unit
    holds all.

    >>> gini(np.ones(4)), gini(np.array([0.0, 0.0, 0.0, 1.0]))
    (0.0, 0.75)
    """
    x = np.sort(np.abs(np.asarray(contributions, dtype=float)).ravel())
    total = x.sum()
    if len(x) == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, len(x) + 1)
    return float((2 * ranks - len(x) - 1) @ x / (len(x) * total))


def units_for_share(contributions: np.ndarray, share: float) -> int:
    """The fewest units whose |contribution| adds up to at least ``share`` of the total (0 if all
    are 0).

    >>> units_for_share(np.array([5.0, 3.0, 1.0, 1.0]), 0.8)
    2
    """
    x = np.sort(np.abs(np.asarray(contributions, dtype=float)).ravel())[::-1]
    if x.sum() == 0:
        return 0
    cumulative = np.cumsum(x) / x.sum()
    return int(np.searchsorted(cumulative, share - 1e-12) + 1)


def concentration(view: ModesView | ModesResult) -> dict[str, float]:
    """Concentration metrics of the units' total |contribution|: Gini, units holding 50/80/90% of
    it, and the largest single unit's share."""
    view = view_of(view) if isinstance(view, ModesResult) else view
    contributions = unit_contributions(view.values)
    total = contributions.sum()
    metrics: dict[str, float] = {"units": len(contributions), "gini": gini(contributions)}
    for share in SHARES:
        metrics[f"units for {share:.0%}"] = units_for_share(contributions, share)
    metrics["top unit share"] = float(contributions.max() / total) if total > 0 else 0.0
    return metrics


def hub_table(
    view: ModesView, ranked: UnitRanking | None = None, k: int = 10, top_per_output: int = 3
) -> list[dict[str, Any]]:
    """The first ``k`` units of the run's ranking (``ranking.STATISTIC``; default: ranked by the
    view's own) with rank (a range where unresolved), the statistic and its stderr, share of the
    view's total |contribution| and breadth (the number of outputs for which the unit is among the
    ``top_per_output`` by |mode|)."""
    ranked = ranked or ranking_of(view.values.mean(1), view.stderr.mean(1), view.units)
    contributions = unit_contributions(view.values)
    total = contributions.sum() or 1.0
    ranks = np.argsort(
        np.argsort(-np.abs(view.values), axis=0, kind="stable"), axis=0, kind="stable"
    )
    breadth = (ranks < top_per_output).sum(1)
    return [
        {
            **row,
            "share of |contribution|": float(contributions[i] / total),
            f"outputs where top {top_per_output}": int(breadth[i]),
        }
        for row, i in zip(ranked.rows(k), ranked.order[:k], strict=True)
    ]


def contribution_curve_figure(views: Mapping[str, ModesView], cumulative: bool = True) -> go.Figure:
    """Sorted contribution curves of several views: share of the total |contribution| (cumulative,
    or per unit) against the fraction of units ranked largest first; dotted lines mark 50/80/90%."""
    figure = go.Figure()
    for (name, view), colour in zip(views.items(), itertools.cycle(CURVE_COLOURS)):
        x = np.sort(unit_contributions(view.values))[::-1]
        share = x / (x.sum() or 1.0)
        y = np.cumsum(share) if cumulative else share
        rank = np.arange(1, len(x) + 1) / len(x)
        figure.add_trace(
            go.Scatter(
                x=rank,
                y=y,
                mode="lines+markers",
                name=name,
                marker={"size": 4, "color": colour},
                line={"color": colour},
                hovertemplate="top %{x:.0%} of units<br>share %{y:.1%}<extra>" + name + "</extra>",
            )
        )
    if cumulative:  # reference lines as plain layout shapes (add_hline is slow)
        figure.update_layout(
            shapes=[
                {
                    "type": "line",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": share,
                    "y1": share,
                    "line": {"dash": "dot", "color": "grey", "width": 1},
                }
                for share in SHARES
            ],
            annotations=[
                {
                    "xref": "paper",
                    "x": 1,
                    "y": share,
                    "text": f"{share:.0%}",
                    "showarrow": False,
                    "xanchor": "right",
                    "yanchor": "top",
                    "font": {"color": "grey"},
                }
                for share in SHARES
            ],
        )
    figure.update_layout(
        title="Sorted contribution curve" + (" (cumulative)" if cumulative else ""),
        xaxis_title="fraction of units, largest contribution first",
        xaxis_tickformat=".0%",
        yaxis_title="cumulative share of |contribution|"
        if cumulative
        else "share of |contribution|",
        yaxis_tickformat=".0%",
        yaxis_range=[0, 1.05],  # one fixed frame: every tick inside it, however the curve runs
        xaxis_automargin=True,  # room for the labels whatever the default template
        yaxis_automargin=True,
        # room below for the x labels and title, the legend above the plot: nothing is clipped
        margin={"l": 10, "r": 10, "t": 80, "b": 60},
        legend={
            "orientation": "h",
            "yref": "container",
            "y": 1.0,
            "yanchor": "top",
            "x": 1.0,
            "xanchor": "right",
        },
    )
    return figure


def unit_scores(view: ModesView) -> np.ndarray:
    """One signed score per unit ``[N]``: its mode averaged over the view's outputs (the paper's
    phi)."""
    return view.values.mean(1)


def classification(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions ``[C, B]``, accuracy ``[C]`` and per-class accuracy ``[C, n_classes]`` of the
    logits ``[C, B, K]`` of C coalitions (a game's values) against labels ``[B]``.

    >>> predictions, accuracy, per_class = classification(
    ...     np.array([[[1.0, 0.0], [1.0, 0.0]]]), np.array([0, 1])
    ... )
    >>> predictions.tolist(), accuracy.tolist(), per_class.tolist()
    ([[0, 0]], [0.5], [[1.0, 0.0]])
    """
    logits = logits.detach().cpu().numpy() if hasattr(logits, "detach") else np.asarray(logits)
    labels = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    predictions = logits.argmax(-1)
    correct = predictions == labels
    classes = np.arange(logits.shape[-1])
    per_class = np.stack(
        [
            correct[:, labels == c].mean(1)
            if (labels == c).any()
            else np.full(len(correct), np.nan)
            for c in classes
        ],
        axis=1,
    )
    return predictions, correct.mean(1), per_class

"""Everything a run shows, as one standalone HTML page: its facts, numbers and every figure.

``run_figures`` is the one list of a run's figures (the dashboard's Export page offers the same);
``report_html`` puts them with the run's facts, its noise verdict (``analysis.ranking``),
concentration metrics, the one ranking of its units and top units per output on a page that opens
offline (plotly.js inlined once).

>>> import numpy as np
>>> from msa_core import shapley_modes
>>> res = shapley_modes(lambda c: c.astype(float) @ np.diag([3.0, 1.0, 0.0]), n_players=3,
...                     method="exact")
>>> sorted(run_figures(res))
['heatmap, clustered', 'heatmap, mean', 'sorted contribution curve', 'standard errors']
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from msa_core.analysis.modes import (
    available_views,
    concentration,
    contribution_curve_figure,
    heatmap_figure,
    hub_table,
    output_names,
    top_units,
    view_of,
)
from msa_core.analysis.ranking import (
    NOISE_LEGEND,
    STATISTIC,
    STATISTIC_HELP,
    noise_summary,
    noise_verdict,
    unit_ranking,
)
from msa_core.result import ModesResult

VIEW_TITLES = {"sum": "sum over samples", "mean": "mean over samples", "class": "per class"}


def run_figures(
    result: ModesResult, labels: np.ndarray | None = None, class_names: Sequence[str] | None = None
) -> dict[str, go.Figure]:
    """The run's figures by name: a heatmap per view (not per sample), the clustered heatmap with
    its dendrogram, the standard errors and the sorted contribution curve.

    labels: per-sample classes ``[B]`` (adds the per-class view); class_names: names of the outputs.
    """
    views = [view for view in available_views(result, labels) if view != "sample"]
    class_names = class_names or output_names(result)
    figures = {
        f"heatmap, {view}": heatmap_figure(
            view_of(result, view, labels, class_names=class_names),
            title=f"Shapley modes, {VIEW_TITLES[view]}",
        )
        for view in views
    }
    first = view_of(result, views[0], labels, class_names=class_names)
    figures["heatmap, clustered"] = heatmap_figure(
        first, "cluster", title=f"Shapley modes, {VIEW_TITLES[views[0]]}, units clustered"
    )
    figures["standard errors"] = heatmap_figure(first, stderr=True)
    figures["sorted contribution curve"] = contribution_curve_figure({VIEW_TITLES[views[0]]: first})
    return figures


def run_facts(result: ModesResult) -> dict[str, str]:
    """The run's facts as readable strings: model, units, output, lesion, method, budget, checks."""
    request = result.meta.get("request") or {}
    facts = {
        key: str(request.get(key) or result.meta.get(key) or "")
        for key in ("model", "units", "output", "lesion")
    }
    facts = {key: value for key, value in facts.items() if value}
    facts["method"] = str(result.meta.get("method") or request.get("method") or "?")
    facts["units (players)"] = str(result.n_players)
    facts["output shape"] = " x ".join(map(str, result.output_shape)) or "scalar"
    facts["evaluations"] = f"{result.n_evaluations:,}"
    budget = request.get("n_permutations")
    if result.n_permutations:
        facts["permutations"] = f"{result.n_permutations:,}"
    elif budget:  # e.g. regression-adjusted: a budget in permutations, spent on coalitions
        facts["budget"] = f"{int(budget):,} permutations' worth of evaluations"
    facts["efficiency gap"] = (
        f"{result.efficiency_gap():.2e} (max |sum of modes - (v_full - v_empty)|)"
    )
    if result.meta.get("wall_seconds"):
        facts["wall time"] = f"{float(result.meta['wall_seconds']):.1f} s"
    if result.meta.get("fingerprint"):
        facts["fingerprint"] = str(result.meta["fingerprint"])
    return facts


def _table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    cell = lambda value: f"{value:.4g}" if isinstance(value, float) else str(value)  # noqa: E731
    head = "".join(f"<th>{html.escape(str(key))}</th>" for key in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(value))}</td>" for value in row.values()) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(
    result: ModesResult,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> str:
    """A standalone HTML page of the run: facts, concentration, hub units, top units per output and
    every figure of ``run_figures`` (interactive; plotly.js inlined once, so it opens offline)."""
    figures = run_figures(result, labels, class_names)
    class_names = class_names or output_names(result)
    views = [view for view in available_views(result, labels) if view != "sample"]
    view = view_of(result, views[0], labels, class_names=class_names)
    metrics = concentration(view)
    title = title or "Shapley modes of " + " · ".join(
        run_facts(result).get(k, "") for k in ("model", "units", "output")
    )
    verdict = noise_verdict(result)
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="warning">{html.escape(verdict)}</p>' if verdict else "",
        f"<p>{html.escape(noise_summary(result))} Grey dots in the maps mark values "
        f"{html.escape(NOISE_LEGEND)}.</p>",
        "<h2>Run</h2>",
        _table([{"fact": key, "value": value} for key, value in run_facts(result).items()]),
        f"<h2>Concentration ({html.escape(VIEW_TITLES[views[0]])})</h2>",
        _table(
            [
                {
                    key: (int(value) if key.startswith("units") else value)
                    for key, value in metrics.items()
                }
            ]
        ),
        f"<h2>Units ranked by {html.escape(STATISTIC)}</h2>",
        f"<p>{html.escape(STATISTIC_HELP)} A rank range (e.g. 2-5) means the order is not "
        "resolved at 95%.</p>",
        _table(hub_table(view, unit_ranking(result))),
        "<h2>Top units per output</h2>",
        _table(top_units(view, 3)),
        "<h2>Figures</h2>",
    ]
    for position, (name, figure) in enumerate(figures.items()):
        parts.append(f'<h3 class="figure">{html.escape(name)}</h3>')
        parts.append(
            figure.to_html(
                full_html=False,
                include_plotlyjs=position == 0,
                default_width=f"{figure.layout.meta['natural_width']}px"
                if figure.layout.meta
                else "100%",
            )
        )
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px}"
        "table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        ".warning{background:#fff3cd;border:1px solid #e0b400;padding:8px 12px}"
    )
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )

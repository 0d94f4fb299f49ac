"""Export: download a run's result (.npz, CSV) and its figures (PNG, standalone HTML)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from msa_core.analysis.modes import available_views, contribution_curve_figure, heatmap_figure, view_of
from msa_core.result import ModesResult
from msa_core.runs.export import export
from pages.common import VIEW_NAMES, chosen_result, explained_errors, labels_of

MIME = {"npz": "application/octet-stream", "csv": "text/csv", "png": "image/png", "html": "text/html"}


def exported(res: ModesResult, fmt: str) -> Callable[[], bytes]:
    """Deferred bytes of ``export(res, path, fmt)`` (made only when the user clicks)."""
    def make() -> bytes:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / f"result.{fmt}"
            export(res, path, fmt)
            return path.read_bytes()
    return make


def figure_html(figure: go.Figure) -> Callable[[], str]:
    """Deferred standalone HTML of a figure (plotly.js inlined: opens offline)."""
    return lambda: figure.to_html(full_html=True, include_plotlyjs=True)


def figure_png(figure: go.Figure) -> Callable[[], bytes]:
    """Deferred PNG of a figure (kaleido with the system's Chromium)."""
    return lambda: figure.to_image(format="png", scale=2)


st.title("Export")
fingerprint, res = chosen_result("export_run", "export")

stem = f"msa-{res.meta.get('request', {}).get('model', 'run')}-{fingerprint[:8]}"
with explained_errors("Preparing the downloads"):
    st.subheader("Result")
    st.markdown("The `.npz` holds `modes`, `stderr`, `v_full`, `v_empty`, `player_names` and `meta` (JSON) and "
                "loads with `ModesResult.load`; the CSV has one row per unit and output element.")
    cols = st.columns(4)
    for column, fmt, what in zip(cols, ("npz", "csv", "png", "html"),
                                 (".npz (all arrays)", "CSV (long table)", "PNG (heatmap)", "HTML (report)")):
        column.download_button(what, exported(res, fmt), file_name=f"{stem}.{fmt}", mime=MIME[fmt],
                               on_click="ignore", key=f"export_{fmt}", icon=":material/download:")

    st.subheader("Figures")
    labels = labels_of(res)
    figures = {f"heatmap, {VIEW_NAMES[v]}": heatmap_figure(view_of(res, v, labels)) for v in available_views(res, labels)
               if v != "sample"}
    figures["standard errors"] = heatmap_figure(view_of(res, None, labels), stderr=True)
    figures["sorted contribution curve"] = contribution_curve_figure({fingerprint[:8]: view_of(res)})
    chosen = st.selectbox("Figure", list(figures), key="export_figure")
    st.plotly_chart(figures[chosen], key="export_preview")
    slug = chosen.replace(", ", "-").replace(" ", "-")
    buttons = st.container(horizontal=True)
    buttons.download_button("Standalone HTML of this figure", figure_html(figures[chosen]),
                         file_name=f"{stem}-{slug}.html", mime=MIME["html"], on_click="ignore", key="export_figure_html",
                         icon=":material/download:")
    buttons.download_button("PNG of this figure", figure_png(figures[chosen]), file_name=f"{stem}-{slug}.png",
                        mime=MIME["png"], on_click="ignore", key="export_figure_png",
                        icon=":material/download:")
    st.caption("The HTML opens offline (plotly.js is inside). The PNG is rendered on the server with kaleido and "
               "Chromium (a few seconds); the camera icon in the figure's toolbar saves what you see.")

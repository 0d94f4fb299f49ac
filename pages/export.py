"""Export: a run's result (.npz, CSV), its report (standalone HTML), its figures (PNG, SVG, HTML).

The run and the figure live in the URL.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from msa_core.result import ModesResult
from msa_core.runs.export import export, figure_bytes, publishable
from msa_core.runs.report import report_html, run_figures
from pages.common import chosen_result, explained_errors, labels_of, seed_from_url, share_in_url

MIME = {
    "npz": "application/octet-stream",
    "csv": "text/csv",
    "png": "image/png",
    "svg": "image/svg+xml",
    "html": "text/html",
}
CSV_ROWS_AT_ONCE = 200_000  # a larger CSV is prepared on request with a progress bar


def exported(res: ModesResult, fmt: str) -> Callable[[], bytes]:
    """Deferred bytes of ``export(res, path, fmt)`` (made only when the user clicks)."""

    def make() -> bytes:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / f"result.{fmt}"
            export(res, path, fmt)
            return path.read_bytes()

    return make


def csv_with_progress(res: ModesResult) -> bytes:
    """The CSV export, with a progress bar while it is written."""
    bar = st.progress(0.0, text="Writing the CSV…")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "result.csv"
        export(
            res,
            path,
            "csv",
            progress=lambda done, total: bar.progress(
                done / total, text=f"Writing the CSV: {done:,} of {total:,} rows"
            ),
        )
        bar.empty()
        return path.read_bytes()


def figure_html(figure: go.Figure) -> Callable[[], str]:
    """Deferred standalone HTML of a figure (plotly.js inlined: opens offline)."""
    return lambda: publishable(figure).to_html(full_html=True, include_plotlyjs=True)


def figure_file(figure: go.Figure, fmt: str) -> Callable[[], bytes]:
    """Deferred PNG or SVG of a figure (kaleido with the system's Chromium), every label shown."""
    return lambda: figure_bytes(figure, fmt)


st.title("Export")
fingerprint, res = chosen_result("export_run", "export")

stem = f"msa-{res.meta.get('request', {}).get('model', 'run')}-{fingerprint[:8]}"
with explained_errors("Preparing the downloads"):
    labels = labels_of(res)
    st.subheader("Result and report")
    st.markdown(
        "The `.npz` holds `modes`, `stderr`, `v_full`, `v_empty`, `player_names` and `meta` (JSON) "
        "and loads with `ModesResult.load`; the CSV has one row per unit and output element; the "
        "report is "
        "one HTML page with the run's facts, numbers and every figure below (opens offline)."
    )
    cols = st.columns(3)
    cols[0].download_button(
        ".npz (all arrays)",
        exported(res, "npz"),
        file_name=f"{stem}.npz",
        mime=MIME["npz"],
        on_click="ignore",
        key="export_npz",
        icon=":material/download:",
    )
    cols[1].download_button(
        "HTML report (all figures and numbers)",
        lambda: report_html(res, labels),
        file_name=f"{stem}-report.html",
        mime=MIME["html"],
        on_click="ignore",
        key="export_report",
        icon=":material/download:",
    )
    rows = res.modes.size
    with cols[2]:
        if rows <= CSV_ROWS_AT_ONCE:
            st.download_button(
                "CSV (long table)",
                exported(res, "csv"),
                file_name=f"{stem}.csv",
                mime=MIME["csv"],
                on_click="ignore",
                key="export_csv",
                icon=":material/download:",
            )
        elif st.session_state.get("export_csv_for") == fingerprint:
            st.download_button(
                "CSV (long table)",
                st.session_state["export_csv_bytes"],
                file_name=f"{stem}.csv",
                mime=MIME["csv"],
                on_click="ignore",
                key="export_csv",
                icon=":material/download:",
            )
        elif st.button(f"Prepare the CSV ({rows:,} rows)", key="export_prepare_csv"):
            st.session_state["export_csv_bytes"] = csv_with_progress(res)
            st.session_state["export_csv_for"] = fingerprint
            st.rerun()

    st.subheader("Figures")
    figures = run_figures(res, labels)
    seed_from_url("export_figure", "figure", list(figures))
    chosen = st.selectbox("Figure", list(figures), key="export_figure")
    share_in_url(figure=chosen)
    st.plotly_chart(figures[chosen], key="export_preview")
    slug = chosen.replace(", ", "-").replace(" ", "-")
    buttons = st.container(horizontal=True)
    for fmt, what in (("png", "PNG"), ("svg", "SVG")):
        buttons.download_button(
            f"{what} of this figure",
            figure_file(figures[chosen], fmt),
            file_name=f"{stem}-{slug}.{fmt}",
            mime=MIME[fmt],
            on_click="ignore",
            key=f"export_figure_{fmt}",
            icon=":material/download:",
        )
    buttons.download_button(
        "Standalone HTML of this figure",
        figure_html(figures[chosen]),
        file_name=f"{stem}-{slug}.html",
        mime=MIME["html"],
        on_click="ignore",
        key="export_figure_html",
        icon=":material/download:",
    )
    st.caption(
        "PNG and SVG show every unit and output label, sized to the figure's content, rendered on "
        "the server with kaleido and Chromium (a few seconds). The HTML opens offline (plotly.js "
        "is inside)."
    )

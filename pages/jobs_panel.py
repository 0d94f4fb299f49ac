"""The jobs panel in the sidebar of every page: the store's recent runs (this app's, other apps'
and the CLI's), with progress, ETA, max stderr, cancel, resume and errors in words. It reads the
store, so it survives reloads; it polls once a second while a job is queued or running."""

from __future__ import annotations

import streamlit as st

from msa_core.runs import JobStatus
from msa_core.runs.interaction_runs import KEY_PREFIX, stored_interactions
from pages.common import (
    CURRENT_RUN,
    RUN_ID_LENGTH,
    explained_errors,
    format_seconds,
    jobs,
    plain,
    store,
    submit_job,
)

SHOWN_JOBS = 6  # the most recently submitted jobs the panel lists
IDLE_POLL = 5.0  # seconds between looks at the store while no job is active
ACTIVE = ("queued", "running")
STATE_WORDS = {
    "queued": "queued",
    "running": "running",
    "done": "done",
    "failed": "failed",
    "cancelled": "stopped",
}


def job_title(status: JobStatus) -> str:
    """``model · units · state``: what a job is, in one line."""
    request = status.request
    if status.fingerprint.startswith(KEY_PREFIX):
        what = f"interaction run {status.fingerprint[:9]}"
    elif request is not None:
        what = f"{request.model} · {request.units or 'default units'}"
    else:
        what = status.fingerprint[:8]
    return f"**{what}** · {STATE_WORDS.get(status.state, status.state)}"


def job_progress(status: JobStatus) -> tuple[float, str]:
    """The bar's fraction and text: evaluations done/total, ETA, max stderr."""
    if status.state == "queued":
        return 0.0, "waiting for the worker"
    if status.total is None:
        return 0.0, "starting: loading the model and building the game"
    fraction = min(1.0, status.done / status.total) if status.total else 0.0
    text = f"{status.done:,} / {status.total:,} evaluations"
    if status.state == "running":
        text += (
            f" · about {format_seconds(status.eta_seconds)} left"
            if status.eta_seconds is not None
            else " · time left: after the first block"
        )
    if status.max_stderr is not None:
        text += f" · max stderr {status.max_stderr:.3g}"
    return fraction, text


def job_row(status: JobStatus) -> None:
    """One job: title, bar, error in words, and its buttons."""
    fingerprint = status.fingerprint
    st.markdown(job_title(status))
    fraction, text = job_progress(status)
    st.progress(fraction, text=text)
    if status.state == "failed":
        st.error(f"It failed: {plain(status.error)}", icon=":material/error:")
    elif status.state == "cancelled":
        st.caption(f"Stopped ({plain(status.error)}). Resuming continues from its last checkpoint.")
    buttons = st.container(horizontal=True)
    if (
        status.state in ACTIVE
        and status.here
        and buttons.button("Cancel", key=f"jobs-cancel-{fingerprint}")
    ):
        jobs().cancel(fingerprint)
        st.rerun(scope="app")
    if status.state in ACTIVE and not status.here:
        st.caption("Started by another process (the CLI or another app): stop it there.")
    if status.state in ("failed", "cancelled") and status.request is not None:
        label = "Retry" if status.state == "failed" else "Resume"
        if buttons.button(label, key=f"jobs-resume-{fingerprint}"):
            submit_job(status.request, None)
    if status.state != "done":
        return
    if fingerprint.startswith(KEY_PREFIX):  # an interaction run opens on the run it refines
        if buttons.button("Open in Interactions", key=f"jobs-open-{fingerprint}"):
            result = stored_interactions(store(), fingerprint)
            parent = result.meta.get("parent") if result is not None else None
            st.switch_page(
                "pages/interactions.py",
                query_params={"run": parent[:RUN_ID_LENGTH]} if parent else None,
            )
    elif buttons.button("Open in Shapley modes", key=f"jobs-open-{fingerprint}"):
        st.session_state[CURRENT_RUN] = fingerprint
        st.switch_page("pages/modes.py")


def stored_runs_signature() -> tuple[str, ...]:
    """The fingerprints of the stored runs: it changes when a run is added or deleted by anyone."""
    return tuple(entry["fingerprint"] for entry in store().list())


def jobs_panel() -> None:
    """The sidebar's jobs: polled every second while one is active, else every ``IDLE_POLL``
    seconds; when the last one ends, a job starts (here, in another tab or the CLI) or the store's
    runs change, the whole page reruns, so the page's own tables show the new runs."""
    with explained_errors("Reading the jobs"):
        polling = any(status.state in ACTIVE for status in jobs().recorded(SHOWN_JOBS))
        signature = stored_runs_signature()

    @st.fragment(run_every=1.0 if polling else IDLE_POLL)
    def panel() -> None:
        with explained_errors("Reading the jobs"):
            statuses = jobs().recorded(SHOWN_JOBS)
            active = any(status.state in ACTIVE for status in statuses)
            if not polling and (active or stored_runs_signature() != signature):
                st.rerun(scope="app")  # new work or new runs: the page re-reads the store
            if not statuses:
                st.caption(
                    "No jobs yet. Runs launched here or with the CLI on this store show up here."
                )
                return
            for status in statuses:
                with st.container(border=True):
                    job_row(status)
            if polling and not active:
                st.rerun(scope="app")  # the last job just ended

    st.subheader("Jobs")
    panel()

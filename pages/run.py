"""Run: choose a model, units, lesion, output, estimator and budget; launch; watch progress; manage cached runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from msa_core import METHODS
from msa_core.deployment import deployment
from msa_core.runs import RunRequest
from msa_core.zoo import HF_PREFIX, list_models

from pages.common import (COMPARED_RUNS, CURRENT_RUN, explained_errors, format_seconds, jobs, model, run_label,
                          runs, store, timestamp)

JOBS = "submitted_jobs"  # session key: fingerprints of the jobs this session launched
HF_CHOICE = "Local Hugging Face checkpoint…"
LESION_HELP = {"zero": "zero: a lesioned unit outputs 0 (the paper's lesion)",
               "mean": "mean: a lesioned unit outputs its mean over the model's inputs"}


@st.cache_resource(show_spinner=False)
def unit_names(name: str, granularity: str) -> list[str]:
    """The players a granularity offers (names of the units)."""
    return model(name).game(granularity).player_names


def launch_form(name: str) -> None:
    """Granularity, units, lesion, output, method and budget of a run of model ``name``; submit it.

    ``name`` is a bundled model or ``hf:<folder>``, a local Hugging Face checkpoint."""
    loaded = model(name)
    card = loaded.card
    st.caption(card.description)
    granularity = st.selectbox("Unit granularity", list(card.granularities), key="granularity")
    names = unit_names(name, granularity)
    shown = ", ".join(names[:6]) + (f", … {names[-1]}" if len(names) > 6 else "")
    st.markdown(f"**{len(names)} units** (players): {shown}")
    with st.form("launch"):
        left, right = st.columns(2)
        output = left.selectbox("Output (the game's value)", card.outputs, key="run_output",
                                help="What the model produces under each lesion; the modes have its shape.")
        lesion = right.selectbox("Lesion", list(LESION_HELP), format_func=LESION_HELP.get, key="run_lesion")
        method = left.selectbox("Method", METHODS, key="run_method", help="auto: exact when all 2^N coalitions fit the budget, "
                                "else the most accurate sampler per evaluation.")
        permutations = right.number_input("Budget: permutations", min_value=1, value=100, step=10, key="run_permutations",
                                          help="A permutation costs about N evaluations; the paper used 1,000.")
        evaluations = left.number_input("Cap on evaluations (0 = none)", min_value=0, value=0, step=1000, key="run_evaluations")
        seed = right.number_input("Seed", min_value=0, value=0, step=1, key="run_seed")
        submitted = st.form_submit_button("Launch run", type="primary")
    if submitted:
        with explained_errors("Launching the run"):
            request = RunRequest(model=name, units=granularity, output=output, lesion=lesion, method=method,
                                 n_permutations=int(permutations), max_evaluations=int(evaluations) or None,
                                 seed=int(seed))
            deployment().check_budget(request.budget(len(names)))
            fingerprint = jobs().submit(request)
            submitted_jobs = st.session_state.setdefault(JOBS, [])
            if fingerprint not in submitted_jobs:
                submitted_jobs.insert(0, fingerprint)
            st.toast("Run launched")


def job_rows() -> bool:
    """Progress of this session's jobs; True while any is still queued or running."""
    active = False
    for fingerprint in st.session_state.get(JOBS, []):
        status = jobs().status(fingerprint)
        state = status.state
        label = f"`{fingerprint[:8]}` · {state}"
        if state == "cancelled":
            st.info(f"Run `{fingerprint[:8]}` was cancelled ({status.error}); launching it again resumes it.")
            continue
        if state == "failed":
            st.error(f"Run `{fingerprint[:8]}` failed: {status.error}")
            continue
        fraction = min(1.0, status.done / status.total) if status.total else 0.0
        finished = state == "done"
        active = active or state in ("queued", "running")
        stderr = f" · max stderr {status.max_stderr:.3g}" if status.max_stderr is not None else ""
        eta = "" if finished else f" · about {format_seconds(status.eta_seconds)} left"
        total = f"{status.total:,}" if status.total else "?"
        st.progress(fraction, text=f"{label} · {status.done:,} / {total} evaluations{stderr}{eta}")
        if finished and st.button("Open in Shapley modes", key=f"open-{fingerprint}"):
            st.session_state[CURRENT_RUN] = fingerprint
            st.switch_page("pages/modes.py")
        if active and st.button("Cancel", key=f"cancel-{fingerprint}"):
            jobs().cancel(fingerprint)
    return active


def progress_panel() -> None:
    """This session's jobs, polled every second by a fragment while one is queued or running."""
    submitted = st.session_state.get(JOBS, [])
    if not submitted:
        return
    with explained_errors("Reading the progress"):
        polling = any(jobs().status(fingerprint).state in ("queued", "running") for fingerprint in submitted)

    @st.fragment(run_every=1.0 if polling else None)
    def panel() -> None:
        with explained_errors("Reading the progress"):
            if not job_rows() and polling:  # the last job just ended: refresh the page so the run list shows it
                st.rerun(scope="app")

    st.subheader("Progress")
    panel()


def cached_runs() -> None:
    """Table of stored runs, with open / compare / delete."""
    st.subheader("Cached runs")
    entries = runs()
    if not entries:
        st.info("No finished runs yet. Launch one above; it appears here when it finishes.")
        return
    table = pd.DataFrame([{
        "run": entry["fingerprint"][:8], "model": entry["request"]["model"], "units": entry["request"]["units"],
        "output": entry["request"]["output"], "lesion": entry["request"]["lesion"], "method": entry.get("method"),
        "players": entry["n_players"], "evaluations": entry["n_evaluations"],
        "seconds": round(entry["wall_seconds"], 1) if entry.get("wall_seconds") is not None else None,
        "created": timestamp(entry["created"]),
    } for entry in entries])
    st.dataframe(table, hide_index=True, width="stretch")
    labels = {entry["fingerprint"]: run_label(entry) for entry in entries}
    chosen = st.multiselect("Select runs", list(labels), format_func=labels.__getitem__, key="selected_runs",
                            placeholder="Choose one run to open, two or more to compare")
    buttons = st.container(horizontal=True)
    if buttons.button("Open", disabled=len(chosen) != 1, help="Show the run on the Shapley modes page"):
        st.session_state[CURRENT_RUN] = chosen[0]
        st.switch_page("pages/modes.py")
    if buttons.button("Compare", disabled=len(chosen) < 2, help="Open the selected runs on the Compare page"):
        st.session_state[COMPARED_RUNS] = list(chosen)
        st.switch_page("pages/compare.py")
    if deployment().allows_deletion and buttons.button(
            "Delete", disabled=not chosen,
            help="Forget the selected runs (a new run recomputes them)"):
        for fingerprint in chosen:
            store().delete(fingerprint)
        st.session_state.pop("selected_runs", None)
        st.rerun()


st.title("Run")
st.markdown("Pick a model and its units, then launch an MSA run. Runs are cached: the same request "
            "returns at once, and a larger budget of a permutation run extends the smaller one.")
models = [card.name for card in list_models()]
offered = [*models, HF_CHOICE] if deployment().allows_local_paths else models
choice = st.selectbox("Model", offered, key="model",
                      help="Bundled models ship with weights and data; Hugging Face checkpoints are read "
                           "from a local folder (no downloads).")
if choice == HF_CHOICE:
    directory = st.text_input("Checkpoint folder", placeholder="/path/to/checkpoint (with config.json)",
                              help="A Mixtral, OLMoE, Qwen2-MoE or dense causal LM saved with save_pretrained "
                                   "(config.json + *.safetensors). Its experts, heads and layers become units.")
    if directory:
        with explained_errors("Reading the checkpoint"):
            launch_form(f"{HF_PREFIX}{Path(directory).expanduser().resolve()}")
else:
    with explained_errors(f"Preparing {choice}"):
        launch_form(choice)
progress_panel()
with explained_errors("Listing the cached runs"):
    cached_runs()

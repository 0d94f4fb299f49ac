"""Run: choose a model, units, lesion, output, estimator and budget; see what it will cost before
launch; launch it in the background (progress in the sidebar's jobs panel); manage cached runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from msa_core import METHODS
from msa_core.deployment import deployment
from msa_core.errors import MSAInputError
from msa_core.estimators.plan import uses_permutations
from msa_core.names import LESIONS, lesion_label, lesions_help, method_help
from msa_core.runs import RunRequest, fingerprint_of
from msa_core.runs.budget import format_bytes, plan_run
from msa_core.zoo import HF_PREFIX, list_models
from pages.common import (
    COMPARED_RUNS,
    CURRENT_RUN,
    explained_errors,
    format_seconds,
    model,
    output_help,
    probe,
    run_label,
    runs,
    show_notice,
    store,
    submit_job,
    timestamp,
)

HF_CHOICE = "Local Hugging Face checkpoint…"
# the form's values that hold for every model, and their defaults
FORM_DEFAULTS = {
    "run_lesion": "zero",
    "run_method": "auto",
    "run_permutations": 100,
    "run_evaluations": 0,
    "run_seed": 0,
    "run_top_k": 0,
    "run_per_group": False,
}


@st.cache_resource(show_spinner=False)
def unit_names(name: str, granularity: str) -> list[str]:
    """The players a granularity offers (names of the units)."""
    return model(name).game(granularity).player_names


def budget_problem(method: str, permutations: int) -> str | None:
    """Why the form's budget cannot run, in the form's words (None when it can)."""
    if uses_permutations(method) and permutations < 1:
        return (
            "the budget is 0 permutations: set at least 1 (a permutation costs about one "
            "evaluation per unit; the paper used 1,000), or pick the method *exact*"
        )
    return None


def keep_form_values() -> None:
    """Keep the form's values across a change of model (a widget's value is dropped when a rerun
    does not draw it, e.g. while a model loads; writing it back keeps it)."""
    for key, default in FORM_DEFAULTS.items():
        st.session_state[key] = st.session_state.get(key, default)


def plan_box(request: RunRequest, name: str) -> bool:
    """What the request will cost (evaluations, estimator, time, memory) or why it cannot run; True
    if it can.
    """
    try:
        plan = plan_run(request, probe(request))
        deployment().check_budget(plan.evaluations)  # a shared server's cap (MSA_DEPLOYMENT=shared)
    except MSAInputError as err:
        st.error(f"This budget cannot run: {err}", icon=":material/block:")
        return False
    st.markdown(f"**{plan.evaluations:,} evaluations** of {plan.n_players} units")
    st.markdown(f"Estimator: {plan.reason}.")
    st.markdown(
        f"Time: about **{format_seconds(plan.seconds)}** of model evaluations (measured: "
        f"{plan.seconds / max(plan.evaluations, 1) * 1e3:.2g} ms each), plus a few seconds to "
        "start the worker."
    )
    st.markdown(f"Estimator memory: about **{format_bytes(plan.memory_bytes)}**.")
    return True


def launch_form(name: str) -> None:
    """Granularity, units, lesion, output, method and budget of a run of model ``name``; its plan
    beside the form (checked before launch); submit it to the background worker.

    ``name`` is a bundled model or ``hf:<folder>``, a local Hugging Face checkpoint."""
    loaded = model(name)
    card = loaded.card
    st.caption(card.description)
    granularity = st.selectbox("Unit granularity", list(card.granularities), key="granularity")
    names = unit_names(name, granularity)
    shown = ", ".join(names[:6]) + (f", … {names[-1]}" if len(names) > 6 else "")
    st.markdown(f"**{len(names)} units** (players): {shown}")
    form, plan_column = st.columns([3, 2])
    with form:
        left, right = st.columns(2)
        output = left.selectbox(
            "Output (the game's value)",
            card.outputs,
            key="run_output",
            help="What the model produces under each lesion; the modes have its shape.",
        )
        left.caption(output_help(output))
        lesion = right.selectbox(
            "Lesion",
            LESIONS,
            format_func=lesion_label,
            key="run_lesion",
            help=lesions_help(),
        )
        method = left.selectbox(
            "Method",
            METHODS,
            key="run_method",
            help="How the Shapley modes are estimated from lesioned evaluations.",
        )
        left.caption(method_help(method))
        permutations = right.number_input(
            "Budget: permutations",
            min_value=0,
            step=10,
            key="run_permutations",
            help="A permutation costs about N evaluations; the paper used 1,000.",
        )
        evaluations = left.number_input(
            "Cap on evaluations (0 = none)", min_value=0, step=1000, key="run_evaluations"
        )
        seed = right.number_input("Seed", min_value=0, step=1, key="run_seed")
        top_k = left.number_input(
            "Stop when the top k units are known (0 = run the whole budget)",
            min_value=0,
            step=1,
            key="run_top_k",
            help="Stops as soon as the k units of highest Shapley value (signed, as ranked) are "
            "resolved with 95% confidence; "
            "the budget is then the most the run may use. The result lists the units that are "
            "confidently in or out, and those still unresolved.",
        )
        per_group = right.checkbox(
            "Top k per output row (e.g. per task group)", key="run_per_group", disabled=not top_k
        )
    with plan_column, st.container(border=True):
        st.markdown("**Before launch**")
        request, runnable = None, False
        with explained_errors("Checking the budget"):
            problem = budget_problem(method, int(permutations))
            try:
                if problem is not None:
                    raise MSAInputError(problem)
                request = RunRequest(
                    model=name,
                    units=granularity,
                    output=output,
                    lesion=lesion,
                    method=method,
                    n_permutations=int(permutations) if uses_permutations(method) else None,
                    max_evaluations=int(evaluations) or None,
                    seed=int(seed),
                    top_k=int(top_k) or None,
                    per_group=bool(per_group and top_k),
                )
            except MSAInputError as err:
                st.error(f"This budget cannot run: {err}", icon=":material/block:")
            else:
                runnable = plan_box(request, name)
    if st.button("Launch run", type="primary", disabled=not runnable) and request is not None:
        with explained_errors("Launching the run"):
            launch(request)
    show_notice()


def launch(request: RunRequest) -> None:
    """Submit ``request`` to the background worker, saying when it is cached, failed before or
    resumes.
    """
    fingerprint = fingerprint_of(request)
    before = store().progress(fingerprint) or {}
    if fingerprint in store():
        st.session_state[CURRENT_RUN] = fingerprint
        notice = (
            "success",
            "This exact run is already in the store: nothing to compute. Open it in the jobs "
            "panel or in the table below.",
        )
    elif before.get("state") == "failed":
        notice = (
            "warning",
            f"This run failed before ({before.get('error')}); it is launched again and retries "
            "from the start. Follow it in the jobs panel (sidebar).",
        )
    elif store().has_checkpoint(fingerprint):
        notice = (
            "info",
            "This run was stopped before; it resumes from its last checkpoint. Follow it in the "
            "jobs panel (sidebar).",
        )
    else:
        notice = ("info", "Run launched in the background: follow it in the jobs panel (sidebar).")
    submit_job(request, notice)


def cached_runs() -> None:
    """Table of stored runs, with open / compare / delete."""
    st.subheader("Cached runs")
    entries = runs()
    if not entries:
        st.info("No finished runs yet. Launch one above; it appears here when it finishes.")
        return
    table = pd.DataFrame(
        [
            {
                "run": entry["fingerprint"][:8],
                "model": entry["request"]["model"],
                "units": entry["request"]["units"],
                "output": entry["request"]["output"],
                "lesion": entry["request"]["lesion"],
                "method": entry.get("method"),
                "players": entry["n_players"],
                "evaluations": entry["n_evaluations"],
                "seconds": round(entry["wall_seconds"], 1)
                if entry.get("wall_seconds") is not None
                else None,
                "created": timestamp(entry["created"]),
            }
            for entry in entries
        ]
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={"created": st.column_config.TextColumn(width="medium")},
    )
    labels = {entry["fingerprint"]: run_label(entry) for entry in entries}
    chosen = st.multiselect(
        "Select runs",
        list(labels),
        format_func=labels.__getitem__,
        key="selected_runs",
        placeholder="Choose one run to open, two or more to compare",
    )
    buttons = st.container(horizontal=True)
    if buttons.button(
        "Open", disabled=len(chosen) != 1, help="Show the run on the Shapley modes page"
    ):
        st.session_state[CURRENT_RUN] = chosen[0]
        st.switch_page("pages/modes.py")
    if buttons.button(
        "Compare", disabled=len(chosen) < 2, help="Open the selected runs on the Compare page"
    ):
        st.session_state[COMPARED_RUNS] = list(chosen)
        st.switch_page("pages/compare.py")
    if deployment().allows_deletion and buttons.button(
        "Delete", disabled=not chosen, help="Forget the selected runs (a new run recomputes them)"
    ):
        for fingerprint in chosen:
            store().delete(fingerprint)
        st.session_state.pop("selected_runs", None)
        st.rerun()


st.title("Run")
st.markdown(
    "Pick a model and its units, then launch an MSA run. Runs are cached: the same request "
    "returns at once, and a larger budget of a permutation run extends the smaller one."
)
models = [card.name for card in list_models()]
offered = [*models, HF_CHOICE] if deployment().allows_local_paths else models
keep_form_values()
if "model" not in st.session_state:  # the model of the run being viewed, else a small MLP
    viewed = next(
        (e for e in runs() if e["fingerprint"] == st.session_state.get(CURRENT_RUN)), None
    )
    st.session_state["model"] = (
        viewed["request"]["model"]
        if viewed is not None and viewed["request"]["model"] in models
        else next((card.name for card in list_models() if card.family == "mlp"), models[0])
    )
choice = st.selectbox(
    "Model",
    offered,
    key="model",
    help="Bundled models ship with weights and data; Hugging Face checkpoints are read "
    "from a local folder (no downloads).",
)
if choice == HF_CHOICE:
    directory = st.text_input(
        "Checkpoint folder",
        placeholder="/path/to/checkpoint (with config.json)",
        help="A Mixtral, OLMoE, Qwen2-MoE or dense causal LM saved with save_pretrained "
        "(config.json + *.safetensors). Its experts, heads and layers become units.",
    )
    if directory:
        with explained_errors("Reading the checkpoint"):
            launch_form(f"{HF_PREFIX}{Path(directory).expanduser().resolve()}")
else:
    with explained_errors(f"Preparing {choice}"):
        launch_form(choice)
with explained_errors("Listing the cached runs"):
    cached_runs()

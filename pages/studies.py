"""What the study pages (GAN pixel maps, Experts) share: pick the family's model, offer a small
background run, pick a finished run of it, or explain what is missing and stop the page."""

from __future__ import annotations

from dataclasses import dataclass, replace

import streamlit as st

from msa_core.result import ModesResult
from msa_core.runs import RunRequest
from msa_core.zoo import get_card, list_models
from pages.common import measured_probe, pick_run, picked_result, quick_run_button, runs


@dataclass(frozen=True)
class StudyRun:
    """The model (by name) and finished run a study page shows."""

    name: str
    fingerprint: str
    result: ModesResult


def study_run(
    family: str,
    key: str,
    quick: RunRequest,
    quick_note: str,
    missing_weights: str,
    no_run: str,
    units: str | None = None,
) -> StudyRun:
    """Model picker (models of ``family``), a background "Run now" of ``quick`` on the picked
    model, and a picker of the model's finished runs.

    Args:
        family: the model family the page studies ("gan", "moe").
        key: prefix of the page's widget keys (``<key>_model``, ``<key>_run``, ``<key>_quick_run``).
        quick: the page's small run (its ``model`` is replaced by the picked model).
        quick_note: one line on what the small run computes.
        missing_weights: shown (then the page stops) when no model of the family is bundled.
        no_run: shown (then the page stops) when the picked model has no finished run
            (``{name}``: its name).
        units: only runs over this granularity count (None: any).

    Returns:
        The picked model and run.
    """
    names = [card.name for card in list_models() if card.family == family]
    if not names:
        st.info(missing_weights)
        st.stop()
    name = st.selectbox("Model", names, key=f"{key}_model")
    st.caption(get_card(name).description)  # the model itself is loaded only where a view needs it
    entries = [
        entry
        for entry in runs()
        if entry["request"]["model"] == name
        and (units is None or entry["request"]["units"] == units)
    ]
    with st.expander(
        "Launch a small run of this model" if entries else "Launch a small run",
        expanded=not entries,
    ):
        st.markdown(
            quick_note
            + " Larger budgets go through the **Run** page; every run goes to the background "
            "worker, so you can leave this page meanwhile."
        )
        quick = replace(quick, model=name)
        same_game = [
            entry
            for entry in entries
            if entry["request"]["units"] == quick.units
            and entry["request"]["output"] == quick.output
            and entry["request"]["lesion"] == quick.lesion
        ]
        quick_run_button(
            quick, f"{key}_quick_run", measured_probe(same_game[0]) if same_game else None
        )
    if not entries:
        st.info(no_run.format(name=name))
        st.stop()
    fingerprint = pick_run("Finished run", f"{key}_run", entries)
    return StudyRun(name, fingerprint, picked_result(fingerprint))

"""Experts (study 2): which experts of a multilingual MoE LM serve which language, and the lesions
that back it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from msa_core import shapley_modes
from msa_core.analysis import study2
from msa_core.analysis.group_heatmap import group_matrix_figure
from msa_core.analysis.ranking import NOISE_LEGEND, within_noise
from msa_core.lesion import ModelGame
from msa_core.runs import RunRequest
from msa_core.zoo import moe
from pages.common import explained_errors, kept_with_run, model, plain, result
from pages.studies import study_run
from pages.uncertainty import MARKS_CAPTION, noise_banner

UNITS = "experts (all layers)"
QUICK_PERMUTATIONS = 20  # the page's own small run (its time is shown, measured, beside the button)
TEXT_PERMUTATIONS = 10  # per-token modes of a text typed on the page
LANGUAGE_NAMES = [moe.LANGUAGE_NAMES[language] for language in moe.LANGUAGES]
TAB_NAMES = [
    "Language x expert",
    "Selective lesion",
    "Per-token contributions",
    "Removal and pruning",
]


@st.cache_resource(show_spinner=False)
def game_sentences() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The game's held-out sentences and their languages (read once per process)."""
    return moe.game_inputs()


st.title("Experts")
st.markdown(
    "In a mixture-of-experts LM a router sends each token to a few experts. The paper found that "
    "some of Mixtral's experts serve **one language**: removing them hurts that language and "
    "barely the others. Here the players are the 32 experts (4 layers x 8, top-2) of a tiny "
    "byte-level Mixtral trained on Debian fortunes in English, Polish, Russian, Bulgarian and "
    "Chinese. An expert's **Shapley mode** is its contribution to the log-probability of every "
    "next byte; averaged over a language's held-out sentences it gives the **language x expert "
    "matrix**. **Selectivity** = contribution to one language minus the mean contribution to the "
    "others, so a hub every language needs is not mistaken for a specialist."
)

study = study_run(
    "moe",
    "experts",
    RunRequest(
        model=moe.NAME,
        units=UNITS,
        output="target_logprob",
        method="permutation",
        n_permutations=QUICK_PERMUTATIONS,
    ),
    f"Runs {QUICK_PERMUTATIONS} permutations of all 32 experts on the model's held-out game "
    "sentences (per-token log-probs); 100 permutations give the published numbers.",
    "No MoE weights are bundled in `assets/`. Train them with `python -m msa_core.zoo.train "
    f"{moe.NAME}` (about 20 minutes on one core; needs the Debian fortunes packages).",
    "No finished run of **{name}** over *experts (all layers)* yet. Launch the small one above, or "
    "a larger one on the **Run** page.",
    units=UNITS,
)
name, fingerprint, res = study.name, study.fingerprint, study.result
game_inputs, game_languages = game_sentences()
output = (res.meta.get("request") or {}).get("output", "target_logprob")
st.caption(
    f"{res.n_permutations} permutations, {res.n_evaluations:,} evaluations; "
    f"efficiency gap {res.efficiency_gap():.1e}."
)
noise_banner(res)


def with_progress(what: str) -> study2.Progress:
    """A progress bar for long work, told ``(done, total)``; it clears itself when done."""
    bar = st.progress(0.0, text=what)

    def told(done: int, total: int) -> None:
        if done >= total:
            bar.empty()
        else:
            bar.progress(done / total, text=f"{what}: {done} of {total}")

    return told


def lesions_of(fingerprint: str, k: int) -> list[study2.SelectiveLesion]:
    """Every language's selective lesion of ``k`` experts (evaluation sentences, not the game's),
    once per run and k; the continuations come one language at a time (``continuations_of``)."""

    def compute() -> dict:
        lesions = study2.selective_lesions(
            model(name).model,
            *moe.eval_inputs(),
            matrix_of(fingerprint),
            k=k,
            progress=with_progress(
                f"Lesioning each language's top {k} experts (once per run and k, then kept with it)"
            ),
        )
        return {"lesions": [item.to_dict() for item in lesions]}

    kept = kept_with_run(fingerprint, f"selective-lesions-k{k}", compute)
    return [study2.SelectiveLesion.from_dict(item) for item in kept["lesions"]]


def continuations_of(fingerprint: str, language: int, experts: tuple[int, ...]) -> tuple[str, str]:
    """The greedy continuation of the language's prompt, intact and without ``experts``, once."""

    def compute() -> dict:
        keep = np.ones(res.n_players, dtype=bool)
        keep[list(experts)] = False
        texts = {}
        for coalition, which in ((None, "intact"), (keep, "lesioned")):
            picked = study2.greedy_continuation(
                model(name).model,
                moe.prompts()[language],
                moe.CONTINUATION_BYTES,
                coalition,
                progress=with_progress(
                    f"Greedy continuation, {which} (once, then kept with the run)"
                ),
            )
            texts[which] = picked.decode("utf-8", errors="replace")
        return texts

    analysis = f"continuation-{language}-without-{'-'.join(map(str, experts))}"
    kept = kept_with_run(fingerprint, analysis, compute)
    return kept["intact"], kept["lesioned"]


@st.cache_resource(show_spinner=False, max_entries=8)
def matrix_of(fingerprint: str) -> np.ndarray:
    return study2.language_matrix(
        result(fingerprint), game_languages.numpy(), len(LANGUAGE_NAMES), output
    )


def curves_of(fingerprint: str) -> study2.RemovalCurves:
    """Removal curves (66 lesioned passes), once per run."""

    def compute() -> dict:
        curves = study2.removal_curves(
            model(name).model,
            *moe.eval_inputs(),
            study2.expert_scores(matrix_of(fingerprint)),
            progress=with_progress("Removing experts by rank (once per run, then kept with it)"),
        )
        return curves.to_dict()

    return study2.RemovalCurves.from_dict(kept_with_run(fingerprint, "removal-curves", compute))


def pruning_of(fingerprint: str) -> study2.Pruning:
    """Keep-only-k losses by Shapley value and at random (44 passes), once per run."""

    def compute() -> dict:
        pruned = study2.pruning(
            model(name).model,
            *moe.eval_inputs(),
            study2.expert_scores(matrix_of(fingerprint)),
            progress=with_progress(
                "Keeping only k experts, by Shapley value and at random (once per run, then kept)"
            ),
        )
        return pruned.to_dict()

    return study2.Pruning.from_dict(kept_with_run(fingerprint, "pruning", compute))


@st.cache_data(
    show_spinner=f"Estimating per-token modes of your text ({TEXT_PERMUTATIONS} permutations)…",
    max_entries=16,
)
def text_modes(name: str, text: str) -> np.ndarray:
    """``[N, T-1]`` per-token modes of the experts on ``text`` alone (its first 63 bytes), once per
    text.
    """
    game = ModelGame(
        model(name).model,
        {"input_ids": moe.encode(text, 63)[None]},
        list(model(name).units(UNITS)),
        output="target_logprob",
    )
    return shapley_modes(
        game, method="permutation", n_permutations=TEXT_PERMUTATIONS, seed=0
    ).modes[:, 0]


def matrix_tab(matrix: np.ndarray) -> None:
    view = st.radio("Show", ["contribution", "selectivity"], horizontal=True, key="experts_view")
    values = matrix if view == "contribution" else study2.selectivity(matrix)
    errors = study2.language_matrix_stderr(res, game_languages.numpy(), len(LANGUAGE_NAMES), output)
    st.plotly_chart(
        group_matrix_figure(
            values,
            res.player_names,
            LANGUAGE_NAMES,
            stderr=errors if view == "contribution" else study2.selectivity_stderr(errors),
            title=f"Language x expert {view} (log-prob per byte)",
            value=f"{view} (nats/byte)",
        ),
        key="experts_matrix",
    )
    st.caption(MARKS_CAPTION)
    hub, share = study2.largest_hub(matrix)
    st.markdown(
        f"Largest hub: **{res.player_names[hub]}**, holding {share.mean():.0%} of each language's "
        f"|contribution| on average (paper: one Mixtral expert held about 20% of every domain's)."
    )
    left, right = st.columns(2)
    shares = study2.layer_shares(matrix, study2.expert_layers(res.player_names))
    left.plotly_chart(study2.layer_share_figure(shares, LANGUAGE_NAMES), key="experts_shares")
    right.plotly_chart(
        study2.correlation_figure(study2.task_correlation(matrix), LANGUAGE_NAMES),
        key="experts_corr",
    )


def lesion_tab() -> None:
    left, right = st.columns(2)
    language = left.selectbox(
        "Language",
        range(len(LANGUAGE_NAMES)),
        format_func=LANGUAGE_NAMES.__getitem__,
        key="experts_language",
    )
    k = right.slider(
        "Experts removed (its top-k by selectivity)", 1, 4, study2.LESION_SIZE, key="experts_k"
    )
    lesions = lesions_of(fingerprint, k)
    lesion = lesions[language]
    st.plotly_chart(
        study2.lesion_figure(lesion, LANGUAGE_NAMES, res.player_names), key="experts_lesion"
    )
    errors = study2.selectivity_stderr(
        study2.language_matrix_stderr(res, game_languages.numpy(), len(LANGUAGE_NAMES), output)
    )[language, lesion.experts]
    noisy = within_noise(
        study2.selectivity(matrix_of(fingerprint))[language, lesion.experts], errors
    )
    if noisy.any():
        st.warning(
            f"{int(noisy.sum())} of the {k} experts removed have a selectivity {NOISE_LEGEND}: "
            "this choice is not resolved; a longer run sharpens it.",
            icon=":material/help:",
        )
    before, after = continuations_of(fingerprint, language, tuple(lesion.experts))
    st.markdown(f"Prompt: {plain(repr(moe.decode(moe.prompts()[language])))}")  # plain text
    st.markdown(f"Greedy continuation, intact: {plain(repr(before))}")
    st.markdown(
        f"…without {', '.join(res.player_names[e] for e in lesion.experts)}: {plain(repr(after))}"
    )
    st.dataframe(
        pd.DataFrame(
            {
                "language": LANGUAGE_NAMES,
                "experts removed": [
                    ", ".join(res.player_names[e] for e in item.experts) for item in lesions
                ],
                "own loss rise": [item.rise[item.language] for item in lesions],
                "others' mean rise": [
                    np.delete(item.rise, item.language).mean() for item in lesions
                ],
                "ratio": [item.ratio for item in lesions],
            }
        ),
        hide_index=True,
    )
    st.caption(
        "Losses in nats per byte on held-out sentences that the Shapley run did not see. Paper: "
        "removing four of 256 experts dropped German from 1.00 to 0.27 with other languages "
        "unchanged."
    )


def tokens_tab() -> None:
    source = st.radio(
        "Text", ["a sentence of the run", "your own text"], horizontal=True, key="experts_source"
    )
    ids, token_modes = None, None
    if source == "a sentence of the run" and output != "target_logprob":
        st.info(
            "This run's output is the per-language vector; per-token modes need a *target_logprob* "
            "run."
        )
    elif source == "a sentence of the run":
        sentences = [moe.decode(row) for row in game_inputs["input_ids"]]
        row = st.selectbox(
            "Sentence",
            range(len(sentences)),
            key="experts_sentence",
            format_func=lambda i: f"{LANGUAGE_NAMES[int(game_languages[i])]}: {sentences[i]}",
        )
        ids, token_modes = game_inputs["input_ids"][row], np.asarray(res.modes)[:, row]
    else:
        with st.form("experts_text_form", border=False):
            text = st.text_input(
                "Text (first 63 bytes are used)",
                "Zażółć gęślą jaźń, a potem herbata.",
                key="experts_text",
            )
            st.form_submit_button("Estimate its per-token modes")
        if len(text.encode("utf-8")) < 2:
            st.info("Type at least two characters.")
        else:
            ids = moe.encode(text, 63)
            st.caption(
                f"{TEXT_PERMUTATIONS} permutations ({TEXT_PERMUTATIONS * 31 + 2} evaluations) on "
                "this text alone, once per text."
            )
            token_modes = text_modes(name, text)
    if token_modes is not None:
        st.plotly_chart(
            study2.token_figure(token_modes, moe.token_labels(ids[1:]), res.player_names),
            key="experts_tokens",
        )
        st.caption(
            "Column t is the log-prob of byte t given the bytes before it; a multi-byte letter is "
            "shown on its last byte, its leading bytes as '·'. Red: the expert raises that byte's "
            "probability."
        )


def removal_tab() -> None:
    curves = curves_of(fingerprint)
    verdict = study2.removal_verdict(curves, len(res.player_names))
    st.plotly_chart(study2.removal_figure(curves), key="experts_removal")
    st.markdown(
        f"At k = {verdict['k']} (10% of the experts) removing the highest-Shapley experts raises "
        f"the loss by {verdict['top_rise']:.3f} nats/byte, the lowest-Shapley ones by "
        f"{verdict['bottom_rise']:.3f}. Paper: GSM8K fell from 0.65 to 0.27 without the top 10 "
        "experts and kept 0.59 without the bottom 10."
    )
    if st.toggle(
        "Compare Shapley-guided pruning with random pruning (about 40 more lesioned passes)",
        key="experts_pruning_on",
    ):
        st.plotly_chart(study2.pruning_figure(pruning_of(fingerprint)), key="experts_pruning")


with explained_errors("The language x expert matrix"):
    # only the open tab is computed and drawn
    tabs = st.tabs(TAB_NAMES, key="experts_tab", on_change="rerun")
    drawers = (lambda: matrix_tab(matrix_of(fingerprint)), lesion_tab, tokens_tab, removal_tab)
    for tab, tab_name, draw in zip(tabs, TAB_NAMES, drawers, strict=True):
        if tab.open:
            with tab, explained_errors(tab_name):
                draw()

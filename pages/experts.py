"""Experts (study 2): which experts of a multilingual MoE LM serve which language, and the lesions that back it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from msa_core import shapley_modes
from msa_core.lesion import ModelGame
from msa_core.analysis import study2
from msa_core.runs import RunRequest
from msa_core.zoo import list_models, moe
from pages.common import explained_errors, model, pick_run, picked_result, quick_run_button, result, runs

QUICK_PERMUTATIONS = 20  # the page's own small run: well under a minute on a laptop CPU
TEXT_PERMUTATIONS = 10  # per-token modes of a text typed on the page
LANGUAGE_NAMES = [moe.LANGUAGE_NAMES[language] for language in moe.LANGUAGES]

st.title("Experts")
st.markdown(
    "In a mixture-of-experts LM a router sends each token to a few experts. The paper found that some of "
    "Mixtral's experts serve **one language**: removing them hurts that language and barely the others. Here "
    "the players are the 32 experts (4 layers x 8, top-2) of a tiny byte-level Mixtral trained on Debian "
    "fortunes in English, Polish, Russian, Bulgarian and Chinese. An expert's **Shapley mode** is its "
    "contribution to the log-probability of every next byte; averaged over a language's held-out sentences it "
    "gives the **language x expert matrix**. **Selectivity** = contribution to one language minus the mean "
    "contribution to the others, so a hub every language needs is not mistaken for a specialist."
)

moe_models = [card.name for card in list_models() if card.family == "moe"]
if not moe_models:
    st.info(f"No MoE weights are bundled in `assets/`. Train them with `python -m msa_core.zoo.train {moe.NAME}` "
            "(about 20 minutes on one core; needs the Debian fortunes packages).")
    st.stop()

name = st.selectbox("MoE model", moe_models)
loaded = model(name)
st.caption(loaded.card.description)
game_inputs, game_languages = moe.game_inputs()
entries = [entry for entry in runs() if entry["request"]["model"] == name
           and entry["request"]["units"] == "experts (all layers)"]

with st.expander("Launch a small run of this model here" if entries else "Launch a small run", expanded=not entries):
    st.markdown(f"Runs {QUICK_PERMUTATIONS} permutations of all 32 experts on the model's "
                f"{len(game_languages)} held-out sentences (per-token log-probs). Larger budgets (100 permutations "
                "give the published numbers) go through the **Run** page, in the background.")
    quick_run_button(RunRequest(model=name, units="experts (all layers)", output="target_logprob",
                                method="permutation", n_permutations=QUICK_PERMUTATIONS),
                     "experts_quick_run", "Estimating the expert modes…")

if not entries:
    st.info(f"No finished run of **{name}** over *experts (all layers)* yet. Launch the small one above, or a "
            "larger one on the **Run** page.")
    st.stop()

fingerprint = pick_run("Finished run", "experts_run", entries)
res = picked_result(fingerprint)
output = (res.meta.get("request") or {}).get("output", "target_logprob")
st.caption(f"{res.n_permutations} permutations, {res.n_evaluations:,} evaluations; "
           f"efficiency gap {res.efficiency_gap():.1e}.")


@st.cache_resource(show_spinner="Lesioning experts on the evaluation sentences…", max_entries=8)
def lesions_of(fingerprint: str, k: int) -> list[study2.SelectiveLesion]:
    """Every language's selective lesion of ``k`` experts (evaluation sentences, not the game's)."""
    eval_inputs, eval_languages = moe.eval_inputs()
    return study2.selective_lesions(loaded.model, eval_inputs, eval_languages, matrix_of(fingerprint), k=k,
                                    prompts=moe.prompts(), n_bytes=moe.CONTINUATION_BYTES)


@st.cache_resource(show_spinner=False, max_entries=8)
def matrix_of(fingerprint: str) -> np.ndarray:
    return study2.language_matrix(result(fingerprint), game_languages.numpy(), len(LANGUAGE_NAMES), output)


@st.cache_resource(show_spinner="Removing experts by rank…", max_entries=8)
def curves_of(fingerprint: str) -> study2.RemovalCurves:
    eval_inputs, eval_languages = moe.eval_inputs()
    return study2.removal_curves(loaded.model, eval_inputs, eval_languages, study2.expert_scores(matrix_of(fingerprint)))


@st.cache_resource(show_spinner="Keeping only k experts, by Shapley value and at random…", max_entries=8)
def pruning_of(fingerprint: str) -> study2.Pruning:
    eval_inputs, eval_languages = moe.eval_inputs()
    return study2.pruning(loaded.model, eval_inputs, eval_languages, study2.expert_scores(matrix_of(fingerprint)))


with explained_errors("The language x expert matrix"):
    matrix = matrix_of(fingerprint)
tab_matrix, tab_lesion, tab_tokens, tab_removal = st.tabs(
    ["Language x expert", "Selective lesion", "Per-token contributions", "Removal and pruning"])

with tab_matrix, explained_errors("The matrix"):
    view = st.radio("Show", ["contribution", "selectivity"], horizontal=True, key="experts_view")
    values = matrix if view == "contribution" else study2.selectivity(matrix)
    st.plotly_chart(study2.matrix_figure(values, res.player_names, LANGUAGE_NAMES,
                                         title=f"Language x expert {view} (log-prob per byte)"), key="experts_matrix")
    hub, share = study2.largest_hub(matrix)
    st.markdown(f"Largest hub: **{res.player_names[hub]}**, holding {share.mean():.0%} of each language's "
                f"|contribution| on average (paper: one Mixtral expert held about 20% of every domain's).")
    left, right = st.columns(2)
    shares = study2.layer_shares(matrix, study2.expert_layers(res.player_names))
    left.plotly_chart(study2.layer_share_figure(shares, LANGUAGE_NAMES), key="experts_shares")
    right.plotly_chart(study2.correlation_figure(study2.task_correlation(matrix), LANGUAGE_NAMES), key="experts_corr")

with tab_lesion, explained_errors("The selective lesion"):
    left, right = st.columns(2)
    language = left.selectbox("Language", range(len(LANGUAGE_NAMES)), format_func=LANGUAGE_NAMES.__getitem__,
                              key="experts_language")
    k = right.slider("Experts removed (its top-k by selectivity)", 1, 4, study2.LESION_SIZE, key="experts_k")
    lesions = lesions_of(fingerprint, k)
    lesion = lesions[language]
    st.plotly_chart(study2.lesion_figure(lesion, LANGUAGE_NAMES, res.player_names), key="experts_lesion")
    st.markdown(f"Prompt: `{moe.prompts()[language][1:].numpy().tobytes().decode('utf-8', errors='replace')}`")
    st.markdown(f"Greedy continuation, intact: `{lesion.continuation_before}`")
    st.markdown(f"…without {', '.join(res.player_names[e] for e in lesion.experts)}: `{lesion.continuation_after}`")
    st.dataframe(pd.DataFrame({
        "language": LANGUAGE_NAMES,
        "experts removed": [", ".join(res.player_names[e] for e in item.experts) for item in lesions],
        "own loss rise": [item.rise[item.language] for item in lesions],
        "others' mean rise": [np.delete(item.rise, item.language).mean() for item in lesions],
        "ratio": [item.ratio for item in lesions]}), hide_index=True)
    st.caption("Losses in nats per byte on held-out sentences that the Shapley run did not see. Paper: removing "
               "four of 256 experts dropped German from 1.00 to 0.27 with other languages unchanged.")

with tab_tokens, explained_errors("The per-token view"):
    sentences = [row[1:].numpy().tobytes().decode("utf-8", errors="replace") for row in game_inputs["input_ids"]]
    source = st.radio("Text", ["a sentence of the run", "your own text"], horizontal=True, key="experts_source")
    ids, token_modes = None, None
    if source == "a sentence of the run" and output != "target_logprob":
        st.info("This run's output is the per-language vector; per-token modes need a *target_logprob* run.")
    elif source == "a sentence of the run":
        row = st.selectbox("Sentence", range(len(sentences)), key="experts_sentence",
                           format_func=lambda i: f"{LANGUAGE_NAMES[int(game_languages[i])]}: {sentences[i]}")
        ids, token_modes = game_inputs["input_ids"][row], np.asarray(res.modes)[:, row]
    else:
        text = st.text_input("Text (first 63 bytes are used)", "Zażółć gęślą jaźń, a potem herbata.",
                             key="experts_text")
        if len(text.encode("utf-8")) < 2:
            st.info("Type at least two characters.")
        else:
            ids = moe.encode(text, 63)
            st.caption(f"{TEXT_PERMUTATIONS} permutations on this text alone (a few seconds).")
            game = ModelGame(loaded.model, {"input_ids": ids[None]}, list(loaded.units("experts (all layers)")),
                             output="target_logprob")
            token_modes = shapley_modes(game, method="permutation", n_permutations=TEXT_PERMUTATIONS,
                                        seed=0).modes[:, 0]
    if token_modes is not None:
        st.plotly_chart(study2.token_figure(token_modes, moe.token_labels(ids[1:]), res.player_names),
                        key="experts_tokens")
        st.caption("Column t is the log-prob of byte t given the bytes before it; a multi-byte letter is shown on "
                   "its last byte, its leading bytes as '·'. Red: the expert raises that byte's probability.")

with tab_removal, explained_errors("The removal curves"):
    curves = curves_of(fingerprint)
    verdict = study2.removal_verdict(curves, len(res.player_names))
    st.plotly_chart(study2.removal_figure(curves), key="experts_removal")
    st.markdown(f"At k = {verdict['k']} (10% of the experts) removing the highest-Shapley experts raises the loss by "
                f"{verdict['top_rise']:.3f} nats/byte, the lowest-Shapley ones by {verdict['bottom_rise']:.3f}. "
                "Paper: GSM8K fell from 0.65 to 0.27 without the top 10 experts and kept 0.59 without the bottom 10.")
    if st.toggle("Compare Shapley-guided pruning with random pruning (about 40 more lesioned passes)",
                 key="experts_pruning_on"):
        st.plotly_chart(study2.pruning_figure(pruning_of(fingerprint)), key="experts_pruning")

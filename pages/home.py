"""Home: what MSA is, a first run to launch, the bundled models (filterable), what outputs mean."""

import pandas as pd
import streamlit as st

from msa_core import METHODS
from msa_core.zoo import list_models
from pages.common import OUTPUT_HELP, explained_errors, runs

# (question, model, granularity, output, permutations): each opens the Run page set to it
SUGGESTIONS = (
    (
        "Which hidden neurons of a digits classifier serve which digit?",
        "mlp-digits-h32-none-s0",
        "hidden neurons",
        "class_accuracy",
        20,
    ),
    (
        "Does L1 regularisation concentrate the work in fewer neurons? (compare with the one "
        "above)",
        "mlp-digits-h32-l1-s0",
        "hidden neurons",
        "class_accuracy",
        20,
    ),
    (
        "What does each channel of a generator paint?",
        "gan-digits-s0",
        "channels of every layer",
        "image",
        5,
    ),
    (
        "Which experts of a mixture-of-experts LM serve which language?",
        "moe-fortunes-5lang",
        "experts (all layers)",
        "target_logprob",
        20,
    ),
)


def open_run_page(model: str, granularity: str, output: str, permutations: int) -> None:
    """Preset the Run page's form to a suggested run (its widgets' session keys) and go there."""
    st.session_state.update(
        model=model,
        granularity=granularity,
        run_output=output,
        run_method="auto",
        run_permutations=permutations,
        run_evaluations=0,
        run_seed=0,
        run_lesion="zero",
    )
    st.switch_page("pages/run.py")


def model_size(card) -> str:
    """The model's size in words from its card: hidden neurons, channels per layer, experts."""
    facts = card.facts
    if card.family == "mlp":
        return f"{facts.get('hidden')} hidden"
    if card.family == "gan":
        return " / ".join(map(str, (facts.get("layers") or {}).values())) + " channels"
    if card.family == "moe":
        return f"{facts.get('layers')} layers x {facts.get('experts')} experts"
    return str(facts.get("model_type") or card.family)


def model_table(cards: list) -> pd.DataFrame:
    """One row per bundled model: family, size, regularisation, seed, units, outputs."""
    return pd.DataFrame(
        [
            {
                "model": card.name,
                "family": card.family,
                "size": model_size(card),
                "hidden": card.facts.get("hidden") if card.family == "mlp" else None,
                "regularisation": card.facts.get("regime", "none") if card.family == "mlp" else "",
                "seed": card.facts.get("seed"),
                "data": card.facts.get("data", ""),
                "units": ", ".join(card.granularities),
                "outputs": ", ".join(card.outputs),
            }
            for card in cards
        ]
    )


st.title("MSA Dashboard")
st.markdown(
    "**Which unit of this network does what?** Multiperturbation Shapley-value Analysis lesions "
    "units of a trained network (neurons, channels, attention heads, experts, layers) in many "
    "combinations and attributes the model's *whole output* to each unit: every unit gets a "
    "**Shapley mode**, a contribution map with the exact shape of the output. Modes of all units "
    "add up "
    "to the output with every unit intact minus the output with every unit lesioned."
)

with explained_errors("Reading the run store"):
    stored = runs()
    models = list_models()
    left, middle, right = st.columns(3)
    left.metric("Bundled models", len(models))
    middle.metric("Finished runs in the store", len(stored))
    right.metric("Estimators", len(METHODS) - 1, help=", ".join(m for m in METHODS if m != "auto"))

st.subheader("Start here")
bundled = {card.name for card in models}
for index, (question, name, granularity, output, permutations) in enumerate(SUGGESTIONS):
    if name not in bundled:
        continue
    text, button = st.columns([4, 1], vertical_alignment="center")
    text.markdown(
        f"{question}  \n`{name}` · {granularity} · {output} · {permutations} permutations"
    )
    if button.button(
        "Set up this run", key=f"suggestion-{index}", type="primary" if index == 0 else "secondary"
    ):
        open_run_page(name, granularity, output, permutations)
st.caption(
    "Each button opens the **Run** page with exactly that run filled in; it shows what the run "
    "will cost "
    "before you launch it, and the run goes to the background worker (the **Jobs** panel in the "
    "sidebar)."
)

st.subheader("How to use it")
st.markdown(
    "1. **Run**: pick a bundled model, its unit granularity, the lesion and the output, set a "
    "budget and "
    "launch. The page says beforehand how many evaluations, how long and how much memory the run "
    "takes, and "
    "which estimator *auto* picks; the sidebar's **Jobs** panel follows it (evaluations, standard "
    "error, time "
    "left). Finished runs are cached, so asking again returns at once.\n"
    "2. **Shapley modes**: the units x outputs heatmap (red pushes an output up, blue down), "
    "sorted or "
    "clustered, per class or per sample, with standard errors, the top units of each output and "
    "hub statistics.\n"
    "3. **Compare** runs side by side (e.g. the same MLP trained with no, L1 or L2 "
    "regularisation): sorted "
    "contribution curves, Gini and the number of units holding 50/80/90% of the contribution, "
    "heatmaps "
    "on one colour scale.\n"
    "4. **Lesion lab**: switch units off and see the output change at once: predictions and "
    "accuracy, "
    "generated images, or a language model's per-token log-probs and greedy continuation; lesion "
    "the top-k "
    "units by Shapley mode against k random ones.\n"
    "5. **Export** results (.npz, CSV) and figures (HTML, PNG).\n"
    "\nThe **Studies** pages reproduce the paper's GAN and mixture-of-experts findings. Your own "
    "model: a "
    "local Hugging Face checkpoint folder on the **Run** page, or any PyTorch module from Python "
    "(README)."
)

st.subheader("Bundled models")
with explained_errors("Listing the models"):
    table = model_table(models)
    family, size, regularisation = st.columns(3)
    families = family.multiselect(
        "Family", sorted(table["family"].unique()), key="home_family", placeholder="all families"
    )
    sizes = size.multiselect(
        "Hidden size (MLPs)",
        sorted(table["hidden"].dropna().astype(int).unique()),
        key="home_size",
        placeholder="all sizes",
    )
    regimes = regularisation.multiselect(
        "Regularisation (MLPs)",
        sorted(set(table["regularisation"]) - {""}),
        key="home_regularisation",
        placeholder="any",
    )
    keep = pd.Series(True, index=table.index)
    for column, chosen in (("family", families), ("hidden", sizes), ("regularisation", regimes)):
        if chosen:
            keep &= table[column].isin(chosen)
    shown = table[keep]
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={
            "size": st.column_config.TextColumn(help="hidden neurons, channels or experts"),
            "hidden": None,  # the filter's column, shown in "size"
        },
    )
    st.caption(
        f"{len(shown)} of {len(table)} models. MLPs: none / L1 / L2 regularisation, several seeds "
        "each."
    )

st.subheader("What the outputs mean")
st.markdown("\n".join(f"- **{name}**: {text}" for name, text in OUTPUT_HELP.items()))

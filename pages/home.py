"""Home: what MSA is, how to use the dashboard, and what is in the run store now."""

import streamlit as st

from msa_core import METHODS
from msa_core.zoo import list_models
from pages.common import explained_errors, runs

st.title("MSA Dashboard")
st.markdown(
    "**Which unit of this network does what?** Multiperturbation Shapley-value Analysis lesions "
    "units of a trained network (neurons, channels, attention heads, experts, layers) in many "
    "combinations and attributes the model's *whole output* to each unit: every unit gets a "
    "**Shapley mode**, a contribution map with the exact shape of the output. Modes of all units add up "
    "to the output with every unit intact minus the output with every unit lesioned."
)

with explained_errors("Reading the run store"):
    stored = runs()
    models = list_models()
    left, middle, right = st.columns(3)
    left.metric("Bundled models", len(models))
    middle.metric("Finished runs in the store", len(stored))
    right.metric("Estimators", len(METHODS) - 1, help=", ".join(m for m in METHODS if m != "auto"))

st.subheader("How to use it")
st.markdown(
    "1. **Run**: pick a bundled model, its unit granularity, the lesion and the output, set a budget and "
    "launch. Progress (evaluations, standard error, time left) updates live; finished runs are cached, so "
    "asking again returns at once.\n"
    "2. **Shapley modes**: the units x outputs heatmap (red pushes an output up, blue down), sorted or "
    "clustered, per class or per sample, with standard errors, the top units of each output and hub statistics.\n"
    "3. **Compare** runs side by side (e.g. the same MLP trained with no, L1 or L2 regularisation): sorted "
    "contribution curves, Gini and the number of units holding 50/80/90% of the contribution, heatmaps "
    "on one colour scale.\n"
    "4. **Lesion lab**: switch units off and see the output change at once: predictions and accuracy, "
    "generated images, or a language model's per-token log-probs and greedy continuation; lesion the top-k "
    "units by Shapley mode against k random ones.\n"
    "5. **Export** results (.npz, CSV) and figures (HTML, PNG).\n"
    "\nThe **Studies** pages reproduce the paper's GAN and mixture-of-experts findings. Your own model: a "
    "local Hugging Face checkpoint folder on the **Run** page, or any PyTorch module from Python (README)."
)
if not stored:
    st.info("The run store is empty. Start on the **Run** page: `mlp-digits-h32-none-s0` with 20 "
            "permutations finishes in seconds.")
    st.page_link("pages/run.py", label="Launch a first run", icon=":material/play_circle:")

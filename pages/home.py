"""Home: what MSA is, what the engine offers today, and what the dashboard will show next."""

import streamlit as st

from msa_core import METHODS
from msa_core.estimators.exact import EXACT_MAX_PLAYERS

st.title("MSA Dashboard")
st.markdown(
    "**Which unit of this network does what?** Multiperturbation Shapley-value Analysis lesions "
    "units of a trained network (neurons, channels, attention heads, experts, layers) in many "
    "combinations and attributes the model's *whole output* to each unit: every unit gets a "
    "**Shapley mode**, a contribution map with the exact shape of the output."
)
st.subheader("Ready now: the engine")
st.markdown(
    f"`msa_core.shapley_modes` estimates modes of any vector-valued game with the methods "
    f"{', '.join(f'`{m}`' for m in METHODS)} (exact up to {EXACT_MAX_PLAYERS} players). "
    "Use it from Python today; see the README for an example."
)
st.subheader("Coming next")
st.markdown(
    "- **Run**: pick a bundled model and a unit granularity, launch a cached run, watch its progress.\n"
    "- **Shapley modes**: units x outputs heatmaps, hubs, per-class and per-sample views.\n"
    "- **GAN pixel maps**, **Experts** of a multilingual MoE language model, **Compare** regularisation regimes.\n"
    "- **Lesion lab**: toggle units and see the output change at once; **Export** results and figures."
)
st.info("The dashboard pages are being built; this page is a placeholder.")

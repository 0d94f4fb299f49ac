"""MSA Dashboard: the Streamlit entry point (``streamlit run app.py``).

Pages render and call msa_core, nothing more; see ``pages/``.
"""

import streamlit as st

st.set_page_config(page_title="MSA Dashboard", page_icon=":material/neurology:", layout="wide")
st.navigation({
    "Start": [st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
              st.Page("pages/run.py", title="Run", icon=":material/play_circle:")],
    "Explore": [st.Page("pages/modes.py", title="Shapley modes", icon=":material/grid_on:"),
                st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
                st.Page("pages/lesion_lab.py", title="Lesion lab", icon=":material/toggle_on:"),
                st.Page("pages/export.py", title="Export", icon=":material/download:")],
    "Studies": [st.Page("pages/gan.py", title="GAN pixel maps", icon=":material/image:"),
                st.Page("pages/experts.py", title="Experts", icon=":material/hub:"),
                st.Page("pages/llm.py", title="LLM", icon=":material/chat:")],
}).run()

"""MSA Dashboard: the Streamlit entry point (``streamlit run app.py``).

Pages render and call msa_core, nothing more; see ``pages/``.
"""

import streamlit as st

st.set_page_config(page_title="MSA Dashboard", page_icon="🧠", layout="wide")
st.navigation({
    "Start": [st.Page("pages/home.py", title="Home", icon="🏠", default=True),
              st.Page("pages/run.py", title="Run", icon="▶️")],
    "Explore": [st.Page("pages/modes.py", title="Shapley modes", icon="🟥"),
                st.Page("pages/compare.py", title="Compare", icon="⚖️"),
                st.Page("pages/lesion_lab.py", title="Lesion lab", icon="🔬"),
                st.Page("pages/export.py", title="Export", icon="💾")],
    "Studies": [st.Page("pages/gan.py", title="GAN pixel maps", icon="🖼️"),
                st.Page("pages/experts.py", title="Experts", icon="🧩")],
}).run()

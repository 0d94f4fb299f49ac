"""MSA Dashboard: the Streamlit entry point (``streamlit run app.py``).

Pages render and call msa_core, nothing more; see ``pages/``. The sidebar's jobs panel is on every
page.
"""

import streamlit as st

# an emoji favicon is drawn in the page (a data: URL); a Material one is fetched from Google
st.set_page_config(page_title="MSA Dashboard", page_icon="🧠", layout="wide")
page = st.navigation(
    {
        "Start": [
            st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
            st.Page("pages/run.py", title="Run", icon=":material/play_circle:"),
        ],
        "Explore": [
            st.Page("pages/modes.py", title="Shapley modes", icon=":material/grid_on:"),
            st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
            st.Page("pages/interactions.py", title="Interactions", icon=":material/link:"),
            st.Page("pages/lesion_lab.py", title="Lesion lab", icon=":material/toggle_on:"),
            st.Page("pages/export.py", title="Export", icon=":material/download:"),
        ],
        "Studies": [
            st.Page("pages/gan.py", title="GAN pixel maps", icon=":material/image:"),
            st.Page("pages/experts.py", title="Experts", icon=":material/hub:"),
            st.Page("pages/llm.py", title="LLM", icon=":material/chat:"),
        ],
    }
)
# imported after st.navigation: on a fresh server's first request the pages' helpers then see
# app.py's pages, not Streamlit's legacy pages-folder listing (pages/common.py)
from pages.common import APP_NAVIGATION  # noqa: E402
from pages.jobs_panel import jobs_panel  # noqa: E402

st.session_state[APP_NAVIGATION] = True

with st.sidebar:
    jobs_panel()
page.run()

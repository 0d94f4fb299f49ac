"""Placeholder page: filled in by the study's own change."""

import streamlit as st

st.title("Experts")
st.info("This view is being built.")

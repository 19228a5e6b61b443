"""The dashboard's helpers: session state and the shared sidebar (`state`), derived display
data (`display`), plotly figures (`plots`) and result tables (`tables`).

Everything here calls `core/`; the pages in `pages/` and `Home.py` only wire these together.
`display`, `plots` and `tables` do not import streamlit, so they are testable on their own.
"""

"""The AEL dashboard: ``ael dashboard --runs DIR`` or ``streamlit run app/dashboard.py -- --runs DIR``.

The frame (this file) draws the run picker and the live settings in the sidebar and hands the
chosen page to ``st.navigation``; every page reads runs through :mod:`ael.runs` only.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # `streamlit run` adds it; AppTest and other hosts may not
    sys.path.insert(0, str(_HERE))

import streamlit as st  # noqa: E402
from ael_app import state  # noqa: E402
from ael_app.canvas_chart import preload as preload_canvas_chart  # noqa: E402
from ael_app.keep_view import keep_chart_views  # noqa: E402

st.set_page_config(page_title="AEL dashboard", page_icon=":material/monitoring:", layout="wide")

RUNS_PAGE = st.Page(str(_HERE / "views" / "runs.py"), title="Runs", icon=":material/table_rows:", url_path="runs")


def _home() -> None:
    # Streamlit serves its default page at "/" only (a default page's url_path is ignored), so
    # Runs is an ordinary page at /runs and "/" is a hidden page that opens it, keeping the
    # run choice in the URL.
    st.switch_page(RUNS_PAGE, query_params={k: st.query_params.get_all(k) for k in st.query_params})


PAGES = [
    st.Page(_home, title="AEL dashboard", url_path="home", default=True, visibility="hidden"),
    RUNS_PAGE,
    st.Page(str(_HERE / "views" / "training.py"), title="Training", icon=":material/show_chart:", url_path="training"),
    st.Page(str(_HERE / "views" / "confidence.py"), title="Confidence bank", icon=":material/account_balance:", url_path="confidence"),
    st.Page(str(_HERE / "views" / "pseudo_labels.py"), title="Pseudo-labels", icon=":material/image:", url_path="pseudo-labels"),
    st.Page(str(_HERE / "views" / "lab.py"), title="Augmentation lab", icon=":material/science:", url_path="lab"),
    st.Page(str(_HERE / "views" / "compare.py"), title="Compare runs", icon=":material/compare:", url_path="compare"),
]

page = st.navigation(PAGES)
with st.sidebar:
    preload_canvas_chart()
st.session_state["_ael_selection"] = state.sidebar(state.runs_dir_from_args(sys.argv[1:]))
keep_chart_views()
page.run()

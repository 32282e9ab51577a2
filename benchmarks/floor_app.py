"""The pages ``dashboard_floor.py`` times: what Streamlit and each way of drawing cost, without the dashboard.

Served by ``dashboard_floor.py`` with ``ael dashboard``'s command line over a runs folder holding
``long-wide``; the query picks the page:

- ``?charts=1``: one three-point plotly line (the floor);
- ``?charts=5``: the confidence page's five plotly figures of ``long-wide``, built once and cached;
- ``?charts=vega1`` / ``?charts=vega5``: the same with Streamlit's Vega-Lite element (Altair);
- ``?charts=canvas5``: the same five views drawn by the dashboard's canvas chart
  (``app/ael_app/canvas_chart.py``), their data built once and cached.

``&widgets=1`` adds the confidence page's widgets, captions and sidebar around the charts.
"""

import sys
from functools import partial
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))  # the dashboard's own modules (ael_app)
st.set_page_config(layout="wide")
RUNS = sys.argv[sys.argv.index("--runs") + 1]
AT_STEP = ("bank", "copy_paste_prob", "cutmix_prob", "sampling_ratio")
FREQUENCIES = ("freq_labeled", "freq_pseudo")


def long_run_views(runs):
    """What the five views of ``long-wide`` draw: palette, tail classes, the bank and IoU series, the
    vectors at the last step and the pixel shares there."""
    from ael.runs import open_run, tail_indices

    run = open_run(runs, "long-wide")
    bank, iou = run.class_vectors("bank"), run.class_vectors("iou_teacher")
    step = int(bank.steps[-1])
    at_step = {f"{n} (step {step})": run.class_vectors(n).values[-1] for n in AT_STEP}
    shares = {f"{n} (step {step})": run.class_vectors(n).values[-1] for n in FREQUENCIES}
    return run.palette, tail_indices(run.class_frequencies()), bank, iou, at_step, shares


@st.cache_resource
def five_figures(runs):
    import plotly.io as pio

    from ael.viz.class_figures import class_bars_figure, grouped_bars_figure
    from ael.viz.figures import class_heatmap_figure, class_lines_figure
    from ael.viz.style import register_white_theme

    pio.templates.default = register_white_theme()
    palette, tail, bank, iou, at_step, shares = long_run_views(runs)
    return [
        class_lines_figure(bank.steps, bank.values, bank.class_names, palette=palette, highlight=tail, y_title="Conf_c"),
        class_heatmap_figure(bank.steps, bank.values, bank.class_names, colorbar_title="Conf"),
        class_bars_figure(at_step, bank.class_names, palette=palette, highlight=tail),
        class_heatmap_figure(iou.steps, iou.values, iou.class_names, colorbar_title="IoU"),
        grouped_bars_figure(shares, bank.class_names, y_title="share of pixels", log_y=True, percent=True,
                            zero_label={k: "0" for k in shares}),
    ]


@st.cache_resource
def five_vega_lite_charts(runs):
    """The same five views in Altair (Streamlit's Vega-Lite element), decimated as the figures are."""
    import altair as alt
    import pandas as pd

    from ael.runs import open_run

    alt.data_transformers.disable_max_rows()
    run = open_run(runs, "long-wide")
    bank, iou = run.class_vectors("bank"), run.class_vectors("iou_teacher")
    names = list(bank.class_names)

    def long_form(steps, values, rows):
        keep = np.unique(np.linspace(0, len(steps) - 1, min(rows, len(steps))).astype(int))
        return pd.DataFrame({"step": np.repeat(steps[keep], len(names)), "class": np.tile(names, len(keep)),
                             "value": values[keep].ravel()})

    def vector_rows(vectors, label):
        return pd.concat([pd.DataFrame({label: v, "class": names, "value": run.class_vectors(v).values[-1]})
                          for v in vectors])

    pick = alt.selection_point(fields=["class"], bind="legend")
    lines = alt.Chart(long_form(bank.steps, bank.values, 40_000 // len(names))).mark_line(strokeWidth=1).encode(
        x="step:Q", y=alt.Y("value:Q", title="Conf_c"), color=alt.Color("class:N", sort=names),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.1))).add_params(pick).properties(height=420)
    heat = alt.Chart(long_form(bank.steps, bank.values, 400)).mark_rect().encode(
        x=alt.X("step:O", axis=None), y=alt.Y("class:N", sort=names), color="value:Q").properties(height=900)
    bars = alt.Chart(vector_rows(AT_STEP, "vector")).mark_bar().encode(
        x=alt.X("class:N", sort=names), y="value:Q", row="vector:N").properties(height=140)
    iou_heat = alt.Chart(long_form(iou.steps, iou.values, 400)).mark_rect().encode(
        x="step:O", y=alt.Y("class:N", sort=names), color="value:Q").properties(height=900)
    freq = alt.Chart(vector_rows(FREQUENCIES, "source")).mark_bar().encode(
        x=alt.X("class:N", sort=names), xOffset="source:N", y=alt.Y("value:Q", scale=alt.Scale(type="log")),
        color="source:N").properties(height=360)
    return [lines.interactive(), heat, bars, iou_heat, freq]


@st.cache_resource
def five_canvas_views(runs):
    """The five views' data for the dashboard's canvas chart, built as the confidence page builds it."""
    from ael_app.canvas_views import bar_rows_view, class_lines_view, grouped_bars_view, heatmap_view

    palette, tail, bank, iou, at_step, shares = long_run_views(runs)
    return [
        class_lines_view(bank.steps, bank.values, bank.class_names, palette=palette, highlight=tail, y_title="Conf_c",
                         view="bank"),
        heatmap_view(bank.steps, bank.values, bank.class_names, colour_title="Conf", view="heat"),
        bar_rows_view(at_step, bank.class_names, palette=palette, highlight=tail, view="bars"),
        heatmap_view(iou.steps, iou.values, iou.class_names, colour_title="IoU", view="iou"),
        grouped_bars_view(shares, bank.class_names, y_title="share of pixels", log_y=True, percent=True, view="freq"),
    ]


def page(charts) -> None:
    """The confidence page's layout around five ``charts`` (callables drawing into the current place)."""
    widgets = st.query_params.get("widgets") == "1"
    if widgets:
        st.sidebar.caption(f"Runs folder: `{RUNS}`")
        st.sidebar.selectbox("Run", ["long-wide"], key="run")
        st.sidebar.multiselect("Compare with", ["another-run"], key="compare")
        st.sidebar.divider()
        st.sidebar.toggle("Live", value=True, key="live")
        st.sidebar.select_slider("Refresh every (s)", [1, 2, 5, 10, 30], value=2, key="refresh_s")
        st.title("Confidence bank")
        with st.expander("Options", expanded=False):
            st.toggle("Logarithmic frequency axis", value=True, key="log")
            st.caption("Tail = classes whose share of the labeled pixels is below a quarter of 1/C.")
        left, right = st.columns([1, 3])
        left.segmented_control("Classes shown", ["all", "tail", "chosen"], default="all", key="show", required=True)
        right.multiselect("Chosen classes", list(range(150)), key="chosen", disabled=True,
                          placeholder="pick classes to draw")
        st.subheader("Per-class confidence over steps")
    charts[0]()
    if widgets:
        st.subheader("Classes x steps")
    charts[1]()
    if widgets:
        st.subheader("At one step")
        st.toggle("Follow latest step", value=True, key="follow")
    charts[2]()
    left, right = st.columns(2)
    with left:
        if widgets:
            st.subheader("Per-class IoU over evaluations")
            st.radio("Model", ["iou_teacher"], horizontal=True, key="model")
        charts[3]()
    with right:
        if widgets:
            st.subheader("Class pixel frequency")
        charts[4]()


kind = st.query_params.get("charts")
if kind == "vega1":
    st.line_chart({"y": [1, 3, 2]})
elif kind == "vega5":
    page([partial(st.altair_chart, view, key=f"chart{i}") for i, view in enumerate(five_vega_lite_charts(RUNS))])
elif kind == "canvas5":
    from ael_app.canvas_chart import canvas_chart

    page([partial(canvas_chart, view, key=f"chart{i}") for i, view in enumerate(five_canvas_views(RUNS))])
elif kind == "5":
    page([partial(st.plotly_chart, figure, key=f"chart{i}", theme=None)
          for i, figure in enumerate(five_figures(RUNS))])
else:
    st.plotly_chart(go.Figure(go.Scatter(y=[1, 3, 2])), key="chart0", theme=None)

"""The pages ``dashboard_floor.py`` times: what Streamlit and each way of drawing cost, without the dashboard.

Served by ``dashboard_floor.py`` with ``ael dashboard``'s command line over a runs folder holding
``long-wide``; the query picks the page:

- ``?charts=1``: one three-point plotly line (the floor);
- ``?charts=5``: the confidence page's five plotly figures of ``long-wide``, built once and cached;
- ``?charts=vega1`` / ``?charts=vega5``: the same with Streamlit's Vega-Lite element (Altair);
- ``?charts=canvas5``: the five views drawn on canvas in components (uPlot for the lines, plain canvas
  for heatmaps and bars), from ``$AEL_FLOOR_UPLOT`` (a path to ``uPlot.iife.min.js``). This measures a
  possible design, not a feature: the views have no axes' class names, hover or legend.

``&widgets=1`` adds the confidence page's widgets, captions and sidebar around the charts.
"""

import base64
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

st.set_page_config(layout="wide")
RUNS = sys.argv[sys.argv.index("--runs") + 1]
AT_STEP = ("bank", "copy_paste_prob", "cutmix_prob", "sampling_ratio")
FREQUENCIES = ("freq_labeled", "freq_pseudo")


@st.cache_resource
def five_figures(runs):
    import plotly.io as pio

    from ael.runs import open_run, tail_indices
    from ael.viz.class_figures import class_bars_figure, grouped_bars_figure
    from ael.viz.figures import class_heatmap_figure, class_lines_figure
    from ael.viz.style import register_white_theme

    pio.templates.default = register_white_theme()
    run = open_run(runs, "long-wide")
    palette, tail = run.palette, tail_indices(run.class_frequencies())
    bank, iou = run.class_vectors("bank"), run.class_vectors("iou_teacher")
    step = int(bank.steps[-1])
    at_step = {f"{n} (step {step})": run.class_vectors(n).values[-1] for n in AT_STEP}
    shares = {f"{n} (step {step})": run.class_vectors(n).values[-1] for n in FREQUENCIES}
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


def _b64(values) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=np.float32).tobytes()).decode()


# Shared by the five canvas views: decode float32 arrays, draw a heatmap image or rows of bars, and
# mark the document drawn (``dashboard_floor.py`` waits for five such documents).
CANVAS_LIB = """<style>body{margin:0}</style><script>
const f32 = s => new Float32Array(Uint8Array.from(atob(s), c => c.charCodeAt(0)).buffer);
const drawn = () => { document.body.dataset.drawn = '1'; };
function heat(z, rows, cols, height) {
  const c = document.createElement('canvas'); c.width = cols; c.height = rows;
  const ctx = c.getContext('2d'), img = ctx.createImageData(cols, rows);
  for (let i = 0; i < rows * cols; i++) {
    img.data[4 * i] = 255 * (1 - z[i]); img.data[4 * i + 1] = 255 * (1 - 0.6 * z[i]);
    img.data[4 * i + 2] = 255; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  Object.assign(c.style, {width: '100%', height: height + 'px', imageRendering: 'pixelated'});
  document.body.appendChild(c);
}
function bars(rows, height) {
  const c = document.createElement('canvas'); c.width = document.body.clientWidth; c.height = height;
  const ctx = c.getContext('2d'), n = rows[0].length, w = c.width / n, rh = height / rows.length;
  rows.forEach((v, j) => {
    const top = Math.max(...v);
    for (let i = 0; i < n; i++) {
      ctx.fillStyle = 'hsl(' + (i * 137 % 360) + ',60%,50%)';
      const h = rh * 0.9 * v[i] / top; ctx.fillRect(i * w, (j + 1) * rh - h, w * 0.8, h);
    }
  });
  document.body.appendChild(c);
}
</script>"""


@st.cache_resource
def canvas_views(runs, uplot_path):
    """HTML of the five views drawn on canvas, with the run's data inlined as base64 float32."""
    from ael.runs import open_run

    run = open_run(runs, "long-wide")
    bank, iou = run.class_vectors("bank"), run.class_vectors("iou_teacher")
    c = len(bank.class_names)
    keep = np.unique(np.linspace(0, len(bank.steps) - 1, 40_000 // c).astype(int))
    cols = np.unique(np.linspace(0, len(bank.steps) - 1, 400).astype(int))
    head = f"<script>{Path(uplot_path).read_text()}</script>" + CANVAS_LIB
    lines = f"""<div id=p></div><script>
const x = Array.from(f32('{_b64(bank.steps[keep])}')), y = f32('{_b64(bank.values[keep].T)}'), m = {len(keep)};
const series = [{{}}], data = [x];
for (let k = 0; k < {c}; k++) {{
  data.push(Array.from(y.subarray(k * m, (k + 1) * m)));
  series.push({{label: 'class ' + k, stroke: 'hsl(' + (k * 137 % 360) + ',60%,45%)', width: 1}});
}}
new uPlot({{width: document.body.clientWidth, height: 380, series, legend: {{show: false}}}}, data,
          document.getElementById('p'));
drawn();</script>"""

    def rows_of(names):
        return "[" + ",".join(f"f32('{_b64(run.class_vectors(n).values[-1])}')" for n in names) + "]"

    bodies = [
        (lines, 400),
        (f"<script>heat(f32('{_b64(bank.values[cols].T)}'), {c}, {len(cols)}, 880); drawn();</script>", 900),
        (f"<script>bars({rows_of(AT_STEP)}, 700); drawn();</script>", 720),
        (f"<script>heat(f32('{_b64(iou.values.T)}'), {c}, {len(iou.steps)}, 880); drawn();</script>", 900),
        (f"<script>bars({rows_of(FREQUENCIES)}, 340); drawn();</script>", 360),
    ]
    return [(f"<html><head>{head}</head><body>{body}</body></html>", height) for body, height in bodies]


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
            left, right = st.columns(2)
            right.toggle("Logarithmic frequency axis", value=True, key="log")
            left.toggle("WebGL lines (for a browser with a GPU)", value=False, key="webgl")
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
    import streamlit.components.v1 as components

    views = canvas_views(RUNS, os.environ["AEL_FLOOR_UPLOT"])
    page([partial(components.html, html, height=height) for html, height in views])
elif kind == "5":
    page([partial(st.plotly_chart, figure, key=f"chart{i}", theme=None)
          for i, figure in enumerate(five_figures(RUNS))])
else:
    st.plotly_chart(go.Figure(go.Scatter(y=[1, 3, 2])), key="chart0", theme=None)

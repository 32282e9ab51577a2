"""Where a fresh browser's first open of the confidence page goes: the platform's floor against the page.

``dashboard_load.py`` times the confidence page of a 40 000-step, 150-class run in a fresh browser
context. This script splits that time, each measured the same way (a new browser context, no cache
of any kind; request -> fully drawn), ``--repeats`` (5) times, median and range:

1. *floor*: a Streamlit page holding one three-point plotly chart, served with the dashboard's own
   command line (:func:`ael.dashboard.streamlit_command`: the same server options and warm-up).
   Nothing of ours runs: this is Streamlit's front end plus plotly.js, loaded and compiled.
2. *the page's five charts alone*: the confidence page's five figures of the long run, built once
   by the same builders and cached, then drawn on an otherwise empty page: (2) - (1) is what
   drawing our charts costs in the browser.
3. *the confidence page, run read before*: the real page on a run the server has already read.
   (3) - (2) is the rest of the page: sidebar, widgets, captions, the live panel.
4. *the confidence page, run never read*: (4) - (3) is reading the run on the server.
5. *Streamlit's other chart element*: (1) and (2) again with Vega-Lite (``st.line_chart``, and the
   five views written in Altair), the chart library Streamlit ships besides plotly.
6. *a returning browser*: (3) in new tabs of a browser profile that has opened the page twice before,
   so its HTTP cache holds Streamlit's bundles and plotly.js.

It also times how long chromium takes to compile and run plotly.js itself in a blank page, and,
given ``--bundle PATH`` (e.g. ``plotly.js-cartesian-dist-min`` from npm), another bundle beside it.

Usage::

    python benchmarks/dashboard_floor.py                   # 40k steps x 150 classes, 5 opens each
    python benchmarks/dashboard_floor.py --repeats 7 --bundle package/plotly-cartesian.min.js
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import plotly

from ael.dashboard import streamlit_command

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard_load import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DRAWN,
    VISIBLE,
    free_port,
    time_confidence_page,
    wait_healthy,
    write_run,
)

# ``?charts=1``: one three-point line; ``?charts=5``: the confidence page's five figures of the run
# ``long-wide`` in the runs folder given after ``--``, built once per server and cached.
FLOOR_APP = '''
import sys
import plotly.graph_objects as go
import streamlit as st

st.set_page_config(layout="wide")


@st.cache_resource
def five_figures(runs):
    from ael.runs import open_run, tail_indices
    from ael.viz.class_figures import class_bars_figure, grouped_bars_figure
    from ael.viz.figures import class_heatmap_figure, class_lines_figure
    from ael.viz.style import register_white_theme
    import plotly.io as pio

    pio.templates.default = register_white_theme()
    run = open_run(runs, "long-wide")
    palette, tail = run.palette, tail_indices(run.class_frequencies())
    bank, iou = run.class_vectors("bank"), run.class_vectors("iou_teacher")
    at_step = {f"{n} (step {int(bank.steps[-1])})": run.class_vectors(n).values[-1]
               for n in ("bank", "copy_paste_prob", "cutmix_prob", "sampling_ratio")}
    shares = {f"{label} (step {int(bank.steps[-1])})": run.class_vectors(n).values[-1]
              for n, label in (("freq_labeled", "labels"), ("freq_pseudo", "pseudo-labels"))}
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
    import numpy as np
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
    bars = alt.Chart(vector_rows(("bank", "copy_paste_prob", "cutmix_prob", "sampling_ratio"), "vector")).mark_bar(
    ).encode(x=alt.X("class:N", sort=names), y="value:Q", row="vector:N").properties(height=140)
    iou_heat = alt.Chart(long_form(iou.steps, iou.values, 400)).mark_rect().encode(
        x="step:O", y=alt.Y("class:N", sort=names), color="value:Q").properties(height=900)
    freq = alt.Chart(vector_rows(("freq_labeled", "freq_pseudo"), "source")).mark_bar().encode(
        x=alt.X("class:N", sort=names), xOffset="source:N", y=alt.Y("value:Q", scale=alt.Scale(type="log")),
        color="source:N").properties(height=360)
    return [lines.interactive(), heat, bars, iou_heat, freq]


charts = st.query_params.get("charts")
runs = sys.argv[sys.argv.index("--runs") + 1]
if charts == "vega1":
    st.line_chart({"y": [1, 3, 2]})
elif charts == "vega5":
    views = five_vega_lite_charts(runs)
    for i, view in enumerate(views[:3]):
        st.altair_chart(view, key=f"chart{i}")
    left, right = st.columns(2)
    left.altair_chart(views[3], key="chart3")
    right.altair_chart(views[4], key="chart4")
elif charts == "5":
    figures = five_figures(runs)
    for i, figure in enumerate(figures[:3]):
        st.plotly_chart(figure, key=f"chart{i}", theme=None)
    left, right = st.columns(2)
    left.plotly_chart(figures[3], key="chart3", theme=None)
    right.plotly_chart(figures[4], key="chart4", theme=None)
else:
    st.plotly_chart(go.Figure(go.Scatter(y=[1, 3, 2])), key="chart0", theme=None)
'''

MAX_IOU_LINES = 40  # the confidence page's own limit: more classes, and per-class IoU is a heatmap
ONE_DRAWN = f"[...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')].some({VISIBLE})"
VEGA_DRAWN = ("document.querySelectorAll('[data-testid=\"stVegaLiteChart\"] canvas, "
              "[data-testid=\"stVegaLiteChart\"] svg.marks').length >= {}")


def fresh_open(browser, url: str, drawn: str) -> float:
    """request -> ``drawn`` in a new browser context (nothing cached), in seconds."""
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    try:
        page = context.new_page()
        start = time.perf_counter()
        page.goto(url, wait_until="commit")
        page.wait_for_function(drawn, timeout=180_000, polling=20)
        return time.perf_counter() - start
    finally:
        context.close()


def describe(name: str, walls: list[float]) -> str:
    ordered = sorted(walls)
    return (f"  {name}: {statistics.median(walls):.2f} s ({ordered[0]:.2f}-{ordered[-1]:.2f}) over {len(walls)} "
            f"[{', '.join(f'{w:.2f}' for w in walls)}]")


class Server:
    """A dashboard-style server (``ael dashboard``'s command line) of ``app`` over ``runs``."""

    def __init__(self, runs: Path, app: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(streamlit_command(runs, port=port, app=app),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self) -> Server:
        wait_healthy(self.url, self.process)
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def returning_tabs(playwright, url: str, profile: Path, repeats: int) -> list[float]:
    """request -> ``DRAWN`` of ``url`` in new tabs of a browser whose profile has opened it twice before
    (its HTTP cache holds Streamlit's bundles and plotly.js; chromium may keep their compiled code)."""
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 2400})
    try:
        walls = []
        for i in range(2 + repeats):
            page = context.new_page()
            start = time.perf_counter()
            page.goto(url, wait_until="commit")
            page.wait_for_function(DRAWN, timeout=180_000, polling=20)
            if i >= 2:
                walls.append(time.perf_counter() - start)
            page.close()
        return walls
    finally:
        context.close()


def bundle_eval_ms(browser, path: Path, repeats: int) -> list[int]:
    """Milliseconds to compile and run a plotly.js bundle in a blank page, one fresh page each time."""
    source = path.read_text()
    times = []
    for _ in range(repeats):
        page = browser.new_page()
        page.set_content("<html><body></body></html>")
        times.append(page.evaluate(
            "(src) => { const t = performance.now(); (0, eval)(src); return Math.round(performance.now() - t); }",
            source))
        page.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--classes", type=int, default=150, help="over 40, as the page's IoU is then a heatmap")
    parser.add_argument("--classes-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5, help="fresh-browser opens of each kind")
    parser.add_argument("--bundle", type=Path, default=None, help="another plotly.js bundle to time beside plotly.py's")
    args = parser.parse_args(argv)
    if args.classes <= MAX_IOU_LINES:
        parser.error(f"--classes {args.classes}: the page draws its IoU as a heatmap only past {MAX_IOU_LINES} classes")
    if args.bundle is not None and not args.bundle.is_file():
        parser.error(f"--bundle {args.bundle}: no such file")

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        write_run(runs, args.steps, args.classes, args.classes_every).close()
        never_read = [f"long-wide-fresh-{i}" for i in range(args.repeats)]
        for run_id in never_read:
            shutil.copytree(runs / "long-wide", runs / run_id)
        floor_app = Path(tmp) / "floor_app.py"
        floor_app.write_text(FLOOR_APP)
        print(f"run written: {args.steps} steps x {args.classes} classes; chromium {CHROMIUM}, headless, no GPU")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                with Server(runs, floor_app) as floor:
                    fresh_open(browser, f"{floor.url}/?charts=5", DRAWN)  # builds and caches the figures
                    one = [fresh_open(browser, f"{floor.url}/?charts=1", ONE_DRAWN) for _ in range(args.repeats)]
                    five = [fresh_open(browser, f"{floor.url}/?charts=5", DRAWN) for _ in range(args.repeats)]
                    fresh_open(browser, f"{floor.url}/?charts=vega5", VEGA_DRAWN.format(5))  # builds and caches
                    vega_one = [fresh_open(browser, f"{floor.url}/?charts=vega1", VEGA_DRAWN.format(1))
                                for _ in range(args.repeats)]
                    vega_five = [fresh_open(browser, f"{floor.url}/?charts=vega5", VEGA_DRAWN.format(5))
                                 for _ in range(args.repeats)]
                with Server(runs, None) as dashboard:
                    context = browser.new_context()
                    time_confidence_page(context.new_page(), dashboard.url)  # the server reads long-wide
                    context.close()
                    read = [fresh_open(browser, f"{dashboard.url}/confidence?run=long-wide", DRAWN)
                            for _ in range(args.repeats)]
                    unread = [fresh_open(browser, f"{dashboard.url}/confidence?run={run_id}", DRAWN)
                              for run_id in never_read]
                    returning = returning_tabs(p, f"{dashboard.url}/confidence?run=long-wide", Path(tmp) / "profile",
                                               args.repeats)
                print("fresh browser context, request -> fully drawn:")
                print(describe("floor: Streamlit + one 3-point plotly chart", one))
                print(describe("the confidence page's five charts alone (built once, cached)", five))
                print(describe("the confidence page, run read before", read))
                print(describe("the confidence page, run never read", unread))
                print("the same with Streamlit's Vega-Lite element (Altair) instead of plotly:")
                print(describe("floor: Streamlit + one 3-point line chart", vega_one))
                print(describe("the page's five views in Altair (built once, cached)", vega_five))
                print("a browser that opened the page twice before, request -> fully drawn in a new tab:")
                print(describe("the confidence page, run read before", returning))
                full = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
                bundles = [full] + ([args.bundle] if args.bundle else [])
                print("plotly.js compiled and run in a blank page:")
                for bundle in bundles:
                    times = bundle_eval_ms(browser, bundle, args.repeats)
                    print(f"  {bundle.name} ({bundle.stat().st_size / 1e6:.1f} MB): {statistics.median(times):.0f} ms "
                          f"median {times}")
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

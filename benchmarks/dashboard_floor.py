"""Where a fresh browser's first open of the confidence page goes: the platform's floor against the page.

``dashboard_load.py`` times the confidence page of a 40 000-step, 150-class run in a fresh browser
context. This script splits that time, each measured the same way (a new browser context, no cache
of any kind; request -> fully drawn), ``--repeats`` (5) times, median and range:

1. *floor*: a Streamlit page holding one three-point plotly chart, served with the dashboard's own
   command line (:func:`ael.dashboard.streamlit_command`: the same server options and warm-up).
   Nothing of ours runs: this is Streamlit's front end plus plotly.js, loaded and compiled.
2. *the page's five views as plotly charts alone*: the five views of the long run built once by
   ``ael.viz``'s plotly builders (the notebooks', and the page's until it drew on canvas) and
   cached, then drawn on an otherwise empty page: (2) - (1) is what drawing them with plotly costs.
3. *the five charts with the page's widgets*: (2) inside the confidence page's sidebar, widgets and
   captions (the same kinds of element, no run behind them): (3) - (2) is what the widgets cost.
4. *canvas*: (2) and (3) with the five views drawn by the dashboard's own canvas chart
   (``app/ael_app/canvas_chart.py``), as the confidence page draws them, instead of plotly.
5. *the confidence page, run read before*: the real page (canvas) on a run the server has already
   read. (5) - (4, with widgets) is the rest of the real page: its live panel, captions, the keeper.
6. *the confidence page, run never read*: (6) - (5) is reading the run on the server.
7. *Streamlit's other chart element*: (1) and (2) again with Vega-Lite (``st.line_chart``, and the
   five views written in Altair), the chart library Streamlit ships besides plotly.
8. *a returning browser*: (5) in new tabs of a browser profile that has opened the page twice before,
   so its HTTP cache holds Streamlit's bundles.

It also times how long chromium takes to compile and run plotly.js itself in a blank page, and,
given ``--bundle PATH`` (e.g. ``plotly.js-cartesian-dist-min`` from npm), another bundle beside it.

Usage::

    python benchmarks/dashboard_floor.py                   # 40k steps x 150 classes, 5 opens each
    python benchmarks/dashboard_floor.py --repeats 7 --bundle package/plotly-cartesian.min.js

The pages of (1), (2), (3), (4) and (7) are ``benchmarks/floor_app.py``.
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
    PLOTLY_DRAWN,
    VISIBLE,
    free_port,
    time_confidence_page,
    wait_healthy,
    write_run,
)

FLOOR_APP = Path(__file__).resolve().parent / "floor_app.py"
MAX_IOU_LINES = 40  # the confidence page's own limit: more classes, and per-class IoU is a heatmap
ONE_DRAWN = f"[...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')].some({VISIBLE})"
VEGA_DRAWN = ("document.querySelectorAll('[data-testid=\"stVegaLiteChart\"] canvas, "
              "[data-testid=\"stVegaLiteChart\"] svg.marks').length >= {}")


VIEWPORT = {"width": 1400, "height": 2400}


def timed_open(page, url: str, drawn: str) -> float:
    """request -> ``drawn`` (a JavaScript condition) in ``page``, in seconds."""
    start = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_function(drawn, timeout=180_000, polling=20)
    return time.perf_counter() - start


def fresh_open(browser, url: str, drawn: str) -> float:
    """:func:`timed_open` in a new browser context (nothing cached)."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        return timed_open(context.new_page(), url, drawn)
    finally:
        context.close()


def describe(name: str, walls: list[float]) -> str:
    ordered = sorted(walls)
    return (f"  {name}: {statistics.median(walls):.2f} s ({ordered[0]:.2f}-{ordered[-1]:.2f}) over {len(walls)} "
            f"[{', '.join(f'{w:.2f}' for w in walls)}]")


class Server:
    """A dashboard-style server (``ael dashboard``'s command line) of ``app`` over ``runs``."""

    def __init__(self, runs: Path, app: Path | None) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(streamlit_command(runs, port=port, app=app), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

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
    (its HTTP cache holds Streamlit's bundles; chromium may keep their compiled code)."""
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, viewport=VIEWPORT)
    try:
        walls = []
        for _ in range(2 + repeats):
            page = context.new_page()
            walls.append(timed_open(page, url, DRAWN))
            page.close()
        return walls[2:]  # the first two visits fill the profile
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
        print(f"run written: {args.steps} steps x {args.classes} classes; chromium {CHROMIUM}, headless, no GPU")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                with Server(runs, FLOOR_APP) as floor:
                    fresh_open(browser, f"{floor.url}/?charts=5", PLOTLY_DRAWN)  # builds and caches the figures
                    fresh_open(browser, f"{floor.url}/?charts=canvas5", DRAWN)  # and the canvas views' data
                    one = [fresh_open(browser, f"{floor.url}/?charts=1", ONE_DRAWN) for _ in range(args.repeats)]
                    five = [fresh_open(browser, f"{floor.url}/?charts=5", PLOTLY_DRAWN) for _ in range(args.repeats)]
                    widgets = [fresh_open(browser, f"{floor.url}/?charts=5&widgets=1", PLOTLY_DRAWN)
                               for _ in range(args.repeats)]
                    canvas = [fresh_open(browser, f"{floor.url}/?charts=canvas5", DRAWN) for _ in range(args.repeats)]
                    canvas_widgets = [fresh_open(browser, f"{floor.url}/?charts=canvas5&widgets=1", DRAWN)
                                      for _ in range(args.repeats)]
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
                print(describe("the five views as plotly charts alone (built once, cached)", five))
                print(describe("the five plotly charts with the page's widgets", widgets))
                print(describe("the five views on the canvas chart alone (built once, cached)", canvas))
                print(describe("the five canvas charts with the page's widgets", canvas_widgets))
                print(describe("the confidence page (canvas), run read before", read))
                print(describe("the confidence page (canvas), run never read", unread))
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

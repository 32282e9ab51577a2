"""The Compare page in a real browser (`ael dashboard` driven by chromium): clicking rows of the runs
table chooses the runs the charts compare, and the per-class panels the browser drew hold each
chosen run's bank as the run store has it; a drag zooms every panel and brings each run's records
of that range, hover names the run, its value and step (and a group's seed spread), and zoom and
legend choices hold through a page change. Skipped without /usr/bin/chromium unless
AEL_REQUIRE_BROWSER=1."""

from __future__ import annotations

import json

import numpy as np
import pytest
from browser_support import (
    ARTIFACTS,
    browser_tab,
    canvas,
    hover_text,
    js_number,
    served_dashboard,
    wait_canvas,
)
from runs_factory import write_run

from ael.runs import list_runs, open_run
from ael.runs.groups import group_curves

# st.dataframe's grid: a header row, then rows of this height; the row markers (checkboxes) on the left.
ROW_PX = 35
MARKER_X_PX = 18

pytestmark = pytest.mark.browser

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Three finished runs of different lengths, and a comparison group (two AEL seeds with a class
    vector at every step, one supervised run), served by `ael dashboard`."""
    runs = tmp_path_factory.mktemp("compare_browser") / "runs"
    runs.mkdir()
    for i, run_id in enumerate(("r1", "r2", "r3")):
        write_run(runs, run_id, steps=200 + 100 * i, seed=i)
    for run_id, method, seed, steps in (("g-ael-s0", "ael", 0, 500), ("g-ael-s1", "ael", 1, 500),
                                        ("g-supervised-s0", "supervised", 0, 300)):
        write_run(runs, run_id, steps=steps, seed=seed, classes_every=1, media_every=0, method=method, group="g")
    write_run(runs, "fresh", steps=1, media_every=0, total_steps=100, finish=False).close()  # one record so far
    with served_dashboard(runs) as url:
        yield url, runs


def _panel_traces(tab) -> list[dict]:
    """The per-class panels' lines as the browser holds them: run, panel title, steps and values."""
    return canvas(tab, "cmp_panels", """c.data.series.map((s, n) => ({
        name: c.data.entries[s.entry].name, title: c.data.panels[s.panel].title,
        x: Array.from(c.curves[n].coarse.xs), y: Array.from(c.curves[n].coarse.ys)}))""") or []


def _wait_for_runs(tab, names: list[str]) -> list[dict]:
    wanted = json.dumps(sorted(names))
    wait_canvas(tab, "cmp_panels", f"JSON.stringify(c.data.entries.map(e => e.name).sort()) === JSON.stringify({wanted})")
    return _panel_traces(tab)


def _click_row(tab, row: int) -> None:
    box = tab.locator('[data-testid="stDataFrame"]').first.bounding_box()
    tab.mouse.click(box["x"] + MARKER_X_PX, box["y"] + ROW_PX * (row + 1) + ROW_PX // 2)


def test_clicking_table_rows_chooses_the_runs_the_charts_compare(served):
    url, runs = served
    order = [s.run_id for s in list_runs(runs)]  # the table's rows, newest first
    with browser_tab(height=2000) as tab:
        tab.goto(f"{url}/compare?run=r1")
        tab.wait_for_selector('[data-testid="stDataFrame"] canvas', timeout=60_000)
        tab.get_by_text("Choose at least two runs", exact=False).wait_for(timeout=60_000)
        assert _panel_traces(tab) == []

        _click_row(tab, order.index("r2"))
        traces = _wait_for_runs(tab, ["r1", "r2"])
        _click_row(tab, order.index("r3"))
        traces = _wait_for_runs(tab, ["r1", "r2", "r3"])
        tab.screenshot(path=str(ARTIFACTS / "compare_rows.png"), full_page=True)
        _click_row(tab, order.index("r1"))
        traces = _wait_for_runs(tab, ["r2", "r3"])
    compared = 0
    for trace in traces:
        bank = open_run(runs, trace["name"]).class_vectors("bank")
        name = trace["title"].removesuffix(" (tail)")
        assert np.array_equal(np.array(trace["x"]), bank.steps)
        assert np.allclose(np.array(trace["y"], dtype=float), bank.values[:, bank.class_names.index(name)])
        compared += 1
    assert compared == 2 * 6  # two runs, six default panels


def _plot(tab, key: str, panel: int) -> dict:
    """Panel ``panel``'s plot rectangle in the window's pixels (the chart scrolled into view)."""
    chart = tab.locator(f".st-key-{key} canvas")
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    plot = canvas(tab, key, f"(({{left, top, width, height}}) => ({{left, top, width, height}}))(c.scale.plots[{panel}])")
    return {**plot, "left": box["x"] + plot["left"], "top": box["y"] + plot["top"]}


def _point(tab, key: str, series: int, index: int) -> list[float]:
    """Canvas pixels of point ``index`` of series ``series`` as drawn (the zoom detail when drawn)."""
    return canvas(tab, key, f"""(() => {{ const curve = c.curves[{series}], part = c.kind.part(c, curve);
        const plot = c.scale.plots[curve.panel]; return [plot.at(part.xs[{index}]), plot.y(part.ys[{index}])]; }})()""")


def test_a_group_band_hover_and_a_panel_zoom_with_its_records(served):
    url, runs = served
    with browser_tab(height=2600) as tab:
        tab.goto(f"{url}/compare?run=g-ael-s0&compare=g-supervised-s0")
        # The group: each method's mean over its seeds in a band; hover gives the mean, spread and seeds.
        wait_canvas(tab, "cmp_group_curves", "c.snapshot().legend.length === 2")
        curves = group_curves([open_run(runs, r) for r in ("g-ael-s0", "g-ael-s1", "g-supervised-s0")], "g",
                              canvas(tab, "cmp_group_curves", "c.data.view.split('/').pop()"))
        steps, mean, std, count = curves["ael"]
        assert std[-1] > 0 and count[-1] == 2
        text = hover_text(tab, "cmp_group_curves", *_point(tab, "cmp_group_curves", 0, len(steps) - 1))
        # The spread to the value's decimals (4 significant digits of the value).
        decimals = max(0, 3 - int(np.floor(np.log10(abs(100 * mean[-1])))))
        assert text == (f"ael (mean of 2 seeds): {js_number(100 * mean[-1])} ± {100 * std[-1]:.{decimals}f} (2 seeds), "
                        f"at step {steps[-1]}")

        wait_canvas(tab, "cmp_panels", "c.snapshot().legend.length === 2")
        names = canvas(tab, "cmp_panels", "c.data.series.map(s => c.data.entries[s.entry].name)")
        assert canvas(tab, "cmp_panels", "c.data.series.every(s => s.reduced)")  # 500 and 300 records: buckets
        whole = canvas(tab, "cmp_panels", "c.scale.yRange")
        # A drag from one panel into the next stays in the first: it zooms from where it started to its edge.
        start, end = _plot(tab, "cmp_panels", 0), _plot(tab, "cmp_panels", 1)
        y = start["top"] + start["height"] / 2
        tab.mouse.move(start["left"] + 0.8 * start["width"], y)
        tab.mouse.down()
        tab.mouse.move(end["left"] + 0.3 * end["width"], y + 2, steps=4)
        tab.mouse.up()
        wait_canvas(tab, "cmp_panels", "c.view.x && c.data.series.every(s => s.detail)")
        assert canvas(tab, "cmp_panels", "c.view.x") == pytest.approx([0.8 * 499, 499], abs=499 / start["width"] * 2)
        plot = _plot(tab, "cmp_panels", 0)
        tab.mouse.dblclick(plot["left"] + plot["width"] / 2, plot["top"] + plot["height"] / 2)
        wait_canvas(tab, "cmp_panels", "c.view.x === null && c.data.series.every(s => !s.detail)")
        # A flat drag across the second panel zooms the steps of every panel, and brings each run's records.
        plot = _plot(tab, "cmp_panels", 1)
        y = plot["top"] + plot["height"] / 2
        tab.mouse.move(plot["left"] + 0.25 * plot["width"], y)
        tab.mouse.down()
        tab.mouse.move(plot["left"] + 0.5 * plot["width"], y + 2, steps=4)
        tab.mouse.up()
        wait_canvas(tab, "cmp_panels", "c.view.x && JSON.stringify(c.data.zoom) === JSON.stringify(c.view.x)"
                                       " && c.data.series.every(s => s.detail)")
        zoom = canvas(tab, "cmp_panels", "c.view.x")
        assert zoom == pytest.approx([0.25 * 499, 0.5 * 499], abs=499 / plot["width"] * 2)
        assert canvas(tab, "cmp_panels", "c.view.y") is None
        # The values axis fits the zoomed steps' values, a narrower range than the whole runs'.
        zoomed = canvas(tab, "cmp_panels", "c.scale.yRange")
        assert whole[0] <= zoomed[0] and zoomed[1] <= whole[1] and zoomed[1] - zoomed[0] < whole[1] - whole[0]
        details = canvas(tab, "cmp_panels", """c.data.series.map((s, n) => ({title: c.data.panels[s.panel].title,
            x: Array.from(c.curves[n].detail.xs), y: Array.from(c.curves[n].detail.ys)}))""")
        for name, detail in zip(names, details):
            bank = open_run(runs, name).class_vectors("bank")
            inside = np.flatnonzero((bank.steps >= zoom[0]) & (bank.steps <= zoom[1]))
            kept = slice(inside[0] - 1, inside[-1] + 2)
            assert np.array_equal(detail["x"], bank.steps[kept])
            column = bank.class_names.index(detail["title"].removesuffix(" (tail)"))
            assert np.allclose(detail["y"], bank.values[kept, column], atol=1e-6)
        # Hover on a record of the zoom: the run, its value and step, and the panel.
        index = len(details[1]["x"]) // 2
        text = hover_text(tab, "cmp_panels", *_point(tab, "cmp_panels", 1, index))
        run_name, rest = text.split(": ", 1)
        value, rest = rest.split(", at step ")
        step, title = rest.split(" · ")
        bank = open_run(runs, run_name).class_vectors("bank")
        row = int(np.flatnonzero(bank.steps == int(step))[0])
        assert value == js_number(bank.values[row, bank.class_names.index(title.removesuffix(" (tail)"))])
        tab.screenshot(path=str(ARTIFACTS / "compare_zoom.png"), full_page=True)

        # A run hidden from the legend; to another page and back: zoom and legend as the user left them.
        tab.locator(".st-key-cmp_panels .ael-cv-item", has_text="g-supervised-s0").click()
        tab.locator('[data-testid="stSidebarNav"] a', has_text="Training").click()
        tab.wait_for_selector(".st-key-training_Losses", timeout=30_000)
        tab.locator('[data-testid="stSidebarNav"] a', has_text="Compare runs").click()
        wait_canvas(tab, "cmp_panels", "c.snapshot().legend.length === 2 && c.data.series.every(s => s.detail)")
        assert canvas(tab, "cmp_panels", "c.snapshot().view.x") == zoom
        assert canvas(tab, "cmp_panels", "c.snapshot().legend") == [["g-ael-s0", True], ["g-supervised-s0", False]]
        # Another run chosen in the table: the run hidden stays hidden, the new one is shown.
        order = [s.run_id for s in list_runs(runs)]
        _click_row(tab, order.index("r1"))
        wait_canvas(tab, "cmp_panels", "c.snapshot().legend.length === 3")
        assert canvas(tab, "cmp_panels", "c.snapshot().legend") == [
            ["g-ael-s0", True], ["g-supervised-s0", False], ["r1", True]]
        # A double click zooms out: the whole runs again, the detail dropped.
        plot = _plot(tab, "cmp_panels", 0)
        tab.mouse.dblclick(plot["left"] + plot["width"] / 2, plot["top"] + plot["height"] / 2)
        wait_canvas(tab, "cmp_panels", "c.view.x === null && c.data.zoom === null && c.data.series.every(s => !s.detail)")


def _pixel(tab, key: str, x: float, y: float) -> list[int]:
    """RGBA of the chart's canvas at CSS pixel (x, y)."""
    return canvas(tab, key, f"""(() => {{ const r = window.devicePixelRatio || 1;
        return Array.from(c.canvas.getContext('2d').getImageData(Math.round({x} * r), Math.round({y} * r), 1, 1).data); }})()""")


def test_a_run_with_one_record_is_drawn_as_a_dot_and_one_without_evaluations_is_named(served):
    url, _ = served
    with browser_tab(height=2600) as tab:
        tab.goto(f"{url}/compare?run=fresh&compare=r1")
        wait_canvas(tab, "cmp_panels", "c.snapshot().legend.length === 2")
        tab.get_by_text("No evaluation yet: fresh.").wait_for(timeout=30_000)
        series = canvas(tab, "cmp_panels", "c.data.series.findIndex(s => c.data.entries[s.entry].name === 'fresh')")
        colour = canvas(tab, "cmp_panels", "c.data.entries.find(e => e.name === 'fresh').colour")
        assert canvas(tab, "cmp_panels", f"c.curves[{series}].coarse.xs.length") == 1
        tab.locator(".st-key-cmp_panels .ael-cv-item", has_text="r1").click()  # r1's line starts there too
        wait_canvas(tab, "cmp_panels", "c.snapshot().legend.find(e => e[0] === 'r1')[1] === false")
        x, y = _point(tab, "cmp_panels", series, 0)
        rgba = _pixel(tab, "cmp_panels", x, y)
        assert rgba[:3] == [int(colour[i:i + 2], 16) for i in (1, 3, 5)] and rgba[3] == 255


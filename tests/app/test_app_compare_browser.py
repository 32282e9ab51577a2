"""The Compare page in a real browser (`ael dashboard` driven by chromium): clicking rows of the runs
table chooses the runs the charts compare, and the per-class panels the browser drew hold each
chosen run's bank as the run store has it. Skipped without /usr/bin/chromium unless
AEL_REQUIRE_BROWSER=1."""

from __future__ import annotations

import numpy as np
import pytest
from browser_support import ARTIFACTS, browser_tab, served_dashboard
from runs_factory import write_run

from ael.runs import list_runs, open_run

# st.dataframe's grid: a header row, then rows of this height; the row markers (checkboxes) on the left.
ROW_PX = 35
MARKER_X_PX = 18

pytestmark = pytest.mark.browser

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Three finished runs of different lengths served by `ael dashboard`."""
    runs = tmp_path_factory.mktemp("compare_browser") / "runs"
    runs.mkdir()
    for i, run_id in enumerate(("r1", "r2", "r3")):
        write_run(runs, run_id, steps=200 + 100 * i, seed=i)
    with served_dashboard(runs) as url:
        yield url, runs


def _panel_traces(tab) -> list[dict]:
    return tab.evaluate(
        """() => {
            const gd = document.querySelector('.st-key-cmp_panels .js-plotly-plot');
            if (!gd || !gd._fullData) return [];
            const titles = (gd.layout.annotations || []).map(a => a.text);
            return gd._fullData.map(t => ({name: t.name, xaxis: t.xaxis, x: Array.from(t.x || []),
                                           y: Array.from(t.y || []), titles: titles}));
        }""")


def _wait_for_runs(tab, names: list[str]) -> list[dict]:
    tab.wait_for_function(
        """names => {
            const gd = document.querySelector('.st-key-cmp_panels .js-plotly-plot');
            if (!gd || !gd._fullData) return false;
            const shown = [...new Set(gd._fullData.map(t => t.name))].sort();
            return JSON.stringify(shown) === JSON.stringify(names);
        }""", arg=sorted(names), timeout=60_000, polling=200)
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
        panel = 0 if trace["xaxis"] == "x" else int(trace["xaxis"][1:]) - 1
        bank = open_run(runs, trace["name"]).class_vectors("bank")
        name = trace["titles"][panel].removesuffix(" (tail)")
        assert np.array_equal(np.array(trace["x"]), bank.steps)
        assert np.allclose(np.array(trace["y"], dtype=float), bank.values[:, bank.class_names.index(name)])
        compared += 1
    assert compared == 2 * 6  # two runs, six default panels

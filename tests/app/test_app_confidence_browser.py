"""The confidence page in a real browser, on a run being written: what the user set survives live refreshes.

A drag-zoom on the bank chart, a class hidden from its legend, the "tail" class filter and a step
chosen with the slider all hold after the page's panel has refreshed twice with new records (the
bank chart holds more steps than when they were set), and the frequency bars flag a class with
a zero share instead of dropping it. Served by ``ael dashboard``, driven by chromium; skipped
without /usr/bin/chromium unless AEL_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from browser_support import browser_tab, served_dashboard
from runs_factory import append_step, class_rows, write_run

from ael.runs import open_run, tail_indices
from ael.viz.class_figures import ZERO_LABEL

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A run being written (a step every 0.1 s, class vectors every 10 steps) served by `ael dashboard`."""
    runs = tmp_path_factory.mktemp("confidence") / "runs"
    runs.mkdir()
    writer = write_run(runs, "live", steps=200, finish=False, total_steps=100_000, media_every=0)
    stop = threading.Event()

    def append() -> None:
        rng = np.random.default_rng(3)
        step = 200
        while not stop.wait(0.1):
            append_step(writer, step, rng, media_every=0)
            step += 1

    appender = threading.Thread(target=append, daemon=True)
    appender.start()
    try:
        with served_dashboard(runs) as url:
            yield url, runs
    finally:
        stop.set()
        appender.join()
        writer.close()


@pytest.fixture(scope="module")
def page(live):
    with browser_tab(height=2400) as tab:
        yield tab


def _plot(tab, key: str, expression: str):
    """``expression`` over ``gd``, the plotly graph div of the chart of Streamlit key ``key``."""
    return tab.evaluate(
        """([key, expression]) => {
            const gd = document.querySelector(`.st-key-${key} .js-plotly-plot`);
            return gd && gd._fullData ? new Function("gd", "return " + expression)(gd) : null;
        }""", [key, expression])


def _wait(tab, key: str, condition: str, timeout_s: float = 60) -> None:
    tab.wait_for_function(
        """([key, condition]) => {
            const gd = document.querySelector(`.st-key-${key} .js-plotly-plot`);
            return !!(gd && gd._fullData && gd._fullData.length && new Function("gd", "return " + condition)(gd));
        }""", arg=[key, condition], timeout=timeout_s * 1000)


def _updated(tab) -> str:
    return tab.locator(".st-key-confidence_panel_updated").inner_text()


def _two_refreshes(tab) -> None:
    """Wait until the panel's "Last updated" line has changed twice and the bank chart grew since."""
    length = _plot(tab, "conf_lines", "gd._fullData[0].x.length")
    for _ in range(2):
        before = _updated(tab)
        tab.wait_for_function(
            "before => { const e = document.querySelector('.st-key-confidence_panel_updated');"
            " return e && e.innerText !== before; }", arg=before, timeout=60_000)
    _wait(tab, "conf_lines", f"gd._fullData[0].x.length > {length}")


def test_zoom_legend_filter_and_step_survive_live_refreshes(live, page):
    url, runs = live
    page.goto(f"{url}/confidence?run=live")
    _wait(page, "conf_lines", "gd._fullData.length === 8")
    tail = tail_indices(open_run(runs, "live").class_frequencies())
    assert 0 < len(tail) < 8

    # The "tail" filter: the other classes stay in the legend only.
    page.locator(".st-key-conf_show button", has_text="tail").click()
    _wait(page, "conf_lines", f"gd._fullData.filter(t => t.visible === true).length === {len(tail)}")
    # A step chosen with the slider (keyboard: Home, then 50 steps right).
    page.locator('label:has(input[aria-label="Follow latest step"])').click()
    slider = page.locator(".st-key-conf_step_live_slider input[type=range]")
    slider.wait_for(state="attached", timeout=30_000)
    slider.focus()
    slider.press("Home")
    for _ in range(50):
        slider.press("ArrowRight")
    assert slider.get_attribute("aria-valuetext") == "50"
    _wait(page, "conf_bars", "gd._fullData[0].name.includes('(step 50)')")
    # A tail class hidden from the legend.
    hidden_name = page.locator(".st-key-conf_lines .legend .traces .legendtext").first.text_content().strip()
    # Plotly acts on a legend click after its double-click delay (300 ms): a live redraw in that
    # window drops it, as it would a user's. Click again then, as the drag below does.
    for attempt in range(3):
        page.locator(".st-key-conf_lines .legend .traces .legendtoggle").first.click()
        try:
            _wait(page, "conf_lines", f"gd._fullData.find(t => t.name === {hidden_name!r}).visible === 'legendonly'",
                  timeout_s=15)
            break
        except Exception:
            if attempt == 2:
                raise
    # A drag-zoom on the bank chart, over the middle third of its width. A drag that a redraw of
    # the chart interrupts (the run is live) is dropped by plotly, as a user's would be: drag again.
    for attempt in range(3):
        box = page.locator(".st-key-conf_lines .nsewdrag").first.bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] / 3, y)
        page.mouse.down()
        page.mouse.move(box["x"] + 2 * box["width"] / 3, y + 2, steps=4)
        page.mouse.up()
        try:
            _wait(page, "conf_lines", "gd.layout.xaxis.autorange === false", timeout_s=15)
            break
        except Exception:
            if attempt == 2:
                raise
    zoomed = _plot(page, "conf_lines", "gd.layout.xaxis.range")
    full = _plot(page, "conf_lines", "[gd._fullData[0].x[0], gd._fullData[0].x[gd._fullData[0].x.length - 1]]")
    assert full[0] < zoomed[0] < zoomed[1] < full[1]

    _two_refreshes(page)

    assert _plot(page, "conf_lines", "gd.layout.xaxis.range") == pytest.approx(zoomed)
    traces = _plot(page, "conf_lines", "gd._fullData.map(t => [t.name, t.visible])")
    names = open_run(runs, "live").class_names
    expected = {names[c]: True for c in tail} | {n: "legendonly" for i, n in enumerate(names) if i not in tail}
    expected[hidden_name] = "legendonly"
    assert dict(traces) == expected
    assert slider.get_attribute("aria-valuetext") == "50"
    assert _plot(page, "conf_bars", "gd._fullData[0].name") == "confidence bank Conf (step 50)"


def test_a_class_never_predicted_is_flagged_on_the_log_frequency_axis(live, page):
    url, runs = live
    # Another run whose pseudo-labels never hold the last two classes.
    writer = write_run(runs, "never", steps=30, finish=False, media_every=0)
    rows = class_rows(30, 8, np.random.default_rng(0))
    rows["freq_labeled"] = np.full(8, 1 / 8)
    rows["freq_pseudo"] = np.array([0.5, 0.2, 0.1, 0.1, 0.05, 0.05, 0.0, 0.0])
    writer.log_classes(30, rows)
    writer.finish()
    page.goto(f"{url}/confidence?run=never")
    _wait(page, "conf_freq", "gd._fullData.length === 2")
    pseudo = _plot(page, "conf_freq", "(t => ({y: Array.from(t.y), text: Array.from(t.text), "
                                      "zero: Array.from(t.customdata)}))(gd._fullData[1])")
    floor = 10 ** _plot(page, "conf_freq", "gd.layout.yaxis.range[0]")
    assert pseudo["zero"][6:] == [0.0, 0.0]
    assert all(floor < y < 0.05 for y in pseudo["y"][6:])  # drawn, below every real bar
    assert pseudo["text"] == [""] * 6 + [ZERO_LABEL] * 2
    assert page.locator(".st-key-conf_freq .bartext", has_text=ZERO_LABEL).count() == 2
    # A decade below the smallest share (5 %): the axis starts at 0.1 %, ticks at each decade.
    assert floor == pytest.approx(0.001)
    assert page.locator(".st-key-conf_freq .ytick").all_text_contents() == ["0.1 %", "1 %", "10 %", "100 %"]

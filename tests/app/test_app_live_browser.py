"""Live views in a real browser: every page at its own URL, zoom and legend choices kept across
live refreshes, and a page that follows a run again when it is resumed.

Served by ``ael dashboard`` as a user runs it and driven by chromium, against a run a writer in
the test keeps appending to (about 10 steps a second) and a stopped run the test resumes.
Skipped without /usr/bin/chromium unless AEL_REQUIRE_BROWSER=1 (see test_app_browser.py).
"""

from __future__ import annotations

import threading
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
from browser_support import ARTIFACTS, browser_tab, served_dashboard
from runs_factory import append_step, write_run

from ael.runs import RunWriter, open_run

pytestmark = pytest.mark.browser


class _Feeder:
    """Appends a step to a live run every ``period_s`` from a thread, as a trainer would."""

    def __init__(self, writer: RunWriter, first_step: int, period_s: float = 0.1) -> None:
        self.writer, self.step, self.period_s = writer, first_step, period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rng = np.random.default_rng(11)
        while not self._stop.is_set():
            append_step(self.writer, self.step, rng, media_every=0)
            self.step += 1
            time.sleep(self.period_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A live run fed by a thread and a stopped run, served by ``ael dashboard``."""
    runs = tmp_path_factory.mktemp("live_browser") / "runs"
    runs.mkdir()
    live = write_run(runs, "live", steps=200, finish=False, total_steps=100_000, media_every=0)
    stopped = write_run(runs, "paused", steps=60, finish=False, total_steps=300, media_every=0)
    stopped.crash(RuntimeError("stopped at iteration 60 of 300 on request"))
    feeder = _Feeder(live, 200)
    try:
        with served_dashboard(runs) as url:
            yield url, runs
    finally:
        feeder.stop()
        live.close()


@pytest.fixture(scope="module")
def tab(served):
    with browser_tab(height=1800) as page:
        yield page


URLS = (("", "Runs", "/runs"), ("runs", "Runs", "/runs"), ("training", "Training", "/training"),
        ("confidence", "Confidence bank", "/confidence"), ("pseudo-labels", "Pseudo-labels", "/pseudo-labels"),
        ("lab", "Augmentation lab", "/lab"), ("compare", "Compare runs", "/compare"))


@pytest.mark.parametrize(("path", "title", "lands_on"), URLS, ids=[f"/{u[0]}" for u in URLS])
def test_every_page_has_a_working_url(served, tab, path, title, lands_on):
    url, _ = served
    tab.goto(f"{url}/{path}?run=paused")
    tab.wait_for_function("t => { const h = document.querySelector('h1'); return h && h.innerText.trim() === t; }",
                          arg=title, timeout=30_000)
    # The sidebar drew too, and no "Page not found" dialog opened (it comes with the page).
    tab.wait_for_selector('[data-testid="stSidebar"] [data-testid="stSelectbox"]', timeout=30_000)
    assert tab.get_by_text("Page not found").count() == 0
    address = urllib.parse.urlparse(tab.url)
    assert address.path == lands_on
    assert urllib.parse.parse_qs(address.query)["run"] == ["paused"]  # "/" keeps the run chosen in the URL


def _stamp(tab) -> str:
    return tab.locator(".st-key-training_panel_updated").inner_text().strip()


def _wait_stamp(tab, text: str, timeout_s: float = 30) -> None:
    """Wait until the Training panel's "Last updated" line contains ``text``."""
    tab.wait_for_function("t => { const e = document.querySelector('.st-key-training_panel_updated');"
                          " return !!e && e.innerText.includes(t); }", arg=text, timeout=timeout_s * 1000)


_LOSSES = "document.querySelector('.st-key-training_Losses .js-plotly-plot')"


def _view(tab) -> dict:
    """The Losses chart as drawn: its x range and autorange, each trace's visibility, the points of loss/total."""
    return tab.evaluate(f"""() => {{
        const gd = {_LOSSES};
        const total = gd._fullData.find(t => t.name === 'loss/total');
        return {{range: gd._fullLayout.xaxis.range.slice(), autorange: gd._fullLayout.xaxis.autorange,
                 visible: gd._fullData.map(t => [t.name, t.visible]), points: total.x.length,
                 last: total.x[total.x.length - 1]}};
    }}""")


def _wait_refreshes(tab, n: int, *, beyond_step: int, timeout_s: float = 40) -> None:
    """Wait for ``n`` new "Last updated" stamps and for the chart to have been redrawn with
    steps past ``beyond_step`` (a new chart mounted with new data, not the same one kept)."""
    _wait_stamp(tab, "Last updated", timeout_s)
    seen = [_stamp(tab)]
    deadline = time.monotonic() + timeout_s
    while len(seen) <= n and time.monotonic() < deadline:
        time.sleep(0.2)
        stamp = _stamp(tab)
        if stamp.startswith("Last updated") and stamp != seen[-1]:  # '' while the panel redraws
            seen.append(stamp)
    assert len(seen) > n, f"the panel refreshed {len(seen) - 1} time(s) in {timeout_s} s: {seen}"
    tab.wait_for_function(f"() => {{ const t = {_LOSSES}._fullData.find(t => t.name === 'loss/total');"
                          f" return t.x[t.x.length - 1] > {beyond_step}; }}", timeout=timeout_s * 1000)


def _gesture(tab, act, done: str, tries: int = 5) -> None:
    """``act``, repeated (at most ``tries`` times) until the JS condition ``done`` holds."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(tries):
        # Right after a refresh the chart stays put longest (until the next one, 2 s later).
        previous = _stamp(tab)
        tab.wait_for_function("p => { const e = document.querySelector('.st-key-training_panel_updated');"
                              " return !!e && e.innerText.startsWith('Last updated') && e.innerText !== p; }",
                              arg=previous, timeout=30_000)
        act()
        try:
            tab.wait_for_function(f"() => {done}", timeout=4_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"{done} never held after {tries} tries")


def _drag_zoom(tab) -> None:
    """Drag across about a third of the Losses chart's plot area, as a user zooms."""
    area = tab.locator(".st-key-training_Losses .nsewdrag").first.bounding_box()
    if area is None:  # the chart was being replaced: no gesture this time
        return
    x0, y0 = area["x"] + 0.25 * area["width"], area["y"] + 0.5 * area["height"]
    tab.mouse.move(x0, y0)
    tab.mouse.down()
    tab.mouse.move(x0 + 0.3 * area["width"], y0 + 10, steps=4)
    tab.mouse.up()


def _double_click(tab) -> None:
    area = tab.locator(".st-key-training_Losses .nsewdrag").first.bounding_box()
    if area is not None:
        tab.mouse.dblclick(area["x"] + 0.5 * area["width"], area["y"] + 0.5 * area["height"])


def test_zoom_and_legend_toggle_survive_live_refreshes(served, tab):
    url, _ = served
    tab.goto(f"{url}/training?run=live")
    tab.wait_for_function(f"() => {{ const gd = {_LOSSES}; return gd && gd._fullData && gd._fullData.length > 0; }}",
                          timeout=30_000)
    _wait_stamp(tab, "refreshing every 2 s")
    _wait_refreshes(tab, 1, beyond_step=0)  # the page is up and following the run
    # A drag-zoom over part of the plot area, then a click on loss/sup's legend entry. A refresh
    # that lands during the gesture replaces the chart under the mouse (Streamlit mounts a new
    # one), which loses that one gesture as it would a user's: it is tried again then.
    _gesture(tab, lambda: _drag_zoom(tab), f"{_LOSSES}._fullLayout.xaxis.autorange === false")
    _gesture(tab, lambda: tab.locator(".st-key-training_Losses .legend .traces", has_text="loss/sup")
             .locator(".legendtoggle").click(), f"{_LOSSES}._fullData.some(t => t.visible === 'legendonly')")
    zoomed = _view(tab)
    assert zoomed["autorange"] is False
    assert 0 < zoomed["range"][0] < zoomed["range"][1] < zoomed["last"]
    hidden = {name for name, visible in zoomed["visible"] if visible == "legendonly"}
    assert hidden == {"loss/sup"}  # its smoothed line and its faint raw line: one legend group

    _wait_refreshes(tab, 2, beyond_step=zoomed["last"])
    kept = _view(tab)
    assert kept["points"] > zoomed["points"]  # new data drawn ...
    np.testing.assert_allclose(kept["range"], zoomed["range"], rtol=1e-12)  # ... in the user's zoom
    assert kept["autorange"] is False
    assert kept["visible"] == zoomed["visible"]
    tab.screenshot(path=str(ARTIFACTS / "training_zoom_kept.png"), full_page=True)

    # A double-click zooms out and forgets the zoom: the next redraw shows every step again.
    _gesture(tab, lambda: _double_click(tab), f"{_LOSSES}._fullLayout.xaxis.autorange === true")
    _wait_refreshes(tab, 1, beyond_step=kept["last"])
    after = _view(tab)
    assert after["autorange"] is True
    assert after["range"][0] <= 0 and after["range"][1] >= after["last"]
    assert after["visible"] == zoomed["visible"]  # the legend choice stays


def test_stopped_run_followed_again_when_resumed(served, tab):
    url, runs = served
    tab.goto(f"{url}/training?run=paused")
    _wait_stamp(tab, "not refreshing (paused crashed)")
    before = open_run(runs, "paused")
    writer = RunWriter(runs, "paused", class_names=before.class_names, resume=True, resume_step=60, heartbeat_s=0.2)
    try:
        rng = np.random.default_rng(5)
        for step in range(60, 120):
            append_step(writer, step, rng, media_every=0)
        writer.heartbeat()
        # The page's watcher sees the resumed run within 5 s, and the panel follows it again.
        _wait_stamp(tab, "refreshing every 2 s")
        tab.wait_for_function(f"() => {{ const gd = {_LOSSES}; const t = gd && gd._fullData &&"
                              " gd._fullData.find(t => t.name === 'loss/total'); return t && t.x.length === 120; }",
                              timeout=30_000)
    finally:
        writer.finish()
    _wait_stamp(tab, "not refreshing (paused finished)")
    run = open_run(runs, "paused")
    status, step = (m.inner_text() for m in tab.locator('[data-testid="stMetricValue"]').all()[:2])
    assert status == run.status() == "finished"
    assert step == f"{run.manifest['step']} / {run.total_steps}" == "119 / 300"

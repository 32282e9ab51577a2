"""The dashboard in a real browser: served by `ael dashboard` as a user runs it, driven by chromium.

Pages load with their charts and images; the confidence page's bars at a step chosen with its
slider hold the bank the run store's reader returns for that step (read from the canvas chart's
data in the browser); and records appended to a live run by a writer in the test reach the open
page's chart (its number of points grows) within seconds, without a reload. Screenshots of every
page go to ``test-artifacts/dashboard/``. Skipped without /usr/bin/chromium unless
AEL_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from browser_support import ARTIFACTS, browser_tab, canvas, served_dashboard, wait_canvas
from runs_factory import append_step, write_run

from ael.runs import open_run

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A runs folder (one finished run, one live run with its writer open) served by `ael dashboard`."""
    runs = tmp_path_factory.mktemp("browser") / "runs"
    runs.mkdir()
    write_run(runs, "done", steps=400, eval_every=100, media_every=100)
    writer = write_run(runs, "live", steps=100, finish=False, total_steps=1000, media_every=50)
    try:
        with served_dashboard(runs) as url:
            yield url, writer
    finally:
        writer.close()


@pytest.fixture(scope="module")
def page(served):
    with browser_tab(height=2200) as tab:
        yield tab


def _settle(tab, *, charts: int = 0, images: int = 0, timeout_s: float = 30) -> None:
    tab.wait_for_selector("h1", timeout=timeout_s * 1000)
    if charts:  # plotly charts and canvas charts (the confidence page's)
        tab.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length"
                              f" + document.querySelectorAll('.ael-cv[data-drawn]').length >= {charts}",
                              timeout=timeout_s * 1000)
    if images:
        tab.wait_for_function(
            f"Array.from(document.querySelectorAll('[data-testid=\"stImage\"] img'))"
            f".filter(i => i.complete && i.naturalWidth > 0).length >= {images}", timeout=timeout_s * 1000)


def _figure(tab, key: str) -> list[dict]:
    """The traces plotly drew in the chart of Streamlit key ``key``: name, x and y (decoded arrays)."""
    return tab.evaluate(
        """key => {
            const gd = document.querySelector(`.st-key-${key} .js-plotly-plot`);
            if (!gd || !gd._fullData) return [];
            return gd._fullData.map(t => ({name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || [])}));
        }""", key)


def _wait_figure(tab, key: str, condition: str, timeout_s: float = 30) -> None:
    """Wait until ``condition`` (JS over ``traces``, plotly's drawn data of chart ``key``) holds."""
    tab.wait_for_function(
        """([key, condition]) => {
            const gd = document.querySelector(`.st-key-${key} .js-plotly-plot`);
            const traces = gd && gd._fullData ? gd._fullData : [];
            return traces.length > 0 && new Function("traces", "return " + condition)(traces);
        }""", arg=[key, condition], timeout=timeout_s * 1000)


PAGES = (("", "Runs", 0, 0), ("training", "Training", 3, 0), ("confidence", "Confidence bank", 5, 0),
         ("pseudo-labels", "Pseudo-labels", 0, 5), ("lab", "Augmentation lab", 1, 8))


@pytest.mark.parametrize(("path", "title", "charts", "images"), PAGES, ids=[p[1] for p in PAGES])
def test_page_loads_with_charts_and_images(served, page, path, title, charts, images):
    url, _ = served
    page.goto(f"{url}/{path}?run=done")
    _settle(page, charts=charts, images=images)
    assert page.locator("h1").first.inner_text().strip() == title
    assert page.locator('[data-testid="stException"]').count() == 0
    if path == "":
        page.wait_for_selector('[data-testid="stDataFrame"]', timeout=20_000)
    time.sleep(0.5)
    page.screenshot(path=str(ARTIFACTS / f"{title.lower().replace(' ', '_')}.png"), full_page=True)


def test_compare_page(served, page):
    url, _ = served
    page.goto(f"{url}/compare?run=done&compare=live")
    _settle(page, charts=3)
    assert page.locator('[data-testid="stException"]').count() == 0
    time.sleep(0.5)
    page.screenshot(path=str(ARTIFACTS / "compare_runs.png"), full_page=True)


def test_confidence_bars_at_a_chosen_step_hold_the_readers_bank(served, page):
    url, writer = served
    bank = open_run(writer.run_dir.parent, "done").class_vectors("bank")
    page.goto(f"{url}/confidence?run=done")
    _settle(page, charts=5)
    # Following the latest step: the last bank row (step 390 of 400, a row every 10 steps).
    wait_canvas(page, "conf_bars", "c.snapshot().rows[0].title.includes('(step 390)')")
    shown = canvas(page, "conf_bars", "c.snapshot().rows")[0]
    assert shown["title"] == "confidence bank Conf (step 390)"
    assert canvas(page, "conf_bars", "c.data.names") == list(bank.class_names)
    np.testing.assert_allclose(shown["values"], bank.values[list(bank.steps).index(390)], rtol=1e-12)
    # Step 25 chosen with the slider (keyboard: Home, then 25 steps right): the row at or before it, step 20.
    page.locator('label:has(input[aria-label="Follow latest step"])').click()
    slider = page.locator(".st-key-conf_step_done_slider input[type=range]")
    slider.wait_for(state="attached", timeout=30_000)
    slider.focus()
    slider.press("Home")
    for _ in range(25):
        slider.press("ArrowRight")
    assert slider.get_attribute("aria-valuetext") == "25"
    wait_canvas(page, "conf_bars", "c.snapshot().rows[0].title.includes('(step 20)')")
    shown = canvas(page, "conf_bars", "c.snapshot().rows")
    assert [row["title"] for row in shown] == [
        "confidence bank Conf (step 20)", "Copy-Paste distribution (step 20)", "CutMix distribution (step 20)",
        "sampling ratio r_c (step 20)"]
    expected = bank.values[list(bank.steps).index(20)]
    np.testing.assert_allclose(shown[0]["values"], expected, rtol=1e-12)
    assert not np.allclose(expected, bank.values[list(bank.steps).index(390)])  # another step, other values
    run = open_run(writer.run_dir.parent, "done")
    for row, name in zip(shown[1:], ("copy_paste_prob", "cutmix_prob", "sampling_ratio")):
        vectors = run.class_vectors(name)
        np.testing.assert_allclose(row["values"], vectors.values[list(vectors.steps).index(20)], rtol=1e-12)
    page.screenshot(path=str(ARTIFACTS / "confidence_at_step.png"), full_page=True)


def test_live_record_appears_without_reload(served, page):
    url, writer = served
    page.goto(f"{url}/training?run=live")
    _settle(page, charts=3)
    # The losses chart holds the 100 steps written so far (0 ... 99).
    total = "(traces.find(t => t.name === 'loss/total') || {x: []})"
    _wait_figure(page, "training_Losses", f"{total}.x.length === 100")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    rng = np.random.default_rng(7)
    for step in range(100, 180):
        append_step(writer, step, rng, media_every=0)
    writer.heartbeat()
    start = time.monotonic()
    # New chart data, not only a new number: the drawn line grows to the 180 steps, ending at step 179.
    _wait_figure(page, "training_Losses", f"{total}.x.length === 180 && {total}.x[179] === 179", timeout_s=15)
    seen_after = time.monotonic() - start
    assert navigations == [], "the page reloaded"
    assert seen_after < 15
    steps, values = open_run(writer.run_dir.parent, "live").scalar("loss/total")
    drawn = next(t for t in _figure(page, "training_Losses") if t["name"] == "loss/total")
    assert drawn["x"] == steps.tolist() == list(range(180))
    np.testing.assert_allclose(drawn["y"], values, rtol=1e-12)
    page.screenshot(path=str(ARTIFACTS / "training_live.png"), full_page=True)

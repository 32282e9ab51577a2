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
from browser_support import browser_tab, canvas, hover_text, js_number, served_dashboard, wait_canvas
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


def _updated(tab) -> str:
    return tab.locator(".st-key-confidence_panel_updated").inner_text()


def _two_refreshes(tab) -> None:
    """Wait until the panel's "Last updated" line has changed twice and the bank chart grew since."""
    length = canvas(tab, "conf_lines", "c.coarse.xs.length")
    for _ in range(2):
        before = _updated(tab)
        tab.wait_for_function(
            "before => { const e = document.querySelector('.st-key-confidence_panel_updated');"
            " return e && e.innerText !== before; }", arg=before, timeout=60_000)
    wait_canvas(tab, "conf_lines", f"c.coarse.xs.length > {length}")


def _shown(tab, key: str) -> dict[str, bool]:
    """Legend entry -> drawn, of the canvas chart ``key``."""
    return dict(canvas(tab, key, "c.snapshot().legend"))


def test_zoom_legend_filter_and_step_survive_live_refreshes(live, page):
    url, runs = live
    page.goto(f"{url}/confidence?run=live")
    wait_canvas(page, "conf_lines", "c.snapshot().legend.length === 8")
    tail = tail_indices(open_run(runs, "live").class_frequencies())
    assert 0 < len(tail) < 8

    # The sidebar's preload of the chart's code is hidden and draws nothing.
    preload = page.locator(".st-key-ael_canvas_preload")
    assert preload.count() == 1 and not preload.is_visible() and preload.locator(".ael-cv").count() == 0

    # The "tail" filter: the other classes stay in the legend only.
    page.locator(".st-key-conf_show button", has_text="tail").click()
    wait_canvas(page, "conf_lines", f"c.snapshot().legend.filter(e => e[1]).length === {len(tail)}")
    # A step chosen with the slider (keyboard: Home, then 50 steps right).
    page.locator('label:has(input[aria-label="Follow latest step"])').click()
    slider = page.locator(".st-key-conf_step_live_slider input[type=range]")
    slider.wait_for(state="attached", timeout=30_000)
    slider.focus()
    slider.press("Home")
    for _ in range(50):
        slider.press("ArrowRight")
    assert slider.get_attribute("aria-valuetext") == "50"
    wait_canvas(page, "conf_bars", "c.snapshot().rows[0].title.includes('(step 50)')")
    # A tail class hidden from the legend (tail classes are listed first).
    item = page.locator(".st-key-conf_lines .ael-cv-item").first
    hidden_name = item.inner_text().strip()
    item.click()
    assert _shown(page, "conf_lines")[hidden_name] is False
    # A drag-zoom on the bank chart, over the middle third of its plot area.
    box = page.locator(".st-key-conf_lines canvas").bounding_box()
    area = canvas(page, "conf_lines", "c.area()")
    left, width = box["x"] + area["left"], area["width"]
    y = box["y"] + area["top"] + area["height"] / 2
    page.mouse.move(left + width / 3, y)
    page.mouse.down()
    page.mouse.move(left + 2 * width / 3, y + 2, steps=4)
    page.mouse.up()
    zoomed = canvas(page, "conf_lines", "c.snapshot().view.x")
    full = canvas(page, "conf_lines", "[c.coarse.xs[0], c.coarse.xs[c.coarse.xs.length - 1]]")
    assert full[0] < zoomed[0] < zoomed[1] < full[1]
    assert canvas(page, "conf_lines", "c.snapshot().view.y") is None  # a flat drag zooms steps only

    _two_refreshes(page)

    assert canvas(page, "conf_lines", "c.snapshot().view.x") == pytest.approx(zoomed)
    names = open_run(runs, "live").class_names
    expected = {names[c]: True for c in tail} | {n: False for i, n in enumerate(names) if i not in tail}
    expected[hidden_name] = False
    assert _shown(page, "conf_lines") == expected
    assert slider.get_attribute("aria-valuetext") == "50"
    assert canvas(page, "conf_bars", "c.snapshot().rows[0].title") == "confidence bank Conf (step 50)"
    # A double click zooms all the way out, and the chart says so.
    page.mouse.dblclick(left + width / 2, y)
    assert canvas(page, "conf_lines", "c.snapshot().view.x") is None


def test_hover_names_the_class_its_value_and_the_step(live, page):
    url, runs = live
    write_run(runs, "still", steps=200, media_every=0)  # finished: nothing moves under the mouse
    bank = open_run(runs, "still").class_vectors("bank")
    page.goto(f"{url}/confidence?run=still")
    wait_canvas(page, "conf_heatmap", "c.xs.length > 10")
    area = canvas(page, "conf_heatmap", "c.area()")
    columns, classes = canvas(page, "conf_heatmap", "c.xs.length"), len(bank.class_names)
    assert columns == len(bank.steps)  # fewer steps than columns: one a step
    text = hover_text(page, "conf_heatmap", area["left"] + 3.5 * area["width"] / columns,
                  area["top"] + 2.5 * area["height"] / classes)
    assert text == f"{bank.class_names[2]}: {js_number(np.float32(bank.values[3, 2]))}, at step {bank.steps[3]}"
    # Bars: the middle of class 2's slot in the first row.
    area = canvas(page, "conf_bars", "c.area()")
    rows = canvas(page, "conf_bars", "c.snapshot().rows")
    text = hover_text(page, "conf_bars", area["left"] + 2.5 * area["width"] / classes, area["top"] + 60)
    assert text == f"{bank.class_names[2]}: {js_number(rows[0]['values'][2])} · {rows[0]['title']}"
    # Pixel shares read in percent, as their axis: the first bar of class 0 is the labels' share.
    area = canvas(page, "conf_freq", "c.area()")
    share = canvas(page, "conf_freq", "c.snapshot().rows")[0]
    text = hover_text(page, "conf_freq", area["left"] + 0.2 * area["width"] / classes, area["top"] + area["height"] - 3)
    assert text == f"{bank.class_names[0]}: {js_number(100 * share['values'][0])} % · {share['title']}"


def _drag(tab, key: str, start: float, end: float) -> None:
    """A flat drag over the plot area of chart ``key``, from ``start`` to ``end`` (shares of its width)."""
    chart = tab.locator(f".st-key-{key} canvas")
    chart.scroll_into_view_if_needed()
    box, area = chart.bounding_box(), canvas(tab, key, "c.area()")
    y = box["y"] + area["top"] + area["height"] / 2
    tab.mouse.move(box["x"] + area["left"] + start * area["width"], y)
    tab.mouse.down()
    tab.mouse.move(box["x"] + area["left"] + end * area["width"], y + 2, steps=4)
    tab.mouse.up()


def test_a_zoom_brings_the_records_of_its_range(live, page):
    url, runs = live
    # 1300 rows of class vectors: the whole run's lines are means of two records, its heatmap of four.
    write_run(runs, "deep", steps=1300, classes_every=1, eval_every=1000, media_every=0)
    bank = open_run(runs, "deep").class_vectors("bank")
    page.goto(f"{url}/confidence?run=deep")
    wait_canvas(page, "conf_heatmap", "c.data.reduced")
    assert canvas(page, "conf_lines", "c.data.reduced") is True
    for key in ("conf_lines", "conf_heatmap"):
        _drag(page, key, 0.4, 0.6)
        wait_canvas(page, key, "c.detail !== null && c.source === c.detail", timeout_s=30)
        low, high = canvas(page, key, "c.view.x")
        shown = canvas(page, key, "Array.from(c.source.xs)")
        # Every record of the range (and one either side), each at its own step.
        expected = [s for s in bank.steps.tolist() if low <= s <= high]
        assert shown[1:-1] == expected and canvas(page, key, "c.source.reduced") is False, key
        values = canvas(page, key, f"Array.from(c.source.values.slice(0, {len(shown)}))")  # class 0's row
        first = bank.steps.tolist().index(shown[0])
        np.testing.assert_array_equal(values, bank.values[first:first + len(shown), 0].astype(np.float32))
    # Zoomed out (double click): the whole run again.
    page.locator(".st-key-conf_lines canvas").dblclick()
    wait_canvas(page, "conf_lines", "c.view.x === null && c.detail === null")


def test_an_upright_drag_zooms_values_and_zoom_and_legend_hold_across_pages(live, page):
    url, runs = live
    write_run(runs, "upright", steps=200, media_every=0)
    page.goto(f"{url}/confidence?run=upright")
    wait_canvas(page, "conf_lines", "c.snapshot().legend.length === 8")
    chart = page.locator(".st-key-conf_lines canvas")
    box, area = chart.bounding_box(), canvas(page, "conf_lines", "c.area()")
    x = box["x"] + area["left"] + area["width"] / 2
    page.mouse.move(x, box["y"] + area["top"] + 0.3 * area["height"])
    page.mouse.down()
    page.mouse.move(x + 1, box["y"] + area["top"] + 0.7 * area["height"], steps=4)
    page.mouse.up()
    view = canvas(page, "conf_lines", "c.snapshot().view")
    assert view["x"] is None and view["y"][0] < view["y"][1]  # values zoomed, steps untouched
    assert len(canvas(page, "conf_lines", "c.snapshot().ticks")) >= 2  # still drawn
    # A legend double click shows that class alone; another shows them all again.
    item = page.locator(".st-key-conf_lines .ael-cv-item").nth(2)
    name = item.inner_text().strip()
    item.dblclick()
    assert [n for n, shown in canvas(page, "conf_lines", "c.snapshot().legend") if shown] == [name]
    # To another page of the dashboard and back: the zoom and the legend are as the user left them.
    page.locator('[data-testid="stSidebarNav"] a', has_text="Training").click()
    page.wait_for_selector(".st-key-training_Losses", timeout=30_000)
    page.locator('[data-testid="stSidebarNav"] a', has_text="Confidence bank").click()
    wait_canvas(page, "conf_lines", "c.snapshot().legend.length === 8")
    assert canvas(page, "conf_lines", "c.snapshot().view") == view
    assert [n for n, shown in canvas(page, "conf_lines", "c.snapshot().legend") if shown] == [name]
    page.locator(".st-key-conf_lines .ael-cv-item").nth(2).dblclick()
    assert all(shown for _, shown in canvas(page, "conf_lines", "c.snapshot().legend"))


def test_a_drag_on_a_one_column_heatmap_leaves_it_whole(live, page):
    url, runs = live
    write_run(runs, "wide-once", steps=150, num_classes=41, eval_every=100, media_every=0)  # evaluated at 100
    page.goto(f"{url}/confidence?run=wide-once")
    wait_canvas(page, "conf_iou", "c.xs.length === 1")
    _drag(page, "conf_iou", 0.3, 0.7)
    assert canvas(page, "conf_iou", "c.snapshot().view.x") is None
    assert canvas(page, "conf_iou", "c.area().width") > 100


def test_a_narrow_window_puts_the_legends_under_their_charts(live, page):
    url, runs = live
    write_run(runs, "narrow", steps=100, media_every=0)
    page.set_viewport_size({"width": 900, "height": 2400})
    try:
        page.goto(f"{url}/confidence?run=narrow")
        wait_canvas(page, "conf_freq", "c.snapshot().legend.length === 2")
        for key in ("conf_freq", "conf_lines"):
            assert page.locator(f".st-key-{key} .ael-cv").evaluate("r => r.classList.contains('ael-cv-under')"), key
        # The frequency chart, in half the page's width, keeps a plot area for its eight classes.
        assert canvas(page, "conf_freq", "c.area().width") > 120
    finally:
        page.set_viewport_size({"width": 1400, "height": 2400})


def test_a_legend_choice_on_the_frequency_chart_holds_as_its_step_moves_on(live, page):
    url, _ = live
    page.goto(f"{url}/confidence?run=live")
    wait_canvas(page, "conf_freq", "c.snapshot().legend.length === 2")
    before = canvas(page, "conf_freq", "c.snapshot().legend[0][0]")
    page.locator(".st-key-conf_freq .ael-cv-item").first.click()
    # Following the latest step: the entry's words name a later step, the entry stays hidden.
    wait_canvas(page, "conf_freq", f"c.snapshot().legend[0][0] !== {before!r}")
    legend = canvas(page, "conf_freq", "c.snapshot().legend")
    assert legend[0][0].startswith("labels (step ") and legend[0][1] is False and legend[1][1] is True


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
    wait_canvas(page, "conf_freq", "c.snapshot().legend.length === 2 && c.snapshot().rows[0].title.includes('(step 30)')")
    groups = canvas(page, "conf_freq", "c.snapshot().rows")
    assert [g["title"] for g in groups] == ["labels (step 30)", "pseudo-labels (step 30)"]
    assert groups[1]["values"] == list(open_run(runs, "never").class_vectors("freq_pseudo").values[-1])
    # Both zero shares drawn as stubs labelled as never predicted, none for the labels.
    assert canvas(page, "conf_freq", "c.zeros") == [[6, "pseudo-labels (step 30)", ZERO_LABEL],
                                                    [7, "pseudo-labels (step 30)", ZERO_LABEL]]
    data = canvas(page, "conf_freq", "({range: c.data.range, stub: c.data.stub})")
    floor = 10 ** data["range"][0]
    assert floor < data["stub"] < 0.05  # drawn, below every real bar
    # A decade below the smallest share (5 %): the axis starts at 0.1 %, ticks at each decade.
    assert floor == pytest.approx(0.001)
    assert canvas(page, "conf_freq", "c.snapshot().ticks") == ["0.1 %", "1 %", "10 %", "100 %"]

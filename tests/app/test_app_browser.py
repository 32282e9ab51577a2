"""The dashboard in a real browser: served by `ael dashboard` as a user runs it, driven by chromium.

Pages load with their charts and images, and records appended to a live run by a writer in the
test show up on the open page within seconds, without a reload. Screenshots of every page go to
``test-artifacts/dashboard/``. Skipped without /usr/bin/chromium unless AEL_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from runs_factory import append_step, write_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    if os.environ.get("AEL_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"AEL_REQUIRE_BROWSER=1 but {CHROMIUM} is missing "
                           "(apt-get install -y --no-install-recommends chromium)")
    pytest.skip(f"{CHROMIUM} not installed", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dashboard_command(runs: Path, port: int) -> list[str]:
    ael = Path(sys.executable).with_name("ael")
    base = [str(ael)] if ael.exists() else [sys.executable, "-m", "ael.cli"]
    return [*base, "dashboard", "--runs", str(runs), "--port", str(port)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A runs folder (one finished run, one live run with its writer open) served by `ael dashboard`."""
    runs = tmp_path_factory.mktemp("browser") / "runs"
    runs.mkdir()
    write_run(runs, "done", steps=400, eval_every=100, media_every=100)
    writer = write_run(runs, "live", steps=100, finish=False, total_steps=1000, media_every=50)
    port = _free_port()
    log = open(runs.parent / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(_dashboard_command(runs, port), stdout=log, stderr=subprocess.STDOUT,
                              cwd=Path(__file__).resolve().parents[2])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"dashboard did not start: {(runs.parent / 'server.log').read_text()[-2000:]}")
        time.sleep(0.3)
    try:
        yield url, writer
    finally:
        writer.close()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def page(served):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 2200})
        yield tab
        browser.close()


def _settle(tab, *, charts: int = 0, images: int = 0, timeout_s: float = 30) -> None:
    tab.wait_for_selector("h1", timeout=timeout_s * 1000)
    if charts:
        tab.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts}",
                              timeout=timeout_s * 1000)
    if images:
        tab.wait_for_function(
            f"Array.from(document.querySelectorAll('[data-testid=\"stImage\"] img'))"
            f".filter(i => i.complete && i.naturalWidth > 0).length >= {images}", timeout=timeout_s * 1000)


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


def test_live_record_appears_without_reload(served, page):
    url, writer = served
    page.goto(f"{url}/training?run=live")
    _settle(page, charts=3)
    page.wait_for_function("document.body.innerText.includes('99 / 1000')", timeout=20_000)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    rng = np.random.default_rng(7)
    for step in range(100, 180):
        append_step(writer, step, rng, media_every=0)
    writer.heartbeat()
    start = time.monotonic()
    page.wait_for_function("document.body.innerText.includes('179 / 1000')", timeout=15_000)
    seen_after = time.monotonic() - start
    assert navigations == [], "the page reloaded"
    assert seen_after < 15
    page.screenshot(path=str(ARTIFACTS / "training_live.png"), full_page=True)

"""What the dashboard's browser tests share: Debian chromium, a served dashboard, a browser tab.

Import it first thing in a browser test module: without /usr/bin/chromium the module is skipped,
unless AEL_REQUIRE_BROWSER=1 (CI), where a missing browser is an error.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"

if not CHROMIUM.exists():
    if os.environ.get("AEL_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"AEL_REQUIRE_BROWSER=1 but {CHROMIUM} is missing "
                           "(apt-get install -y --no-install-recommends chromium)")
    pytest.skip(f"{CHROMIUM} not installed", allow_module_level=True)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_command(runs: Path, port: int) -> list[str]:
    """``ael dashboard`` as a user runs it (the venv's script, else ``python -m ael.cli``)."""
    ael = Path(sys.executable).with_name("ael")
    base = [str(ael)] if ael.exists() else [sys.executable, "-m", "ael.cli"]
    return [*base, "dashboard", "--runs", str(runs), "--port", str(port)]


@contextlib.contextmanager
def served_dashboard(runs: Path, *, start_timeout_s: float = 60) -> Iterator[str]:
    """Serve ``runs`` with ``ael dashboard`` until the block ends; yields its URL once it answers."""
    port = free_port()
    log_path = runs.parent / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(dashboard_command(runs, port), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"dashboard did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.3)
        try:
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


@contextlib.contextmanager
def browser_tab(*, width: int = 1400, height: int = 2200) -> Iterator:
    """A headless chromium tab (Playwright) of the given viewport, closed when the block ends."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def canvas(tab, key: str, expression: str):
    """``expression`` over ``c``, the canvas chart (``app/ael_app/canvas_chart.py``) of Streamlit key
    ``key`` (its ``snapshot()``, ``data`` as sent, decoded ``xs``), or None before it drew."""
    return tab.evaluate(
        """([key, expression]) => {
            const root = document.querySelector(`.st-key-${key} .ael-cv`);
            const c = root && root.__ael;
            return c && c.data && root.dataset.drawn ? new Function("c", "return " + expression)(c) : null;
        }""", [key, expression])


def wait_canvas(tab, key: str, condition: str, timeout_s: float = 60) -> None:
    """Wait until the canvas chart of key ``key`` drew its latest data and ``condition`` (JS over
    ``c``, as :func:`canvas`) holds."""
    tab.wait_for_function(
        """([key, condition]) => {
            const root = document.querySelector(`.st-key-${key} .ael-cv`);
            const c = root && root.__ael;
            return !!(c && c.data && root.dataset.drawn === c.data.version
                      && new Function("c", "return " + condition)(c));
        }""", arg=[key, condition], timeout=timeout_s * 1000)


def js_number(value: float) -> str:
    """``value`` to 4 significant digits as the chart writes it (JavaScript's ``toPrecision(4)``, trimmed)."""
    return str(float(f"{value:.4g}")).removesuffix(".0")


def hover_text(tab, key: str, x: float, y: float) -> str:
    """The tooltip of the canvas chart ``key`` with the mouse at (x, y) of its canvas."""
    chart = tab.locator(f".st-key-{key} canvas")
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    tab.mouse.move(box["x"] + x, box["y"] + y)
    tip = tab.locator(f".st-key-{key} .ael-cv-tip")
    tip.wait_for(state="visible", timeout=10_000)
    return tip.inner_text()

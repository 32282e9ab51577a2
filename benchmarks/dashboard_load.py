"""Dashboard load benchmark: a long, wide run on the confidence page, four live runs on the comparison page,
and server memory under live refresh.

1. Writes a run with the real :class:`ael.runs.RunWriter`: ``--steps`` (40 000) scalar records,
   per-class vectors for ``--classes`` (150) classes every ``--classes-every`` (10) steps (bank,
   Copy-Paste and CutMix distributions, r_c, pixel frequencies), an evaluation every 2 000 steps.
2. Serves it with ``python -m ael.commands.dashboard`` (what ``ael dashboard`` runs) on a free port.
3. Times, in headless chromium, the confidence page until fully drawn (every chart on the page
   drawn, both heatmaps among them, no spinner), ``--repeats`` (3) times each way (median and
   range), each first open on its own copy of the long run that the server never read:

   - *first open, fresh browser*: request -> drawn, in a new browser context (no cache: the
     Streamlit front end is fetched and compiled; neither this page nor Compare loads plotly.js);
   - *another run opened from the sidebar*: on an open confidence page, a run chosen in the
     sidebar's run picker, click -> every chart drawn for it: how a user opens another run;
   - *loaded again*: the same page requested again (a full page load; the server's reader and
     figures are cached).
4. Writes four more runs (``--compare-steps`` steps, ``--compare-classes`` classes, one comparison
   group: two methods x two seeds) and, while writers append to all four at ``--rate`` steps/s,
   times request -> comparison page with the four selected fully drawn (its five charts drawn, the
   group's two and the chosen runs' three, the per-class panels holding all four runs, and the
   panel's "Last updated" line shown): first (the server reads the runs), again, and in a fresh
   browser (a new context, no cache) ``--repeats`` times.
5. Keeps the confidence page open on the long run, Live on (2 s refresh), while a writer appends
   records at ``--rate`` steps/s, for ``--minutes`` (10); samples the server's RSS every 15 s.

Usage::

    python benchmarks/dashboard_load.py                   # 40k steps x 150 classes, 10 minutes
    python benchmarks/dashboard_load.py --minutes 3

Prints the figures; nothing is written outside a temporary folder.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

from ael.runs import RunWriter

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def class_vectors(step: int, num_classes: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    c = np.arange(num_classes)
    bank = np.clip(1.0 - 0.9 * np.exp(-step / (300.0 * (1 + c / 10))) + 0.01 * rng.standard_normal(num_classes), 0, 1)
    deficit = 1.0 - bank
    freq = 1.0 / (1 + c) ** 1.5
    freq /= freq.sum()
    return {"bank": bank, "copy_paste_prob": np.exp(np.sqrt(deficit)) / np.exp(np.sqrt(deficit)).sum(),
            "cutmix_prob": np.exp(deficit) / np.exp(deficit).sum(), "sampling_ratio": deficit / deficit.max(),
            "freq_labeled": freq, "freq_pseudo": freq * (0.8 + 0.4 * rng.random(num_classes))}


def log_step(writer: RunWriter, step: int, rng: np.random.Generator, classes_every: int) -> None:
    writer.log_scalars(step, {"loss/total": 2 * np.exp(-step / 8000) + 0.1 * rng.random(),
                              "loss/sup": np.exp(-step / 8000), "loss/unsup_labeled": 0.3 * np.exp(-step / 9000),
                              "loss/unsup_mixed": 0.4 * np.exp(-step / 9000), "lr": 0.01 * (1 - step / 50_000) ** 0.9,
                              "throughput_img_s": 40 + rng.random()})
    if step % classes_every == 0:
        writer.log_classes(step, class_vectors(step, writer.num_classes, rng))
    if step % 2000 == 0 and step:
        iou = np.clip(0.2 + 0.6 * (1 - np.exp(-step / 10_000)) - 0.002 * np.arange(writer.num_classes), 0, 1)
        writer.log_eval(step, miou=float(iou.mean()), iou=iou, model="teacher")


def write_run(runs: Path, steps: int, num_classes: int, classes_every: int, *, run_id: str = "long-wide",
              seed: int = 0, method: str | None = None, group: str | None = None) -> RunWriter:
    rng = np.random.default_rng(seed)
    names = [f"class_{i:03d}" for i in range(num_classes)]
    palette = np.random.default_rng(0).integers(0, 256, size=(num_classes, 3))
    writer = RunWriter(runs, run_id, class_names=names, palette=palette, dataset="ade20k-like",
                       split="1/16", total_steps=steps + 100_000, heartbeat_s=2.0, method=method, group=group)
    for step in range(steps):
        log_step(writer, step, rng, classes_every)
    writer.heartbeat()
    return writer


#: The comparison page's runs: one ``ael compare`` group, two methods x two seeds.
COMPARE_RUNS = (("cmp-ael-s0", "ael", 0), ("cmp-ael-s1", "ael", 1), ("cmp-sup-s0", "supervised", 0),
                ("cmp-sup-s1", "supervised", 1))


class Appender:
    """Appends records to runs at ``rate`` steps/s each, in a thread, until stopped (a live training)."""

    def __init__(self, writers: list[RunWriter], start: int, rate: float, classes_every: int) -> None:
        self.writers, self.step, self.rate, self.classes_every = writers, start, rate, classes_every
        self.stop = threading.Event()
        self.rng = np.random.default_rng(1)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for writer in self.writers:
                log_step(writer, self.step, self.rng, self.classes_every)
            self.step += 1
            self.stop.wait(1.0 / self.rate)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the dashboard server exited")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("the dashboard server did not come up")


def rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return (proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))) / 2**20


#: A plotly chart counts as drawn once plotly has drawn it *visibly*: Streamlit's chart element first
#: plots every figure hidden (``visibility: hidden``, no width yet), then again at its container's width.
VISIBLE = ("(c => { const gd = c.querySelector('.js-plotly-plot'); return !!gd && !!gd.querySelector('.main-svg')"
           " && getComputedStyle(gd).visibility !== 'hidden'; })")
#: The confidence page of the long run draws five charts (bank lines, bank heatmap, the vectors at
#: one step, the IoU heatmap, pixel frequencies), on canvas (``app/ael_app/canvas_chart.py``): each
#: chart marks the version of the data it drew, and counts once it drew the data it holds.
CONFIDENCE_CHARTS = 5
CANVAS_CHARTS = "[...document.querySelectorAll('.ael-cv')]"
CANVAS_CURRENT = "(r => !!r.__ael && !!r.__ael.data && r.dataset.drawn === r.__ael.data.version)"
DRAWN = (f"(() => {{ const charts = {CANVAS_CHARTS};"
         f" return charts.length >= {CONFIDENCE_CHARTS} && charts.every({CANVAS_CURRENT})"
         " && charts.filter(r => r.__ael.data.kind === 'heatmap').length >= 2"
         " && document.querySelectorAll('[data-testid=\"stSpinner\"]').length == 0; })()")
#: The same five views as plotly figures (``dashboard_floor.py``'s plotly pages): all drawn and
#: visible, both heatmaps.
PLOTLY_DRAWN = ("(() => { const charts = [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')];"
                f" return charts.length >= {CONFIDENCE_CHARTS} && charts.every({VISIBLE})"
                " && charts.filter(c => c.querySelector('.hm, .heatmaplayer image')).length >= 2"
                " && document.querySelectorAll('[data-testid=\"stSpinner\"]').length == 0; })()")


class Work:
    """Server CPU seconds spent while a page opens, beside its wall time. On a machine shared with
    trainings, wall time mostly measures the load; CPU seconds do not. (The browser's DevTools
    ``TaskDuration`` was tried too: it is wall time of tasks, so the load inflates it as well, and a
    navigation restarts it, so it is not reported.)"""

    def __init__(self, server_pid: int) -> None:
        self.server = psutil.Process(server_pid)

    def measure(self, load) -> tuple[float, float]:
        """``load()`` (which returns its wall time): (wall s, server CPU s)."""
        before = sum(self.server.cpu_times()[:2])
        wall = load()
        return wall, sum(self.server.cpu_times()[:2]) - before


def summary(samples: list[tuple[float, float]]) -> str:
    """Wall times as "median (min-max) s over n [each, in order], server CPU median s"."""
    walls, cpus = sorted(w for w, _ in samples), sorted(c for _, c in samples)
    spread = f" ({walls[0]:.2f}-{walls[-1]:.2f})" if len(walls) > 1 else ""
    in_order = ", ".join(f"{w:.2f}" for w, _ in samples)
    return (f"{float(np.median(walls)):.2f} s{spread} over {len(walls)} [{in_order}], "
            f"server CPU {float(np.median(cpus)):.2f} s")


def time_confidence_page(page, url: str, run_id: str = "long-wide") -> float:
    start = time.perf_counter()
    page.goto(f"{url}/confidence?run={run_id}", wait_until="commit")
    page.wait_for_function(DRAWN, timeout=180_000, polling=50)
    return time.perf_counter() - start


# Every chart of the confidence page drawn for the run ``arg`` (each chart's view starts with its
# run id), none left over from the previous run, no spinner.
DRAWN_FOR = (f"run => {{ const charts = {CANVAS_CHARTS};"
             f" return charts.length >= {CONFIDENCE_CHARTS} && charts.every(r => {CANVAS_CURRENT}(r)"
             " && String(r.__ael.data.view).startsWith(run + '/'))"
             " && document.querySelectorAll('[data-testid=\"stSpinner\"]').length == 0; }")


def pick_run_in_sidebar(page, run_id: str) -> float:
    """On an open page, choose ``run_id`` in the sidebar's run picker (as a user opens another run:
    no page load) and time Enter -> every chart drawn for it."""
    picker = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
    picker.click()
    page.keyboard.type(run_id)
    option = page.get_by_role("option", name=re.compile(rf"^{re.escape(run_id)}\b"))
    option.wait_for(timeout=30_000)
    start = time.perf_counter()
    option.click()
    page.wait_for_function(DRAWN_FOR, arg=run_id, timeout=180_000, polling=50)
    return time.perf_counter() - start


# The comparison page's five charts (the group's mean curves and IoU bars; the chosen runs' mIoU
# curves, per-class panels and final IoU bars) drawn on canvas, the panels holding every run chosen,
# no spinner, and the live panel's "Last updated" line shown.
COMPARE_CHARTS = 5
COMPARE_DRAWN = (f"runs => {{ const charts = {CANVAS_CHARTS};"
                 " const panels = charts.find(r => r.__ael && r.__ael.data && r.__ael.data.view.startsWith('compare/panels/'));"
                 f" return charts.length >= {COMPARE_CHARTS} && charts.every({CANVAS_CURRENT})"
                 " && !!panels && panels.__ael.data.entries.length === runs"
                 " && document.querySelectorAll('.st-key-compare_panel_updated').length == 1"
                 " && document.querySelectorAll('[data-testid=\"stSpinner\"]').length == 0; }")


def time_compare_page(page, url: str, run_ids: list[str]) -> float:
    query = f"run={run_ids[0]}" + "".join(f"&compare={r}" for r in run_ids[1:])
    start = time.perf_counter()
    page.goto(f"{url}/compare?{query}", wait_until="commit")
    page.wait_for_function(COMPARE_DRAWN, arg=len(run_ids), timeout=180_000, polling=50)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--classes", type=int, default=150)
    parser.add_argument("--classes-every", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=10.0, help="live-refresh duration for the memory figure")
    parser.add_argument("--rate", type=float, default=10.0, help="steps appended per second while live")
    parser.add_argument("--compare-steps", type=int, default=20_000, help="steps of each run on the comparison page")
    parser.add_argument("--compare-classes", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=3, help="timed opens of each kind (median and range)")
    parser.add_argument("--screenshot", default=None, help="save the page as it is at the end (PNG)")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        t0 = time.perf_counter()
        writer = write_run(runs, args.steps, args.classes, args.classes_every)
        size = sum(f.stat().st_size for f in (runs / "long-wide").glob("*.jsonl")) / 2**20
        print(f"run written: {args.steps} steps, {args.classes} classes, class vectors every {args.classes_every} "
              f"steps, {size:.1f} MiB of JSON lines in {time.perf_counter() - t0:.1f} s")
        # Copies the server has never read, one per first open.
        fresh_ids = [f"long-wide-fresh-{i}" for i in range(args.repeats)]
        other_ids = [f"long-wide-other-{i}" for i in range(args.repeats)]
        for run_id in fresh_ids + other_ids:
            shutil.copytree(runs / "long-wide", runs / run_id)
        compared = [write_run(runs, args.compare_steps, args.compare_classes, args.classes_every, run_id=run_id,
                              seed=seed, method=method, group="bench") for run_id, method, seed in COMPARE_RUNS]
        print(f"comparison runs written: {len(compared)} x {args.compare_steps} steps, {args.compare_classes} classes")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "ael.commands.dashboard", "--runs", str(runs), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop = threading.Event()
        try:
            started = time.perf_counter()
            wait_healthy(url, server)
            print(f"server up in {time.perf_counter() - started:.1f} s; RSS idle: {rss_mb(server.pid):.0f} MiB")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                work = Work(server.pid)
                viewport = {"width": 1400, "height": 2400}
                fresh = []
                for run_id in fresh_ids:  # a new browser context each time: no cache of any kind
                    context = browser.new_context(viewport=viewport)
                    tab = context.new_page()
                    fresh.append(work.measure(lambda: time_confidence_page(tab, url, run_id)))  # noqa: B023
                    context.close()
                page = browser.new_page(viewport=viewport)
                time_confidence_page(page, url)
                again = [work.measure(lambda: time_confidence_page(page, url)) for _ in range(args.repeats)]
                first = [work.measure(lambda: pick_run_in_sidebar(page, r)) for r in other_ids]  # noqa: B023
                print("confidence page, 40k steps x 150 classes, until fully drawn:")
                print(f"  first open, fresh browser (request ->): {summary(fresh)}")
                print(f"  another run opened from the sidebar, first time (click ->): {summary(first)}")
                print(f"  the page loaded again (request ->): {summary(again)}")

                live = Appender(compared, args.compare_steps, args.rate, args.classes_every)
                try:
                    ids = [run_id for run_id, _, _ in COMPARE_RUNS]
                    cold = [work.measure(lambda: time_compare_page(page, url, ids))]
                    warm = [work.measure(lambda: time_compare_page(page, url, ids)) for _ in range(args.repeats)]
                    fresh_compare = []
                    for _ in range(args.repeats):  # the page as a new visitor opens it: a browser with no cache
                        context = browser.new_context(viewport=viewport)
                        tab = context.new_page()
                        fresh_compare.append(work.measure(lambda: time_compare_page(tab, url, ids)))  # noqa: B023
                        context.close()
                finally:
                    live.close()
                print(f"comparison page, {len(ids)} runs written at {args.rate:g} steps/s each, request -> fully "
                      f"drawn: first open {summary(cold)}; again {summary(warm)}; fresh browser {summary(fresh_compare)}")
                time_confidence_page(page, url)  # back on the long run for the memory figure

                rng = np.random.default_rng(1)

                def append() -> None:
                    step = args.steps
                    while not stop.is_set():
                        log_step(writer, step, rng, args.classes_every)
                        step += 1
                        stop.wait(1.0 / args.rate)

                appender = threading.Thread(target=append, daemon=True)
                appender.start()
                samples = []
                start = time.monotonic()
                end = start + 60 * args.minutes
                while True:
                    now = time.monotonic()
                    samples.append(((now - start) / 60, rss_mb(server.pid)))
                    print(f"  t={samples[-1][0]:5.2f} min  server RSS {samples[-1][1]:7.1f} MiB  "
                          f"run at step {writer._last_step}", flush=True)
                    if now >= end:
                        break
                    time.sleep(min(15.0, max(0.0, end - now)))
                stop.set()
                appender.join()
                time.sleep(3 * 2.0)  # a few refresh periods after the last append
                text = page.inner_text("body")
                shown = [int(m) for m in re.findall(r"Step: (\d+) \(latest\)", text)]
                drawn = page.evaluate("(c => c ? c.xs[c.xs.length - 1] : null)"
                                      "((document.querySelector('.st-key-conf_lines .ael-cv') || {}).__ael)")
                if args.screenshot:
                    page.screenshot(path=args.screenshot)
                browser.close()
            minutes = np.array([m for m, _ in samples])
            rss = np.array([r for _, r in samples])
            half = minutes >= minutes[-1] / 2
            slope = float(np.polyfit(minutes[half], rss[half], 1)[0]) if half.sum() >= 2 else float("nan")
            print(f"live refresh for {args.minutes:g} min at {args.rate:g} steps/s appended: server RSS "
                  f"{rss[0]:.0f} -> {rss[-1]:.0f} MiB (max {rss.max():.0f}); second-half slope {slope:+.2f} MiB/min")
            print(f"at the end the open page shows step {shown[0] if shown else 'none'}, its bank chart's last "
                  f"step is {drawn}; the writer's last step is {writer._last_step}")
        finally:
            stop.set()
            writer.close()
            for other in compared:
                other.close()
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())

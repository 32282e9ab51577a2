"""Watch a run live in a notebook: losses, per-class confidence, mIoU and image samples, in place.

:class:`LiveMonitor` tails a run through :mod:`ael.runs` (only the bytes appended since the last
poll are read) and redraws plotly ``FigureWidget`` s with the dashboard's figure builders
(:mod:`ael.viz.figures`) and the samples with :mod:`ael.viz` overlays. :meth:`LiveMonitor.poll`
does one update (tests and scripts call it directly); :meth:`LiveMonitor.start` polls from a
background thread so the kernel stays free. Given the training process's liveness
(``while_alive``), the thread keeps polling as long as the process lives, whatever an old manifest
says, and polls once more after it ends, so a resumed or finished run is never left showing a
stale status. Every view says when it was last updated and whether it is still live.
"""

from __future__ import annotations

import html
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ael.notebook.common import (
    clock,
    figure_widget,
    placeholder_figure,
    png_bytes,
    readable,
    same_traces,
    sync_figure,
)
from ael.notebook.strips import sample_strip
from ael.runs import Run, RunStoreError, open_run, tail_indices
from ael.runs.sample_text import describe_sample, sample_stream
from ael.runs.schema import MANIFEST_FILE, check_run_id
from ael.viz.figures import class_lines_figure, scalar_lines_figure

if TYPE_CHECKING:
    import ipywidgets

__all__ = ["LiveMonitor", "sample_strip"]

logger = logging.getLogger(__name__)

#: Sample kinds shown, in order: the teacher's pseudo-labels, then the adaptive CutMix.
SAMPLE_KINDS = ("pseudo", "copy_paste", "cutmix")
#: Statuses after which a run writes nothing more (until it is resumed).
ENDED = ("finished", "crashed")
#: What an empty chart says.
_EMPTY = {"losses": "no losses yet", "confidence": "no confidence bank yet (supervised runs keep none)",
          "miou": "no evaluation yet"}


class LiveMonitor:
    """Live figures of one run, updated in place as the trainer writes.

    Args:
        runs_dir: the runs folder.
        run_id: the run (its folder may not exist yet: polls wait for it).
        max_points: points kept per loss curve.
        smoothing: EMA weight of the loss curves in [0, 1) (the raw curves stay, faint); 0: raw only.
        stop_when_ended: without a ``while_alive`` (see :meth:`start`), the background thread
            stops once the run is finished or crashed.

    Attributes:
        losses, confidence, miou: the ``FigureWidget`` s (a message until there is data).
        samples: sample kind -> PNG bytes of the latest sample strip.
        polls, updates: polls done, and how many of them found something new.
        last_updated: wall-clock time of the latest poll (None before the first).
    """

    def __init__(self, runs_dir: str | os.PathLike[str], run_id: str, *, max_points: int = 1500,
                 smoothing: float = 0.6, stop_when_ended: bool = True) -> None:
        self.runs_dir = Path(runs_dir)
        self.run_id = check_run_id(run_id)
        self.max_points = max_points
        self.smoothing = smoothing
        self.stop_when_ended = stop_when_ended
        #: The open run; while :meth:`start` polls, read it between :meth:`stop` and :meth:`start`.
        self.run: Run | None = None
        self.losses = figure_widget(placeholder_figure(_EMPTY["losses"], title="Losses"))
        self.confidence = figure_widget(placeholder_figure(_EMPTY["confidence"], title="Per-class confidence Conf_c"))
        self.miou = figure_widget(placeholder_figure(_EMPTY["miou"], title="mIoU over evaluations"))
        self._drawn: set[str] = set()  # the charts that hold data (not a placeholder)
        self.samples: dict[str, bytes] = {}
        self.sample_steps: dict[str, int] = {}
        #: What each shown sample is, in words (its stream, step and what happened), as HTML.
        self.sample_captions: dict[str, str] = {}
        self.polls = 0
        self.updates = 0
        self.last_error: str | None = None
        self.last_updated: float | None = None
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        # start() and the polling loop's decision to end agree under this lock: a start() that
        # comes while the loop is deciding (a Resume right after a Stop) keeps it going.
        self._start_lock = threading.Lock()
        self._while_alive: Callable[[], bool] | None = None
        self._rearmed = False
        self._exiting = False
        self._ui: dict[str, Any] = {}
        #: Called after every poll (e.g. a launcher panel refreshing its status and buttons).
        self.listeners: list[Callable[[], None]] = []

    # -------------------------------------------------------------------------- polling

    def poll(self) -> bool:
        """Read what the trainer wrote since the last poll and redraw; True when something was new."""
        try:
            return self._poll()
        finally:
            for listener in list(self.listeners):
                listener()

    def _poll(self) -> bool:
        with self._lock:
            self.polls += 1
            self.last_updated = time.time()
            if self.run is None:
                if not (self.runs_dir / self.run_id / MANIFEST_FILE).is_file():
                    self._show_status()
                    return False
                self.run = open_run(self.runs_dir, self.run_id)
                changed = True
            else:
                changed = self.run.poll().any
            if changed:
                self.updates += 1
                self._redraw()
            self._show_status()
            return changed

    def points(self, series: str) -> int:
        """How many steps of a scalar (``loss/total``) or class vector (``bank``) have been read."""
        with self._lock:  # the polling thread may be reading the run
            if self.run is None:
                return 0
            if series in self.run.class_vector_names():
                return len(self.run.class_vectors(series).steps)
            if series in self.run.scalar_names():
                return len(self.run.scalar(series)[0])
            return 0

    def status_text(self) -> str:
        """One line: status, step / total, latest losses and mIoU."""
        with self._lock:
            return self._status_text()

    def _status_text(self) -> str:
        run = self.run
        if run is None:
            return f"{self.run_id}: waiting for the run folder in {self.runs_dir}"
        step, total = self._step(run), run.total_steps
        status = run.status()
        if status == "crashed" and (run.error or {}).get("type") in ("StopRequested", "TrainingStopped"):
            status = "stopped (resumable)"
        text = f"{self.run_id}: {status}, step {'-' if step is None else step}"
        text += f" / {total}" if total else ""
        if "loss/total" in run.scalar_names():
            text += f", loss {float(run.scalar('loss/total')[1][-1]):.4f}"
        evals = run.evals("teacher") or run.evals()
        if evals and math.isfinite(evals[-1].miou):
            text += f", {evals[-1].model} mIoU {100 * evals[-1].miou:.2f} at step {evals[-1].step}"
        if run.error:
            text += f" — ended by {run.error.get('type')}: {run.error.get('message')}"
        return text

    @staticmethod
    def _step(run: Run) -> int | None:
        # The newest step anything recorded: the scalars' (Run.last_step) or the manifest's, which
        # counts the final evaluation (logged at step = iterations) and is what `ael runs` shows.
        steps = [s for s in (run.last_step, run.manifest.get("step")) if isinstance(s, int)]
        return max(steps) if steps else None

    @property
    def last_step(self) -> int | None:
        """The newest step the run recorded (what the status line shows), None before the run exists."""
        with self._lock:
            return None if self.run is None else self._step(self.run)

    def view_text(self) -> str:
        """:meth:`status_text` with when it was last updated and whether the view is still live."""
        with self._lock:
            text = self._status_text()
            updated = self.last_updated
        live = "live" if self.watching else "not live (monitor.start() to follow)"
        return f"{text} · last updated {clock(updated)} · {live}"

    # -------------------------------------------------------------------------- drawing

    def _redraw(self) -> None:
        run = self.run
        assert run is not None
        uirev = run.run_id
        self._draw_losses()
        vectors = run.class_vector_names()
        if "bank" in vectors:
            bank = run.class_vectors("bank")
            highlight = tail_indices(run.class_frequencies())
            self._draw("confidence", readable(class_lines_figure(
                bank.steps, bank.values, bank.class_names, palette=run.palette, highlight=highlight,
                title="Per-class confidence Conf_c (thick: tail classes)", y_title="Conf_c",
                uirevision=f"{uirev}/bank")))
        evals = run.evals()
        if evals:
            series = {}
            for model in sorted({e.model for e in evals}):
                records = run.evals(model)
                series[f"{model} mIoU (%)"] = (np.array([e.step for e in records]),
                                               np.array([100 * e.miou for e in records]))
            self._draw("miou", readable(scalar_lines_figure(
                series, title="mIoU over evaluations", markers=True, mode="mean", y_title="mIoU (%)",
                uirevision=f"{uirev}/miou")))
        for kind in SAMPLE_KINDS:
            records = run.samples(kind)
            if not records or self.sample_steps.get(kind) == records[-1].step:
                continue
            try:
                sample = run.load_sample(records[-1])
            except RunStoreError as err:  # a file not written yet or damaged: try the next poll
                logger.warning("%s", err)
                continue
            record = records[-1]
            self.samples[kind] = png_bytes(sample_strip(sample, run.class_names))
            self.sample_steps[kind] = record.step
            stream = html.escape(sample_stream(kind, record.meta), quote=False)
            said = html.escape(describe_sample(kind, record.meta, run.class_names), quote=False)
            self.sample_captions[kind] = f"<b>{stream}</b> at step {record.step}: {said}"
        self._push_samples()

    def _draw_losses(self) -> None:
        run = self.run
        losses = {n: run.scalar(n) for n in run.scalar_names() if n.startswith("loss")} if run else {}
        if losses:
            self._draw("losses", readable(scalar_lines_figure(
                losses, title="Losses", max_points=self.max_points, smoothing=self.smoothing,
                uirevision=f"{run.run_id}/losses")))

    def set_smoothing(self, smoothing: float) -> None:
        """Redraw the loss curves with EMA weight ``smoothing`` in [0, 1) (0: raw only)."""
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        with self._lock:
            self.smoothing = smoothing
            self._draw_losses()

    def _draw(self, name: str, fig: Any) -> None:
        """Show ``fig`` in chart ``name``: new points in place while its traces stay the same (zoom
        and legend toggles survive), else a new widget swapped into the view. JupyterLab's plotly
        view merges a replaced layout into the old one and can miss a replacement made while it is
        being created; a widget built with its figure is drawn whole."""
        widget = getattr(self, name)
        if name in self._drawn and same_traces(widget, fig):
            sync_figure(widget, fig)
            return
        widget = figure_widget(fig)
        setattr(self, name, widget)
        self._drawn.add(name)
        if name in self._ui:
            self._ui[name].children = (widget,)

    def _show_status(self) -> None:
        if "status" in self._ui:
            self._ui["status"].value = f"<b>{html.escape(self.view_text())}</b>"

    def _push_samples(self) -> None:
        for kind in SAMPLE_KINDS:
            if kind in self._ui and kind in self.samples:
                self._ui[kind].value = self.samples[kind]
                self._ui[f"{kind}_caption"].value = self.sample_captions[kind]

    def widget(self) -> ipywidgets.VBox:
        """The monitor's view: status line, losses, confidence, mIoU and the latest samples."""
        import ipywidgets as w

        if "box" not in self._ui:
            self._ui["status"] = w.HTML()
            # One chart per row: side by side, two default-width plots overflow the notebook's
            # column and the right one is cut (its axis and legend).
            smoothing = w.FloatSlider(value=self.smoothing, min=0.0, max=0.99, step=0.01, continuous_update=False,
                                      description="loss smoothing (EMA)", style={"description_width": "initial"},
                                      layout=w.Layout(width="420px"))
            smoothing.observe(lambda change: self.set_smoothing(change["new"]), names="value")
            self._ui["smoothing"] = smoothing
            rows: list[Any] = [self._ui["status"], smoothing]
            for name in ("losses", "miou", "confidence"):
                # Until it has data a chart is a line of text, not a figure (bare axes from -1 to 4).
                shown = getattr(self, name) if name in self._drawn else w.HTML(f"<i>{_EMPTY[name]}</i>")
                self._ui[name] = w.Box([shown])
                rows.append(self._ui[name])
            for kind in SAMPLE_KINDS:
                self._ui[f"{kind}_caption"] = w.HTML(f"no {kind} sample yet")
                self._ui[kind] = w.Image(format="png", layout=w.Layout(width="auto", max_width="100%"))
                rows += [self._ui[f"{kind}_caption"], self._ui[kind]]
            self._ui["box"] = w.VBox(rows)
            self._show_status()
            self._push_samples()
        return self._ui["box"]

    # -------------------------------------------------------------------------- background

    @property
    def watching(self) -> bool:
        """True while the background thread polls (False once it has decided to end)."""
        return self._thread is not None and self._thread.is_alive() and not self._exiting

    def start(self, interval_s: float = 2.0, *, while_alive: Callable[[], bool] | None = None) -> None:
        """Poll every ``interval_s`` seconds from a background thread (the kernel stays free).

        Args:
            interval_s: seconds between polls.
            while_alive: e.g. the training process's liveness: polling goes on while it returns
                True, whatever the manifest says (a resumed run's manifest still says stopped
                until the new process rewrites it), and ends after one last poll once it returns
                False. None: polling ends once the run is finished or crashed (``stop_when_ended``).
                A call while the thread runs replaces it and keeps the thread going.
        """
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        with self._start_lock:
            self._while_alive = while_alive
            self._rearmed = True
            if self._thread is not None and self._thread.is_alive() and not self._exiting:
                return
            self._halt.clear()
            self._exiting = False
            self._thread = threading.Thread(target=self._watch, args=(interval_s,),
                                            name=f"ael-monitor-{self.run_id}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background polling."""
        self._halt.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None
        self._show_status()

    def _poll_logged(self) -> None:
        try:
            self.poll()
            self.last_error = None
        except Exception as err:  # keep watching: a damaged record must not end the view
            self.last_error = f"{type(err).__name__}: {err}"
            logger.warning("monitor of %s: %s", self.run_id, self.last_error)

    def _should_end(self, process_ended: bool, alive: Callable[[], bool] | None) -> bool:
        if alive is not None:
            return process_ended
        return self.stop_when_ended and self.run is not None and self.run.status() in ENDED

    def _watch(self, interval_s: float) -> None:
        me = threading.current_thread()
        try:
            while not self._halt.is_set():
                started = time.monotonic()
                with self._start_lock:
                    self._rearmed = False
                    alive = self._while_alive
                # Asked before the poll: a process found dead here wrote everything before this poll reads.
                process_ended = alive is not None and not alive()
                self._poll_logged()
                if self._should_end(process_ended, alive):
                    with self._start_lock:
                        if not self._rearmed:  # no start() since this poll began: nothing more to read
                            self._exiting = True
                            return
                self._halt.wait(max(0.0, interval_s - (time.monotonic() - started)))
        finally:
            if self._thread is me:  # not a newer thread's view
                self._show_status()

"""The dashboard's frame: where runs live, the run picker, the live settings and one cached tailer per run.

Pages read runs only through :mod:`ael.runs` (``list_runs``, ``open_run``, ``Run``); a run id
reaches ``open_run`` only if it is one of the ids ``list_runs`` found in the runs folder.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from ael.runs import (
    DamagedRunWarning,
    Run,
    RunStoreError,
    RunSummary,
    SchemaVersionError,
    list_runs,
    open_run,
)

logger = logging.getLogger(__name__)

RUNS_ENV = "AEL_RUNS_DIR"
REFRESH_CHOICES = (1, 2, 5, 10, 30, 60)

# warnings.catch_warnings swaps process-wide state: one reader at a time records them.
_WARNINGS_LOCK = threading.Lock()


def runs_dir_from_args(argv: list[str]) -> Path:
    """The runs folder: ``--runs DIR`` after ``streamlit run app/dashboard.py --``, else
    ``$AEL_RUNS_DIR``, else ``./runs``. Unknown arguments are ignored."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs", default=None)
    args, _ = parser.parse_known_args(argv)
    return Path(args.runs or os.environ.get(RUNS_ENV) or "runs").resolve()


class RunTailer:
    """One open run shared by every session looking at it; polls at most every ``min_interval_s``.

    The reader is not made for concurrent use, so a page holds :attr:`lock` (reentrant) while it
    polls and reads (see :func:`live_panel`); sessions on one run take turns, which costs little
    since drawing data already read is fast. Damaged-line warnings of the reader are kept (the
    last few) to show on the page instead of going to the server log only.
    """

    def __init__(self, runs_dir: Path, run_id: str, min_interval_s: float = 0.5) -> None:
        self.min_interval_s = min_interval_s
        self.notes: deque[str] = deque(maxlen=8)
        self.lock = threading.RLock()
        self.run: Run = self._capture(lambda: open_run(runs_dir, run_id))
        self._polled = time.monotonic()

    def _capture(self, fn: Callable[[], Run]) -> Run:
        with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DamagedRunWarning)
            result = fn()
        for w in caught:
            if issubclass(w.category, DamagedRunWarning):
                self.notes.append(str(w.message))
        return result

    def refresh(self) -> Run:
        """Read what was appended since the last poll (shared by all sessions) and return the run."""
        with self.lock:
            if time.monotonic() - self._polled >= self.min_interval_s:
                self._capture(lambda: (self.run.poll(), self.run)[1])
                self._polled = time.monotonic()
        return self.run


@st.cache_resource(max_entries=16, show_spinner=False)
def _tailer(runs_dir: str, run_id: str) -> RunTailer:
    return RunTailer(Path(runs_dir), run_id)


@st.cache_data(ttl=2.0, max_entries=8, show_spinner=False)
def _summaries(runs_dir: str) -> list[RunSummary]:
    return list_runs(runs_dir)


@dataclass(frozen=True)
class Selection:
    """What the frame's sidebar chose."""

    runs_dir: Path
    summaries: list[RunSummary]
    run_id: str | None
    compare: list[str]
    live: bool
    refresh_s: float
    error: str | None = None

    def summary(self, run_id: str | None = None) -> RunSummary | None:
        wanted = run_id or self.run_id
        return next((s for s in self.summaries if s.run_id == wanted), None)


def _label(summary: RunSummary | None, run_id: str) -> str:
    if summary is None:
        return run_id
    return f"{run_id} ({summary.status})"


def sidebar(runs_dir: Path) -> Selection:
    """Draw the run picker and the live settings in the sidebar; remember them in the session."""
    state = st.session_state
    st.sidebar.caption(f"Runs folder: `{runs_dir}`")
    error = None
    wanted = st.query_params.get("run")
    try:
        summaries = _summaries(str(runs_dir))
        if state.get("run") is None and wanted and wanted not in {s.run_id for s in summaries}:
            # A link to a run newer than the cached listing (seconds old): list again rather than
            # open another run and rewrite the link.
            _summaries.clear()
            summaries = _summaries(str(runs_dir))
    except RunStoreError as err:
        summaries, error = [], str(err)
    ids = [s.run_id for s in summaries]
    by_id = {s.run_id: s for s in summaries}
    if state.get("run") not in ids:
        running = [s.run_id for s in summaries if s.status == "running"]
        state["run"] = wanted if wanted in ids else (running[0] if running else (ids[0] if ids else None))
    if ids:
        run_id = st.sidebar.selectbox("Run", ids, key="run", format_func=lambda i: _label(by_id.get(i), i))
        if "compare" not in state:
            state["compare"] = st.query_params.get_all("compare")
        state["compare"] = [r for r in state["compare"] if r in ids and r != run_id]
        compare = st.sidebar.multiselect("Compare with", [i for i in ids if i != run_id], key="compare",
                                         format_func=lambda i: _label(by_id.get(i), i))
        # The URL names the choice, so a page can be shared or reloaded as it is.
        if run_id and st.query_params.get("run") != run_id:
            st.query_params["run"] = run_id
        if st.query_params.get_all("compare") != list(compare):
            st.query_params["compare"] = list(compare)
    else:
        run_id, compare = None, []
    st.sidebar.divider()
    state.setdefault("live", True)
    state.setdefault("refresh_s", 2)
    live = st.sidebar.toggle("Live", key="live", help="Refresh the page's panel on its own while runs are written")
    refresh_s = st.sidebar.select_slider("Refresh every (s)", REFRESH_CHOICES, key="refresh_s", disabled=not live)
    return Selection(runs_dir, summaries, run_id, list(compare), bool(live), float(refresh_s), error)


def selection() -> Selection:
    """The selection the frame stored for this run of the script."""
    return st.session_state["_ael_selection"]


def open_tailer(sel: Selection, run_id: str | None = None) -> RunTailer | None:
    """The cached tailer of the selected run, or None after drawing why there is none."""
    run_id = run_id or sel.run_id
    if sel.error:
        st.error(f"Cannot list runs: {sel.error}")
        return None
    if run_id is None:
        st.info(f"No runs in `{sel.runs_dir}` yet. Start one with `ael train` (runs appear here on their own).")
        return None
    summary = sel.summary(run_id)
    if summary is None:  # only listed ids are opened
        st.error(f"Run {run_id!r} is not in {sel.runs_dir}.")
        return None
    if summary.status == "unsupported":
        st.error(f"Run `{run_id}` was written with another run-store schema: {summary.error}")
        return None
    try:
        tailer = _tailer(str(sel.runs_dir), run_id)
    except SchemaVersionError as err:
        st.error(f"Run `{run_id}` was written with another run-store schema: {err}")
        return None
    except (RunStoreError, OSError) as err:
        st.error(f"Run `{run_id}` cannot be opened: {err}")
        return None
    if summary.status == "damaged":
        st.warning(f"Run `{run_id}` is damaged: {summary.error}. Showing what can be read.")
    return tailer


def show_notes(tailer: RunTailer) -> None:
    """Damaged-record notes of the reader, folded away."""
    if tailer.notes:
        with st.expander(f"{len(tailer.notes)} note(s) about damaged records", icon=":material/warning:",
                         expanded=False):
            for note in list(tailer.notes):
                st.caption(note)


LIVE_STATUSES = ("running", "stalled")
# How often a page whose runs all ended looks for one of them starting again (a resume).
RESUME_CHECK_S = 5.0


def _is_live(tailers: Sequence[RunTailer]) -> bool:
    return any(t.run.status() in LIVE_STATUSES for t in tailers)


def updated_text(now: float, *, live: bool, every: float | None, tailers: Sequence[RunTailer] | None) -> str:
    """The "Last updated" line of a live view: when it last read the runs, and whether it refreshes."""
    stamp = f"Last updated {time.strftime('%H:%M:%S', time.localtime(now))}"
    if every is not None:
        return f"{stamp} · refreshing every {every:g} s"
    if not live:
        return f"{stamp} · Live is off: turn it on in the sidebar to follow the runs"
    ended = ", ".join(f"{t.run.run_id} {t.run.status()}" for t in tailers or ())
    return f"{stamp} · not refreshing ({ended}); checking every {RESUME_CHECK_S:g} s for a resume"


def live_panel(body: Callable[[], None], *, key: str, tailers: Sequence[RunTailer] | None = None) -> None:
    """Run ``body`` as the page's one fragment; it reruns every ``refresh_s`` while Live is on.

    With ``tailers``, it refreshes only while one of those runs is running (or stalled, which may
    resume); when the last one ends, one full rerun turns the timer off, so a finished run's
    page costs nothing while it stays open. While Live is on, a small watcher then polls the runs
    every :data:`RESUME_CHECK_S` seconds and turns the timer back on when one of them is resumed.
    Every panel ends with its "Last updated" line (in the container keyed ``{key}_updated``).
    """
    sel = selection()
    watching = tailers is None or _is_live(tailers)
    every = sel.refresh_s if sel.live and watching else None

    def panel() -> None:
        with contextlib.ExitStack() as held:
            for tailer in sorted(tailers or (), key=lambda t: t.run.run_id):  # one order: no deadlock
                held.enter_context(tailer.lock)
            body()
        with st.container(key=f"{key}_updated"):
            st.caption(updated_text(time.time(), live=sel.live, every=every, tailers=tailers))
        if every is not None and tailers is not None and not _is_live(tailers):
            st.rerun()

    def watch_resume() -> None:
        # The panel's timer is off: poll the runs here, and rerun the page once one is live again.
        for tailer in tailers or ():
            with tailer.lock:
                tailer.refresh()
        if _is_live(tailers or ()):
            st.rerun()

    st.fragment(panel, run_every=every, key=key)()
    if sel.live and not watching:
        st.fragment(watch_resume, run_every=RESUME_CHECK_S, key=f"{key}_resume")()


@contextlib.contextmanager
def guard(what: str) -> Iterator[None]:
    """Turn an unexpected error while drawing ``what`` into a message on the page (logged in full)."""
    try:
        yield
    except Exception as err:
        logger.exception("dashboard: %s failed", what)
        st.error(f"Could not draw {what}: {type(err).__name__}: {err}")

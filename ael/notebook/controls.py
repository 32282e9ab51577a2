"""Start / Stop / Resume buttons for a :class:`~ael.notebook.launcher.TrainingLauncher`.

The panel wires buttons to the launcher and (re)starts a :class:`~ael.notebook.monitor.LiveMonitor`
whenever training starts, polling for as long as the training process lives, so the figures follow
the run again after a resume. The panel's status is refreshed by the monitor's polls (the last
one after the process ended), so it never keeps saying "running" after a finish.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ael.notebook.common import clock
from ael.notebook.launcher import LauncherError, TrainingLauncher
from ael.notebook.monitor import LiveMonitor

if TYPE_CHECKING:
    import ipywidgets

__all__ = ["LauncherPanel"]

logger = logging.getLogger(__name__)


class LauncherPanel:
    """Buttons and a status line for one launcher; the actions are plain methods too.

    Args:
        launcher: the run's launcher.
        monitor: the live view to (re)start when training starts (optional).
        interval_s: the monitor's polling interval.
        resume_overrides: ``key.sub=value`` changes applied on every resume.
    """

    def __init__(self, launcher: TrainingLauncher, monitor: LiveMonitor | None = None, *, interval_s: float = 2.0,
                 resume_overrides: Sequence[str] = ()) -> None:
        self.launcher = launcher
        self.monitor = monitor
        self.interval_s = interval_s
        self.resume_overrides = list(resume_overrides)
        self.message = ""
        # The launcher state the message was written in: once the state moves on (the resumed
        # process finished), "resumed: process N" is history and is no longer shown beside it.
        self._message_state: str | None = None
        self.last_updated: float | None = None
        self._ui: dict[str, Any] = {}
        if monitor is not None:
            monitor.listeners.append(self.refresh)  # the status and buttons follow the run live

    def _act(self, action: str) -> None:
        try:
            if action == "start":
                self.launcher.start()
            elif action == "resume":
                self.launcher.resume(self.resume_overrides)
            else:
                code = self.launcher.stop()
                self.message = f"stopped (exit {code})"
            if action != "stop":
                self.message = f"{'started' if action == 'start' else 'resumed'}: process {self.launcher.pid}"
                if self.monitor is not None:
                    self.monitor.start(self.interval_s, while_alive=lambda: self.launcher.running)
        except LauncherError as err:
            self.message = str(err)
        self._message_state = self.launcher.state()
        self.refresh()

    def start(self) -> None:
        """Start the run (and the monitor)."""
        self._act("start")

    def stop(self) -> None:
        """Stop the run (it can be resumed from its latest checkpoint)."""
        self._act("stop")

    def resume(self) -> None:
        """Resume the run from its latest checkpoint (and the monitor)."""
        self._act("resume")

    def status_text(self) -> str:
        """``<run id>: <process state>[ — <last action, while still current>] · last updated HH:MM:SS``."""
        state = self.launcher.state()
        text = f"{self.launcher.run_id}: {state}"
        if self.message and state == self._message_state:
            text += f" — {self.message}"
        return f"{text} · last updated {clock(self.last_updated)}"

    def refresh(self) -> None:
        """Update the status line, the buttons and the log from the launcher."""
        self.last_updated = time.time()
        if not self._ui:
            return
        state = self.launcher.state()
        run_id, rest = self.status_text().split(": ", 1)
        self._ui["status"].value = f"<b>{html.escape(run_id)}</b>: {html.escape(rest)}"
        running = state == "running"
        self._ui["start"].disabled = state != "not started"
        self._ui["stop"].disabled = not running
        self._ui["resume"].disabled = running or state == "not started"
        self._ui["log"].value = f"<pre style='font-size:11px'>{html.escape(self.launcher.log_tail(12))}</pre>"

    def widget(self) -> ipywidgets.VBox:
        """The panel: Start, Stop, Resume, Refresh, the status line and the process output."""
        import ipywidgets as w

        if not self._ui:
            self._ui = {
                "start": w.Button(description="Start", icon="play", button_style="success"),
                "stop": w.Button(description="Stop", icon="stop", button_style="danger"),
                "resume": w.Button(description="Resume", icon="repeat", button_style="info"),
                "refresh": w.Button(description="Refresh", icon="refresh"),
                "status": w.HTML(),
                "log": w.HTML(),
            }
            self._ui["start"].on_click(lambda _: self.start())
            self._ui["stop"].on_click(lambda _: self.stop())
            self._ui["resume"].on_click(lambda _: self.resume())
            self._ui["refresh"].on_click(lambda _: self.refresh())
            self._ui["box"] = w.VBox([
                w.HBox([self._ui[k] for k in ("start", "stop", "resume", "refresh")]),
                self._ui["status"],
                w.Accordion(children=[self._ui["log"]], titles=("process output",)),
            ])
            self.refresh()
        return self._ui["box"]

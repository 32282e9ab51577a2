"""Start / Stop / Resume buttons for a :class:`~ael.notebook.launcher.TrainingLauncher`.

The panel wires buttons to the launcher and (re)starts a :class:`~ael.notebook.monitor.LiveMonitor`
whenever training starts, so the figures follow the run again after a resume.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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
                    self.monitor.start(self.interval_s)
        except LauncherError as err:
            self.message = str(err)
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

    def refresh(self) -> None:
        """Update the status line, the buttons and the log from the launcher."""
        if not self._ui:
            return
        state = self.launcher.state()
        self._ui["status"].value = (f"<b>{html.escape(self.launcher.run_id)}</b>: {html.escape(state)}"
                                    + (f" — {html.escape(self.message)}" if self.message else ""))
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

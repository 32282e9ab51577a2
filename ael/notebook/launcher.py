"""Start, stop and resume ``ael train`` in a background process from a notebook.

The kernel stays responsive while the run trains: the trainer runs in its own process (and
session, so interrupting the kernel does not stop it) and writes the run store, which
:class:`~ael.notebook.monitor.LiveMonitor` tails. Stop sends SIGINT; the worker
(:mod:`ael.notebook.worker`) turns it into a recorded stop and exits with
:data:`~ael.notebook.worker.EXIT_STOPPED`; resume runs ``ael train --resume`` on the same folder,
which continues from its latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ael.config import Config, dump_config
from ael.notebook.worker import EXIT_STOPPED
from ael.runs.schema import MANIFEST_FILE, check_run_id, new_run_id

__all__ = ["LauncherError", "TrainingLauncher"]

logger = logging.getLogger(__name__)


class LauncherError(RuntimeError):
    """A launcher action that cannot be done now; the message says why and names the run."""


class TrainingLauncher:
    """One run, trained by a background ``ael train`` process that can be stopped and resumed.

    Args:
        cfg: the resolved config (e.g. :func:`~ael.notebook.common.notebook_config`). Its
            ``run.runs_dir`` is made absolute (relative to ``cwd``) and ``run.name`` fixed.
        run_id: the run folder name (default: ``cfg.run.name``, else a timestamped id).
        cwd: working directory of the process (relative data roots resolve from it);
            default: the current directory.
        log_dir: where the resolved config and the process output go (default: a folder in
            the system temp directory). Not the runs folder: every folder there is a run.
        python: the interpreter (default: this kernel's).

    Raises:
        RunStoreError: an unsafe run id.
    """

    def __init__(self, cfg: Config, *, run_id: str | None = None, cwd: str | os.PathLike[str] | None = None,
                 log_dir: str | os.PathLike[str] | None = None, python: str = sys.executable) -> None:
        self.cwd = Path(cwd or os.getcwd()).resolve()
        runs_dir = Path(cfg.run.runs_dir)
        self.runs_dir = (runs_dir if runs_dir.is_absolute() else self.cwd / runs_dir).resolve()
        self.run_id = check_run_id(run_id or cfg.run.name or new_run_id("notebook"))
        self.cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, runs_dir=str(self.runs_dir),
                                                                    name=self.run_id))
        self.run_dir = self.runs_dir / self.run_id
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.gettempdir()) / "ael-notebook"
        self.log_path = self.log_dir / f"{self.run_id}.log"
        self.config_path = self.log_dir / f"{self.run_id}.yaml"
        self.python = python
        self._process: subprocess.Popen[bytes] | None = None
        self._stopped = False

    @classmethod
    def for_run(cls, run_dir: str | os.PathLike[str], **kwargs: Any) -> TrainingLauncher:
        """A launcher for an existing run folder (to resume it), with the config saved in it.

        Raises:
            RunFolderError: ``run_dir`` is not a run folder.
        """
        from ael.engine.trainer import load_run_config

        run_dir = Path(run_dir).resolve()
        cfg = load_run_config(run_dir)
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, runs_dir=str(run_dir.parent)))
        return cls(cfg, run_id=run_dir.name, **kwargs)

    # -------------------------------------------------------------------------- state

    @property
    def pid(self) -> int | None:
        """The training process id (the latest one started), or None."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """True while the training process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status of the latest process (None: not started or still running)."""
        return None if self._process is None else self._process.poll()

    def state(self) -> str:
        """``not started``, ``running``, ``stopped`` (resumable), ``finished`` or ``failed (exit N)``."""
        if self._process is None:
            return "not started"
        code = self._process.poll()
        if code is None:
            return "running"
        if code == 0:
            return "finished"
        if code == EXIT_STOPPED or (self._stopped and code in (-signal.SIGKILL, 130)):
            return "stopped"
        return f"failed (exit {code})"

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines the process printed (stdout and stderr)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -------------------------------------------------------------------------- actions

    def _spawn(self, args: Sequence[str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as log:
            log.write(f"\n$ ael train {' '.join(args)}\n".encode())
            log.flush()
            # A session of its own: a kernel interrupt (SIGINT to the kernel's group) leaves the
            # run alone, and a forced stop can kill the loader workers with it.
            self._process = subprocess.Popen(
                [self.python, "-m", "ael.notebook.worker", *args], cwd=self.cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._stopped = False
        logger.info("run %s: training process %d started (log: %s)", self.run_id, self._process.pid, self.log_path)

    def start(self) -> None:
        """Start a new run in the background.

        Raises:
            LauncherError: a process is running, or the run folder already exists (resume it).
        """
        if self.running:
            raise LauncherError(f"run {self.run_id!r} is already training (process {self.pid})")
        if self.run_dir.exists():
            raise LauncherError(f"run folder {self.run_dir} already exists; resume it or pick another run id")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        dump_config(self.cfg, self.config_path)
        self._spawn(["--no-progress", "--config", str(self.config_path)])

    def resume(self, overrides: Sequence[str] = ()) -> None:
        """Continue the run from its latest checkpoint in a new background process.

        Args:
            overrides: ``key.sub=value`` changes, e.g. ``["train.iterations=600"]`` to train longer.

        Raises:
            LauncherError: a process is running, or the run folder has no manifest yet.
        """
        if self.running:
            raise LauncherError(f"run {self.run_id!r} is still training (process {self.pid}); stop it first")
        if not (self.run_dir / MANIFEST_FILE).is_file():
            raise LauncherError(f"{self.run_dir}: no run to resume yet (no {MANIFEST_FILE}); start it first")
        self._spawn(["--no-progress", "--resume", str(self.run_dir), *overrides])

    def stop(self, timeout: float = 60.0) -> int | None:
        """Ask the run to stop (SIGINT) and wait for it; kill it after ``timeout`` seconds.

        Returns:
            The exit status (None when no process was started).
        """
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            self._stopped = True
            try:
                process.send_signal(signal.SIGINT)
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("run %s: process %d did not stop within %.0f s; killing it",
                               self.run_id, process.pid, timeout)
                self.kill()
            except ProcessLookupError:
                pass
        return process.wait()

    def kill(self) -> None:
        """SIGKILL the training process and its loader workers (the run is left ``running``/stalled)."""
        process = self._process
        if process is not None and process.poll() is None:
            self._stopped = True
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                process.kill()
            process.wait()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to end; returns its exit status, or None if still running after ``timeout``."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def wait_for_run(self, timeout: float = 120.0, poll_s: float = 0.2) -> bool:
        """Wait until the run folder has its manifest (the trainer has started writing).

        Returns:
            True when it appeared; False when the process ended first or ``timeout`` passed.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.run_dir / MANIFEST_FILE).is_file():
                return True
            if not self.running:
                return (self.run_dir / MANIFEST_FILE).is_file()
            time.sleep(poll_s)
        return False

    def __repr__(self) -> str:
        return f"TrainingLauncher(run_id={self.run_id!r}, state={self.state()!r}, runs_dir={str(self.runs_dir)!r})"

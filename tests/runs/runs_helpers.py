"""Helpers for the run-store tests: constants and writer subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLASS_NAMES = ["road", "car", "person", "sky"]
PALETTE = [[128, 64, 128], [0, 0, 142], [220, 20, 60], [70, 130, 180]]


def spawn_writer(runs_dir: Path, run_id: str, steps: int, sleep_s: float, *extra: str) -> subprocess.Popen:
    """Start tests/runs/_writer_proc.py; its stdout says "ready" once the first step is written."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, str(HERE / "_writer_proc.py"), str(runs_dir), run_id, str(steps), str(sleep_s), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def spawn_fork_server() -> subprocess.Popen:
    """A process that forks a writer per line ``RUNS_DIR RUN_ID STEPS SLEEP_S`` sent to its stdin."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, str(HERE / "_writer_proc.py"), "--fork-server"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    assert line.startswith("ready"), f"writer did not start: {line!r} {proc.stderr.read()}"


def proc_module():
    """The writer process module, for the values it logs."""
    sys.path.insert(0, str(HERE))
    try:
        import _writer_proc
    finally:
        sys.path.remove(str(HERE))
    return _writer_proc


def random_image(rng: np.random.Generator, h: int = 20, w: int = 28) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

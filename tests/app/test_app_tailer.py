"""The shared per-run tailer: sessions on other threads read consistent data while it polls."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
from runs_factory import append_step, write_run

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "app"))

from ael_app.state import RunTailer


def test_readers_under_the_lock_see_whole_records(runs_dir):
    writer = write_run(runs_dir, "live", steps=20, finish=False, classes_every=1)
    tailer = RunTailer(runs_dir, "live", min_interval_s=0.0)
    stop = threading.Event()
    problems: list[str] = []

    def session() -> None:
        while not stop.is_set():
            with tailer.lock:
                run = tailer.refresh()
                bank = run.class_vectors("bank")
                steps, values = run.scalar("loss/total")
                if len(bank.steps) != len(bank.values) or len(steps) != len(values):
                    problems.append(f"{len(bank.steps)} vs {len(bank.values)}")

    threads = [threading.Thread(target=session) for _ in range(3)]
    for t in threads:
        t.start()
    rng = np.random.default_rng(0)
    for step in range(20, 400):
        append_step(writer, step, rng, classes_every=1, media_every=0)
    stop.set()
    for t in threads:
        t.join()
    writer.finish()
    assert problems == []
    run = tailer.refresh()
    assert run.last_step == 399 and len(run.class_vectors("bank").steps) == 400

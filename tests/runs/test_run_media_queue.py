"""The media queue: bounded, drops (and counts) samples when full, never scalars; never blocks."""

from __future__ import annotations

import threading
import time

import numpy as np

import ael.runs.media_queue as writer_module
from ael.runs import open_run


def test_full_queue_drops_samples_counts_them_and_keeps_every_scalar(make_writer, runs_dir, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real_encode = writer_module.encode_part

    def slow_encode(*args, **kwargs):
        entered.set()
        release.wait(30)
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(writer_module, "encode_part", slow_encode)
    writer = make_writer(media_queue=4, heartbeat_s=1000.0)
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    assert writer.log_sample(0, "pseudo", images={"image": image})
    assert entered.wait(10)  # the writer thread holds sample 0; the queue is empty again
    start = time.perf_counter()
    accepted = [writer.log_sample(step, "pseudo", images={"image": image}) for step in range(1, 11)]
    for step in range(200):
        writer.log_scalars(step, {"loss": float(step)})
    elapsed = time.perf_counter() - start
    assert accepted == [True] * 4 + [False] * 6
    assert writer.media_dropped == 6
    assert elapsed < 2.0  # nothing waited on the blocked image writer
    run = open_run(runs_dir, "run1")
    assert run.scalar("loss")[0].tolist() == list(range(200))  # scalars never dropped
    release.set()
    writer.finish()
    run.poll()
    assert [s.step for s in run.samples()] == [0, 1, 2, 3, 4]
    assert run.manifest["media"] == {"written": 5, "dropped": 6, "failed": 0}


def test_a_failing_sample_is_counted_and_the_writer_goes_on(make_writer, runs_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    writer = make_writer()
    monkeypatch.setattr(writer_module, "encode_part", broken)
    writer.log_sample(0, "pseudo", images={"image": np.zeros((8, 8, 3), dtype=np.uint8)})
    writer.flush_media()
    monkeypatch.undo()
    writer.log_sample(1, "pseudo", images={"image": np.zeros((8, 8, 3), dtype=np.uint8)})
    writer.finish()
    run = open_run(runs_dir, "run1")
    assert [s.step for s in run.samples()] == [1]
    assert run.manifest["media"] == {"written": 1, "dropped": 0, "failed": 1}


def test_samples_are_copied_on_the_callers_thread(make_writer, runs_dir, monkeypatch):
    """The trainer may reuse its buffers right after log_sample returns."""
    entered, release = threading.Event(), threading.Event()
    real_encode = writer_module.encode_part

    def slow_encode(*args, **kwargs):
        entered.set()
        release.wait(30)
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(writer_module, "encode_part", slow_encode)
    writer = make_writer()
    label = np.ones((6, 6), dtype=np.uint8)
    writer.log_sample(0, "pseudo", labels={"gt": label})
    label[:] = 3  # mutated while the sample waits to be written
    assert entered.wait(10)
    release.set()
    writer.finish()
    run = open_run(runs_dir, "run1")
    sample = run.load_sample(run.samples()[0])
    assert (sample.labels["gt"] == 1).all()

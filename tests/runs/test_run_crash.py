"""Crash safety: kill -9 at random moments, resume after torn lines, crash marking."""

from __future__ import annotations

import os
import random
import signal
import time

import numpy as np
import pytest
import runs_helpers
from runs_helpers import CLASS_NAMES, spawn_fork_server, spawn_writer, wait_ready

from ael.runs import RunStoreError, RunWriter, open_run
from ael.runs.schema import MEDIA_FILE, SCALARS_FILE


def _check_recovered(run, module) -> int:
    """Every complete record is readable and right; every sample's files exist and decode."""
    assert sum(run.damaged.values()) == 0
    steps, loss = run.scalar("loss")
    n = len(steps)
    # Scalars are written synchronously: no gaps, at most the last line lost.
    assert steps.tolist() == list(range(n))
    assert loss.tolist() == [module.value(s) for s in range(n)]
    assert run.scalar("pad39")[0].tolist() == list(range(n))
    if "bank" in run.class_vector_names():
        series = run.class_vectors("bank")
        assert series.steps.tolist() == list(range(0, 3 * len(series.steps), 3))
        np.testing.assert_allclose(series.values, np.stack([module.vector(s) for s in series.steps]), rtol=1e-6)
    for record in run.samples():
        sample = run.load_sample(record)  # raises if a file is missing or partial
        assert sample.labels["gt"].shape == (24, 24) and sample.images["image"].shape == (24, 24, 3)
        assert record.meta == {"step": record.step}
    for evaluation in run.evals():
        assert evaluation.confusion[0, 0] == evaluation.step
    return n


def test_kill_9_at_random_moments_loses_at_most_the_record_being_written(runs_dir):
    module = runs_helpers.proc_module()
    rng = random.Random(0)
    server = spawn_fork_server()  # forks real writer processes without paying the imports each time
    try:
        for i in range(30):
            run_id = f"kill{i}"
            report = runs_dir.parent / f"{run_id}.done"
            server.stdin.write(f"{runs_dir} {run_id} 100000 0.0 --report {report}\n")
            server.stdin.flush()
            line = server.stdout.readline()
            assert line.startswith("ready "), (line, server.stderr.read() if server.poll() else "")
            pid = int(line.split()[1])
            time.sleep(rng.uniform(0.0, 0.12))
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)
            _check_killed_run(runs_dir, run_id, module, _reported(report))
    finally:
        server.kill()
        server.communicate()


def _wait_gone(pid: int) -> None:
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.002)
    raise AssertionError(f"writer {pid} survived kill -9")


def _reported(path) -> dict[str, list[int]]:
    """The records the killed writer process had completed (``log_*`` returned): stream -> steps."""
    done: dict[str, list[int]] = {"scalars": [], "classes": [], "eval": [], "sample": [], "dropped": []}
    for line in path.read_text().splitlines(keepends=True):
        if line.endswith("\n"):  # the report being written when the kill came is not one
            stream, step = line.split()
            done[stream].append(int(step))
    return done


def _check_killed_run(runs_dir, run_id, module, done: dict[str, list[int]]) -> None:
    run = open_run(runs_dir, run_id)
    # A killed run never says so itself: its heartbeat goes stale.
    assert run.status(now=run.manifest["heartbeat"] + 1.0) == "running"
    assert run.status(now=run.manifest["heartbeat"] + 1000.0) == "stalled"
    n = _check_recovered(run, module)
    reported = done["scalars"]
    assert reported == list(range(len(reported))) and reported, done
    # Every record the writer had returned from survives; at most the one it was writing when the
    # kill came (the next step's scalars, or a record of the last step) is there besides them.
    assert n in (len(reported), len(reported) + 1), (n, reported[-1])
    in_flight = {n - 1}
    bank = run.class_vectors("bank").steps.tolist() if "bank" in run.class_vector_names() else []
    assert set(done["classes"]) <= set(bank) <= set(done["classes"]) | in_flight, (bank, done["classes"], n)
    evals = [e.step for e in run.evals()]
    assert set(done["eval"]) <= set(evals) <= set(done["eval"]) | in_flight, (evals, done["eval"], n)
    assert len(evals) == len(set(evals))
    # Samples are written in the background (best effort): none appears that was not queued.
    samples = [s.step for s in run.samples()]
    assert set(samples) <= set(done["sample"]) | in_flight, (samples, done["sample"], n)


def test_resume_after_kill_drops_torn_lines_and_keeps_one_value_per_step(runs_dir):
    module = runs_helpers.proc_module()
    report = runs_dir.parent / "resumed.done"
    proc = spawn_writer(runs_dir, "resumed", 100000, 0.0, "--report", str(report))
    wait_ready(proc)
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()
    _check_killed_run(runs_dir, "resumed", module, _reported(report))
    path = runs_dir / "resumed" / SCALARS_FILE
    with open(path, "ab") as f:  # make sure a torn line is there, whatever the kill hit
        f.write(b'{"step":999999,"loss":')
    with open(runs_dir / "resumed" / MEDIA_FILE, "ab") as f:
        f.write(b'{"step":5,"kind":"pseu')
    (runs_dir / "resumed" / "media" / "00000005_pseudo_0_gt_s0.png.tmp").write_bytes(b"partial")
    before = open_run(runs_dir, "resumed")
    last = int(before.scalar("loss")[0][-1])
    assert last > 20
    back_to = last - 17  # the checkpoint the trainer resumes from
    # The resumed process logs different values only where its steps repeat: check the latest wins.
    proc = spawn_writer(runs_dir, "resumed", last + 10, 0.0, "--resume", str(back_to))
    assert proc.wait(60) == 0, proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert path.read_bytes().endswith(b"\n") and b"999999" not in path.read_bytes()
    assert not list((runs_dir / "resumed" / "media").glob("*.tmp"))
    run = open_run(runs_dir, "resumed")
    assert run.status() == "finished"
    assert sum(run.damaged.values()) == 0
    steps, loss = run.scalar("loss")
    assert steps.tolist() == list(range(last + 10))
    assert loss.tolist() == [module.value(s) for s in range(last + 10)]
    samples = run.samples()
    # Samples queued but not yet written when the first writer was killed are lost (best effort);
    # the resumed writer's are all there, and no record names a missing file.
    assert [s.step for s in samples if s.step > back_to] == list(range(back_to + 5 - back_to % 5, last + 10, 5))
    assert all(s.meta["step"] == s.step for s in samples)
    assert all(r.files["gt"].endswith("_s1.png") for r in samples if r.step > back_to)
    assert run.manifest["resumes"][0]["step"] == back_to
    assert _check_recovered(run, module) == last + 10


def test_resume_marker_supersedes_later_steps(make_writer, runs_dir):
    writer = make_writer()
    for step in range(10):
        writer.log_scalars(step, {"loss": float(step)})
        writer.log_classes(step, {"bank": np.full(4, step)})
    writer.log_eval(8, miou=0.8, iou=np.zeros(4))
    writer.log_sample(9, "pseudo", images={"image": np.zeros((4, 4, 3), dtype=np.uint8)})
    writer.log_sample(5, "pseudo", images={"image": np.zeros((4, 4, 3), dtype=np.uint8)})
    writer.finish()
    run = open_run(runs_dir, "run1")
    resumed = RunWriter(runs_dir, "run1", class_names=CLASS_NAMES, resume=True, resume_step=5)
    resumed.log_scalars(6, {"loss": 60.0})
    resumed.log_classes(6, {"bank": np.full(4, 60.0)})
    update = run.poll()  # a reader that was open across the resume
    assert run.scalar("loss")[0].tolist() == list(range(7))
    assert run.scalar("loss")[1].tolist() == [0, 1, 2, 3, 4, 5, 60.0]
    assert run.class_vectors("bank").values[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 60.0]
    assert run.evals() == [] and [s.step for s in run.samples()] == [5]
    assert update.manifest_changed and run.status() == "running"
    resumed.finish()
    fresh = open_run(runs_dir, "run1")
    assert fresh.scalar("loss")[1].tolist() == [0, 1, 2, 3, 4, 5, 60.0]


def test_resume_refusals(make_writer, runs_dir):
    make_writer("other", class_names=["a", "b"]).finish()
    with pytest.raises(RunStoreError, match="class names"):
        RunWriter(runs_dir, "other", class_names=["a", "c"], resume=True)
    with pytest.raises(RunStoreError, match="does not exist"):
        RunWriter(runs_dir, "missing", class_names=["a"], resume=True)
    with pytest.raises(RunStoreError, match="already exists"):
        RunWriter(runs_dir, "other", class_names=["a", "b"])


def test_exception_marks_the_run_crashed(runs_dir):
    with pytest.raises(ZeroDivisionError), RunWriter(runs_dir, "bad", class_names=CLASS_NAMES) as writer:
        writer.log_scalars(0, {"loss": 1.0})
        writer.log_sample(0, "pseudo", images={"image": np.zeros((4, 4, 3), dtype=np.uint8)})
        _ = 1 / 0
    run = open_run(runs_dir, "bad")
    assert run.status() == "crashed"
    assert run.error["type"] == "ZeroDivisionError" and "division by zero" in run.error["message"]
    assert "1 / 0" in run.error["traceback"]
    assert len(run.samples()) == 1  # queued samples are still written on the way out
    with pytest.raises(RunStoreError, match="closed"):
        writer.log_scalars(1, {"loss": 1.0})


def test_explicit_crash_and_subprocess_crash(runs_dir):
    writer = RunWriter(runs_dir, "explicit", class_names=CLASS_NAMES)
    writer.crash(MemoryError("out of memory"))
    writer.finish()  # idempotent: the first ending stays
    run = open_run(runs_dir, "explicit")
    assert run.status() == "crashed" and run.error["message"] == "out of memory"
    proc = spawn_writer(runs_dir, "sub", 30, 0.0, "--crash")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "boom" in err
    run = open_run(runs_dir, "sub")
    assert run.status() == "crashed" and run.error["type"] == "RuntimeError"
    assert run.scalar("loss")[0].tolist() == list(range(30))

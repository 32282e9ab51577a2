"""Incremental tailing: new bytes only, torn last lines, replaced files, live writers, many readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
from runs_helpers import REPO, spawn_writer, wait_ready

from ael.runs import open_run
from ael.runs.jsonl import JsonlTail


def test_tail_reads_only_new_complete_lines(tmp_path):
    path = tmp_path / "s.jsonl"
    tail = JsonlTail(path)
    assert tail.poll() == ([], False)  # no file yet
    path.write_bytes(b'{"step":0,"x":1}\n{"step":1,"x":2}\n{"step":2,')
    records, reset = tail.poll()
    assert [r["step"] for r in records] == [0, 1] and not reset
    offset = tail.offset
    assert offset == len(b'{"step":0,"x":1}\n{"step":1,"x":2}\n')
    assert tail.poll() == ([], False)  # the torn line waits
    with open(path, "ab") as f:
        f.write(b'"x":3}\n{"step":3,"x":4}\n')
    records, _ = tail.poll()
    assert [r["x"] for r in records] == [3, 4]
    assert tail.poll() == ([], False)


def test_tail_restarts_on_replaced_or_truncated_file(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"step":0}\n{"step":1}\n')
    tail = JsonlTail(path)
    assert len(tail.poll()[0]) == 2
    tmp = tmp_path / "new"
    tmp.write_bytes(b'{"step":7}\n')
    os.replace(tmp, path)  # new inode
    records, reset = tail.poll()
    assert reset and [r["step"] for r in records] == [7]
    with open(path, "r+b") as f:  # same inode, shrunk
        f.truncate(0)
    path.write_bytes(b"")
    records, reset = tail.poll()
    assert reset and records == []
    path.unlink()
    assert tail.poll() == ([], True)


def test_run_poll_reports_what_is_new(make_writer, runs_dir):
    writer = make_writer(heartbeat_s=1000.0)
    writer.log_scalars(0, {"loss": 1.0})
    run = open_run(runs_dir, "run1")
    assert run.scalar("loss")[1].tolist() == [1.0]
    update = run.poll()
    assert not update.any
    for step in range(1, 4):
        writer.log_scalars(step, {"loss": float(step)})
    writer.log_classes(3, {"bank": np.ones(4)})
    update = run.poll()
    assert update.new == {"scalars": 3, "classes": 1, "evals": 0, "media": 0}
    assert not update.manifest_changed
    steps, values = run.scalar("loss")
    assert steps.tolist() == [0, 1, 2, 3] and values.tolist() == [1.0, 1.0, 2.0, 3.0]
    writer.heartbeat()
    assert run.poll().manifest_changed


def test_replaced_stream_is_reread_from_scratch(make_writer, runs_dir):
    writer = make_writer()
    for step in range(5):
        writer.log_scalars(step, {"loss": float(step)})
    run = open_run(runs_dir, "run1")
    path = runs_dir / "run1" / "scalars.jsonl"
    tmp = path.with_name("x.tmp")
    tmp.write_text(json.dumps({"step": 0, "loss": 9.0}) + "\n")
    os.replace(tmp, path)
    update = run.poll()
    assert update.reset == {"scalars"}
    assert run.scalar("loss")[1].tolist() == [9.0]


_READER = r"""
import json, sys, time
from ael.runs import open_run
runs_dir, run_id = sys.argv[1], sys.argv[2]
deadline = time.time() + 60
run = open_run(runs_dir, run_id)
polls = 1
while time.time() < deadline:
    run.poll(); polls += 1
    if run.status() != "running":
        run.poll()
        break
    time.sleep(0.01)
steps, loss = run.scalar("loss")
print(json.dumps({"steps": steps.tolist(), "loss": loss.tolist(), "polls": polls,
                  "bank": len(run.class_vectors("bank").steps), "samples": len(run.samples())}))
"""


def test_live_writer_with_concurrent_readers(runs_dir):
    """A writer subprocess appends while a reader process and this process tail the run."""
    import runs_helpers

    proc = spawn_writer(runs_dir, "live", 120, 0.004)
    wait_ready(proc)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    other = subprocess.Popen([sys.executable, "-c", _READER, str(runs_dir), "live"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    run_a = open_run(runs_dir, "live")
    run_b = open_run(runs_dir, "live")
    seen_a: list[int] = []
    deadline = time.time() + 60
    while time.time() < deadline:
        update = run_a.poll()
        run_b.poll()
        steps = run_a.scalar("loss")[0]
        # Steps grow without gaps at every poll: a reader never sees a half-written record.
        assert steps.tolist() == list(range(len(steps)))
        if update.new["scalars"]:
            seen_a.append(len(steps))
        if run_a.status() == "finished":
            run_a.poll()
            run_b.poll()
            break
        time.sleep(0.005)
    assert proc.wait(30) == 0, proc.stderr.read()
    out, err = other.communicate(timeout=60)
    assert other.returncode == 0, err
    result = json.loads(out)
    module = runs_helpers.proc_module()
    expected = [module.value(s) for s in range(120)]
    for run in (run_a, run_b):
        steps, loss = run.scalar("loss")
        assert steps.tolist() == list(range(120)) and loss.tolist() == expected
        assert run.class_vectors("bank").steps.tolist() == list(range(0, 120, 3))
        assert [s.step for s in run.samples()] == list(range(0, 120, 5))
    assert result["steps"] == list(range(120)) and result["loss"] == expected
    assert result["bank"] == 40 and result["samples"] == 24
    assert len(seen_a) > 3  # this reader saw the run grow over several polls


def test_one_run_shared_by_threads(make_writer, runs_dir):
    """A cached dashboard tailer is polled from several script threads at once."""
    writer = make_writer(heartbeat_s=1000.0)
    run = open_run(runs_dir, "run1")
    errors: list[BaseException] = []
    stop = threading.Event()

    def poll_forever() -> None:
        try:
            while not stop.is_set():
                run.poll()
                if "loss" in run.scalar_names():
                    steps, values = run.scalar("loss")
                    assert steps.tolist() == list(range(len(steps)))
                    assert values.tolist() == [float(s) for s in steps]
                if "bank" in run.class_vector_names():  # a poll may land between a step's two records
                    bank = run.class_vectors("bank")  # another thread may have polled meanwhile
                    assert bank.values[:, 0].tolist() == [float(s) for s in bank.steps]
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=poll_forever) for _ in range(3)]
    for thread in threads:
        thread.start()
    for step in range(1500):
        writer.log_scalars(step, {"loss": float(step)})
        writer.log_classes(step, {"bank": np.full(4, step)})
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    run.poll()
    assert len(run.scalar("loss")[0]) == 1500
    assert len(run.class_vectors("bank").steps) == 1500

"""Damaged run folders, schema versions, stalled detection and the runs listing."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from ael.commands.runs import cli_main
from ael.runs import (
    DamagedRunWarning,
    RunNotFoundError,
    RunStoreError,
    SchemaVersionError,
    list_runs,
    open_run,
)


def _set_manifest(path, **changes):
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_garbage_lines_in_the_middle_are_counted_and_skipped(make_writer, runs_dir):
    writer = make_writer()
    for step in range(3):
        writer.log_scalars(step, {"loss": float(step)})
    path = runs_dir / "run1" / "scalars.jsonl"
    with open(path, "ab") as f:
        f.write(b"this is not json\n\xff\xfe binary\n[1, 2]\n{\"step\": \"seven\", \"loss\": 1}\n")
    for step in range(3, 5):
        writer.log_scalars(step, {"loss": float(step), "note": float(step)})
    with open(path, "ab") as f:
        f.write(b'{"step": 5, "loss": "high"}\n')
    classes = runs_dir / "run1" / "classes.jsonl"
    writer.log_classes(0, {"bank": np.zeros(4)})
    with open(classes, "ab") as f:
        f.write(b'{"step": 1, "bank": [1, 2]}\n{"step": 2, "bank": [0, 0, 0, "x"]}\n')
    writer.log_classes(3, {"bank": np.ones(4)})
    with pytest.warns(DamagedRunWarning) as caught:
        run = open_run(runs_dir, "run1")
    messages = " | ".join(str(w.message) for w in caught)
    assert "scalars.jsonl: skipped 3 damaged line(s) (line 4, 5, 6)" in messages
    assert "classes.jsonl: skipped 2 record(s)" in messages
    assert run.damaged == {"scalars": 5, "classes": 2, "evals": 0, "media": 0}
    steps, loss = run.scalar("loss")
    assert steps.tolist() == [0, 1, 2, 3, 4] and loss.tolist() == [0, 1, 2, 3, 4]
    assert run.class_vectors("bank").steps.tolist() == [0, 3]
    # Later polls keep counting without re-reporting old lines.
    with open(path, "ab") as f:
        f.write(b"garbage again\n")
    writer.log_scalars(6, {"loss": 6.0})
    with pytest.warns(DamagedRunWarning, match="line 11"):
        run.poll()
    assert run.damaged["scalars"] == 6 and run.scalar("loss")[0].tolist()[-1] == 6


def test_missing_manifest_warns_and_still_reads_records(make_writer, runs_dir):
    writer = make_writer()
    writer.log_scalars(0, {"loss": 2.0})
    writer.log_classes(0, {"bank": np.full(4, 0.5)})
    writer.finish()
    (runs_dir / "run1" / "manifest.json").unlink()
    with pytest.warns(DamagedRunWarning, match=r"manifest.json: missing"):
        run = open_run(runs_dir, "run1")
    assert run.status() == "damaged"
    assert run.scalar("loss")[1].tolist() == [2.0]
    assert run.class_vectors("bank").class_names == ["class_0", "class_1", "class_2", "class_3"]
    [row] = list_runs(runs_dir)
    assert row.status == "damaged" and "manifest.json: missing" in row.error


def test_unreadable_manifest(make_writer, runs_dir):
    make_writer().finish()
    (runs_dir / "run1" / "manifest.json").write_text("{not json")
    with pytest.warns(DamagedRunWarning, match="unreadable"):
        run = open_run(runs_dir, "run1")
    assert run.status() == "damaged"
    assert list_runs(runs_dir)[0].status == "damaged"


def test_schema_version_mismatch(make_writer, runs_dir):
    make_writer().log_scalars(0, {"loss": 1.0})
    _set_manifest(runs_dir / "run1" / "manifest.json", schema_version=99)
    with pytest.raises(SchemaVersionError, match=r"manifest.json: schema version 99, this code reads version 1"):
        open_run(runs_dir, "run1")
    with pytest.warns(DamagedRunWarning, match="schema version 99"):
        run = open_run(runs_dir, "run1", allow_unknown_schema=True)
    assert run.scalar("loss")[1].tolist() == [1.0]
    [row] = list_runs(runs_dir)
    assert row.status == "unsupported" and "schema version 99" in row.error


def test_stalled_detection(make_writer, runs_dir):
    writer = make_writer(stalled_after_s=30.0)
    writer.log_scalars(0, {"loss": 1.0})
    run = open_run(runs_dir, "run1")
    beat = run.manifest["heartbeat"]
    assert run.status(now=beat + 29.0) == "running"
    assert run.status(now=beat + 31.0) == "stalled"
    assert open_run(runs_dir, "run1", stalled_after_s=5.0).status(now=beat + 6.0) == "stalled"
    [row] = list_runs(runs_dir, now=beat + 31.0)
    assert row.status == "stalled"
    writer.finish()
    [row] = list_runs(runs_dir, now=beat + 1e6)
    assert row.status == "finished"  # only a running run can stall


def test_heartbeat_is_rate_limited(make_writer, runs_dir):
    writer = make_writer(heartbeat_s=0.2)
    manifest = runs_dir / "run1" / "manifest.json"
    first = json.loads(manifest.read_text())["heartbeat"]
    writer.log_scalars(0, {"loss": 1.0})
    writer.log_scalars(1, {"loss": 1.0})
    assert json.loads(manifest.read_text())["heartbeat"] == first  # not rewritten per step
    time.sleep(0.25)
    writer.log_scalars(2, {"loss": 1.0})
    data = json.loads(manifest.read_text())
    assert data["heartbeat"] > first and data["step"] == 2
    writer.heartbeat(step=7)
    assert json.loads(manifest.read_text())["step"] == 7


def test_list_runs_and_cli(make_writer, runs_dir, capsys):
    a = make_writer("a-run", dataset="voc", split="1/16", total_steps=200)
    a.log_scalars(10, {"loss": 1.0})
    a.log_eval(100, miou=0.7123, iou=np.full(4, 0.7))
    a.finish()
    time.sleep(0.01)
    b = make_writer("b.run", dataset="cityscapes", total_steps=10)
    b.crash(RuntimeError("CUDA out of memory"))
    (runs_dir / "not-a-run.txt").write_text("x")
    (runs_dir / "empty").mkdir()
    rows = list_runs(runs_dir)
    assert [r.run_id for r in rows] == ["b.run", "a-run", "empty"]  # newest first, unreadable last
    a_row = rows[1]
    assert (a_row.status, a_row.dataset, a_row.split, a_row.step, a_row.total_steps) == (
        "finished", "voc", "1/16", 100, 200)
    assert a_row.progress == pytest.approx(101 / 200)
    assert a_row.best_miou == pytest.approx(0.7123)
    assert rows[0].status == "crashed" and rows[0].error == "RuntimeError: CUDA out of memory"
    assert rows[2].status == "damaged"
    assert cli_main(["--runs", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["RUN", "STATUS", "STARTED"]
    assert any(line.startswith("a-run") and "finished" in line and "71.23" in line and "100/200" in line
               for line in lines)
    assert "b.run: RuntimeError: CUDA out of memory" in out
    assert cli_main(["--runs", str(runs_dir / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(RunNotFoundError):
        list_runs(runs_dir / "nope")


def test_damaged_confusion_matrix_fails_on_access_only(make_writer, runs_dir):
    writer = make_writer()
    writer.log_eval(5, miou=0.5, iou=np.full(4, 0.5), confusion=np.eye(4, dtype=np.int64))
    writer.finish()
    with open(runs_dir / "run1" / "evals.jsonl", "a") as f:
        f.write('{"step": 6, "time": 0, "model": "teacher", "miou": 0.1, "iou": [0, 0, 0, 0], '
                '"confusion": "bm90IHpsaWI="}\n')
    run = open_run(runs_dir, "run1")
    good, bad = run.evals()
    np.testing.assert_array_equal(good.confusion, np.eye(4))
    assert bad.miou == 0.1  # the rest of the record is readable
    with pytest.raises(RunStoreError, match="damaged confusion matrix"):
        _ = bad.confusion

"""The manifest's method, vectors and group: written, read back, listed; runs of schema 1 still open."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from runs_helpers import CLASS_NAMES, PALETTE

from ael.commands.runs import cli_main
from ael.runs import (
    KNOWN_CLASS_VECTORS,
    READABLE_SCHEMA_VERSIONS,
    SCHEMA_VERSION,
    RunStoreError,
    RunWriter,
    list_runs,
    open_run,
    start_run,
)

VECTORS = {"bank": "confidence bank Conf_c", "my_ratio": "a ratio only this method logs"}


def test_method_vectors_and_group_round_trip(make_writer, runs_dir):
    writer = make_writer(method="mean_teacher", vectors=VECTORS, group="voc-1/8")
    writer.log_classes(0, {"bank": np.full(4, 0.5), "my_ratio": np.arange(4.0), "undeclared": np.ones(4)})
    writer.log_eval(0, miou=0.5, iou=np.full(4, 0.5))
    run = open_run(runs_dir, "run1")
    assert SCHEMA_VERSION == 2 and READABLE_SCHEMA_VERSIONS == (1, 2)
    assert run.manifest["schema_version"] == 2
    assert (run.manifest["method"], run.manifest["vectors"], run.manifest["group"]) == ("mean_teacher", VECTORS,
                                                                                        "voc-1/8")
    assert (run.method, run.vectors, run.group) == ("mean_teacher", VECTORS, "voc-1/8")
    assert run.vector_description("my_ratio") == "a ratio only this method logs"
    assert run.vector_description("iou_teacher") == KNOWN_CLASS_VECTORS["iou_teacher"]  # written by the writer
    assert run.vector_description("undeclared") is None
    writer.finish()
    [row] = list_runs(runs_dir)
    assert (row.method, row.group) == ("mean_teacher", "voc-1/8")


def test_without_a_declaration_the_known_descriptions_are_used(make_writer, runs_dir):
    writer = make_writer()
    writer.log_classes(0, {"bank": np.full(4, 0.5), "custom": np.ones(4)})
    run = open_run(runs_dir, "run1")
    assert (run.method, run.group, run.manifest["vectors"]) == (None, None, None)
    assert run.vectors == {"bank": "confidence bank Conf_c"}
    writer.finish()


def test_bad_identity_is_refused_before_anything_is_made(make_writer, runs_dir):
    with pytest.raises(TypeError, match="method must be a string"):
        make_writer("a", method=3)
    with pytest.raises(TypeError, match="description of 'bank' must be a string"):
        make_writer("b", vectors={"bank": 1})
    with pytest.raises(ValueError, match="invalid class vector name 'step'"):
        make_writer("c", vectors={"step": "no"})
    with pytest.raises(TypeError, match="group must be a string"):
        make_writer("d", group=["x"])
    assert not any(runs_dir.iterdir())


def test_start_run_names_or_generates_the_id(runs_dir):
    with start_run(runs_dir, "named", class_names=CLASS_NAMES, method="ael", group="g") as writer:
        assert writer.run_id == "named"
    with pytest.raises(RunStoreError, match="already exists"):
        start_run(runs_dir, "named", class_names=CLASS_NAMES)
    with start_run(runs_dir, preset="voc/aug", class_names=CLASS_NAMES, config={"seed": 1}) as writer:
        assert writer.run_id.endswith("-voc_aug")
    run = open_run(runs_dir, writer.run_id)
    assert run.config == {"seed": 1} and run.method is None


# ------------------------------------------------------------------------------------ schema 1


def _old_manifest(run_id: str, config: dict | None) -> dict:
    """A manifest as the writer of schema 1 wrote it (no method, vectors or group)."""
    return {
        "schema_version": 1, "run_id": run_id, "status": "finished", "error": None, "created": 1000.0,
        "heartbeat": 1010.0, "ended": 1010.0, "step": 20, "total_steps": 20, "dataset": "synthetic",
        "split": "1/4", "class_names": CLASS_NAMES, "palette": PALETTE, "ignore_index": 255,
        "config": config, "host": "old-host", "pid": 1, "git_commit": None, "git_dirty": None,
        "heartbeat_s": 10.0, "stalled_after_s": 120.0,
        "evals": {"teacher": {"best_miou": 0.5, "best_step": 10, "last_miou": 0.25, "last_step": 20}},
        "media": {"written": 0, "dropped": 0, "failed": 0}, "resumes": [], "extra": {},
    }


def _write_old_run(runs_dir, run_id: str, config: dict | None) -> None:
    run_dir = runs_dir / run_id
    (run_dir / "media").mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps(_old_manifest(run_id, config)))
    bank = base64.b64encode(np.array([0.5, 0.25, 1.0, 0.125], "<f4").tobytes()).decode()
    (run_dir / "classes.jsonl").write_text(
        json.dumps({"step": 10, "time": 1005.0, "bank": bank, "freq_labeled": [0.7, 0.26, 0.03, 0.01]}) + "\n")
    (run_dir / "evals.jsonl").write_text(
        json.dumps({"step": 10, "time": 1005.0, "model": "teacher", "miou": 0.5, "iou": [0.5, 0.5, 0.5, 0.5],
                    "confusion": None}) + "\n")
    for name in ("scalars.jsonl", "media.jsonl"):
        (run_dir / name).write_text("")


@pytest.mark.parametrize(("config", "method"), [
    ({"core": {"unsup": {"enabled": False}}}, "supervised"),
    ({"core": {"unsup": {"enabled": True}, "cutmix": {"enabled": True}}}, "ael"),
    ({"core": {}}, "ael"),
    ({"train": {"lr": 0.01}}, None),
    (None, None),
])
def test_an_old_run_opens_and_falls_back(runs_dir, config, method):
    _write_old_run(runs_dir, "old", config)
    run = open_run(runs_dir, "old")
    assert run.status() == "finished" and run.class_names == CLASS_NAMES
    assert (run.method, run.group) == (method, None)
    assert run.vectors == {"bank": KNOWN_CLASS_VECTORS["bank"], "freq_labeled": KNOWN_CLASS_VECTORS["freq_labeled"]}
    assert run.vector_description("bank") == "confidence bank Conf_c"
    assert run.class_vectors("bank").values.tolist() == [[0.5, 0.25, 1.0, 0.125]]
    assert run.best_eval().miou == 0.5
    np.testing.assert_allclose(run.class_frequencies(), [0.7, 0.26, 0.03, 0.01])
    [row] = list_runs(runs_dir)
    assert (row.status, row.method, row.group, row.best_miou, row.last_miou) == ("finished", method, None, 0.5, 0.25)


def test_the_runs_table_shows_method_and_group(runs_dir, make_writer, capsys):
    _write_old_run(runs_dir, "old", {"core": {"unsup": {"enabled": False}}})
    make_writer("new", method="cutmix_seg", group="cmp-a").finish()
    assert cli_main(["--runs", str(runs_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["RUN", "STATUS", "STARTED", "METHOD", "GROUP"]
    assert any(line.startswith("old ") and " supervised " in line and " - " in line for line in lines)
    assert any(line.startswith("new ") and " cutmix_seg " in line and " cmp-a " in line for line in lines)


def test_resuming_an_old_run_upgrades_its_manifest(runs_dir):
    _write_old_run(runs_dir, "old", {"core": {"unsup": {"enabled": False}}})
    with RunWriter(runs_dir, "old", class_names=CLASS_NAMES, resume=True, resume_step=10, group="late") as writer:
        writer.log_eval(20, miou=0.75, iou=np.full(4, 0.75))
    run = open_run(runs_dir, "old")
    assert run.manifest["schema_version"] == SCHEMA_VERSION
    assert (run.method, run.group, run.manifest["vectors"]) == ("supervised", "late", None)
    assert run.manifest["evals"]["teacher"] == {"best_miou": 0.75, "best_step": 20, "last_miou": 0.75,
                                                "last_step": 20}
    assert [e.step for e in run.evals()] == [10, 20]


def test_resume_replaces_the_given_identity_and_keeps_the_rest(make_writer, runs_dir):
    make_writer(method="ael", vectors=VECTORS, group="g1").finish()
    RunWriter(runs_dir, "run1", class_names=CLASS_NAMES, resume=True, method="ael2").finish()
    run = open_run(runs_dir, "run1")
    assert (run.method, run.vectors, run.group) == ("ael2", VECTORS, "g1")

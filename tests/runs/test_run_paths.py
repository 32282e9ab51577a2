"""Run ids and media paths never escape their folders."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ael.runs import RunNotFoundError, RunStoreError, RunWriter, list_runs, open_run


@pytest.mark.parametrize("run_id", ["..", ".", "", "../x", "a/b", "/etc", "a\\b", "run 1", "ü", "a\nb"])
def test_unsafe_run_ids_are_refused(runs_dir, run_id):
    with pytest.raises(RunStoreError, match="invalid run id"):
        open_run(runs_dir, run_id)
    with pytest.raises(RunStoreError, match="invalid run id"):
        RunWriter(runs_dir, run_id, class_names=["a"])


def test_symlink_out_of_the_runs_folder_is_refused(make_writer, runs_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "manifest.json").write_text("{}")
    os.symlink(outside, runs_dir / "escape")
    with pytest.raises(RunStoreError, match="symlink that leads outside"):
        open_run(runs_dir, "escape")
    with pytest.raises(RunStoreError, match="symlink that leads outside"):
        RunWriter(runs_dir, "escape", class_names=["a"], resume=True)
    make_writer("real").finish()
    os.symlink(runs_dir / "real", runs_dir / "alias")  # a link inside the folder is fine
    assert open_run(runs_dir, "alias").status() == "finished"
    assert "escape" not in [r.run_id for r in list_runs(runs_dir)]


def test_missing_run(runs_dir):
    with pytest.raises(RunNotFoundError, match="no run 'ghost'"):
        open_run(runs_dir, "ghost")


@pytest.mark.parametrize("bad", ["../manifest.json", "media/../../secret", "/etc/passwd", "media/a/b.png",
                                 "media/..", "manifest.json", 5])
def test_media_paths_stay_inside_the_run(make_writer, runs_dir, tmp_path, bad):
    (tmp_path / "secret").write_text("x")
    writer = make_writer()
    writer.finish()
    record = {"step": 1, "time": 0.0, "kind": "pseudo", "index": 0, "files": {"gt": bad},
              "parts": {"gt": "label"}, "meta": {}}
    with open(runs_dir / "run1" / "media.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    run = open_run(runs_dir, "run1")
    [sample] = run.samples()
    with pytest.raises(RunStoreError, match="media path"):
        run.load_sample(sample)


def test_media_symlink_out_is_refused(make_writer, runs_dir, tmp_path):
    writer = make_writer()
    writer.log_sample(0, "pseudo", labels={"gt": np.zeros((4, 4), dtype=np.uint8)})
    writer.finish()
    run = open_run(runs_dir, "run1")
    [sample] = run.samples()
    target = runs_dir / "run1" / sample.files["gt"]
    target.unlink()
    (tmp_path / "elsewhere.png").write_bytes(b"x")
    os.symlink(tmp_path / "elsewhere.png", target)
    with pytest.raises(RunStoreError, match="leads outside"):
        run.load_sample(sample)


def test_missing_media_file_is_a_clear_error(make_writer, runs_dir):
    writer = make_writer()
    writer.log_sample(3, "pseudo", labels={"gt": np.zeros((4, 4), dtype=np.uint8)})
    writer.finish()
    run = open_run(runs_dir, "run1")
    [sample] = run.samples()
    (runs_dir / "run1" / sample.files["gt"]).unlink()
    with pytest.raises(RunStoreError, match="missing \\(named by 'pseudo' at step 3\\)"):
        run.load_sample(sample)

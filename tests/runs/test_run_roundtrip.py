"""Round trips of every record type through RunWriter and the reader."""

from __future__ import annotations

import base64
import json
import math
import zlib

import numpy as np
import pytest
import torch
from runs_helpers import CLASS_NAMES, PALETTE

from ael.runs import list_runs, open_run
from ael.runs.schema import SCHEMA_VERSION


def test_manifest_identity_and_status(make_writer, runs_dir):
    writer = make_writer(config={"train": {"lr": 0.01}}, dataset="cityscapes", split="1/8 seed 0",
                         total_steps=50, ignore_index=255, extra={"world_size": 1})
    writer.log_scalars(3, {"loss": 1.5})
    run = open_run(runs_dir, "run1")
    m = run.manifest
    assert m["schema_version"] == SCHEMA_VERSION
    assert m["run_id"] == "run1"
    assert run.status() == "running"
    assert run.class_names == CLASS_NAMES
    np.testing.assert_array_equal(run.palette, np.array(PALETTE, dtype=np.uint8))
    assert run.ignore_index == 255
    assert run.config == {"train": {"lr": 0.01}}
    assert (m["dataset"], m["split"], m["total_steps"]) == ("cityscapes", "1/8 seed 0", 50)
    assert m["host"] and m["pid"] > 0 and "git_commit" in m
    assert m["extra"] == {"world_size": 1}
    writer.finish()
    run.poll()
    assert run.status() == "finished"
    assert run.manifest["step"] == 3 and run.manifest["ended"] >= run.manifest["created"]
    assert (runs_dir / "run1" / "checkpoints").is_dir()


def test_scalars_round_trip_merge_and_latest(make_writer, runs_dir):
    writer = make_writer()
    for step in range(10):
        writer.log_scalars(step, {"loss/sup": 1.0 / (step + 1), "lr": np.float32(0.5), "it": step})
    writer.log_scalars(9, {"throughput": 12.5})  # a second call at one step merges
    writer.log_scalars(4, {"lr": 0.25})  # a later line for a step wins
    writer.log_scalars(10, {"loss/sup": math.nan, "mem": torch.tensor(3.0)})
    writer.log_scalars(11, {"mem": torch.tensor([4.0])})
    run = open_run(runs_dir, "run1")
    assert run.scalar_names() == ["it", "loss/sup", "lr", "mem", "throughput"]
    steps, loss = run.scalar("loss/sup")
    np.testing.assert_array_equal(steps, np.arange(11))
    assert loss[:10].tolist() == [1.0 / (s + 1) for s in range(10)]  # exact: full float repr
    assert math.isnan(loss[10])
    steps, lr = run.scalar("lr")
    assert lr.tolist() == [0.5] * 4 + [0.25] + [0.5] * 5
    assert run.scalar("throughput")[0].tolist() == [9]
    assert run.scalar("mem")[1].tolist() == [3.0, 4.0]
    frame = run.scalars()
    assert frame.index.name == "step" and list(frame.index) == list(range(12))
    assert frame.loc[9, "throughput"] == 12.5 and math.isnan(frame.loc[8, "throughput"])
    assert "time" in frame.columns and frame["time"].notna().all()
    assert run.last_step == 11


def test_class_vectors_round_trip(make_writer, runs_dir):
    writer = make_writer()
    rng = np.random.default_rng(0)
    bank = rng.random((5, 4))
    for i in range(5):
        vectors = {"bank": bank[i], "cutmix_prob": torch.from_numpy(bank[i] / bank[i].sum())}
        writer.log_classes(10 * i, vectors)
    writer.log_classes(50, {"bank": [0.0, math.nan, math.inf, -1e-30]})
    run = open_run(runs_dir, "run1")
    series = run.class_vectors("bank")
    assert series.class_names == CLASS_NAMES
    np.testing.assert_array_equal(series.steps, [0, 10, 20, 30, 40, 50])
    assert series.values.shape == (6, 4)
    np.testing.assert_array_equal(series.values[:5], bank.astype(np.float32))  # stored as float32
    assert series.values[5, 0] == 0.0 and math.isnan(series.values[5, 1])
    assert series.values[5, 2] == math.inf and series.values[5, 3] == np.float32(-1e-30)
    frame = series.frame()
    assert list(frame.columns) == CLASS_NAMES and frame.index.name == "step"
    assert frame.loc[20, "car"] == np.float32(bank[2, 1])
    probs = run.class_vectors("cutmix_prob").values
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_evals_round_trip_and_manifest_summary(make_writer, runs_dir):
    writer = make_writer()
    iou = np.array([0.9, 0.5, math.nan, 0.25])
    confusion = np.arange(16).reshape(4, 4)
    writer.log_eval(100, miou=0.55, iou=iou, confusion=confusion, model="teacher",
                    extra={"pixel_acc": 0.8})
    writer.log_eval(100, miou=0.4, iou=iou / 2, model="student")
    writer.log_eval(200, miou=0.5, iou=iou, confusion=torch.from_numpy(confusion.astype(np.float64)))
    run = open_run(runs_dir, "run1")
    teacher = run.evals("teacher")
    assert [e.step for e in teacher] == [100, 200]
    assert teacher[0].miou == 0.55 and teacher[0].extra == {"pixel_acc": 0.8}
    np.testing.assert_array_equal(teacher[0].iou, iou)
    np.testing.assert_array_equal(teacher[0].confusion, confusion)
    assert teacher[0].confusion.dtype == np.int64
    student = run.evals("student")
    assert len(student) == 1 and student[0].confusion is None
    assert [(e.step, e.model) for e in run.evals()] == [(100, "student"), (100, "teacher"), (200, "teacher")]
    frame = run.evals_frame()
    assert list(frame["miou"]) == [0.4, 0.55, 0.5]
    # The per-class IoU of each evaluation is also a class vector.
    series = run.class_vectors("iou_teacher")
    np.testing.assert_array_equal(series.steps, [100, 200])
    np.testing.assert_array_equal(series.values[1], iou.astype(np.float32))
    summary = run.manifest["evals"]["teacher"]
    assert summary == {"best_miou": 0.55, "best_step": 100, "last_miou": 0.5, "last_step": 200}
    [row] = list_runs(runs_dir)
    assert (row.best_miou, row.last_miou) == (0.55, 0.5)


def test_samples_round_trip(make_writer, runs_dir):
    writer = make_writer()
    rng = np.random.default_rng(1)
    image = np.zeros((32, 40, 3), dtype=np.uint8)
    image[:, :20] = (200, 30, 60)  # flat areas: JPEG keeps them close
    label = rng.integers(0, 4, (32, 40))
    label[:3, :3] = 255  # ignore stays as is
    confidence = rng.random((32, 40)).astype(np.float32)
    image_float = rng.random((32, 40, 3))
    assert writer.log_sample(
        100, "pseudo", images={"image": image, "image_b": torch.from_numpy(image_float)},
        labels={"gt": label, "pseudo": torch.from_numpy(label)}, maps={"confidence": confidence},
        meta={"box": np.array([1, 2, 30, 33]), "class": np.int64(3), "pasted_classes": (1, 2)},
    )
    assert writer.log_sample(100, "pseudo", images={"image": image}, index=1)
    assert writer.log_sample(200, "cutmix", images={"mixed": image})
    writer.flush_media()
    run = open_run(runs_dir, "run1")
    assert run.sample_kinds() == ["cutmix", "pseudo"]
    records = run.samples("pseudo", step=100)
    assert [(r.step, r.index) for r in records] == [(100, 0), (100, 1)]
    record = records[0]
    assert record.meta == {"box": [1, 2, 30, 33], "class": 3, "pasted_classes": [1, 2]}
    assert record.parts == {"image": "rgb", "image_b": "rgb", "gt": "label", "pseudo": "label",
                            "confidence": "map"}
    sample = run.load_sample(record)
    assert sample.images["image"].shape == (32, 40, 3) and sample.images["image"].dtype == np.uint8
    error = np.abs(sample.images["image"].astype(int) - image)
    assert error.mean() < 2 and error[:, :16].max() <= 3 and error[:, 24:].max() <= 3  # lossy at edges
    assert np.abs(sample.images["image_b"].astype(int) - np.round(image_float * 255)).mean() < 20
    np.testing.assert_array_equal(sample.labels["gt"], label)
    np.testing.assert_array_equal(sample.labels["pseudo"], label)
    assert np.abs(sample.maps["confidence"] - confidence).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_array_equal(sample.palette, np.array(PALETTE, dtype=np.uint8))
    # Label maps are palette PNGs: the indices display in the class colours.
    from PIL import Image

    with Image.open(runs_dir / "run1" / record.files["gt"]) as png:
        assert png.mode == "P"
        assert png.getpalette()[:12] == [v for rgb in PALETTE for v in rgb]
    only = run.load_sample(record, parts=["gt"])
    assert list(only.labels) == ["gt"] and not only.images
    assert [r.step for r in run.samples()] == [100, 100, 200]


def test_bad_inputs_name_the_culprit(make_writer):
    writer = make_writer()
    with pytest.raises(ValueError, match=r"class vector 'bank' at step 3: expected shape \(4,\)"):
        writer.log_classes(3, {"bank": np.zeros(5)})
    with pytest.raises(ValueError, match="invalid scalar name 'step'"):
        writer.log_scalars(1, {"step": 1.0})
    with pytest.raises(ValueError, match="scalar 'x' at step 1: expected one number"):
        writer.log_scalars(1, {"x": np.zeros(3)})
    with pytest.raises(TypeError, match="step must be an int"):
        writer.log_scalars(1.5, {"x": 1.0})
    with pytest.raises(ValueError, match="step must be >= 0"):
        writer.log_scalars(-1, {"x": 1.0})
    with pytest.raises(ValueError, match="part 'gt': a label part must be"):
        writer.log_sample(1, "pseudo", labels={"gt": np.zeros((4, 4, 3), dtype=np.int64)})
    with pytest.raises(ValueError, match="label indices must lie in"):
        writer.log_sample(1, "pseudo", labels={"gt": np.full((4, 4), 300)})
    with pytest.raises(ValueError, match="invalid sample kind name"):
        writer.log_sample(1, "../x", images={"a": np.zeros((4, 4, 3), dtype=np.uint8)})
    with pytest.raises(ValueError, match="no images, labels or maps"):
        writer.log_sample(1, "pseudo")
    with pytest.raises(TypeError, match="meta"):
        writer.log_sample(1, "pseudo", images={"a": np.zeros((4, 4, 3), dtype=np.uint8)}, meta={"x": object()})
    with pytest.raises(ValueError, match=r"confusion must be \(4, 4\)"):
        writer.log_eval(1, miou=0.5, iou=np.zeros(4), confusion=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"palette must be \(C, 3\) integers in \[0, 255\]"):
        make_writer("badpalette", palette=[[0, 0, 300]])
    with pytest.raises(TypeError, match="config"):
        make_writer("badconfig", config={"x": object()})
    assert not (writer.run_dir.parent / "badconfig").exists()  # refused before anything was made
    # Nothing of the refused calls reached the files.
    writer.finish()
    lines = (writer.run_dir / "scalars.jsonl").read_text().splitlines()
    assert lines == []
    assert writer.media_written == 0


@pytest.mark.gpu
def test_cuda_tensors_are_refused(make_writer):
    writer = make_writer()
    with pytest.raises(TypeError, match="scalar 'loss' at step 0: got a tensor on cuda"):
        writer.log_scalars(0, {"loss": torch.ones((), device="cuda")})


def test_lines_are_plain_json(make_writer, runs_dir):
    writer = make_writer()
    writer.log_scalars(0, {"loss": 0.5})
    writer.log_classes(0, {"bank": np.array([0.5, 0.25, 1.0, 0.125])})
    writer.log_eval(0, miou=0.5, iou=np.array([0.5, 0.25, 1.0, 0.125]), confusion=np.arange(16).reshape(4, 4))
    writer.finish()
    assert json.loads((runs_dir / "run1" / "scalars.jsonl").read_text())["loss"] == 0.5
    line = (runs_dir / "run1" / "classes.jsonl").read_text().splitlines()[0]
    raw = base64.b64decode(json.loads(line)["bank"])  # big arrays: base64 of little-endian float32
    assert np.frombuffer(raw, "<f4").tolist() == [0.5, 0.25, 1.0, 0.125]
    evaluation = json.loads((runs_dir / "run1" / "evals.jsonl").read_text())
    assert evaluation["iou"] == [0.5, 0.25, 1.0, 0.125]
    raw = zlib.decompress(base64.b64decode(evaluation["confusion"]))
    assert np.frombuffer(raw, "<i8").tolist() == list(range(16))


def test_reader_accepts_plain_number_lists(runs_dir, make_writer):
    make_writer().finish()
    with open(runs_dir / "run1" / "classes.jsonl", "a") as f:
        f.write('{"step": 2, "time": 0, "bank": [0.5, 1, NaN, 0.25]}\n')
    with open(runs_dir / "run1" / "evals.jsonl", "a") as f:
        f.write('{"step": 2, "time": 0, "model": "teacher", "miou": 0.5, "iou": [1, 0, 0, 1], '
                '"confusion": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}\n')
    run = open_run(runs_dir, "run1")
    values = run.class_vectors("bank").values
    assert values[0, :2].tolist() == [0.5, 1.0] and math.isnan(values[0, 2])
    np.testing.assert_array_equal(run.evals()[0].confusion, np.eye(4, dtype=np.int64))


def _start_from_config(cfg, **kwargs):
    """What the trainer does: explicit values from the config (``ael.runs`` never reads a Config)."""
    from ael.config import config_to_dict
    from ael.runs import start_run

    return start_run(cfg.run.runs_dir, cfg.run.name, class_names=CLASS_NAMES, palette=PALETTE, ignore_index=255,
                     config=config_to_dict(cfg), dataset=cfg.data.dataset, total_steps=cfg.train.iterations,
                     heartbeat_s=cfg.run.heartbeat_s, stalled_after_s=cfg.run.stalled_after_s,
                     media_queue=cfg.run.media_queue, **kwargs)


def test_start_run_records_the_resolved_config(tmp_path):
    from ael.config import config_to_dict, load_config
    from ael.runs import new_run_id

    cfg = load_config(overrides=[f"run.runs_dir={tmp_path / 'runs'}", "run.heartbeat_s=3", "train.iterations=77"])
    with _start_from_config(cfg, split="1/4", preset="synthetic") as writer:
        assert writer.run_id.endswith("-synthetic")
    run = open_run(tmp_path / "runs", writer.run_id)
    assert run.config == config_to_dict(cfg)
    assert run.total_steps == 77 and run.manifest["heartbeat_s"] == 3.0
    assert run.manifest["dataset"] == cfg.data.dataset and run.manifest["split"] == "1/4"
    assert new_run_id("voc/aug 1", now=0.0).endswith("-voc_aug_1")


def test_generated_run_ids_never_clash_within_a_second(tmp_path):
    from ael.config import load_config

    cfg = load_config(overrides=[f"run.runs_dir={tmp_path / 'runs'}"])
    ids = []
    for _ in range(3):
        with _start_from_config(cfg, preset="same") as writer:
            ids.append(writer.run_id)
    assert len(set(ids)) == 3
    # Within one second: the base id, then -2, -3 (a later second starts a new base).
    import re

    assert all(re.fullmatch(r"\d{8}-\d{6}-same(-\d+)?", i) for i in ids), ids

"""``data.unlabeled_gt``: the teacher's pseudo-labels are measured against the unlabeled images'
ground truth, and a run is bit-identical with the measurement and without it."""

from __future__ import annotations

import json

import numpy as np
import torch

from ael.config import config_from_dict
from ael.engine.checkpoint import list_checkpoints, load_checkpoint
from ael.engine.trainer import train
from ael.runs import open_run

QUALITY = ("pseudo_precision", "pseudo_recall", "pseudo_iou")


def tiny(runs_dir, unlabeled_gt: str, method: str = "ael") -> dict:
    return {
        "method": {"name": method, "ohem": {"min_kept": 200}},
        "model": {"backbone": "resnet18", "output_stride": 16, "aspp_channels": 16, "low_level_channels": 8},
        "data": {"synthetic": {"num_classes": 5, "image_size": 32, "num_labeled": 8, "num_unlabeled": 16,
                               "num_val": 4},
                 "crop_size": 32, "batch_size_labeled": 2, "batch_size_unlabeled": 2, "num_workers": 0,
                 "unlabeled_gt": unlabeled_gt},
        "train": {"iterations": 6, "device": "cpu", "eval": {"every": 0, "model": "teacher", "batch_size": 4},
                  "classes_every": 3, "media_every": 0, "checkpoint_every": 0},
        "run": {"runs_dir": str(runs_dir)},
    }


def _run(tmp_path, unlabeled_gt: str, method: str = "ael"):
    runs = tmp_path / f"{method}-{unlabeled_gt}"
    train(config_from_dict(tiny(runs, unlabeled_gt, method)), progress=False)
    run = next(runs.iterdir())
    classes = [json.loads(line) for line in (run / "classes.jsonl").read_text().splitlines()]
    manifest = json.loads((run / "manifest.json").read_text())
    return run, classes, manifest


def test_measuring_pseudo_labels_changes_nothing_in_training(tmp_path):
    run_on, classes_on, manifest_on = _run(tmp_path, "auto")
    run_off, classes_off, manifest_off = _run(tmp_path, "off")
    on = load_checkpoint(list_checkpoints(run_on / "checkpoints")[-1])
    off = load_checkpoint(list_checkpoints(run_off / "checkpoints")[-1])
    for part in ("student", "teacher"):
        for key, value in off[part].items():
            assert torch.equal(value, on[part][key]), f"{part}.{key}"
    assert torch.equal(on["ranks"][0]["method"]["bank"], off["ranks"][0]["method"]["bank"])
    # The vectors are declared and written only where the truth is there.
    assert set(QUALITY) <= set(manifest_on["vectors"]) and not set(QUALITY) & set(manifest_off["vectors"])
    assert {"sampling_kept", "pseudo_weight"} <= set(manifest_on["vectors"])
    written = {k for record in classes_on for k in record}
    assert set(QUALITY) <= written and not set(QUALITY) & {k for record in classes_off for k in record}
    run = open_run(run_on.parent, run_on.name)
    run.poll()
    for name in (*QUALITY, "sampling_kept"):
        values = run.class_vectors(name).values  # (steps, C), NaN where a class had no pixel
        finite = values[np.isfinite(values)]
        assert finite.size and ((finite >= 0) & (finite <= 1)).all(), name


def test_the_baselines_measure_their_pseudo_labels_too(tmp_path):
    _, classes, manifest = _run(tmp_path, "auto", method="mean_teacher")
    assert set(QUALITY) <= set(manifest["vectors"]) and "sampling_kept" not in manifest["vectors"]
    assert any("pseudo_precision" in r for r in classes)

"""Runs and checkpoints of ael 0.1 (before the method layer): refused for a resume, with a clear message."""

from __future__ import annotations

import json

import pytest
import torch

from ael.config import ConfigError, config_to_dict, load_presets
from ael.engine.checkpoint import CheckpointMismatchError, checkpoint_metadata, load_checkpoint
from ael.engine.trainer import load_run_config

OLD_CORE = {"copy_paste": {"num_categories": 3}, "unsup": {"enabled": True}, "cutmix": {"enabled": True}}


def old_run(tmp_path):
    """A run folder as ael 0.1 wrote it: schema 1 manifest, the method under ``core:``."""
    run = tmp_path / "runs" / "20260101-000000-old"
    run.mkdir(parents=True)
    config = config_to_dict(load_presets(["synthetic_cpu"]))
    config.pop("method")
    config["core"] = OLD_CORE
    manifest = {"schema_version": 1, "run_id": run.name, "status": "finished", "class_names": ["a", "b"],
                "config": config, "created": 0.0, "heartbeat": 0.0, "step": 10, "total_steps": 10}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_an_old_runs_config_is_refused_naming_the_core_section(tmp_path):
    run = old_run(tmp_path)
    with pytest.raises(ConfigError, match=r"manifest\.json: 'core:' is the method section of ael 0\.1"):
        load_run_config(run)


def test_an_old_checkpoint_is_refused_naming_its_schema_version(tmp_path):
    path = tmp_path / "ckpt_00000010.pt"
    metadata = {**checkpoint_metadata(num_classes=8, backbone="resnet18"), "schema_version": 1}
    torch.save({"student": {}, "iteration": 10, "metadata": metadata}, path)
    with pytest.raises(CheckpointMismatchError, match=r"schema version 1, this ael reads version 2 "
                                                      r"\(written by ael 0\.1, before the method layer"):
        load_checkpoint(path, expected_metadata=checkpoint_metadata(num_classes=8, backbone="resnet18"))


def test_an_old_run_still_opens_in_the_reader_with_its_method(tmp_path):
    from ael.runs import open_run

    run_dir = old_run(tmp_path)
    run = open_run(run_dir.parent, run_dir.name)
    run.poll()
    assert run.method == "ael" and run.status() == "finished" and run.class_names == ["a", "b"]

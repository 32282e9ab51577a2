"""``ael compare``: every method and seed a grouped run, summaries over seeds, reruns resume."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ael.commands.compare import cli_main
from ael.runs import list_runs

ROOT = Path(__file__).resolve().parents[2]
TINY = ["model.aspp_channels=16", "model.low_level_channels=8", "data.synthetic.image_size=32",
        "data.crop_size=32", "data.synthetic.num_classes=5", "data.synthetic.num_labeled=8",
        "data.synthetic.num_unlabeled=16", "data.synthetic.num_val=4", "data.batch_size_labeled=2",
        "data.batch_size_unlabeled=2", "train.iterations=4", "train.eval.every=2", "train.eval.batch_size=4",
        "train.media_every=0", "train.checkpoint_every=0", "train.device=cpu", "method.ohem.min_kept=200"]


def test_dry_run_prints_one_train_command_per_run(tmp_path, capsys):
    assert cli_main(["--config", "synthetic_cpu", "--methods", "supervised,cutmix_seg_sampling,ael",
                     "--seeds", "0,1", "--out", str(tmp_path), "--dry-run", *TINY]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and all(line.startswith("ael train --config synthetic_cpu") for line in lines)
    # Seed by seed: a partial comparison already pairs the methods.
    assert "ablations/supervised.yaml" in lines[0] and "train.seed=0" in lines[2] and "train.seed=1" in lines[3]
    assert "run.name=synthetic_cpu-cutmix_seg_sampling-s0" in lines[1] and "run.group=synthetic_cpu" in lines[1]


def test_a_bad_method_or_option_fails_before_anything_trains(tmp_path):
    from ael.config import ConfigError

    with pytest.raises(ConfigError, match="'nope' is neither an overlay"):
        cli_main(["--config", "synthetic_cpu", "--methods", "ael,nope", "--out", str(tmp_path)])
    with pytest.raises(ConfigError, match=r"train\.iteratons"):
        cli_main(["--config", "synthetic_cpu", "--methods", "ael", "--out", str(tmp_path), "train.iteratons=3"])
    assert not any(tmp_path.iterdir())


def test_a_comparison_trains_groups_summarises_and_skips_finished_runs(tmp_path):
    out = tmp_path / "cmp"
    command = [sys.executable, "-m", "ael.cli", "compare", "--config", "synthetic_cpu", "--methods",
               "supervised,ael", "--seeds", "0,1", "--jobs", "2", "--out", str(out), *TINY]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "4 to train" in first.stdout
    runs = sorted(p.name for p in out.iterdir() if (p / "manifest.json").is_file())
    assert runs == [f"synthetic_cpu-{m}-s{s}" for m in ("ael", "supervised") for s in (0, 1)]
    # The training logs sit in a hidden folder that the run listing (and the dashboard) skips.
    assert sorted(p.name for p in (out / ".logs").iterdir()) == [f"{name}.log" for name in runs]
    assert sorted(r.run_id for r in list_runs(out)) == runs
    for name in runs:
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert manifest["group"] == "synthetic_cpu" and manifest["status"] == "finished"
        assert manifest["method"] == name.split("-")[1]
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 2 * 2  # methods x seeds x models x (final, best)
    assert rows[0].keys() >= {"method", "seed", "model", "which", "step", "miou", "tail_miou", "background"}
    finals = [r for r in rows if r["which"] == "final"]
    assert {r["step"] for r in finals} == {"4"}
    summary = (out / "summary.md").read_text()
    assert "| supervised | 2 |" in summary and "| ael | 2 |" in summary and "±" in summary
    assert "paired by seed against 'supervised'" in summary

    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "4 finished, 0 to train" in again.stdout, again.stdout + again.stderr


def test_an_interrupted_run_is_resumed_not_restarted(tmp_path, capsys):
    from ael.config import load_presets
    from ael.engine.trainer import TrainingStopped, train

    out = tmp_path / "cmp"
    args = ["--config", "synthetic_cpu", "--methods", "mean_teacher", "--seeds", "3", "--out", str(out)]
    overrides = [*TINY, "train.seed=3", f"run.runs_dir={out}", "run.name=synthetic_cpu-mean_teacher-s3",
                 "run.group=synthetic_cpu"]
    with pytest.raises(TrainingStopped):
        train(load_presets(["synthetic_cpu", "ablations/mean_teacher"], overrides), progress=False, stop_at=2)
    assert cli_main([*args, "--dry-run", *TINY]) == 0
    assert capsys.readouterr().out.strip() == f"ael train --resume {out / 'synthetic_cpu-mean_teacher-s3'} --no-progress"
    assert cli_main([*args, *TINY]) == 0
    run = out / "synthetic_cpu-mean_teacher-s3"
    records = [json.loads(line) for line in (run / "scalars.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "step" in r]
    assert steps == [0, 1, 2, 3]  # continued at step 2, nothing trained twice
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"

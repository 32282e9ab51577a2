"""Resuming a run that was killed or stopped reaches exactly the state of a run that never stopped.

Three ways a run ends early, each resumed and compared with an uninterrupted run of the same
config: ``kill -9`` at a random moment (resume from the newest surviving checkpoint), SIGTERM
through ``ael train`` (a graceful stop, then ``ael train --resume``), and a stop of a 2-process
DDP run resumed with 2 processes. Compared: every step's logged losses, the student and the
teacher, the optimizer, each rank's method state (the AEL banks), RNG and loader positions, and the
final evaluation. On the CPU under ``torch.use_deterministic_algorithms(True)`` they are equal bit
for bit.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from ael.config import config_from_dict
from ael.engine.checkpoint import list_checkpoints, load_checkpoint
from ael.engine.trainer import load_run_config, train
from ael.runs import open_run

from .test_trainer import ROOT, only_run, read_jsonl, tiny

# What a checkpoint holds that an uninterrupted run must match (its config names another folder).
STATE_KEYS = ("student", "teacher", "optimizer", "scheduler", "scaler", "ranks", "hooks", "iteration", "metadata",
              "world_size")
# What an evaluation record holds that must match (not its time).
EVAL_KEYS = ("step", "model", "miou", "iou", "confusion", "pixel_acc")


@pytest.fixture
def deterministic():
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal bit for bit: tensors (dtype, shape, values), containers, numbers (NaN equals NaN)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where}: differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: length"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def final_checkpoint(run: Path) -> dict[str, Any]:
    data = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    return {key: data.get(key) for key in STATE_KEYS}


def sessions(path: Path) -> list[tuple[int | None, list[dict]]]:
    """A stream's records split at its resume markers: ``[(None, first), (resume_step, next), ...]``."""
    out: list[tuple[int | None, list[dict]]] = [(None, [])]
    for record in read_jsonl(path):
        if "step" in record:
            out[-1][1].append(record)
        else:
            out.append((record["resume"], []))
    return out


def losses(records: list[dict]) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k.startswith("loss/") or k in ("step", "lr", "lr_head")} for r in records]


def final_evals(run: Path) -> list[dict]:
    evals = [e for e in read_jsonl(run / "evals.jsonl") if "step" in e]
    last = max(e["step"] for e in evals)
    return [{k: e.get(k) for k in EVAL_KEYS} for e in evals if e["step"] == last]


def assert_resumed_once(run: Path, resumed_from: int, total: int) -> list[dict]:
    """The one resume is from ``resumed_from``; before it nothing up to there was lost, after it each
    step once. Returns the run's scalars, one record per step (what readers see)."""
    parts = sessions(run / "scalars.jsonl")
    assert [marker for marker, _ in parts] == [None, resumed_from], "one resume marker, at the checkpoint"
    (_, first), (_, second) = parts
    written = [r["step"] for r in first]
    assert written == list(range(len(written))) and len(written) >= resumed_from, written
    assert [r["step"] for r in second] == list(range(resumed_from, total))
    steps, _ = open_run(run.parent, run.name).scalar("loss/total")
    assert steps.tolist() == list(range(total))
    return first[:resumed_from] + second


_KILL_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    from ael.config import config_from_dict
    from ael.engine.trainer import train
    torch.use_deterministic_algorithms(True)
    train(config_from_dict(json.loads(sys.argv[1])), progress=False)
""")


def test_kill_9_then_resume_from_the_newest_checkpoint_equals_uninterrupted(tmp_path, deterministic):
    total = 30
    cfg = tiny(tmp_path / "killed", iterations=total, checkpoint_every=3, media_every=0, keep_checkpoints=1,
               eval={"every": 0, "model": "both", "batch_size": 4})
    script = tmp_path / "kill.py"
    script.write_text(_KILL_SCRIPT)
    delay = random.uniform(0.0, 0.2)  # after the checkpoint of iteration >= 6: in a step, a save, a log line
    proc = subprocess.Popen([sys.executable, str(script), json.dumps(cfg)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not any(int(p.stem.split("_")[1]) >= 6 for p in (tmp_path / "killed").glob("*/checkpoints/ckpt_*.pt")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-3000:]
            time.sleep(0.01)
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    run = only_run(tmp_path / "killed")
    assert json.loads((run / "manifest.json").read_text())["status"] == "running", f"finished before the kill ({delay=})"
    newest = int(list_checkpoints(run / "checkpoints")[-1].stem.split("_")[1])
    assert 6 <= newest < total and newest % 3 == 0

    train(load_run_config(run), resume_dir=run, progress=False)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished" and [r["step"] for r in manifest["resumes"]] == [newest]
    scalars = assert_resumed_once(run, newest, total)

    cfg["run"]["runs_dir"] = str(tmp_path / "straight")
    train(config_from_dict(cfg), progress=False)
    straight = only_run(tmp_path / "straight")
    assert losses(scalars) == losses(read_jsonl(straight / "scalars.jsonl")), f"resumed from {newest}"
    assert_same(final_checkpoint(straight), final_checkpoint(run), "checkpoint")
    assert final_evals(run) == final_evals(straight)
    assert [e["model"] for e in final_evals(run)] == ["teacher", "student"]


def _ael_train(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ael.cli", "train", "--no-progress", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigterm_then_ael_train_resume_logs_the_losses_of_an_uninterrupted_run(tmp_path):
    """Cluster pre-emption or the notebooks' Stop: finish the iteration, checkpoint, exit 75; resume."""
    total = 16
    cfg = tiny(tmp_path / "runs", iterations=total, media_every=0, checkpoint_every=0,
               eval={"every": 0, "model": "teacher", "batch_size": 4})
    cfg["run"]["name"] = "pre-empted"
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(cfg))
    run, straight = tmp_path / "runs" / "pre-empted", tmp_path / "runs" / "straight"
    proc = _ael_train("--config", str(preset), cwd=ROOT)
    uninterrupted = _ael_train("--config", str(preset), "run.name=straight", cwd=ROOT)
    try:
        deadline = time.monotonic() + 240
        while not (run / "scalars.jsonl").exists() or not read_jsonl(run / "scalars.jsonl"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
        straight_output, _ = uninterrupted.communicate(timeout=240)
    finally:
        for p in (proc, uninterrupted):
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert uninterrupted.returncode == 0, straight_output
    assert proc.returncode == 75, output
    assert f"ael train --resume {run}" in output
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "crashed" and manifest["error"]["type"] == "TrainingStopped"
    stopped_at = int(list_checkpoints(run / "checkpoints")[-1].stem.split("_")[-1])
    steps = [r["step"] for r in read_jsonl(run / "scalars.jsonl")]
    assert steps == list(range(stopped_at))  # every finished iteration is in the store and the checkpoint
    assert 1 <= stopped_at < total

    resumed = _ael_train("--resume", str(run), cwd=tmp_path)
    output, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, output
    scalars = assert_resumed_once(run, stopped_at, total)
    reference = read_jsonl(straight / "scalars.jsonl")
    assert {k for k in reference[-1] if k.startswith("loss/")} >= {"loss/total", "loss/sup", "loss/unsup_mixed"}
    assert losses(scalars[stopped_at:]) == losses(reference[stopped_at:]), f"stopped at {stopped_at}"
    assert losses(scalars) == losses(reference)
    assert_same(final_checkpoint(straight), final_checkpoint(run), "checkpoint")
    assert final_evals(run) == final_evals(straight)


# Runs each job of argv[1] in turn in every process: {"config": ..., "stop_at": N} starts a run,
# {"resume": RUN_DIR} continues one.
_DDP_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    from ael.config import config_from_dict
    from ael.engine.trainer import Trainer, TrainingStopped, load_run_config
    torch.use_deterministic_algorithms(True)
    for job in json.loads(sys.argv[1]):
        if "resume" in job:
            trainer = Trainer(load_run_config(job["resume"]), resume_dir=job["resume"], progress=False)
        else:
            trainer = Trainer(config_from_dict(job["config"]), progress=False, stop_at=job.get("stop_at"))
        try:
            trainer.fit()
        except TrainingStopped:
            assert job.get("stop_at"), "stopped without a stop_at"
        else:
            assert not job.get("stop_at"), "did not stop"
""")


def _torchrun(script: Path, jobs: list[dict]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
         json.dumps(jobs)], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_two_process_ddp_stop_then_resume_with_two_processes_equals_uninterrupted(tmp_path):
    total, stop_at = 6, 3
    cfg = tiny(tmp_path / "runs", iterations=total, media_every=0, checkpoint_every=0, classes_every=2,
               eval={"every": 0, "model": "both", "batch_size": 2})
    straight, stopped = dict(cfg, run={**cfg["run"], "name": "straight"}), dict(cfg, run={**cfg["run"], "name": "stopped"})
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    _torchrun(script, [{"config": straight}, {"config": stopped, "stop_at": stop_at}])
    run = tmp_path / "runs" / "stopped"
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == [f"ckpt_{stop_at:08d}.pt"]
    assert len(load_checkpoint(run / "checkpoints" / f"ckpt_{stop_at:08d}.pt")["ranks"]) == 2

    _torchrun(script, [{"resume": str(run)}])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["extra"]["world_size"] == 2
    assert [r["step"] for r in manifest["resumes"]] == [stop_at]
    scalars = assert_resumed_once(run, stop_at, total)
    reference = tmp_path / "runs" / "straight"
    assert losses(scalars) == losses(read_jsonl(reference / "scalars.jsonl"))
    resumed, uninterrupted = final_checkpoint(run), final_checkpoint(reference)
    assert len(resumed["ranks"]) == 2 and resumed["ranks"][0]["method"]["cutmix_bank"].any()
    assert_same(uninterrupted, resumed, "checkpoint")
    assert final_evals(run) == final_evals(reference)

"""The ``ael`` commands as a user runs them: separate processes, exit status, stdout and stderr.

Success prints what the README says; a user's mistake (bad config key or value, missing file,
checkpoint of another model) exits 1 with exactly one line on stderr, ``ael <command>: error: ...``,
that names the key or file, and never a traceback.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import ael

# A seconds-long run: ResNet-18 at 32 px, 2 + 2 images a step (as tests/engine/test_trainer.py's tiny()).
ITERATIONS = 20
TINY = {
    "method": {"ohem": {"min_kept": 200}, "copy_paste": {"num_categories": 2}},
    "model": {"backbone": "resnet18", "output_stride": 16, "aspp_channels": 16, "low_level_channels": 8},
    "data": {"synthetic": {"num_classes": 5, "image_size": 32, "num_labeled": 8, "num_unlabeled": 16, "num_val": 4},
             "crop_size": 32, "batch_size_labeled": 2, "batch_size_unlabeled": 2, "num_workers": 0},
    "train": {"iterations": ITERATIONS, "lr": 0.02, "device": "cpu", "eval": {"every": 0, "model": "both", "batch_size": 4},
              "classes_every": 1, "media_every": 0, "checkpoint_every": 0},
    "run": {"runs_dir": "runs", "name": "tiny"},
}


def ael_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ael.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


LOG_LINE = re.compile(r"\d\d:\d\d:\d\d (INFO|WARNING) ael\.[a-z_.]+: ")


def one_error_line(proc: subprocess.CompletedProcess, command: str, *, after_logs: bool = False) -> str:
    """The process failed with exactly one line on stderr, ``ael <command>: error: ...``; returns it.

    ``after_logs``: log records of the work done before the error may precede it (the trainer's
    set-up logs before it opens the dataset).
    """
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    if after_logs:
        assert all(LOG_LINE.match(line) for line in lines[:-1]), proc.stderr
        lines = lines[-1:]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"ael {command}: error: "), lines[0]
    return lines[0]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_version():
    for flag in ("--version", "-V"):
        proc = ael_cli(flag, cwd=Path.cwd())
        assert proc.returncode == 0 and proc.stderr == ""
        assert proc.stdout == f"ael {ael.__version__}\n"
    assert ael.__version__ == importlib.metadata.version("ael")


def test_no_command_and_an_unknown_one(tmp_path):
    proc = ael_cli(cwd=tmp_path)
    assert proc.returncode == 2 and "usage: ael <command>" in proc.stdout
    assert all(name in proc.stdout for name in ("demo", "train", "eval", "dashboard", "runs", "splits", "preview"))
    proc = ael_cli("trian", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("ael: unknown command 'trian'")
    assert "Traceback" not in proc.stderr


def test_demo_trains_ael_and_supervised_and_prints_them_per_class(tmp_path):
    proc = ael_cli("demo", "--iterations", "3", "--runs-dir", "demo-runs", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    runs = {}
    for run in (tmp_path / "demo-runs").iterdir():
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["status"] == "finished" and manifest["step"] == 3, run
        evals = read_jsonl(run / "evals.jsonl")
        assert sorted((e["step"], e["model"]) for e in evals) == [(s, m) for s in (1, 2, 3)
                                                                  for m in ("student", "teacher")]
        runs[manifest["method"]] = (manifest, evals)
    assert sorted(runs) == ["ael", "supervised"]
    assert runs["ael"][0]["group"] == runs["supervised"][0]["group"] is not None
    out = proc.stdout
    assert all(f"it {s}" in out for s in (1, 2, 3))
    rows = [line.split() for line in out.splitlines()]
    for name in runs["ael"][0]["class_names"]:  # AEL's progress table and the side-by-side one
        marked = [r for r in rows if r[:1] == [name] and ({"head", "tail"} & set(r[1:3]))]
        assert len(marked) == 2, (name, out)
    final = [next(e for e in runs[m][1] if e["step"] == 3 and e["model"] == "student") for m in ("ael", "supervised")]
    assert ["mIoU", *(f"{100 * e['miou']:.1f}" for e in final)] in rows, out
    assert "ael dashboard --runs demo-runs" in out


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--config", "bad.yaml"], ["bad.yaml", "train.iteratons"]),
        (["--config", "good.yaml", "train.iteratons=3"], ["train.iteratons", "command line"]),
        (["--config", "good.yaml", "train.lr=-1"], ["train.lr"]),
        (["--config", "nowhere.yaml"], ["nowhere.yaml"]),
        (["--resume", "not-a-run"], ["not-a-run"]),
        (["--config", "good.yaml", "data.dataset=camvid", "data.root=no-camvid"], ["no-camvid", "camvid"]),
    ],
    ids=["unknown-key-in-file", "unknown-key-override", "bad-value", "missing-file", "resume-not-a-run",
         "missing-dataset-folder"],
)
def test_train_errors_are_one_line_naming_the_key_or_file(tmp_path, args, needles):
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(TINY))
    (tmp_path / "bad.yaml").write_text("train:\n  iteratons: 5\n")
    (tmp_path / "not-a-run").mkdir()
    proc = ael_cli("train", *args, cwd=tmp_path)
    line = one_error_line(proc, "train", after_logs="data.root=no-camvid" in args)
    for needle in needles:
        assert needle in line, line
    assert not (tmp_path / "runs").exists()  # nothing was started


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run trained by ``ael train``, long enough that its teacher and student differ."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    proc = ael_cli("train", "--config", "tiny.yaml", "--no-progress", cwd=folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    run = folder / "runs" / "tiny"
    assert "student: final mIoU" in proc.stdout and "run folder: runs/tiny (method: ael)" in proc.stdout
    final = {e["model"]: e for e in read_jsonl(run / "evals.jsonl")}
    assert final["teacher"]["iou"] != final["student"]["iou"]  # so that the eval test tells them apart
    return run


def test_eval_of_a_runs_checkpoint_prints_its_final_evaluation(tiny_run, tmp_path):
    (checkpoint,) = (tiny_run / "checkpoints").glob("ckpt_*.pt")
    proc = ael_cli("eval", "--checkpoint", str(checkpoint), "--device", "cpu", "--out", "preds", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{checkpoint} on val (4 images)")
    rows = {" ".join(r[:-2]): r[-2:] for r in (line.split() for line in lines[2:-1])}
    assert lines[1].split() == ["teacher", "student"]
    # The trainer's final evaluation of each model, on the same 4 validation images, again.
    final = {e["model"]: e for e in read_jsonl(tiny_run / "evals.jsonl") if e.get("step") == ITERATIONS}
    assert rows["mIoU"] == [f"{100 * final[m]['miou']:.2f}" for m in ("teacher", "student")]
    assert rows["pixel acc"] == [f"{100 * final[m]['pixel_acc']:.2f}" for m in ("teacher", "student")]
    names = json.loads((tiny_run / "manifest.json").read_text())["class_names"]
    for c, name in enumerate(names):
        assert rows[name] == ["-" if final[m]["iou"][c] is None else f"{100 * final[m]['iou'][c]:.1f}"
                              for m in ("teacher", "student")], name
    assert lines[-1] == "coloured predictions in preds"
    for model in ("teacher", "student"):  # a folder of coloured predictions each
        assert len(list((tmp_path / "preds" / model).glob("*.png"))) == 4


def test_eval_errors_are_one_line_naming_the_file(tiny_run, tmp_path):
    missing = tiny_run / "checkpoints" / "ckpt_00000099.pt"
    line = one_error_line(ael_cli("eval", "--checkpoint", str(missing), cwd=tmp_path), "eval")
    assert str(missing) in line and "no such checkpoint" in line
    (checkpoint,) = (tiny_run / "checkpoints").glob("ckpt_*.pt")
    line = one_error_line(ael_cli("eval", "--checkpoint", str(checkpoint), "--device", "cpu",
                                  "data.synthetic.num_classes=6", cwd=tmp_path), "eval")
    assert str(checkpoint) in line and "num_classes=5" in line and "num_classes=6" in line

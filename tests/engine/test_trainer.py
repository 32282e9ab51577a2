"""The trainer end to end on the CPU: run store, loss, exact resume, DDP, bad inputs (kill -9: test_resume.py)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ael.config import ConfigError, config_from_dict, load_presets
from ael.data.base import DatasetError
from ael.engine.checkpoint import CheckpointMismatchError, list_checkpoints, load_checkpoint
from ael.engine.trainer import RunFolderError, Trainer, TrainingStopped, load_run_config, train
from ael.runs.schema import RunStoreError

ROOT = Path(__file__).resolve().parents[2]
CAMVID = ROOT.parent / "shared" / "data" / "camvid"


def tiny(runs_dir: Path, **train_extra) -> dict:
    """A config dict for a seconds-long run: ResNet-18 at 32 px, 2 + 2 images a step."""
    train = {"iterations": 12, "lr": 0.01, "device": "cpu", "eval": {"every": 0, "model": "both", "batch_size": 4},
             "classes_every": 3, "media_every": 5, "checkpoint_every": 0}
    train.update(train_extra)
    return {
        "method": {"ohem": {"min_kept": 200}, "copy_paste": {"num_categories": 2}},
        "model": {"backbone": "resnet18", "output_stride": 16, "aspp_channels": 16, "low_level_channels": 8},
        "data": {"synthetic": {"num_classes": 5, "image_size": 32, "num_labeled": 8, "num_unlabeled": 16,
                               "num_val": 4},
                 "crop_size": 32, "batch_size_labeled": 2, "batch_size_unlabeled": 2, "num_workers": 0},
        "train": train,
        "run": {"runs_dir": str(runs_dir), "heartbeat_s": 0.5},
    }


@contextlib.contextmanager
def built_trainer(cfg: dict) -> Iterator[Trainer]:
    """A trainer built from ``cfg`` (steps are driven by hand), closed afterwards."""
    trainer = Trainer(config_from_dict(cfg), progress=False)
    try:
        yield trainer
    finally:
        trainer.close()
        if trainer.writer is not None:
            trainer.writer.finish()


def only_run(runs_dir: Path) -> Path:
    runs = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One real 30-iteration AEL run, shared by the checks below."""
    runs = tmp_path_factory.mktemp("runs")
    cfg = config_from_dict(tiny(runs, iterations=30, lr=0.02, eval={"every": 15, "model": "both", "batch_size": 4}))
    result = train(cfg, progress=False)
    return result, only_run(runs)


def test_run_store_is_complete(finished_run):
    result, run = finished_run
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["step"] == 30
    assert manifest["extra"]["global_batch_labeled"] == 2 and manifest["extra"]["world_size"] == 1
    scalars = read_jsonl(run / "scalars.jsonl")
    assert [r["step"] for r in scalars] == list(range(30))
    for key in ("loss/total", "loss/sup", "loss/sup_aux", "loss/unsup_labeled", "loss/unsup_mixed", "lr",
                "throughput_img_s", "memory_mb", "time/data_s", "time/step_s"):
        assert all(key in r for r in scalars), key
    classes = read_jsonl(run / "classes.jsonl")
    vectors = {k for r in classes for k in r}
    assert {"bank", "copy_paste_prob", "cutmix_prob", "sampling_ratio", "freq_labeled", "freq_pseudo",
            "iou_teacher", "iou_student"} <= vectors
    evals = read_jsonl(run / "evals.jsonl")
    assert sorted((e["step"], e["model"]) for e in evals) == [(15, "student"), (15, "teacher"), (30, "student"),
                                                              (30, "teacher")]
    media = read_jsonl(run / "media.jsonl")
    assert {m["kind"] for m in media} == {"pseudo", "cutmix", "copy_paste"}
    for m in media:
        for f in m["files"].values():
            assert (run / f).is_file()
    assert "box" in next(m for m in media if m["kind"] == "cutmix")["meta"]
    assert len(list_checkpoints(run / "checkpoints")) == 1
    assert (run / "config.yaml").is_file() and (run / "labeled.txt").is_file()
    # Final and best are both reported.
    assert result.final["teacher"]["step"] == 30 and result.best["teacher"]["miou"] >= result.final["teacher"]["miou"]
    assert "tail" in result.summary() and "best" in result.summary()


def test_loss_goes_down(finished_run):
    _, run = finished_run
    sup = [r["loss/sup"] for r in read_jsonl(run / "scalars.jsonl")]
    assert sum(sup[-8:]) / 8 < 0.8 * sum(sup[:8]) / 8


def _final_state(run: Path) -> dict:
    data = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    rank = data["ranks"][0]
    return {"student": data["student"], "teacher": data["teacher"], "bank": rank["method"]["bank"],
            "cutmix_bank": rank["method"]["cutmix_bank"], "optimizer": data["optimizer"]["state"],
            "loaders": rank["loaders"], "iteration": data["iteration"]}


def test_resume_equals_uninterrupted(tmp_path):
    torch.use_deterministic_algorithms(True)
    try:
        base = tiny(tmp_path / "a", iterations=8, media_every=0, eval={"every": 0, "model": "teacher"})
        train(config_from_dict(base), progress=False)
        straight = _final_state(only_run(tmp_path / "a"))

        base["run"]["runs_dir"] = str(tmp_path / "b")
        with pytest.raises(TrainingStopped):
            train(config_from_dict(base), progress=False, stop_at=4)
        run = only_run(tmp_path / "b")
        assert json.loads((run / "manifest.json").read_text())["status"] == "crashed"
        train(load_run_config(run), resume_dir=run, progress=False)
        resumed = _final_state(run)
    finally:
        torch.use_deterministic_algorithms(False)
    assert resumed["iteration"] == straight["iteration"] == 8
    assert resumed["loaders"] == straight["loaders"]
    for part in ("student", "teacher"):
        for key, value in straight[part].items():
            assert torch.equal(value, resumed[part][key]), f"{part}.{key}"
    assert torch.equal(straight["bank"], resumed["bank"])
    assert torch.equal(straight["cutmix_bank"], resumed["cutmix_bank"])
    for key, value in straight["optimizer"].items():
        assert torch.equal(value["momentum_buffer"], resumed["optimizer"][key]["momentum_buffer"])
    scalars = read_jsonl(run / "scalars.jsonl")
    assert sorted({r["step"] for r in scalars if "step" in r}) == list(range(8))
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"


_DDP_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    from ael.config import config_from_dict
    from ael.engine.trainer import Trainer
    cfg = config_from_dict(json.loads(sys.argv[1]))
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    rank = trainer.dist.rank
    torch.save({"bank": trainer.method.bank.values, "cutmix": trainer.method.cutmix_bank.values,
                "teacher": trainer.teacher.state_dict()}, sys.argv[2] + f"/rank{rank}.pt")
""")


def test_two_process_ddp_run_has_identical_banks_and_one_writer(tmp_path):
    cfg = tiny(tmp_path / "runs", iterations=6, media_every=3, checkpoint_every=3,
               eval={"every": 0, "model": "teacher", "batch_size": 2})
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
         json.dumps(cfg), str(tmp_path)], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert torch.equal(r0["bank"], r1["bank"])
    assert torch.equal(r0["cutmix"], r1["cutmix"])
    assert r0["cutmix"].any()
    for key, value in r0["teacher"].items():
        if value.is_floating_point() and "running" not in key:
            assert torch.allclose(value, r1["teacher"][key]), key
    run = only_run(tmp_path / "runs")  # only rank 0 wrote
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["extra"]["world_size"] == 2
    assert manifest["extra"]["global_batch_labeled"] == 4
    data = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    assert len(data["ranks"]) == 2


# ------------------------------------------------------------------------------------------------
# bad inputs
# ------------------------------------------------------------------------------------------------


def test_config_error_names_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  iteratons: 5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.iteratons"):
        load_presets([ROOT / "configs" / "synthetic.yaml", bad])
    with pytest.raises(ConfigError, match=r"train\.lr"):
        load_presets([ROOT / "configs" / "synthetic.yaml"], ["train.lr=-1"])


def test_overlays_merge_key_by_key():
    cfg = load_presets([ROOT / "configs" / "cityscapes.yaml", ROOT / "configs" / "release.yaml",
                        ROOT / "configs" / "ablations" / "cutmix_seg.yaml"], ["train.grad_accum=2"])
    assert cfg.model.backbone == "resnet101" and cfg.model.deep_stem  # dataset preset + release overlay
    assert cfg.train.ema.teacher_mode == "train" and cfg.train.grad_accum == 2  # release overlay + override
    # The ablation overlay switches the method: CutMix-Seg keeps the options it has (the release's
    # one mixed image per batch, the preset's OHEM), the AEL-only ones are dropped.
    assert cfg.method.name == "cutmix_seg" and cfg.method.cutmix.one_mix_per_batch
    assert cfg.method.ohem.min_kept == 100000 and cfg.method.ohem.min_kept_per_gpu
    assert not hasattr(cfg.method, "bank") and not hasattr(cfg.method.cutmix, "adaptive")
    cfg = load_presets([ROOT / "configs" / "cityscapes.yaml", ROOT / "configs" / "release.yaml",
                        ROOT / "configs" / "ablations" / "cutmix_seg_sampling.yaml"])
    assert cfg.method.bank.update == "before_unsup_loss" and cfg.method.copy_paste.excluded_classes == (0, 1, 2, 8, 10)
    assert not cfg.method.cutmix.adaptive and not cfg.method.copy_paste.enabled and cfg.method.sampling.enabled
    assert cfg.method.cutmix.area_thresh == 0.005


def test_every_preset_loads():
    from ael.methods import method_class

    names = set()
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        cfg = load_presets([path])
        # The trainer builds the method the preset names, from a section of that method's class,
        # and asks for the unlabeled stream exactly when the method trains on it.
        method = method_class(cfg.method.name)
        assert type(cfg.method) is method.config_class, path.name
        assert method.loader_needs(cfg.method).unlabeled == (cfg.method.name != "supervised"), path.name
        names.add(cfg.method.name)
    assert names == {"ael", "supervised", "mean_teacher", "cutmix_seg"}


def test_missing_dataset_is_named(tmp_path):
    data = tiny(tmp_path)
    data["data"] = {"dataset": "camvid", "root": str(tmp_path / "nowhere")}
    with pytest.raises(DatasetError, match="nowhere"):
        train(config_from_dict(data), progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_split_that_does_not_match_the_data(tmp_path):
    ids = tmp_path / "labeled.txt"
    ids.write_text("labeled/000000\nnot-an-image\n")
    data = tiny(tmp_path)
    data["data"]["split"] = {"labeled_list": str(ids)}
    with pytest.raises(DatasetError, match="not-an-image"):
        train(config_from_dict(data), progress=False)


def test_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFolderError, match="empty"):
        load_run_config(tmp_path / "empty")
    with pytest.raises(RunFolderError, match="no such run folder"):
        load_run_config(tmp_path / "missing")
    with pytest.raises(RunStoreError):
        train(config_from_dict(tiny(tmp_path)), resume_dir=tmp_path / "empty", progress=False)


def test_resume_with_another_class_count_fails_and_keeps_the_run(finished_run):
    _, run = finished_run
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    cfg = load_run_config(run, ["data.synthetic.num_classes=6"])
    with pytest.raises(CheckpointMismatchError, match="num_classes"):
        train(cfg, resume_dir=run, progress=False)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after == before


def test_eval_command_checks_the_model_and_writes_predictions(finished_run, tmp_path):
    from ael.commands.eval import evaluate_checkpoint

    _, run = finished_run
    res = evaluate_checkpoint(run, out=tmp_path / "preds", device="cpu", model="student")
    assert len(res["iou"]) == 5 and 0 <= res["miou"] <= 1 and res["num_images"] == 4
    assert len(list((tmp_path / "preds").glob("*.png"))) == 4
    with pytest.raises(CheckpointMismatchError, match="num_classes"):
        evaluate_checkpoint(run, overrides=["data.synthetic.num_classes=6"], device="cpu")
    with pytest.raises(CheckpointMismatchError):
        evaluate_checkpoint(run, overrides=["model.backbone=resnet34"], device="cpu")


@pytest.mark.skipif(not (CAMVID / "train.txt").is_file(), reason="CamVid not present")
def test_camvid_preset_runs_a_few_steps(tmp_path):
    cfg = load_presets([ROOT / "configs" / "camvid_cpu.yaml"], [
        f"data.root={CAMVID}", f"run.runs_dir={tmp_path}", "train.iterations=2", "train.eval.every=0",
        "train.media_every=0", "train.checkpoint_every=0", "data.num_workers=0", "data.crop_size=64",
        "data.batch_size_labeled=1", "data.batch_size_unlabeled=1", "model.aspp_channels=16",
        "train.eval.model=teacher", "train.eval.scales=[0.25]"])
    result = train(cfg, progress=False)
    assert result.iterations == 2 and len(result.final["teacher"]["iou"]) == 11


def test_a_stop_right_after_a_checkpoint_loses_no_scalar(tmp_path, monkeypatch):
    """Scalars are written one step late; the checkpoint must not be taken before they are."""
    from ael.engine.hooks import CheckpointHook

    real_save = CheckpointHook.save

    def save_then_die(self, trainer):
        path = real_save(self, trainer)
        if trainer.iteration == 4:
            raise KeyboardInterrupt("killed right after the checkpoint")
        return path

    cfg = config_from_dict(tiny(tmp_path, iterations=6, media_every=0, checkpoint_every=2,
                                eval={"every": 0, "model": "teacher"}))
    monkeypatch.setattr(CheckpointHook, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    monkeypatch.setattr(CheckpointHook, "save", real_save)
    run = only_run(tmp_path)
    train(load_run_config(run), resume_dir=run, progress=False)
    steps = {r["step"] for r in read_jsonl(run / "scalars.jsonl") if "step" in r}
    assert steps == set(range(6))


def test_excluded_classes_resolve_names_skip_missing_indices_and_refuse_all():
    from ael.methods.ael import excluded_classes

    names = ["road", "pole", "sky"]

    def excluded(items):
        section = config_from_dict({"method": {"copy_paste": {"excluded_classes": items}}}).method
        return excluded_classes(section.copy_paste.excluded_classes, names)

    assert excluded([0, "sky", 10]) == (0, 2)  # the release's indices past C are ignored with a warning
    with pytest.raises(ValueError, match="unknown class name 'tree'"):
        excluded(["tree"])
    with pytest.raises(ValueError, match="excludes every class"):
        excluded([0, 1, "sky"])

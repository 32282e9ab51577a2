"""A method defined here, outside ``ael``, trains end to end through the normal trainer.

The proof that the method layer is a plug-in point: a toy method (supervised cross-entropy plus a
per-class running mean of the student's confidence, its own state and vector and sample) is
registered in this file only, then trained, evaluated, checkpointed, stopped, resumed and read
back from the run store without a change to ``ael/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ael.config import ConfigError, MethodConfig, bounded, config_from_dict, load_presets
from ael.engine.trainer import TrainingStopped, load_run_config, train
from ael.methods import Method, StepStorage, TrainBatch, register_method, unregister_method
from ael.runs import open_run


@dataclass(frozen=True)
class ToyConfig(MethodConfig):
    name: str = "toy"
    momentum: float = bounded(0.5, ge=0.0, lt=1.0)


class ToyMethod(Method):
    """Cross-entropy on the labeled batch; tracks the mean softmax probability of each class."""

    name = "toy"
    config_class = ToyConfig

    def __init__(self, cfg: ToyConfig, ctx) -> None:
        super().__init__(cfg, ctx)
        self.mean_prob = torch.zeros(ctx.num_classes, device=ctx.device)
        self.steps = torch.zeros((), dtype=torch.long, device=ctx.device)

    @classmethod
    def loader_needs(cls, cfg):
        from ael.methods import LoaderNeeds

        return LoaderNeeds(unlabeled=False)

    def vectors(self) -> dict[str, str]:
        return {"toy_prob": "running mean softmax probability per class"}

    def class_vectors(self) -> dict[str, torch.Tensor]:
        return {"toy_prob": self.mean_prob}

    def train_step(self, batch: TrainBatch, *, iteration: int, micro_step: int, storage: StepStorage) -> torch.Tensor:
        images, labels = batch.labeled["image"], batch.labeled["label"]
        logits = self.ctx.student(images)["out"]
        loss = F.cross_entropy(logits, labels, ignore_index=self.ctx.ignore_index)
        probs = logits.detach().softmax(1).mean((0, 2, 3))
        self.mean_prob.mul_(self.cfg.momentum).add_(probs, alpha=1 - self.cfg.momentum)
        self.steps += 1
        storage.put_scalars({"loss/total": loss, "toy/mean_max_prob": probs.max()})
        storage.put_sample("toy", images={"image": images[0]}, labels={"label": labels[0]},
                           meta={"stream": "labeled", "step_seen": self.steps})
        return loss

    def state_dict(self) -> dict:
        return {"mean_prob": self.mean_prob, "steps": self.steps}

    def load_state_dict(self, state) -> None:
        self.mean_prob.copy_(state["mean_prob"])
        self.steps.copy_(state["steps"])


@pytest.fixture
def toy():
    register_method(ToyMethod)
    yield ToyMethod
    unregister_method("toy")


def tiny(runs_dir: Path, **train_extra) -> dict:
    train_cfg = {"iterations": 8, "lr": 0.01, "device": "cpu", "eval": {"every": 4, "model": "both", "batch_size": 4},
                 "classes_every": 2, "media_every": 3, "checkpoint_every": 4, "keep_checkpoints": 2}
    train_cfg.update(train_extra)
    return {
        "method": {"name": "toy", "momentum": 0.75},
        "model": {"backbone": "resnet18", "output_stride": 16, "aspp_channels": 16, "low_level_channels": 8},
        "data": {"synthetic": {"num_classes": 4, "image_size": 32, "num_labeled": 8, "num_unlabeled": 8,
                               "num_val": 4},
                 "crop_size": 32, "batch_size_labeled": 2, "batch_size_unlabeled": 2, "num_workers": 0},
        "train": train_cfg,
        "run": {"runs_dir": str(runs_dir)},
    }


def test_a_method_of_ones_own_trains_stops_resumes_and_shows(toy, tmp_path):
    cfg = config_from_dict(tiny(tmp_path))
    assert isinstance(cfg.method, ToyConfig) and cfg.method.momentum == 0.75
    with pytest.raises(TrainingStopped):
        train(cfg, progress=False, stop_at=5)
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["ckpt_00000004.pt", "ckpt_00000005.pt"]

    resumed_cfg = load_run_config(run_dir)
    assert resumed_cfg == cfg  # the saved config names the method and its options
    result = train(resumed_cfg, resume_dir=run_dir, progress=False)
    assert result.method == "toy" and result.iterations == 8
    assert set(result.final) == {"teacher", "student"} and result.final["student"]["step"] == 8

    straight_dir = tmp_path / "straight"
    straight = train(config_from_dict(tiny(straight_dir)), progress=False)
    # Resumed == uninterrupted, the method's own state included.
    assert result.final["student"]["miou"] == pytest.approx(straight.final["student"]["miou"], abs=1e-6)
    ckpt = torch.load(run_dir / "checkpoints" / "ckpt_00000008.pt", weights_only=True)
    ckpt_straight = torch.load(next(p for p in straight_dir.iterdir() if p.is_dir()) / "checkpoints"
                               / "ckpt_00000008.pt", weights_only=True)
    assert ckpt["metadata"]["method"] == "toy"
    assert int(ckpt["ranks"][0]["method"]["steps"]) == 8
    assert torch.allclose(ckpt["ranks"][0]["method"]["mean_prob"], ckpt_straight["ranks"][0]["method"]["mean_prob"])

    run = open_run(run_dir.parent, run_dir.name)
    run.poll()
    assert run.status() == "finished"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["method"] == {"name": "toy", "momentum": 0.75}
    assert "toy_prob" in run.class_vector_names()
    series = run.class_vectors("toy_prob")
    assert series.values.shape[1] == 4 and list(series.steps)[:2] == [0, 2]
    assert "toy/mean_max_prob" in run.scalar_names()
    steps = sorted({int(s) for s in run.scalar("loss/total")[0]})
    assert steps == list(range(8))  # each step once, across the stop and the resume
    samples = run.samples("toy")
    assert [s.step for s in samples] == [0, 3, 6] and samples[0].meta["step_seen"] == 1


def test_an_unknown_method_or_option_is_a_config_error(toy, tmp_path):
    data = tiny(tmp_path)
    data["method"]["name"] = "toyy"
    with pytest.raises(ConfigError, match=r"unknown method 'toyy'.*toy"):
        config_from_dict(data)
    data["method"] = {"name": "toy", "momentum": 0.5, "copy_paste": {"enabled": False}}
    with pytest.raises(ConfigError, match=r"method\.copy_paste.*no such option"):
        config_from_dict(data)


def test_an_overlay_switching_to_the_toy_method_drops_the_presets_ael_options(toy, tmp_path, caplog):
    overlay = tmp_path / "toy.yaml"
    overlay.write_text("method: {name: toy, momentum: 0.25}\n")
    with caplog.at_level("INFO", logger="ael.config.layers"):
        cfg = load_presets(["synthetic", str(overlay)])
    assert cfg.method == ToyConfig(momentum=0.25)
    assert "method.copy_paste" in caplog.text and "method.ohem" in caplog.text
    with pytest.raises(ConfigError, match=r"command line: unknown key 'method\.copy_paste'"):
        load_presets(["synthetic", str(overlay)], ["method.copy_paste.prob=0.1"])

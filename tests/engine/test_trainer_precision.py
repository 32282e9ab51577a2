"""The trainer's precision and memory-layout options on the CPU: bf16 autocast, fp16 with a grad
scaler, channels_last and gradient accumulation each train real steps with finite losses."""

from __future__ import annotations

import json
import math

import pytest

from ael.config import config_from_dict
from ael.engine.trainer import train

from .test_trainer import only_run, read_jsonl, tiny


def run_losses(tmp_path, **train_extra) -> list[float]:
    cfg = config_from_dict(tiny(tmp_path, iterations=4, **train_extra))
    train(cfg, progress=False)
    run = only_run(tmp_path)
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"
    return [r["loss/total"] for r in read_jsonl(run / "scalars.jsonl")]


@pytest.mark.parametrize(
    "options",
    [
        {"amp": "bf16"},
        {"channels_last": True},
        {"amp": "bf16", "channels_last": True},
        {"grad_accum": 2},
    ],
    ids=["bf16", "channels_last", "bf16+channels_last", "grad_accum"],
)
def test_option_trains_with_finite_losses(tmp_path, options):
    losses = run_losses(tmp_path, **options)
    assert len(losses) == 4
    assert all(math.isfinite(v) for v in losses), losses


def test_fp16_trains_on_cpu_or_says_why(tmp_path):
    # fp16 autocast with a grad scaler: supported on CPU by recent torch; where it is not, the
    # trainer must refuse with a clear message rather than produce NaNs.
    try:
        losses = run_losses(tmp_path, amp="fp16")
    except (ValueError, RuntimeError) as err:
        assert "fp16" in str(err)
        return
    assert all(math.isfinite(v) for v in losses), losses


def test_grad_accum_keeps_the_global_batch_in_the_manifest(tmp_path):
    cfg = config_from_dict(tiny(tmp_path, iterations=2, grad_accum=3))
    train(cfg, progress=False)
    extra = json.loads((only_run(tmp_path) / "manifest.json").read_text())["extra"]
    assert extra["global_batch_labeled"] == 2 * 3


@pytest.mark.slow
def test_compiled_model_trains_and_evaluates(tmp_path):
    # train.compile wraps the student in torch.compile (inductor on the CPU, which needs a C++
    # compiler: skipped without one). Four real steps plus the final evaluation of both models.
    import shutil

    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("torch.compile on the CPU needs a C++ compiler")
    losses = run_losses(tmp_path, compile=True)
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses), losses

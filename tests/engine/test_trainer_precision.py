"""The trainer's precision, accumulation and compilation options against their references on the CPU.

Gradient accumulation against one larger batch, bf16 autocast and channels_last against plain fp32,
and ``torch.compile`` against eager, each within a tolerance stated (and justified) next to it:
one optimizer step from the same initial weights on the same images, with plain SGD (momentum 0,
no weight decay) so that the weight change is ``-lr * gradient``. Short real runs check that the
options also train AEL end to end.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ael.config import config_from_dict
from ael.engine.trainer import Trainer, train

from .test_trainer import built_trainer, only_run, read_jsonl, tiny

SGD = {"momentum": 0.0, "weight_decay": 0.0}
PLAIN_CE = {"name": "supervised", "ohem": {"enabled": False}}


def run_losses(tmp_path, **train_extra) -> list[float]:
    cfg = config_from_dict(tiny(tmp_path, iterations=4, **train_extra))
    train(cfg, progress=False)
    run = only_run(tmp_path)
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"
    return [r["loss/total"] for r in read_jsonl(run / "scalars.jsonl")]


@pytest.fixture(scope="module")
def dense_folder(tmp_path_factory) -> Path:
    """A folder dataset of 32 px images whose masks label every pixel (no ignore label anywhere)."""
    root = tmp_path_factory.mktemp("dense")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 2)):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / "images" / split / f"{i}.png")
            Image.fromarray(rng.integers(0, 3, (32, 32)).astype(np.uint8)).save(root / "masks" / split / f"{i}.png")
    (root / "classes.yaml").write_text("classes: [a, b, c]\n")
    return root


def dense_config(runs: Path, folder: Path, *, batch: int, **train_extra) -> dict:
    """Plain cross-entropy on 4 labeled images of ``folder``, upscaled only (no padded pixels)."""
    cfg = tiny(runs, iterations=2, **SGD, **train_extra)
    cfg["method"] = dict(PLAIN_CE)
    cfg["data"] = {"dataset": "folder", "root": str(folder), "split": {"labeled": 4}, "crop_size": 32,
                   "scale_range": [1.0, 1.5], "batch_size_labeled": batch, "num_workers": 0}
    return cfg




def one_step(cfg: dict, *, bn_batch_stats: bool) -> tuple[float, torch.Tensor]:
    """The logged loss of one optimizer step and the student's weight change, flattened."""
    shutil.rmtree(cfg["run"]["runs_dir"], ignore_errors=True)
    with built_trainer(cfg) as trainer:
        before = [p.detach().clone() for p in trainer.student.parameters()]
        trainer.student.train(bn_batch_stats)  # eval: BN on running statistics, no dropout
        trainer.run_iteration()
        loss = trainer.storage.iteration_scalars()["loss/total"].item()
        change = torch.cat([(p.detach() - b).flatten() for p, b in zip(trainer.student.parameters(), before)])
    return loss, change


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """``|a - b| / |b|`` (Euclidean norms)."""
    return float((a - b).norm() / b.norm())


def test_grad_accum_of_two_batches_of_2_equals_one_batch_of_4(tmp_path, dense_folder):
    # Mathematically equal only when nothing couples the images of a micro-batch: plain
    # cross-entropy (OHEM's min_kept threshold is per micro-batch), BatchNorm on running statistics
    # (in train mode each micro-batch is normalised by its own statistics), and as many valid
    # pixels in every image (the loss is a mean over a micro-batch's valid pixels; here every pixel
    # is labeled and nothing is padded). Then (mean over 2 + mean over 2) / 2 is the mean over 4.
    # The micro-batches are the batch's halves: sample k of the stream is the same either way.
    # Tolerance: the two sum the same fp32 terms in another order (about 1e-7 relative, 5e-7
    # measured); 1e-5 is far below a wrong scale (factor 2) or a lost micro-batch.
    big_loss, big = one_step(dense_config(tmp_path / "b4", dense_folder, batch=4), bn_batch_stats=False)
    acc_loss, acc = one_step(dense_config(tmp_path / "b2x2", dense_folder, batch=2, grad_accum=2),
                             bn_batch_stats=False)
    assert big.norm() > 0
    assert relative(acc, big) < 1e-5
    assert acc_loss == pytest.approx(big_loss, rel=1e-5)  # the logged loss is the mean of the micro-steps


def test_bf16_autocast_matches_fp32_within_bf16_precision(tmp_path, dense_folder):
    # bf16 keeps 8 significant bits (unit roundoff 2^-9 = 2e-3); the losses are computed in fp32
    # from the bf16 logits. Tolerances: the loss (a mean over 4k pixels, where rounding errors
    # average out) within 2e-3 relative (1e-5 measured with running statistics, 7e-4 with batch
    # statistics), the weight change within 5e-2 (8e-3 measured). The gradient is compared with
    # BatchNorm on running statistics: train-mode BN's backward subtracts each channel's mean
    # gradient, a cancellation that amplifies bf16 rounding at initialisation (the gradients' cosine
    # is only 0.85-0.94 there), so with batch statistics only the loss is compared.
    results = {}
    for amp in ("none", "bf16"):
        for bn_batch_stats in (False, True):
            cfg = dense_config(tmp_path / f"{amp}{bn_batch_stats}", dense_folder, batch=4, amp=amp)
            results[amp, bn_batch_stats] = one_step(cfg, bn_batch_stats=bn_batch_stats)
    for bn_batch_stats in (False, True):
        assert results["bf16", bn_batch_stats][0] == pytest.approx(results["none", bn_batch_stats][0], rel=2e-3)
    fp32, bf16 = results["none", False][1], results["bf16", False][1]
    assert relative(bf16, fp32) < 5e-2
    assert relative(bf16, fp32) > 1e-4  # autocast was on: bf16 is not fp32


def test_channels_last_matches_contiguous(tmp_path, dense_folder):
    # The same fp32 arithmetic in another memory layout: convolution kernels sum in another order.
    # The loss within 1e-5 relative (1e-7 measured). The weight change within 1e-4 with BatchNorm
    # on running statistics (3e-6 measured); with batch statistics, the cancellation in train-mode
    # BN's backward (see the bf16 test) turns fp32 reordering into 2.6e-3 measured: within 1e-2.
    for bn_batch_stats, tolerance in ((False, 1e-4), (True, 1e-2)):
        ref_loss, ref = one_step(dense_config(tmp_path / "nchw", dense_folder, batch=4),
                                 bn_batch_stats=bn_batch_stats)
        cl_loss, cl = one_step(dense_config(tmp_path / "nhwc", dense_folder, batch=4, channels_last=True),
                               bn_batch_stats=bn_batch_stats)
        assert cl_loss == pytest.approx(ref_loss, rel=1e-5)
        assert relative(cl, ref) < tolerance, bn_batch_stats


def test_bf16_with_channels_last_trains_ael_with_finite_losses(tmp_path):
    losses = run_losses(tmp_path, amp="bf16", channels_last=True)
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


def test_grad_accum_trains_ael_and_keeps_the_global_batch_in_the_manifest(tmp_path):
    cfg = config_from_dict(tiny(tmp_path, iterations=2, grad_accum=3))
    train(cfg, progress=False)
    run = only_run(tmp_path)
    extra = json.loads((run / "manifest.json").read_text())["extra"]
    assert extra["global_batch_labeled"] == 2 * 3
    losses = [r["loss/total"] for r in read_jsonl(run / "scalars.jsonl")]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), losses


@pytest.mark.slow
def test_compiled_student_trains_evaluates_and_matches_eager(tmp_path, monkeypatch):
    # train.compile wraps the student in torch.compile (inductor on the CPU, which needs a C++
    # compiler: skipped without one). Two steps (BatchNorm on batch statistics, dropout) and the
    # final evaluation, compiled and eager, from the same weights on the same images. Inductor
    # draws dropout masks with its own generator unless told to fall back to eager's. Tolerances:
    # inductor fuses and reorders fp32 reductions (BN statistics, convolution gradients), about
    # 1e-7 relative per operation: the losses within 1e-4. The weight change goes through
    # train-mode BN's backward, whose cancellation amplifies that (2.5e-5 measured after one step,
    # 1.8e-3 after two, as channels_last's 2.6e-3 in fp32): within 1e-2, far below the O(1) of a
    # wrong or missing gradient.
    import torch._dynamo
    import torch._inductor.config

    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("torch.compile on the CPU needs a C++ compiler")
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    runs = {}
    for compiled in (False, True):
        cfg = tiny(tmp_path / str(compiled), iterations=2, compile=compiled, **SGD)
        cfg["method"] = dict(PLAIN_CE)
        trainer = Trainer(config_from_dict(cfg), progress=False)
        before = [p.detach().clone() for p in trainer.student.parameters()]
        result = trainer.fit()
        assert isinstance(trainer.model, torch._dynamo.eval_frame.OptimizedModule) == compiled
        change = torch.cat([(p.detach() - b).flatten() for p, b in zip(trainer.student.parameters(), before)])
        losses = [r["loss/total"] for r in read_jsonl(only_run(tmp_path / str(compiled)) / "scalars.jsonl")]
        runs[compiled] = (losses, change, result)
    (eager_losses, eager, eager_result), (losses, change, result) = runs[False], runs[True]
    assert len(losses) == 2 and losses == pytest.approx(eager_losses, rel=1e-4)
    assert eager.norm() > 0 and relative(change, eager) < 1e-2
    for model in ("student", "teacher"):
        assert result.final[model]["step"] == 2
        assert result.final[model]["miou"] == pytest.approx(eager_result.final[model]["miou"], abs=1e-3)

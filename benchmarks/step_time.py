"""Time per training step of AEL against the plain mean teacher on the same model and batch.

Both run the real trainer code (loaders, the method's step, partner stream, deferred logging, run
writer) on the synthetic set with ``data.unlabeled_gt=off``; only the method differs
(``configs/ablations/ael.yaml`` vs ``mean_teacher.yaml``); ``--measure-gt`` adds AEL with the
pseudo-label quality measured against the unlabeled images' truth. Prints the median step time of
each, the AEL overhead ratio, and a breakdown from profiler ranges: data, forward (teacher + student), AEL bookkeeping (the rest of
the step: Copy-Paste, CutMix bank / components / mixing, sampling, losses, banks), backward,
optimizer, EMA, store (scalar hand-off + run writer).

CPU, small model::

    python benchmarks/step_time.py

GPU, the paper's setting::

    python benchmarks/step_time.py --device cuda --backbone resnet101 --output-stride 8 --crop 769 \\
        --classes 19 --batch 8 --amp bf16 --channels-last --compile
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from ael.config import load_presets  # noqa: E402
from ael.engine.trainer import Trainer  # noqa: E402

RANGES = ("teacher_forward", "student_forward", "backward", "optimizer", "ema")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    """One method's trainer plus its step timer (the real trainer code, driven step by step)."""

    def __init__(self, overlay: str, args: argparse.Namespace, runs_dir: str, unlabeled_gt: str = "off") -> None:
        overrides = [f"data.unlabeled_gt={unlabeled_gt}",
            f"model.backbone={args.backbone}", f"model.output_stride={args.output_stride}",
            f"data.crop_size={args.crop}", f"data.synthetic.image_size={args.crop}",
            f"data.synthetic.num_classes={args.classes}", f"data.batch_size_labeled={args.batch}",
            f"data.batch_size_unlabeled={args.batch}", f"data.num_workers={args.workers}",
            f"train.device={args.device}", f"train.amp={args.amp}",
            f"train.channels_last={str(args.channels_last).lower()}", f"train.compile={str(args.compile).lower()}",
            f"run.runs_dir={runs_dir}", "train.iterations=100000", "train.media_every=0",
            "train.classes_every=100000", "train.eval.every=0", f"method.ohem.min_kept={args.min_kept}",
            "model.pretrained=none",
        ]
        cfg = load_presets([ROOT / "configs" / "synthetic.yaml", ROOT / "configs" / "ablations" / overlay], overrides)
        self.trainer = Trainer(cfg, progress=False)
        self.device = self.trainer.device
        self.totals: list[float] = []
        self.data_s: list[float] = []
        self.store_s: list[float] = []
        self.trainer.model.train()
        self.trainer.reporter.before_train(self.trainer)

    def one(self, record: bool = True) -> None:
        trainer, device = self.trainer, self.device
        _sync(device)
        t0 = time.perf_counter()
        trainer.run_iteration()
        _sync(device)
        t2 = time.perf_counter()
        trainer.reporter.after_step(trainer)  # the run-store hand-off: scalars one step late, the writer
        _sync(device)
        t3 = time.perf_counter()
        if record:
            self.totals.append(t3 - t0)
            self.data_s.append(trainer.last_data_s)
            self.store_s.append(t3 - t2)

    def profile(self, steps: int) -> dict[str, float]:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(steps):
                self.one(record=False)
        sections = {}
        for event in prof.key_averages():
            if event.key.startswith("ael."):
                if self.device.type == "cuda":
                    total_us = getattr(event, "device_time_total", 0.0) or getattr(event, "cuda_time_total", 0.0)
                else:
                    total_us = event.cpu_time_total
                sections[event.key[4:]] = total_us / 1e6 / steps
        return sections

    def summary(self, sections: dict[str, float]) -> dict[str, float]:
        step = statistics.median(self.totals)
        out = {"step": step, "data": statistics.median(self.data_s), "store": statistics.median(self.store_s)}
        for name in RANGES:
            out[name] = sections.get(name, 0.0)
        # What the named ranges leave of the step's compute: Copy-Paste, CutMix, sampling, losses, banks.
        compute = step - out["data"] - out["store"]
        out["bookkeeping"] = max(0.0, compute - sum(out[n] for n in RANGES))
        return out

    def close(self) -> None:
        self.trainer.writer.finish()
        self.trainer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--output-stride", type=int, default=16)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4, help="labeled and unlabeled images per step")
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--min-kept", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--profile-steps", type=int, default=3)
    parser.add_argument("--measure-gt", action="store_true",
                        help="also time AEL with data.unlabeled_gt=auto (the pseudo-label quality measurement)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as runs:
        benches = {name: Bench(f"{name}.yaml", args, runs) for name in ("mean_teacher", "ael")}
        if args.measure_gt:
            benches["ael+gt"] = Bench("ael.yaml", args, runs, unlabeled_gt="auto")
        for _ in range(args.warmup):
            for bench in benches.values():
                bench.one(record=False)
        # Interleaved, so a change in machine load hits both methods alike.
        for _ in range(args.steps):
            for bench in benches.values():
                bench.one()
        results = {name: bench.summary(bench.profile(args.profile_steps)) for name, bench in benches.items()}
        for bench in benches.values():
            bench.close()
    print(f"torch {torch.__version__}, device {args.device}, {args.backbone} OS{args.output_stride}, crop {args.crop}, "
          f"{args.classes} classes, batch {args.batch}+{args.batch}, amp {args.amp}, channels_last {args.channels_last}, "
          f"compile {args.compile}, threads {torch.get_num_threads()}")
    keys = ("step", "data", "teacher_forward", "student_forward", "bookkeeping", "backward", "optimizer", "ema",
            "store")
    print(f"{'seconds / step':<18}" + "".join(f"{k:>14}" for k in results))
    for key in keys:
        print(f"{key:<18}" + "".join(f"{results[m][key]:14.4f}" for m in results))
    ratio = results["ael"]["step"] / results["mean_teacher"]["step"]
    print(f"AEL overhead ratio (median step time AEL / mean teacher): {ratio:.3f}")
    if "ael+gt" in results:
        print(f"pseudo-label quality cost (median step time AEL with / without data.unlabeled_gt): "
              f"{results['ael+gt']['step'] / results['ael']['step']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

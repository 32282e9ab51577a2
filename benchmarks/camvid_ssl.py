"""CamVid, 1/8 labeled: supervised-only, mean teacher, CutMix-Seg and AEL with the same budget and seed.

Prints, for each method, the teacher's final (and best) validation mIoU and the IoU of the five
tail classes (Pole, SignSymbol, Fence, Pedestrian, Bicyclist). Every method is the same preset
(``configs/camvid_cpu.yaml`` or ``configs/camvid.yaml``) with one overlay of
``configs/ablations/`` on top, so they differ only in the switches of Table 3.

CPU, reduced setting (ResNet-18, half resolution; about an hour on two cores)::

    python benchmarks/camvid_ssl.py --setting cpu --iterations 300

GPU, full setting (ResNet-101 with ImageNet weights in the local torch cache, full resolution)::

    python benchmarks/camvid_ssl.py --setting full --device cuda --amp bf16
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ael.config import load_presets  # noqa: E402
from ael.engine.trainer import train  # noqa: E402

# CamVid's tail: Pole, SignSymbol, Fence, Pedestrian, Bicyclist (ael.data.camvid names).
TAIL = ("pole", "sign-symbol", "fence", "pedestrian", "bicyclist")
METHODS = {
    "supervised": "supervised.yaml",
    "mean_teacher": "mean_teacher.yaml",
    "cutmix_seg": "cutmix_seg.yaml",
    "ael": "ael.yaml",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=("cpu", "full"), default="cpu")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "camvid"))
    parser.add_argument("--iterations", type=int, default=None, help="default: 300 (cpu), 6000 (full)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--runs-dir", default="/tmp/camvid_ssl_runs")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not (Path(args.data) / "train.txt").is_file():
        print(f"CamVid not found at {args.data}; nothing to do")
        return 0
    preset = ROOT / "configs" / ("camvid_cpu.yaml" if args.setting == "cpu" else "camvid.yaml")
    iterations = args.iterations or (300 if args.setting == "cpu" else 6000)
    common = [f"data.root={args.data}", f"train.iterations={iterations}", f"train.seed={args.seed}",
              f"data.split.seed={args.seed}", f"train.device={args.device}", f"train.amp={args.amp}",
              f"run.runs_dir={args.runs_dir}", "train.eval.model=teacher", f"train.eval.every={iterations}",
              "train.media_every=0", f"train.checkpoint_every={iterations}", "train.classes_every=50"]
    if args.setting == "cpu":
        common += ["data.batch_size_labeled=2", "data.batch_size_unlabeled=2", "data.crop_size=160",
                   "method.unsup.rampup_iters=" + str(iterations // 4)]
    results = {}
    print(f"CamVid 1/8 labeled, {args.setting} setting ({preset.name}), {iterations} iterations, seed {args.seed}",
          flush=True)
    for method in args.methods.split(","):
        overlay = ROOT / "configs" / "ablations" / METHODS[method]
        cfg = load_presets([preset, overlay], [*common, f"run.name=camvid-{method}-{int(time.time())}"])
        start = time.time()
        result = train(cfg, preset=f"camvid-{method}", progress=False)
        final, best = result.final["teacher"], result.best["teacher"]
        names = result.class_names
        tail = {n: final["iou"][names.index(n)] for n in TAIL}
        results[method] = {"miou": final["miou"], "best_miou": best["miou"], "best_step": best["step"],
                           "tail": tail, "seconds": time.time() - start, "run": str(result.run_dir)}
        print(f"{method:<13} mIoU {100 * final['miou']:5.1f} (best {100 * best['miou']:5.1f})  tail "
              + " ".join(f"{n} {'-' if v is None or math.isnan(v) else f'{100 * v:.1f}'}" for n, v in tail.items())
              + f"  [{time.time() - start:.0f} s]", flush=True)
    print("\nmethod         mIoU   tail mean  " + "  ".join(f"{n:>10}" for n in TAIL))
    for method, r in results.items():
        vals = [v for v in r["tail"].values() if v is not None and not math.isnan(v)]
        print(f"{method:<13} {100 * r['miou']:5.1f}   {100 * sum(vals) / max(len(vals), 1):8.1f}  "
              + "  ".join(f"{100 * (v or 0):10.1f}" for v in r["tail"].values()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

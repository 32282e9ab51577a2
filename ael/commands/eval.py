"""``ael eval``: a checkpoint's mIoU and per-class IoU under any evaluation protocol; coloured predictions.

Examples::

    ael eval --checkpoint runs/20260101-120000-synthetic
    ael eval --checkpoint runs/x/checkpoints/ckpt_00002000.pt --split val --model student --out preds/
    ael eval --checkpoint ckpt.pt --config configs/camvid.yaml data.root=/data/camvid
    ael eval --checkpoint runs/x --mode sliding --crop-size 769 --flip --scales 0.75,1,1.25

``--checkpoint`` takes a checkpoint file or a run folder (its latest valid checkpoint). The
config is the one saved in the checkpoint unless ``--config`` names presets; ``key=value``
overrides apply on top (e.g. ``train.eval.mode=sliding``). ``--mode``, ``--crop-size``,
``--stride-ratio``, ``--flip`` and ``--scales`` set ``train.eval.*`` (the protocols:
:mod:`ael.engine.evaluate`). ``--model both`` (the default) evaluates the teacher and the student.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ael.config import ConfigError, apply_overrides, config_from_dict

__all__ = ["cli_main", "evaluate_checkpoint"]

logger = logging.getLogger(__name__)


def _load(checkpoint: Path, device: torch.device) -> tuple[Path, dict[str, Any]]:
    from ael.engine.checkpoint import CheckpointError, load_checkpoint, load_latest_valid
    from ael.runs.schema import CHECKPOINTS_DIR

    if checkpoint.is_dir():
        folder = checkpoint / CHECKPOINTS_DIR if (checkpoint / CHECKPOINTS_DIR).is_dir() else checkpoint
        found = load_latest_valid(folder, map_location=device)
        if found is None:
            raise CheckpointError(f"{checkpoint}: no checkpoint file in {folder}")
        return found
    return checkpoint, load_checkpoint(checkpoint, map_location=device)


def evaluate_checkpoint(checkpoint: str | Path, *, presets: Sequence[str] = (), overrides: Sequence[str] = (),
                        split: str = "val", model: str = "teacher", out: str | Path | None = None,
                        device: str = "auto", max_images: int | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint's teacher and/or student on ``split``; optionally save coloured predictions.

    Args:
        checkpoint: a checkpoint file or a run folder.
        presets: config files to use instead of the checkpoint's own config.
        overrides: ``key=value`` overrides (``train.eval.mode=sliding``, ...).
        split: the dataset split to evaluate (``val``, ``train``, ...; it must have labels).
        model: ``teacher``, ``student`` or ``both``.
        out: folder for ``<id>.png`` coloured predictions (created; files stay inside it; with
            ``both``, one sub-folder per model). Predictions are of the whole image, whatever the mode.
        device: ``auto``, ``cpu`` or ``cuda``.
        max_images: evaluate only the first images (a quick look).

    Returns:
        ``{"miou", "iou", "acc"}`` of the first model evaluated (teacher before student), with
        ``"models"`` (name -> its ``{"miou", "iou", "acc"}``), ``"mode"`` (the protocol in words),
        ``"num_images"``, ``"class_names"``, ``"split"`` and ``"checkpoint"``.

    Raises:
        CheckpointError / CheckpointMismatchError: unreadable checkpoint, or another model or
            class count than the config's dataset.
        ConfigError, DatasetError: bad config or data.
    """
    from ael.data.registry import build_dataset
    from ael.data.transforms import Normalize
    from ael.data.views import ValSet, pad_collate
    from ael.engine.checkpoint import (
        CheckpointMismatchError,
        check_state_dict_compatible,
        checkpoint_metadata,
    )
    from ael.engine.distributed import resolve_device
    from ael.engine.evaluate import describe_mode, evaluate
    from ael.models import build_model
    from ael.models.precision import amp_dtype

    if model not in ("teacher", "student", "both"):
        raise ConfigError(f"--model must be 'teacher', 'student' or 'both', got {model!r}")
    dev = resolve_device(device)
    path, data = _load(Path(checkpoint), dev)
    if presets:
        from ael.config import load_presets

        cfg = load_presets(presets, overrides)
    else:
        saved = data.get("config")
        if not isinstance(saved, str):
            raise ConfigError(f"{path}: the checkpoint holds no config; pass --config")
        raw = load_yaml_text(saved, str(path))
        if overrides:
            apply_overrides(raw, overrides)
        cfg = config_from_dict(raw, f"{path} (saved config)" + (" + command line" if overrides else ""))
    dataset = build_dataset(cfg.data, split)
    info = dataset.info
    expected = checkpoint_metadata(num_classes=info.num_classes, backbone=cfg.model.backbone)
    meta = data["metadata"]
    for key in ("num_classes", "backbone"):
        if meta.get(key) != expected[key]:
            raise CheckpointMismatchError(
                f"{path}: checkpoint was saved with {key}={meta.get(key)!r}, but the config's "
                f"{'dataset ' + cfg.data.dataset if key == 'num_classes' else 'model'} has {key}={expected[key]!r}")
    net = build_model(cfg.model, info.num_classes).to(dev)
    ecfg = cfg.train.eval
    val = ValSet(dataset, Normalize(cfg.data.mean, cfg.data.std))
    if max_images is not None:
        val = torch.utils.data.Subset(val, range(min(max_images, len(val))))
    loader = torch.utils.data.DataLoader(val, batch_size=1, collate_fn=pad_collate)
    crop = ecfg.crop_size or cfg.data.crop_size
    kwargs = {"crop_size": crop, "stride_ratio": ecfg.stride_ratio, "scales": ecfg.scales, "flip": ecfg.flip,
              "amp_dtype": amp_dtype(cfg.train.amp)}
    names = ["teacher", "student"] if model == "both" else [model]
    results: dict[str, dict[str, Any]] = {}
    num_images = 0
    for name in names:
        if name not in data:
            raise CheckpointMismatchError(f"{path}: the checkpoint holds no {name} weights")
        check_state_dict_compatible(data[name], net, source=path)
        net.load_state_dict(data[name])
        net.eval()
        result = evaluate(net, loader, num_classes=info.num_classes, ignore_index=info.ignore_index, device=dev,
                          mode=ecfg.mode, **kwargs)
        num_images = result.num_images
        results[name] = {"miou": float(result.miou), "iou": [float(v) for v in result.iou.tolist()],
                         "acc": float(result.acc)}
        if out is not None:
            _write_predictions(net, loader, dataset, Path(out) / name if model == "both" else Path(out),
                               dev, kwargs if ecfg.mode == "sliding" else {**kwargs, "crop_size": None},
                               mode="sliding" if ecfg.mode == "sliding" else "whole")
    return {**results[names[0]], "models": results,
            "mode": describe_mode(ecfg.mode, crop_size=crop, stride_ratio=ecfg.stride_ratio, scales=ecfg.scales,
                                  flip=ecfg.flip),
            "num_images": num_images, "class_names": list(info.class_names), "split": split,
            "checkpoint": str(path)}


def _write_predictions(net: Any, loader: Any, dataset: Any, out_dir: Path, dev: torch.device,
                       kwargs: dict[str, Any], *, mode: str) -> None:
    from ael.engine.evaluate import predict
    from ael.viz import colorize, save_png

    out_dir.mkdir(parents=True, exist_ok=True)
    palette = np.asarray(dataset.info.palette, dtype=np.uint8)
    for batch in loader:
        h, w = (int(v) for v in batch["size"][0])
        pred = predict(net, batch["image"].to(dev), mode=mode, **kwargs)[0, :h, :w].cpu().numpy()
        index = int(batch["index"][0])
        sample_id = dataset.ids[index]
        # Ids may hold folders ("frankfurt/x"); flatten them so files stay inside out_dir.
        name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in sample_id).lstrip(".") or f"{index}"
        save_png(out_dir / f"{name}.png", colorize(pred.astype(np.uint8), palette))


def load_yaml_text(text: str, source: str) -> dict[str, Any]:
    """A config saved as YAML text inside a checkpoint, as a dict."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid saved config: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the saved config is not a mapping")
    return data


def _protocol_overrides(args: argparse.Namespace) -> list[str]:
    """``train.eval.*`` overrides from the protocol flags (validated by the config like any other)."""
    out = []
    if args.mode is not None:
        out.append(f"train.eval.mode={args.mode}")
        if args.mode == "whole" and args.crop_size is None:
            out.append("train.eval.crop_size=null")  # a saved sliding crop does not apply to whole images
    if args.crop_size is not None:
        out.append(f"train.eval.crop_size={args.crop_size}")
    if args.stride_ratio is not None:
        out.append(f"train.eval.stride_ratio={args.stride_ratio}")
    if args.flip:
        out.append("train.eval.flip=true")
    if args.scales is not None:
        out.append(f"train.eval.scales=[{args.scales}]")
    return out


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``ael eval``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="ael eval", description="Evaluate a checkpoint (mIoU, per-class IoU).")
    parser.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="presets to use instead of the checkpoint's saved config (repeat to overlay)")
    parser.add_argument("--split", default="val", help="dataset split to evaluate (default: val)")
    parser.add_argument("--model", default="both", choices=("teacher", "student", "both"))
    parser.add_argument("--mode", choices=("whole", "center_crop", "sliding"),
                        help="evaluation protocol (default: the config's train.eval.mode)")
    parser.add_argument("--crop-size", type=int, help="sliding window / centre crop (default: the config's)")
    parser.add_argument("--stride-ratio", type=float, help="sliding stride as a fraction of the window (2/3: 0.6667)")
    parser.add_argument("--flip", action="store_true", help="also infer the mirrored image")
    parser.add_argument("--scales", help="multi-scale factors, e.g. 0.5,0.75,1,1.25,1.5,1.75")
    parser.add_argument("--out", help="write coloured predictions (<id>.png) to this folder")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value")
    args = parser.parse_args(argv)
    res = evaluate_checkpoint(args.checkpoint, presets=args.config,
                              overrides=[*args.overrides, *_protocol_overrides(args)], split=args.split,
                              model=args.model, out=args.out, device=args.device, max_images=args.max_images)
    models = res["models"]
    print(f"{res['checkpoint']} on {args.split} ({res['num_images']} images), {res['mode']}:")
    print(f"  {'':<20} " + " ".join(f"{name:>8}" for name in models))
    print(f"  {'mIoU':<20} " + " ".join(f"{100 * m['miou']:>8.2f}" for m in models.values()))
    print(f"  {'pixel acc':<20} " + " ".join(f"{100 * m['acc']:>8.2f}" for m in models.values()))
    for k, name in enumerate(res["class_names"]):
        cells = ("-" if math.isnan(m["iou"][k]) else f"{100 * m['iou'][k]:.1f}" for m in models.values())
        print(f"  {name:<20} " + " ".join(f"{c:>8}" for c in cells))
    if args.out:
        print(f"coloured predictions in {args.out}")
    return 0

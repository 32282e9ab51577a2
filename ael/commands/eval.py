"""``ael eval``: evaluate a checkpoint on a dataset split and write coloured predictions.

Examples::

    ael eval --checkpoint runs/20260101-120000-synthetic
    ael eval --checkpoint runs/x/checkpoints/ckpt_00002000.pt --split val --model student --out preds/
    ael eval --checkpoint ckpt.pt --config configs/camvid.yaml data.root=/data/camvid

``--checkpoint`` takes a checkpoint file or a run folder (its latest valid checkpoint). The
config is the one saved in the checkpoint unless ``--config`` names presets; ``key=value``
overrides apply on top (e.g. ``train.eval.mode=sliding``).
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
    """Evaluate a checkpoint's teacher or student on ``split`` and optionally save coloured predictions.

    Args:
        checkpoint: a checkpoint file or a run folder.
        presets: config files to use instead of the checkpoint's own config.
        overrides: ``key=value`` overrides.
        split: the dataset split to evaluate (``val``, ``train``, ...; it must have labels).
        model: ``teacher`` or ``student``.
        out: folder for ``<id>.png`` coloured predictions (created; files stay inside it).
        device: ``auto``, ``cpu`` or ``cuda``.
        max_images: evaluate only the first images (a quick look).

    Returns:
        ``{"miou", "iou", "acc", "num_images", "class_names", "checkpoint"}``.

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
    from ael.engine.evaluate import evaluate, predict
    from ael.models import build_model
    from ael.models.precision import amp_dtype
    from ael.viz import colorize, save_png

    if model not in ("teacher", "student"):
        raise ConfigError(f"--model must be 'teacher' or 'student', got {model!r}")
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
    state = data[model]
    check_state_dict_compatible(state, net, source=path)
    net.load_state_dict(state)
    net.eval()
    ecfg = cfg.train.eval
    val = ValSet(dataset, Normalize(cfg.data.mean, cfg.data.std))
    if max_images is not None:
        val = torch.utils.data.Subset(val, range(min(max_images, len(val))))
    loader = torch.utils.data.DataLoader(val, batch_size=1, collate_fn=pad_collate)
    kwargs = {"mode": ecfg.mode, "crop_size": ecfg.crop_size or cfg.data.crop_size, "stride_ratio": ecfg.stride_ratio,
              "scales": ecfg.scales, "flip": ecfg.flip, "amp_dtype": amp_dtype(cfg.train.amp)}
    result = evaluate(net, loader, num_classes=info.num_classes, ignore_index=info.ignore_index, device=dev,
                      **kwargs)
    if out is not None:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        palette = np.asarray(info.palette, dtype=np.uint8)
        for batch in loader:
            h, w = (int(v) for v in batch["size"][0])
            pred = predict(net, batch["image"].to(dev), **kwargs)[0, :h, :w].cpu().numpy()
            index = int(batch["index"][0])
            sample_id = dataset.ids[index]
            # Ids may hold folders ("frankfurt/x"); flatten them so files stay inside out_dir.
            name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in sample_id).lstrip(".") or f"{index}"
            save_png(out_dir / f"{name}.png", colorize(pred.astype(np.uint8), palette))
    return {"miou": float(result.miou), "iou": [float(v) for v in result.iou.tolist()], "acc": float(result.acc),
            "num_images": result.num_images, "class_names": list(info.class_names), "checkpoint": str(path)}


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


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``ael eval``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="ael eval", description="Evaluate a checkpoint (mIoU, per-class IoU).")
    parser.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="presets to use instead of the checkpoint's saved config (repeat to overlay)")
    parser.add_argument("--split", default="val", help="dataset split to evaluate (default: val)")
    parser.add_argument("--model", default="teacher", choices=("teacher", "student"))
    parser.add_argument("--out", help="write coloured predictions (<id>.png) to this folder")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value")
    args = parser.parse_args(argv)
    res = evaluate_checkpoint(args.checkpoint, presets=args.config, overrides=args.overrides, split=args.split,
                              model=args.model, out=args.out, device=args.device, max_images=args.max_images)
    print(f"{res['checkpoint']}: {args.model} on {args.split} ({res['num_images']} images): "
          f"mIoU {100 * res['miou']:.2f}, pixel acc {100 * res['acc']:.2f}")
    for name, v in zip(res["class_names"], res["iou"]):
        print(f"  {name:<20} {'-' if math.isnan(v) else f'{100 * v:.1f}'}")
    if args.out:
        print(f"coloured predictions in {args.out}")
    return 0

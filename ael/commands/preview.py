"""``ael preview``: PNG previews of adaptive Copy-Paste and adaptive CutMix for a confidence bank.

Draws images of the synthetic default, takes a confidence bank (uniform, or given per class on
the command line), and writes to a folder:

- ``distributions.png``: the bank next to the three distributions it induces (Copy-Paste,
  CutMix, equalization ratio r_c);
- ``copy_paste.png``: target, paste source, and the result (image and label), one row per draw;
- ``cutmix.png``: image i, partner j with the sampled class tinted, the box framed and the chosen
  component outlined in magenta, and the mixed image and label, one row per draw.

It runs the same :mod:`ael.core` functions as the trainer (through :class:`ael.lab.AugmentationLab`);
ground-truth maps stand in for teacher predictions since no model is involved.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ael import viz
from ael.config import SyntheticConfig
from ael.viz.sample_panels import BOX_COLOUR, OUTLINE_COLOUR

__all__ = ["PreviewError", "build_bank", "cli_main", "write_previews"]


class PreviewError(ValueError):
    """A bad ``ael preview`` argument; the message names it."""


def build_bank(class_names: Sequence[str], *, uniform: float = 0.5, bank: str | None = None,
               conf: Sequence[str] = ()) -> np.ndarray:
    """The ``(C,)`` confidence bank the command line describes.

    Args:
        class_names: the dataset's classes.
        uniform: value of every class not set otherwise.
        bank: all C values, comma-separated (``0.9,0.8,...``).
        conf: ``NAME=VALUE`` or ``INDEX=VALUE`` entries that set single classes.

    Raises:
        PreviewError: naming the class or value at fault.
    """
    num_classes = len(class_names)
    _check_unit("--uniform", uniform)
    values = np.full(num_classes, uniform, dtype=np.float64)
    if bank is not None:
        parts = [p for p in bank.split(",") if p.strip()]
        if len(parts) != num_classes:
            raise PreviewError(f"--bank needs {num_classes} comma-separated values (one per class), got {len(parts)}")
        for i, part in enumerate(parts):
            values[i] = _check_unit(f"--bank value {i + 1} ({class_names[i]})", _parse_float("--bank", part))
    lookup = {name: i for i, name in enumerate(class_names)}
    for entry in conf:
        if "=" not in entry:
            raise PreviewError(f"--conf {entry!r} must look like CLASS=VALUE (e.g. {class_names[-1]}=0.2)")
        key, raw = entry.split("=", 1)
        key = key.strip()
        if key in lookup:
            index = lookup[key]
        elif key.isdigit() and int(key) < num_classes:
            index = int(key)
        else:
            raise PreviewError(f"--conf: unknown class {key!r} (classes: {', '.join(class_names)})")
        values[index] = _check_unit(f"--conf {key}", _parse_float(f"--conf {key}", raw))
    return values


def _parse_float(what: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise PreviewError(f"{what}: {text.strip()!r} is not a number") from None


def _check_unit(what: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise PreviewError(f"{what} = {value} is outside [0, 1]: a confidence is a probability")
    return value


def _writable_folder(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise PreviewError(f"--out {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PreviewError(f"--out {path}: cannot create the folder ({err.strerror or err})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PreviewError(f"--out {path}: the folder is not writable")
    return path


def write_previews(out: Path, bank: np.ndarray, *, lab, palette, draws: int = 4, seed: int = 0,
                   gamma2: float = 1.0) -> dict[str, Path]:
    """Draw Copy-Paste and CutMix ``draws`` times from ``bank`` and write the three PNGs.

    Returns:
        The written files by name (``distributions``, ``copy_paste``, ``cutmix``).
    """
    names = lab.class_names
    dist = lab.distributions(bank, gamma2=gamma2)
    files = {
        "distributions": out / "distributions.png",
        "copy_paste": out / "copy_paste.png",
        "cutmix": out / "cutmix.png",
    }
    chart = viz.bar_chart(
        {"bank (Conf)": dist.bank, "Copy-Paste p": dist.copy_paste, "CutMix p": dist.cutmix,
         "r_c": dist.sampling_ratio},
        names, title="Confidence bank and the class distributions it induces",
    )
    viz.save_png(files["distributions"], chart)

    def label_rgb(label: np.ndarray) -> np.ndarray:
        return viz.colorize(label, palette)

    cp_tiles, cp_captions = [], []
    for n in range(draws):
        draw = lab.copy_paste(bank, seed=seed + n)
        pasted = ",".join(names[c] for c in draw.pasted) or "none"
        chosen = ",".join(names[c] for c in draw.chosen)
        cp_tiles += [draw.image, label_rgb(draw.label), draw.source_image, label_rgb(draw.source_label),
                     draw.result_image, label_rgb(draw.result_label)]
        cp_captions += [f"target {draw.target}", "label", f"source {draw.source}", f"drawn {chosen}",
                        "result", f"pasted {pasted}"]
    viz.save_png(files["copy_paste"], viz.tile(cp_tiles, cp_captions, columns=6))

    cm_tiles, cm_captions = [], []
    for n in range(draws):
        draw = lab.cutmix(bank, seed=seed + n)
        cls = names[draw.sampled_class]
        how = "component" if draw.from_component else "random"
        # The class's pixels tinted, the box framed just outside it, and the one component whose
        # box was cut outlined (as on the dashboard's Pseudo-labels page).
        partner = viz.overlay(draw.b, np.where(draw.component_mask, draw.sampled_class, 255), palette, alpha=0.6)
        partner = viz.draw_outline(viz.draw_box(partner, draw.box, colour=BOX_COLOUR, outside=True), draw.component,
                                   colour=OUTLINE_COLOUR)
        cm_tiles += [draw.a, partner, viz.draw_box(draw.mixed, draw.box, colour=BOX_COLOUR, outside=True),
                     viz.draw_box(label_rgb(draw.mixed_label), draw.box, colour=BOX_COLOUR, outside=True)]
        cm_captions += [f"i = {draw.image_a}", f"j = {draw.image_b}: {cls}", f"mix: {how}", "mixed label"]
    viz.save_png(files["cutmix"], viz.tile(cm_tiles, cm_captions, columns=4))
    return files


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ael preview",
        description="Write PNG previews of adaptive Copy-Paste and adaptive CutMix on the synthetic default "
        "for a confidence bank (uniform, or set per class).",
    )
    parser.add_argument("--out", type=Path, default=Path("preview"), help="output folder (default: preview)")
    parser.add_argument("--uniform", type=float, default=0.5, help="confidence of every class not set (default 0.5)")
    parser.add_argument("--bank", help="all C confidences, comma-separated, in class order")
    parser.add_argument("--conf", action="append", default=[], metavar="CLASS=VALUE",
                        help="set one class's confidence by name or index (repeatable)")
    parser.add_argument("--draws", type=int, default=4, help="draws of each augmentation (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-classes", type=int, default=SyntheticConfig.num_classes)
    parser.add_argument("--k", type=int, default=3, help="Copy-Paste categories drawn per image (default 3)")
    parser.add_argument("--area-thresh", type=float, default=0.005, help="CutMix component area (default 0.005)")
    parser.add_argument("--area-thresh2", type=float, default=0.01, help="CutMix-bank area (default 0.01)")
    parser.add_argument("--gamma2", type=float, default=1.0, help="equalization exponent (default 1)")
    return parser


def cli_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ael preview``."""
    args = _parser().parse_args(argv)
    from ael.data.synthetic import SyntheticSegmentation
    from ael.lab import AugmentationLab

    if args.draws < 1:
        raise PreviewError(f"--draws must be >= 1, got {args.draws}")
    if not 2 <= args.num_classes <= 64:
        raise PreviewError(f"--num-classes must be in [2, 64], got {args.num_classes}")
    if args.gamma2 <= 0:
        raise PreviewError(f"--gamma2 must be > 0, got {args.gamma2}")
    dataset = SyntheticSegmentation("labeled", num_classes=args.num_classes)
    names = dataset.info.class_names
    bank = build_bank(names, uniform=args.uniform, bank=args.bank, conf=args.conf)
    out = _writable_folder(args.out)
    try:
        lab = AugmentationLab.from_dataset(dataset, num_images=16, num_categories=args.k,
                                           area_thresh=args.area_thresh, area_thresh2=args.area_thresh2)
    except ValueError as err:
        raise PreviewError(str(err)) from None
    files = write_previews(out, bank, lab=lab, palette=dataset.info.palette, draws=args.draws, seed=args.seed,
                           gamma2=args.gamma2)
    dist = lab.distributions(bank, gamma2=args.gamma2)
    width = max(len(n) for n in names)
    print(f"{'class'.ljust(width)}   bank  copy-paste  cutmix    r_c")
    for c, name in enumerate(names):
        print(f"{name.ljust(width)}  {dist.bank[c]:5.3f}  {dist.copy_paste[c]:10.3f}  {dist.cutmix[c]:6.3f}  "
              f"{dist.sampling_ratio[c]:5.3f}")
    for kind, path in files.items():
        print(f"wrote {kind}: {path}")
    return 0

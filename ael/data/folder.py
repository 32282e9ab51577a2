"""A plain folder: ``images/`` and ``masks/`` matched by file stem, for one's own data.

Layout: either flat (``images/*.jpg``, ``masks/*.png``: everything is the ``train`` split) or
per split (``images/train/``, ``images/val/``, ``masks/train/``, ...). In ``train``, images
without a mask are unlabeled images; in any other split every image needs its mask.

Classes come from ``classes.yaml`` at the root::

    classes: [background, crack, rust]       # required, label order
    palette: [[0, 0, 0], [255, 0, 0], [0, 0, 255]]   # optional
    ignore_index: 255                        # optional

or, without that file, are inferred from the masks (0 .. max value seen, the ignore index
excluded; palette from the masks' own PNG palette when they carry one).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from ael.data.base import DatasetError
from ael.data.disk import FilePair, FileSegmentationDataset, identity_lut
from ael.data.info import IGNORE_INDEX, DatasetInfo, default_palette

__all__ = ["IMAGE_SUFFIXES", "open_folder", "read_classes_yaml"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_YAML_KEYS = {"classes", "palette", "ignore_index"}


def read_classes_yaml(path: Path) -> DatasetInfo:
    """Parse ``classes.yaml``; errors name the file and the key at fault."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise DatasetError(f"{path}: cannot read ({err})") from err
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with a 'classes' list")
    unknown = sorted(set(data) - _YAML_KEYS)
    if unknown:
        raise DatasetError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_YAML_KEYS))})")
    names = data.get("classes")
    if not isinstance(names, list) or not names or not all(isinstance(n, (str, int)) for n in names):
        raise DatasetError(f"{path}: 'classes' must be a non-empty list of names")
    palette = data.get("palette", None)
    if palette is None:
        palette = default_palette(len(names))
    elif not isinstance(palette, list) or len(palette) != len(names) or not all(
        isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
        for c in palette
    ):
        raise DatasetError(f"{path}: 'palette' must list one [r, g, b] (0..255) per class ({len(names)})")
    ignore = data.get("ignore_index", IGNORE_INDEX)
    if not isinstance(ignore, int) or not 0 <= ignore <= 255:
        raise DatasetError(f"{path}: 'ignore_index' must be an integer in 0..255, got {ignore!r}")
    try:
        return DatasetInfo(name="folder", class_names=tuple(str(n) for n in names),
                           palette=tuple(tuple(c) for c in palette), ignore_index=ignore)
    except ValueError as err:
        raise DatasetError(f"{path}: {err}") from err


def _split_dirs(root: Path, split: str) -> tuple[Path, Path]:
    images, masks = root / "images", root / "masks"
    if not images.is_dir():
        raise DatasetError(f"{images}: folder dataset needs an images/ folder")
    if (images / split).is_dir():
        return images / split, masks / split
    if split == "train":
        return images, masks
    raise DatasetError(f"{images / split}: no such split folder (a flat images/ folder is the train split)")


def _folder_pairs(root: Path, split: str, lut: np.ndarray | None) -> list[FilePair]:
    image_dir, mask_dir = _split_dirs(root, split)
    images = sorted(p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    masks = {}
    if mask_dir.is_dir():
        masks = {p.stem: p for p in mask_dir.iterdir() if p.is_file() and p.suffix.lower() == ".png"}
    elif split != "train":
        raise DatasetError(f"{mask_dir}: split {split!r} needs its masks folder")
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise DatasetError(f"{image_dir}: two images share the stem {dup!r}")
    pairs = []
    for image in images:
        mask = masks.get(image.stem)
        if mask is None and split != "train":
            raise DatasetError(f"{image}: image without mask (expected {mask_dir / (image.stem + '.png')})")
        pairs.append(FilePair(id=image.stem, image=image, mask=mask, lut=lut))
    orphans = sorted(set(masks) - set(stems))
    if orphans:
        logger.warning("%s: %d mask(s) without an image, ignored (first: %s.png)", mask_dir, len(orphans),
                       orphans[0])
    return pairs


def _infer_info(root: Path, cache_dir: str | Path | None) -> DatasetInfo:
    """Classes 0..max value seen in any mask (ignore excluded); palette from a palette PNG."""
    probe = DatasetInfo(name="folder", class_names=tuple(f"class_{i}" for i in range(255)),
                        palette=default_palette(255))
    seen: set[int] = set()
    palette_source = None
    splits = [p.name for p in (root / "images").iterdir() if p.is_dir()] or ["train"]
    for split in splits:
        pairs = [p for p in _folder_pairs(root, split, None) if p.mask is not None]
        if not pairs:
            continue
        ds = FileSegmentationDataset(info=probe, pairs=pairs, root=root, split=split, cache_dir=cache_dir)
        seen |= {int(v) for v in np.flatnonzero(ds.raw_counts())}
        palette_source = palette_source or pairs[0].mask
    if not seen:
        raise DatasetError(f"{root}: no classes.yaml and no masks to infer the classes from")
    num_classes = max(seen) + 1
    palette = default_palette(num_classes)
    if palette_source is not None:
        with Image.open(palette_source) as im:
            flat = im.getpalette() if im.mode == "P" else None
        if flat is not None and len(flat) >= 3 * num_classes:
            palette = tuple(tuple(flat[3 * i: 3 * i + 3]) for i in range(num_classes))
    logger.info("%s: no classes.yaml; inferred %d classes from the masks", root, num_classes)
    return DatasetInfo(name="folder", class_names=tuple(f"class_{i}" for i in range(num_classes)),
                       palette=palette)


def open_folder(root: str | Path, split: str = "train", *, cache_dir: str | Path | None = None,
                validate: bool = True) -> FileSegmentationDataset:
    """Open a plain folder dataset split; ids are image stems."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    classes_file = root / "classes.yaml"
    info = read_classes_yaml(classes_file) if classes_file.is_file() else _infer_info(root, cache_dir)
    ignore = () if info.ignore_index > 255 else (info.ignore_index,)
    lut = identity_lut(info.num_classes, ignore_values=ignore)
    if info.ignore_index != IGNORE_INDEX:
        # Labels are handed on with the library-wide ignore value 255.
        info = DatasetInfo(info.name, info.class_names, info.palette, IGNORE_INDEX)
    return FileSegmentationDataset(info=info, pairs=_folder_pairs(root, split, lut), root=root,
                                   split=split, cache_dir=cache_dir, validate=validate)

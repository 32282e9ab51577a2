"""ADE20K (SceneParsing 150): ``ADEChallengeData2016/{images,annotations}/{training,validation}``.

Annotation value 0 is "other" and becomes the ignore index; values 1..150 shift down by one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ael.data.base import DatasetError
from ael.data.disk import INVALID, FilePair, FileSegmentationDataset
from ael.data.info import IGNORE_INDEX, DatasetInfo, default_palette

__all__ = ["ADE20K_INFO", "open_ade20k"]

_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair",
    "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box",
    "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair",
    "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole",
    "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship",
    "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel",
    "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket",
    "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
# Index 0 of the VOC colour map is black; start at 1 so no class is drawn black.
ADE20K_INFO = DatasetInfo(name="ade20k", class_names=_NAMES, palette=default_palette(151)[1:])

_LUT = np.full(256, INVALID, dtype=np.int16)
_LUT[0] = IGNORE_INDEX
_LUT[1:151] = np.arange(150)
_LUT[255] = IGNORE_INDEX
_FOLDERS = {"train": "training", "val": "validation"}


def _find_root(root: Path) -> Path:
    for candidate in (root, root / "ADEChallengeData2016"):
        if (candidate / "images").is_dir():
            return candidate
    raise DatasetError(f"{root}: not an ADE20K folder (no images/ nor ADEChallengeData2016/images/)")


def open_ade20k(root: str | Path, split: str, *, cache_dir: str | Path | None = None,
                validate: bool = True) -> FileSegmentationDataset:
    """Open ADE20K ``train`` (20 210 images) or ``val`` (2 000); ids are image stems."""
    if split not in _FOLDERS:
        raise DatasetError(f"ade20k: unknown split {split!r} (expected one of {tuple(_FOLDERS)})")
    base = _find_root(Path(root))
    image_dir = base / "images" / _FOLDERS[split]
    mask_dir = base / "annotations" / _FOLDERS[split]
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: ADE20K folder not found")
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
        raise DatasetError(f"{image_dir}: no images")
    pairs = [FilePair(id=p.stem, image=p, mask=mask_dir / f"{p.stem}.png", lut=_LUT) for p in images]
    return FileSegmentationDataset(info=ADE20K_INFO, pairs=pairs, root=base, split=split,
                                   cache_dir=cache_dir, validate=validate)

"""Pascal VOC 2012 with the SBD augmentation, as ``VOCdevkit/VOC2012`` holds it.

Splits: ``train`` (the 1 464 finely annotated images), ``val`` (1 449) and ``train_aug``
(10 582). ``train_aug`` comes from a list file when one exists (``ImageSets/Segmentation/train_aug.txt``,
``ImageSets/SegmentationAug/train_aug.txt`` or ``train_aug.txt`` at the root; lines are ids or
``/JPEGImages/x.jpg /SegmentationClassAug/x.png``), otherwise from the masks in
``SegmentationClassAug`` minus ``val``, which is how the set is defined. An image's mask is
``SegmentationClass/<id>.png`` when present (VOC's own annotation, colour-palette PNG whose
indices are the classes) and ``SegmentationClassAug/<id>.png`` otherwise.
"""

from __future__ import annotations

from pathlib import Path

from ael.data.base import DatasetError
from ael.data.disk import FilePair, FileSegmentationDataset, identity_lut
from ael.data.info import DatasetInfo, default_palette

__all__ = ["VOC_INFO", "open_voc"]

VOC_INFO = DatasetInfo(
    name="voc",
    class_names=("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
                 "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
                 "sheep", "sofa", "train", "tvmonitor"),
    palette=default_palette(21),
)
_LUT = identity_lut(21)
SPLITS = ("train", "val", "train_aug")
_AUG_LISTS = ("ImageSets/Segmentation/train_aug.txt", "ImageSets/SegmentationAug/train_aug.txt",
              "train_aug.txt")


def _find_root(root: Path) -> Path:
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise DatasetError(f"{root}: not a VOC 2012 folder (no JPEGImages/, VOC2012/ or VOCdevkit/VOC2012/)")


def _read_ids(list_file: Path) -> list[str]:
    ids = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            ids.append(Path(fields[0]).stem)  # "2007_000032" or "/JPEGImages/2007_000032.jpg"
    if not ids:
        raise DatasetError(f"{list_file}: the list is empty")
    return ids


def _split_ids(base: Path, split: str) -> list[str]:
    lists = base / "ImageSets" / "Segmentation"
    if split in ("train", "val"):
        list_file = lists / f"{split}.txt"
        if not list_file.is_file():
            raise DatasetError(f"{list_file}: VOC list file not found")
        return _read_ids(list_file)
    for rel in _AUG_LISTS:
        if (base / rel).is_file():
            return _read_ids(base / rel)
    aug = base / "SegmentationClassAug"
    if not aug.is_dir():
        raise DatasetError(
            f"{base}: train_aug needs SegmentationClassAug/ (SBD masks) or a train_aug list "
            f"({', '.join(_AUG_LISTS)})"
        )
    val = set(_split_ids(base, "val"))
    return sorted(p.stem for p in aug.glob("*.png") if p.stem not in val)


def open_voc(root: str | Path, split: str, *, cache_dir: str | Path | None = None,
             validate: bool = True) -> FileSegmentationDataset:
    """Open a VOC split (``train``, ``val`` or ``train_aug``); ids are VOC image ids."""
    if split not in SPLITS:
        raise DatasetError(f"voc: unknown split {split!r} (expected one of {SPLITS})")
    base = _find_root(Path(root))
    fine, aug = base / "SegmentationClass", base / "SegmentationClassAug"
    if not fine.is_dir() and not aug.is_dir():
        raise DatasetError(f"{base}: neither SegmentationClass/ nor SegmentationClassAug/ found")
    pairs = []
    for image_id in _split_ids(base, split):
        mask = fine / f"{image_id}.png"
        if not mask.is_file():
            mask = aug / f"{image_id}.png"
        if not mask.is_file():
            raise DatasetError(f"{base / 'JPEGImages' / image_id}.jpg: no mask in {fine.name}/ nor {aug.name}/")
        pairs.append(FilePair(id=image_id, image=base / "JPEGImages" / f"{image_id}.jpg", mask=mask, lut=_LUT))
    return FileSegmentationDataset(info=VOC_INFO, pairs=pairs, root=base, split=split,
                                   cache_dir=cache_dir, validate=validate)

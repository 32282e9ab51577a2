"""CamVid in the SegNet layout: ``train/ trainannot/ val/ valannot/`` and ``<split>.txt`` lists.

List lines are ``image_path label_path``; paths are resolved inside the dataset folder whatever
prefix the list was written with (``train/x.png`` or the tutorial's ``/SegNet/CamVid/train/x.png``).
11 classes; label 11 (Unlabelled) is ignored.
"""

from __future__ import annotations

from pathlib import Path

from ael.data.base import DatasetError
from ael.data.disk import FilePair, FileSegmentationDataset, identity_lut, resolve_inside
from ael.data.info import DatasetInfo

__all__ = ["CAMVID_INFO", "open_camvid"]

CAMVID_INFO = DatasetInfo(
    name="camvid",
    class_names=("sky", "building", "pole", "road", "pavement", "tree", "sign-symbol", "fence", "car",
                 "pedestrian", "bicyclist"),
    palette=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
             (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)),
)
_LUT = identity_lut(11, ignore_values=(11, 255))
SPLITS = ("train", "val", "test", "trainval")


def camvid_pairs(root: Path, split: str) -> list[FilePair]:
    """The pairs listed in ``<root>/<split>.txt``; ids are image stems."""
    if split not in SPLITS:
        raise DatasetError(f"camvid: unknown split {split!r} (expected one of {SPLITS})")
    if split == "trainval" and not (root / "trainval.txt").is_file():
        return camvid_pairs(root, "train") + camvid_pairs(root, "val")
    list_file = root / f"{split}.txt"
    if not list_file.is_file():
        raise DatasetError(f"{list_file}: CamVid list file not found")
    pairs = []
    for lineno, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise DatasetError(f"{list_file}:{lineno}: expected 'image_path label_path', got {line!r}")
        image = resolve_inside(root, fields[0])
        mask = resolve_inside(root, fields[1])
        pairs.append(FilePair(id=image.stem, image=image, mask=mask, lut=_LUT))
    if not pairs:
        raise DatasetError(f"{list_file}: the list is empty")
    return pairs


def open_camvid(root: str | Path, split: str, *, cache_dir: str | Path | None = None,
                validate: bool = True) -> FileSegmentationDataset:
    """Open a CamVid split (``train``, ``val``, ``test`` or ``trainval``)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: CamVid folder not found")
    return FileSegmentationDataset(info=CAMVID_INFO, pairs=camvid_pairs(root, split), root=root,
                                   split=split, cache_dir=cache_dir, validate=validate)

"""Cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/<split>/<city>/...``.

Masks are ``*_gtFine_labelTrainIds.png`` when present; otherwise ``*_gtFine_labelIds.png`` are
converted with the official id -> trainId table (cityscapesScripts ``labels.py``), so a fresh
download works without running the conversion script.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ael.data.base import DatasetError
from ael.data.disk import INVALID, FilePair, FileSegmentationDataset, identity_lut
from ael.data.info import IGNORE_INDEX, DatasetInfo

__all__ = ["CITYSCAPES_INFO", "LABEL_ID_TO_TRAIN_ID", "open_cityscapes"]

CITYSCAPES_INFO = DatasetInfo(
    name="cityscapes",
    class_names=("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                 "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                 "motorcycle", "bicycle"),
    palette=((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
             (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
             (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
             (0, 80, 100), (0, 0, 230), (119, 11, 32)),
)

# Official table: label id -> train id for the 19 evaluated classes; every other id of 0..33 is void.
_TRAIN_ID_OF = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LABEL_ID_TO_TRAIN_ID = np.full(256, INVALID, dtype=np.int16)
LABEL_ID_TO_TRAIN_ID[:34] = IGNORE_INDEX
for _label_id, _train_id in _TRAIN_ID_OF.items():
    LABEL_ID_TO_TRAIN_ID[_label_id] = _train_id
LABEL_ID_TO_TRAIN_ID[255] = IGNORE_INDEX  # license plate (-1) as some converters store it
_TRAIN_ID_LUT = identity_lut(19)
SPLITS = ("train", "val", "test", "train_extra")


def open_cityscapes(root: str | Path, split: str, *, cache_dir: str | Path | None = None,
                    validate: bool = True) -> FileSegmentationDataset:
    """Open a Cityscapes split; ids are ``<city>_<seq>_<frame>`` stems (unique across cities).

    ``test`` has no public labels: its images come without masks.
    """
    if split not in SPLITS:
        raise DatasetError(f"cityscapes: unknown split {split!r} (expected one of {SPLITS})")
    root = Path(root)
    image_dir = root / "leftImg8bit" / split
    gt_name = "gtCoarse" if split == "train_extra" else "gtFine"
    mask_dir = root / gt_name / split
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: Cityscapes image folder not found")
    labeled = split != "test"
    if labeled and not mask_dir.is_dir():
        raise DatasetError(f"{mask_dir}: Cityscapes annotation folder not found")
    pairs = []
    for image in sorted(image_dir.glob("*/*_leftImg8bit.png")):
        stem = image.name[: -len("_leftImg8bit.png")]
        if not labeled:
            pairs.append(FilePair(id=stem, image=image))
            continue
        city = image.parent.name
        train_ids = mask_dir / city / f"{stem}_{gt_name}_labelTrainIds.png"
        label_ids = mask_dir / city / f"{stem}_{gt_name}_labelIds.png"
        if train_ids.is_file():
            pairs.append(FilePair(id=stem, image=image, mask=train_ids, lut=_TRAIN_ID_LUT))
        elif label_ids.is_file():
            pairs.append(FilePair(id=stem, image=image, mask=label_ids, lut=LABEL_ID_TO_TRAIN_ID))
        else:
            raise DatasetError(f"{image}: no mask ({train_ids.name} nor {label_ids.name} in {train_ids.parent})")
    if not pairs:
        raise DatasetError(f"{image_dir}: no <city>/*_leftImg8bit.png images")
    return FileSegmentationDataset(info=CITYSCAPES_INFO, pairs=pairs, root=root, split=split,
                                   cache_dir=cache_dir, validate=validate)

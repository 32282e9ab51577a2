"""Tiny fake dataset trees in each on-disk format, written by the tests into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ael.data.info import default_palette


def write_image(path: Path, h: int = 12, w: int = 16, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(rgb).save(path)
    return path


def write_mask(path: Path, values: np.ndarray, palette: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.ascontiguousarray(values, dtype=np.uint8)
    if palette:  # indices with a colour table, as VOC's SegmentationClass PNGs
        im = Image.frombytes("P", (values.shape[1], values.shape[0]), values.tobytes())
        im.putpalette([v for c in default_palette(256) for v in c])
    else:
        im = Image.fromarray(values)
    im.save(path)
    return path


def stripes(values: list[int], h: int = 12, w: int = 16) -> np.ndarray:
    """(h, w) label map made of vertical stripes of ``values``."""
    cols = np.array_split(np.arange(w), len(values))
    out = np.zeros((h, w), dtype=np.uint8)
    for v, c in zip(values, cols):
        out[:, c] = v
    return out


def make_camvid(root: Path, n_train: int = 6, n_val: int = 3, prefix: str = "") -> Path:
    for split, n in (("train", n_train), ("val", n_val)):
        lines = []
        for i in range(n):
            name = f"{split}_{i:03d}"
            write_image(root / split / f"{name}.jpg", seed=i)
            write_mask(root / f"{split}annot" / f"{name}.png", stripes([i % 11, 11, (i + 3) % 11]))
            lines.append(f"{prefix}{split}/{name}.jpg {prefix}{split}annot/{name}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_voc(root: Path, n_fine_train: int = 4, n_val: int = 2, n_aug_only: int = 5, aug_list: bool = False
             ) -> Path:
    base = root / "VOCdevkit" / "VOC2012"
    ids = {"train": [f"2007_{i:06d}" for i in range(n_fine_train)],
           "val": [f"2008_{i:06d}" for i in range(n_val)],
           "aug": [f"2011_{i:06d}" for i in range(n_aug_only)]}
    for k, group in enumerate(ids.values()):
        for i, image_id in enumerate(group):
            write_image(base / "JPEGImages" / f"{image_id}.jpg", seed=10 * k + i)
            values = stripes([0, (i % 20) + 1, 255])
            if k < 2:  # fine annotation: VOC palette PNG
                write_mask(base / "SegmentationClass" / f"{image_id}.png", values, palette=True)
            write_mask(base / "SegmentationClassAug" / f"{image_id}.png", values)
    lists = base / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "train.txt").write_text("\n".join(ids["train"]) + "\n")
    (lists / "val.txt").write_text("\n".join(ids["val"]) + "\n")
    if aug_list:
        lines = [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" for i in ids["train"] + ids["aug"]]
        (lists / "train_aug.txt").write_text("\n".join(lines) + "\n")
    return root


def make_cityscapes(root: Path, train_ids: bool = False) -> Path:
    for split, cities in (("train", ("aachen", "bochum")), ("val", ("frankfurt",))):
        for city in cities:
            for j in range(2):
                stem = f"{city}_{j:06d}_000019"
                write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", seed=j)
                gt = root / "gtFine" / split / city
                # labelIds: 7 road -> 0, 26 car -> 13, 0 unlabeled -> ignore, 33 bicycle -> 18
                write_mask(gt / f"{stem}_gtFine_labelIds.png", stripes([7, 26, 0, 33]))
                if train_ids:
                    write_mask(gt / f"{stem}_gtFine_labelTrainIds.png", stripes([1, 2, 255, 3]))
    return root


def make_ade20k(root: Path) -> Path:
    base = root / "ADEChallengeData2016"
    for split, n in (("training", 3), ("validation", 2)):
        for i in range(n):
            stem = f"ADE_{split[:5]}_{i:08d}"
            write_image(base / "images" / split / f"{stem}.jpg", seed=i)
            write_mask(base / "annotations" / split / f"{stem}.png", stripes([0, 1, 150]))
    return root


def make_folder(root: Path, classes_yaml: str | None = "classes: [bg, crack, rust]\n", n_labeled: int = 4,
                n_unlabeled: int = 2) -> Path:
    for i in range(n_labeled + n_unlabeled):
        write_image(root / "images" / f"img{i}.png", seed=i)
        if i < n_labeled:
            write_mask(root / "masks" / f"img{i}.png", stripes([0, 1 + i % 2, 255]))
    if classes_yaml is not None:
        (root / "classes.yaml").write_text(classes_yaml)
    return root

"""Bad inputs fail when the dataset is opened, with an error that names the file; the cache."""

import json
import os

import numpy as np
import pytest
from fake_data_trees import (
    make_ade20k,
    make_camvid,
    make_cityscapes,
    make_folder,
    make_voc,
    stripes,
    write_image,
    write_mask,
)

from ael.data import DatasetError, open_dataset


def _open(root, split="train", **kw):
    kw.setdefault("cache_dir", root / "cache")
    return open_dataset("camvid", root=root, split=split, **kw)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="nowhere: camvid dataset folder not found"):
        open_dataset("camvid", root=tmp_path / "nowhere", split="train")


def test_missing_list_file(tmp_path):
    make_camvid(tmp_path)
    (tmp_path / "val.txt").unlink()
    with pytest.raises(DatasetError, match=r"val\.txt: CamVid list file not found"):
        _open(tmp_path, "val")


def test_missing_voc_list_file(tmp_path):
    make_voc(tmp_path)
    (tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(DatasetError, match=r"val\.txt: VOC list file not found"):
        open_dataset("voc", root=tmp_path, split="val", cache_dir=tmp_path / "c")


def test_listed_file_missing_names_it(tmp_path):
    make_camvid(tmp_path)
    (tmp_path / "trainannot" / "train_002.png").unlink()
    with pytest.raises(DatasetError, match=r"1 listed file\(s\) missing, first: .*train_002\.png"):
        _open(tmp_path)


def test_image_without_mask(tmp_path):
    make_voc(tmp_path)
    base = tmp_path / "VOCdevkit/VOC2012"
    (base / "SegmentationClass/2008_000001.png").unlink()
    (base / "SegmentationClassAug/2008_000001.png").unlink()
    with pytest.raises(DatasetError, match=r"2008_000001\.jpg: no mask"):
        open_dataset("voc", root=tmp_path, split="val", cache_dir=tmp_path / "c")


def test_mask_of_another_size(tmp_path):
    make_camvid(tmp_path)
    write_mask(tmp_path / "trainannot" / "train_004.png", np.zeros((12, 15), np.uint8))
    with pytest.raises(DatasetError, match=r"train_004\.png: mask is 15x12 but its image train_004\.jpg is 16x12"):
        _open(tmp_path)


def test_mask_values_outside_the_classes(tmp_path):
    make_camvid(tmp_path)
    write_mask(tmp_path / "trainannot" / "train_003.png", stripes([1, 12, 40]))
    with pytest.raises(DatasetError, match=r"train_003\.png: mask values \[12, 40\] are outside the 11 classes"):
        _open(tmp_path)
    # Skipping validation defers the error to loading that very sample.
    ds = _open(tmp_path, validate=False)
    ds.load(0)
    with pytest.raises(DatasetError, match=r"train_003\.png: mask values \[12, 40\]"):
        ds.load(3)


def test_truncated_image(tmp_path):
    make_camvid(tmp_path)
    path = tmp_path / "train" / "train_001.jpg"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DatasetError, match=r"train_001\.jpg: truncated image"):
        _open(tmp_path)


def test_truncated_png_mask(tmp_path):
    make_camvid(tmp_path)
    path = tmp_path / "trainannot" / "train_001.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 30])  # into the pixel data, past the IEND chunk
    with pytest.raises(DatasetError, match=r"train_001\.png: truncated mask"):
        _open(tmp_path)


def test_unreadable_image(tmp_path):
    make_camvid(tmp_path)
    (tmp_path / "train" / "train_005.jpg").write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match=r"train_005\.jpg: unreadable image"):
        _open(tmp_path)


def test_rgb_mask_is_refused(tmp_path):
    make_folder(tmp_path)
    write_image(tmp_path / "masks" / "img0.png")  # an RGB picture where a label map belongs
    with pytest.raises(DatasetError, match=r"img0\.png: mask has mode 'RGB'"):
        open_dataset("folder", root=tmp_path, split="train", cache_dir=tmp_path / "c")


def test_cache_is_reused_and_refreshed_on_change(tmp_path):
    make_camvid(tmp_path)
    ds = _open(tmp_path)
    caches = list((tmp_path / "cache").glob("camvid-train-*.json"))
    assert len(caches) == 1
    record = json.loads(caches[0].read_text())["files"]["train/train_000.jpg"]
    assert record["size"] == [16, 12]
    freq = ds.pixel_frequencies()
    # Poison the cached counts: a fresh entry is trusted, so the poisoned value shows...
    data = json.loads(caches[0].read_text())
    data["files"]["train/train_000.jpg"]["counts"] = {"0": 10**6}
    caches[0].write_text(json.dumps(data))
    assert _open(tmp_path).pixel_frequencies()[0] > 0.9
    # ...until the mask changes on disk: then that file is checked again.
    mask = tmp_path / "trainannot" / "train_000.png"
    write_mask(mask, stripes([0, 11, 3]))
    os.utime(mask, ns=(1, 1))
    np.testing.assert_allclose(_open(tmp_path).pixel_frequencies(), freq)


def test_read_only_root_caches_elsewhere(tmp_path, monkeypatch):
    make_camvid(tmp_path / "data")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # Tests may run as root, for whom chmod does not make a folder read-only: say it is.
    monkeypatch.setattr("ael.data.disk.os.access", lambda path, mode: False)
    open_dataset("camvid", root=tmp_path / "data", split="val")
    assert not (tmp_path / "data" / ".ael_cache").exists()
    assert list((tmp_path / "home" / ".cache" / "ael" / "datasets").glob("camvid-val-*.json"))


def test_writable_root_caches_in_the_dataset_folder(tmp_path):
    make_camvid(tmp_path)
    open_dataset("camvid", root=tmp_path, split="val")
    assert list((tmp_path / ".ael_cache").glob("camvid-val-*.json"))


def test_data_after_the_jpeg_end_marker_is_not_truncation(tmp_path):
    make_camvid(tmp_path)
    path = tmp_path / "train" / "train_002.jpg"
    path.write_bytes(path.read_bytes() + b"\0" * 200)  # trailing bytes some cameras append
    assert len(_open(tmp_path)) == 6


def test_cityscapes_image_without_mask(tmp_path):
    make_cityscapes(tmp_path)
    (tmp_path / "gtFine/train/bochum/bochum_000001_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(DatasetError, match=r"bochum_000001_000019_leftImg8bit\.png: no mask"):
        open_dataset("cityscapes", root=tmp_path, split="train", cache_dir=tmp_path / "c")


def test_ade20k_missing_annotation_is_named(tmp_path):
    make_ade20k(tmp_path)
    (tmp_path / "ADEChallengeData2016/annotations/validation/ADE_valid_00000001.png").unlink()
    with pytest.raises(DatasetError, match=r"first: .*ADE_valid_00000001\.png"):
        open_dataset("ade20k", root=tmp_path, split="val", cache_dir=tmp_path / "c")

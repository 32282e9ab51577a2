"""Each on-disk reader on a tiny fake tree in its exact layout: classes, label mapping, ids."""

import numpy as np
import pytest
from fake_data_trees import make_ade20k, make_camvid, make_cityscapes, make_folder, make_voc, stripes

from ael.data import DatasetError, open_dataset
from ael.data.cityscapes import LABEL_ID_TO_TRAIN_ID
from ael.data.disk import FileSegmentationDataset


def test_camvid_reads_list_and_maps_unlabelled_to_ignore(tmp_path):
    make_camvid(tmp_path)
    ds = open_dataset("camvid", root=tmp_path, split="train", cache_dir=tmp_path / "cache")
    assert isinstance(ds, FileSegmentationDataset)
    assert len(ds) == 6 and ds.ids[0] == "train_000"
    assert ds.info.num_classes == 11 and ds.info.class_names[0] == "sky"
    s = ds.load(1)
    assert s.image.shape == (12, 16, 3) and s.image.dtype == np.uint8
    np.testing.assert_array_equal(s.label, stripes([1, 255, 4]))
    assert len(open_dataset("camvid", root=tmp_path, split="val", cache_dir=tmp_path / "c")) == 3


def test_camvid_list_with_foreign_absolute_prefix(tmp_path):
    make_camvid(tmp_path, prefix="/SegNet/CamVid/")
    ds = open_dataset("camvid", root=tmp_path, split="train", cache_dir=tmp_path / "cache")
    assert ds.pairs[0].image == tmp_path / "train" / "train_000.jpg"


def test_camvid_list_may_not_escape_the_root(tmp_path):
    make_camvid(tmp_path)
    (tmp_path / "val.txt").write_text("../outside/x.jpg valannot/val_000.png\n")
    with pytest.raises(DatasetError, match=r"'\.\.'"):
        open_dataset("camvid", root=tmp_path, split="val", cache_dir=tmp_path / "cache")


def test_voc_splits_masks_and_train_aug_derivation(tmp_path):
    make_voc(tmp_path)
    kw = {"root": tmp_path, "cache_dir": tmp_path / "cache"}
    train = open_dataset("voc", split="train", **kw)
    val = open_dataset("voc", split="val", **kw)
    aug = open_dataset("voc", split="train_aug", **kw)
    assert train.info.num_classes == 21 and train.info.class_names[15] == "person"
    assert len(train) == 4 and len(val) == 2
    # Without a list, train_aug = SegmentationClassAug minus val.
    assert len(aug) == 9 and not set(aug.ids) & set(val.ids)
    # Fine annotations (palette PNG) win over the augmented ones; palette indices are the classes.
    assert train.pairs[1].mask.parent.name == "SegmentationClass"
    assert aug.pairs[-1].mask.parent.name == "SegmentationClassAug"
    np.testing.assert_array_equal(train.load(1).label, stripes([0, 2, 255]))


def test_voc_train_aug_list_in_deeplab_format(tmp_path):
    make_voc(tmp_path, aug_list=True, n_aug_only=3)
    aug = open_dataset("voc", root=tmp_path / "VOCdevkit", split="train_aug", cache_dir=tmp_path / "c")
    assert aug.ids == ("2007_000000", "2007_000001", "2007_000002", "2007_000003",
                       "2011_000000", "2011_000001", "2011_000002")


def test_cityscapes_label_ids_converted_with_official_table(tmp_path):
    make_cityscapes(tmp_path)
    ds = open_dataset("cityscapes", root=tmp_path, split="train", cache_dir=tmp_path / "cache")
    assert ds.info.num_classes == 19 and len(ds) == 4
    assert ds.ids[0] == "aachen_000000_000019"
    np.testing.assert_array_equal(ds.load(0).label, stripes([0, 13, 255, 18]))
    assert LABEL_ID_TO_TRAIN_ID[24] == 11 and LABEL_ID_TO_TRAIN_ID[6] == 255 and LABEL_ID_TO_TRAIN_ID[34] == -1
    freq = ds.pixel_frequencies()
    assert freq[[0, 13, 18]].sum() == pytest.approx(1.0) and freq[0] == pytest.approx(freq[18])


def test_cityscapes_prefers_train_ids(tmp_path):
    make_cityscapes(tmp_path, train_ids=True)
    ds = open_dataset("cityscapes", root=tmp_path, split="val", cache_dir=tmp_path / "cache")
    assert ds.pairs[0].mask.name.endswith("_labelTrainIds.png")
    np.testing.assert_array_equal(ds.load(0).label, stripes([1, 2, 255, 3]))


def test_ade20k_shifts_labels_and_ignores_zero(tmp_path):
    make_ade20k(tmp_path)
    ds = open_dataset("ade20k", root=tmp_path, split="train", cache_dir=tmp_path / "cache")
    assert ds.info.num_classes == 150 and len(ds) == 3
    np.testing.assert_array_equal(ds.load(0).label, stripes([255, 0, 149]))
    assert len(open_dataset("ade20k", root=tmp_path / "ADEChallengeData2016", split="val",
                            cache_dir=tmp_path / "cache")) == 2


def test_folder_with_classes_yaml_and_unlabeled_images(tmp_path):
    make_folder(tmp_path, classes_yaml="classes: [bg, crack, rust]\npalette: [[0,0,0],[255,0,0],[0,0,255]]\n")
    ds = open_dataset("folder", root=tmp_path, split="train", cache_dir=tmp_path / "cache")
    assert ds.info.class_names == ("bg", "crack", "rust")
    assert ds.info.palette[1] == (255, 0, 0)
    assert ds.labeled_mask.tolist() == [True] * 4 + [False] * 2
    assert ds.load(5).label is None
    np.testing.assert_array_equal(ds.load(1).label, stripes([0, 2, 255]))


def test_folder_classes_inferred_from_masks(tmp_path):
    make_folder(tmp_path, classes_yaml=None)
    ds = open_dataset("folder", root=tmp_path, split="train", cache_dir=tmp_path / "cache")
    assert ds.info.class_names == ("class_0", "class_1", "class_2")


def test_folder_split_subfolders_need_masks_outside_train(tmp_path):
    make_folder(tmp_path / "train_tmp")
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "masks" / split).mkdir(parents=True)
    src = tmp_path / "train_tmp"
    for i in range(3):
        (src / "images" / f"img{i}.png").rename(tmp_path / "images" / "val" / f"img{i}.png")
        (src / "masks" / f"img{i}.png").rename(tmp_path / "masks" / "val" / f"img{i}.png")
    (src / "images" / "img3.png").rename(tmp_path / "images" / "train" / "img3.png")
    (src / "masks" / "img3.png").rename(tmp_path / "masks" / "train" / "img3.png")
    (src / "images" / "img4.png").rename(tmp_path / "images" / "val" / "img4.png")
    (src / "classes.yaml").rename(tmp_path / "classes.yaml")
    assert len(open_dataset("folder", root=tmp_path, split="train", cache_dir=tmp_path / "c")) == 1
    with pytest.raises(DatasetError, match=r"img4\.png: image without mask"):
        open_dataset("folder", root=tmp_path, split="val", cache_dir=tmp_path / "c")


def test_folder_classes_yaml_errors_name_the_key(tmp_path):
    make_folder(tmp_path, classes_yaml="classes: [a, b]\ncolours: [[0, 0, 0]]\n")
    with pytest.raises(DatasetError, match=r"classes\.yaml: unknown key 'colours'"):
        open_dataset("folder", root=tmp_path, split="train", cache_dir=tmp_path / "cache")
    (tmp_path / "classes.yaml").write_text("classes: [a, b]\npalette: [[0, 0, 0]]\n")
    with pytest.raises(DatasetError, match="palette"):
        open_dataset("folder", root=tmp_path, split="train", cache_dir=tmp_path / "cache")


def test_unknown_dataset_and_split(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'coco'"):
        open_dataset("coco", root=tmp_path, split="train")
    make_camvid(tmp_path)
    with pytest.raises(DatasetError, match="unknown split 'extra'"):
        open_dataset("camvid", root=tmp_path, split="extra")


def test_folder_reads_one_bit_masks_as_classes_0_and_1(tmp_path):
    from PIL import Image

    make_folder(tmp_path, classes_yaml="classes: [background, object]\n", n_labeled=1, n_unlabeled=0)
    Image.fromarray(stripes([0, 1]).astype(bool)).convert("1").save(tmp_path / "masks" / "img0.png")
    ds = open_dataset("folder", root=tmp_path, split="train", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(ds.load(0).label, stripes([0, 1]))

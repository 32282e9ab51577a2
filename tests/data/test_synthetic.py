"""The synthetic default: determinism, label range, long tail, info."""

import numpy as np
import pytest

from ael.data import DatasetError, DatasetInfo, SyntheticSegmentation, render_synthetic, synthetic_layout


def test_images_are_a_function_of_seed_split_and_index():
    a = SyntheticSegmentation("labeled", num_labeled=4, seed=3)
    b = SyntheticSegmentation("labeled", num_labeled=4, seed=3)
    for i in range(4):
        sa, sb = a.load(i), b.load(i)
        np.testing.assert_array_equal(sa.image, sb.image)
        np.testing.assert_array_equal(sa.label, sb.label)
    # Another seed, another split or another index gives another picture.
    other_seed = SyntheticSegmentation("labeled", num_labeled=4, seed=4).load(0)
    other_split = SyntheticSegmentation("val", num_val=4, seed=3).load(0)
    assert not np.array_equal(a.load(0).image, other_seed.image)
    assert not np.array_equal(a.load(0).image, other_split.image)
    assert not np.array_equal(a.load(0).image, a.load(1).image)


def test_train_split_is_labeled_then_unlabeled():
    train = SyntheticSegmentation("train", num_labeled=3, num_unlabeled=5)
    unlabeled = SyntheticSegmentation("unlabeled", num_unlabeled=5)
    assert len(train) == 8
    assert train.ids[:3] == ("labeled/000000", "labeled/000001", "labeled/000002")
    np.testing.assert_array_equal(train.load(4).image, unlabeled.load(1).image)
    assert train.load(4).index == 4 and train.load(4).id == "unlabeled/000001"


def test_shapes_dtypes_and_label_values():
    ds = SyntheticSegmentation("val", num_val=8, image_size=64, num_classes=6)
    for i in range(len(ds)):
        s = ds.load(i)
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        assert s.label.shape == (64, 64) and s.label.dtype == np.uint8
        values = set(np.unique(s.label).tolist())
        assert values <= set(range(6)) | {255}
        # The outer ring of pixels is the ignore band.
        assert (s.label[0] == 255).all() and (s.label[:, -1] == 255).all()


def test_long_tail_head_dominates_and_tail_under_one_percent():
    ds = SyntheticSegmentation("labeled")
    freq = ds.pixel_frequencies()
    assert freq.shape == (8,)
    assert freq.sum() == pytest.approx(1.0)
    assert freq[0] + freq[1] > 0.75  # background + region: the head
    assert (np.diff(freq) < 0).all()  # strictly decreasing with the class index
    assert freq[-1] < 0.01 and freq[-2] < 0.01
    # Measured shares track the designed ones within a third.
    np.testing.assert_allclose(freq[1:], ds.target_shares[1:], rtol=0.35)


def test_tail_classes_are_thin_shapes():
    layout = synthetic_layout()
    kinds = [c.kind for c in layout.classes]
    assert kinds == ["background", "region", "blob", "blob", "blob", "line", "ring", "disc"]
    assert [c.name for c in layout.classes][-3:] == ["line", "ring", "disc"]


def test_info_and_unknown_split():
    ds = SyntheticSegmentation("labeled", num_classes=5)
    assert isinstance(ds.info, DatasetInfo)
    assert ds.info.num_classes == 5 and ds.info.ignore_index == 255
    assert len(ds.info.palette) == 5
    with pytest.raises(DatasetError, match="bogus"):
        SyntheticSegmentation("bogus")
    with pytest.raises(ValueError, match="bogus"):
        render_synthetic(ds.layout, seed=0, split="bogus", index=0)

"""The real CamVid in ../shared/data/camvid, read in place (never written); skipped where absent.

The folder is found beside the repository (``<repo>/../shared/data/camvid``), as in a fresh clone
with ``shared/`` next to it (CI), never at a fixed absolute path.
"""

from pathlib import Path

import numpy as np
import pytest

from ael.config import DataConfig
from ael.data import build_split_datasets, open_dataset

ROOT = Path(__file__).resolve().parents[2]
CAMVID = ROOT.parent / "shared" / "data" / "camvid"
pytestmark = pytest.mark.skipif(not (CAMVID / "train.txt").is_file(), reason="real CamVid not present")


@pytest.fixture(scope="module")
def camvid_train(tmp_path_factory):
    return open_dataset("camvid", root=CAMVID, split="train", cache_dir=tmp_path_factory.mktemp("cache"))


def test_sizes_classes_and_palette(camvid_train, tmp_path):
    val = open_dataset("camvid", root=CAMVID, split="val", cache_dir=tmp_path, validate=False)
    assert len(camvid_train) == 367 and len(val) == 101
    info = camvid_train.info
    assert info.num_classes == 11 and info.ignore_index == 255
    assert info.class_names[3] == "road" and info.palette[3] == (128, 64, 128)


def test_label_range_and_image_shape(camvid_train):
    for index in (0, 200, 366):
        s = camvid_train.load(index)
        assert s.image.shape == (360, 480, 3) and s.label.shape == (360, 480)
        assert set(np.unique(s.label).tolist()) <= set(range(11)) | {255}


def test_pixel_frequencies_are_the_documented_long_tail(camvid_train):
    freq = camvid_train.pixel_frequencies()
    assert freq.sum() == pytest.approx(1.0)
    # README shares (void 4.0 % excluded): road 31.7, building 23.3, bicyclist 0.3.
    assert freq.argmax() == 3 and freq[3] == pytest.approx(0.317 / 0.96, abs=0.01)
    assert freq[1] == pytest.approx(0.233 / 0.96, abs=0.01)
    assert freq[10] < 0.005 and freq[9] < 0.01


def test_split_of_the_real_set(tmp_path):
    cfg = DataConfig(dataset="camvid", root=str(CAMVID))
    d = build_split_datasets(cfg, cache_dir=tmp_path, validate=False)
    assert len(d.labeled) == 46 and len(d.unlabeled) == 321 and len(d.val) == 101
    assert not set(d.split.labeled) & set(d.split.unlabeled)

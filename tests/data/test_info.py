"""DatasetInfo: validation, palette table, class lookup, round trip."""

import numpy as np
import pytest

from ael.data import DatasetInfo, default_palette


def _info():
    return DatasetInfo("toy", ("bg", "cat", "dog"), ((0, 0, 0), (255, 0, 0), (0, 0, 255)))


def test_num_classes_and_palette_table():
    info = _info()
    assert info.num_classes == 3
    table = info.palette_array()
    assert table.shape == (256, 3) and table.dtype == np.uint8
    np.testing.assert_array_equal(table[1], [255, 0, 0])
    np.testing.assert_array_equal(table[255], [255, 255, 255])


def test_class_indices_by_name_and_index():
    info = _info()
    assert info.class_indices(["dog", 0]) == (2, 0)
    with pytest.raises(ValueError, match="'horse'"):
        info.class_indices(["horse"])
    with pytest.raises(ValueError, match="3"):
        info.class_indices([3])


def test_invalid_infos_are_refused():
    with pytest.raises(ValueError, match="palette"):
        DatasetInfo("x", ("a", "b"), ((0, 0, 0),))
    with pytest.raises(ValueError, match="duplicate"):
        DatasetInfo("x", ("a", "a"), ((0, 0, 0), (1, 1, 1)))
    with pytest.raises(ValueError, match="ignore_index"):
        DatasetInfo("x", ("a", "b"), ((0, 0, 0), (1, 1, 1)), ignore_index=1)


def test_round_trip_and_default_palette():
    info = _info()
    assert DatasetInfo.from_dict(info.to_dict()) == info
    pal = default_palette(21)
    assert pal[0] == (0, 0, 0) and pal[1] == (128, 0, 0) and pal[15] == (192, 128, 128)
    assert len(set(pal)) == 21

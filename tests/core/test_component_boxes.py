"""The box of a random large 8-connected component, against scipy on blobby and adversarial maps.

:func:`component_boxes` draws one uniform ``u`` per map and picks the ``floor(u * L)``-th of the
``L`` large components in the raster order of their first pixels; the references here recompute
that with ``scipy.ndimage`` from the same draws.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from ael.core import component_boxes


def _draws(seed, count):
    """The uniforms :func:`component_boxes` draws from a generator seeded with ``seed``."""
    return torch.rand(count, generator=torch.Generator().manual_seed(seed))


def _large_components(mask, max_small_area):
    """Boxes of the components of ``mask`` larger than ``max_small_area``, in raster order of
    their first pixel, by scipy."""
    if mask.size == 0:
        return []
    ids, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    found = []
    for i, where in enumerate(ndimage.find_objects(ids), start=1):
        area = int((ids[where] == i).sum())
        if area > max_small_area:
            first = int(np.flatnonzero(ids.ravel() == i)[0])
            found.append((first, (where[0].start, where[1].start, where[0].stop, where[1].stop)))
    return [box for _, box in sorted(found)]


def _expected_box(pred, cls, area_thresh, u):
    """``(box, found)`` of :func:`component_boxes` for one map and its uniform ``u``."""
    h, w = pred.shape
    large = _large_components((pred == cls).numpy(), math.floor(area_thresh * h * w))
    if not large:
        return (0, 0, 0, 0), False
    pick = int(np.floor(np.float32(u) * np.float32(len(large))))  # a float32 product
    return large[min(pick, len(large) - 1)], True


def check_component_boxes(pred, classes, *, thresholds=(0.0, 0.004, 0.05), seeds=range(6)):
    """The boxes agree with scipy for every threshold and seed; returns them."""
    results = []
    for t in thresholds:
        for seed in seeds:
            boxes, found = component_boxes(pred, classes, area_thresh=t, generator=torch.Generator().manual_seed(seed))
            assert boxes.dtype == torch.int64 and found.dtype == torch.bool and boxes.shape == (pred.shape[0], 4)
            for b, u in enumerate(_draws(seed, pred.shape[0]).tolist()):
                box, ok = _expected_box(pred[b], int(classes[b]), t, u)
                assert (tuple(boxes[b].tolist()), bool(found[b])) == (box, ok), (t, seed, b)
            results.append((boxes, found))
    return results


def test_blobby_maps(generator):
    low = torch.randn(6, 4, 5, 6, generator=generator)
    pred = F.interpolate(low, size=(40, 47), mode="bilinear", align_corners=False).argmax(1)
    classes = torch.randint(0, 4, (6,), generator=generator)
    results = check_component_boxes(pred, classes, seeds=range(10))
    assert any(found.all() for _, found in results)


def _spiral(size):
    """A one-pixel-wide square spiral of 1 on 0, walls one pixel apart: one long 8-connected component."""
    grid = torch.zeros(size, size, dtype=torch.long)

    def free(y, x):
        return not (0 <= y < size and 0 <= x < size) or grid[y, x] == 0

    y, x, dy, dx, turns = 0, 0, 0, 1, 0
    grid[0, 0] = 1
    while turns < 2:  # go on while the next two pixels are free, else turn clockwise
        if 0 <= y + dy < size and 0 <= x + dx < size and free(y + dy, x + dx) and free(y + 2 * dy, x + 2 * dx):
            y, x, turns = y + dy, x + dx, 0
            grid[y, x] = 1
        else:
            dy, dx, turns = dx, -dy, turns + 1
    return grid


def _adversarial_maps():
    h, w = 24, 31
    maps = []
    spiral = F.pad(_spiral(21), (5, 5, 1, 2))
    spiral[18:, :3] = 1  # and a block on the border, after the spiral in raster order
    maps.append(spiral)
    chains = torch.zeros(h, w, dtype=torch.long)
    for i in range(h):
        for start in range(-h, w, 4):  # one-pixel diagonal chains 3 apart: separate components
            if 0 <= start + i < w:
                chains[i, start + i] = 1
        chains[i, w - 1 - i] = 2  # an anti-diagonal: each pixel joined to the previous row up-right
    maps.append(chains)
    maps.append((torch.arange(h).view(h, 1) + torch.arange(w)) % 2)  # checkerboard: one component each
    maps.append(torch.ones(h, w, dtype=torch.long))  # the whole image
    three = torch.zeros(h, w, dtype=torch.long)
    three[0:5, 0:6] = 1  # corner
    three[h - 6:, w - 4:] = 1  # opposite corner
    three[9:14, 10:20] = 1  # middle
    three[0, 20:25] = 1  # small, on the top border
    maps.append(three)
    comb = torch.zeros(h, w, dtype=torch.long)  # teeth opened apart, joined late at the bottom
    comb[2:20, 1:w:3] = 1
    comb[20, :] = 1
    comb[22:, ::5] = 1
    maps.append(comb)
    vee = torch.zeros(h, w, dtype=torch.long)  # a V whose right arm starts first in raster order
    for i in range(12):
        vee[i, 14 + i // 2] = vee[11 - i, 2 + i] = 1
    vee[0, 20:30] = 1
    maps.append(vee)
    maps.append(torch.full((h, w), 7))  # class absent
    return torch.stack(maps)


def test_adversarial_maps():
    pred = _adversarial_maps()
    check_component_boxes(pred, torch.ones(pred.shape[0], dtype=torch.long),
                          thresholds=(0.0, 0.001, 0.004, 0.05, 0.2, 1.0))
    for cls in (0, 2, 7, -1):  # the other classes of the same maps, and one that no map has
        check_component_boxes(pred, torch.full((pred.shape[0],), cls), seeds=range(3))


def test_the_whole_image_and_one_pixel_wide_maps():
    results = check_component_boxes(torch.full((3, 9, 14), 4), torch.tensor([4, 4, 4]), seeds=range(2))
    assert all(boxes.tolist() == [[0, 0, 9, 14]] * 3 and found.all() for boxes, found in results)
    row = torch.tensor([[[1, 1, 0, 1, 1, 1, 0, 0, 1, 255, 1, 1, 1, 1]]])
    check_component_boxes(row, torch.tensor([1]), thresholds=(0.0, 0.1, 0.2, 0.3), seeds=range(8))
    column = row.transpose(1, 2).contiguous()
    check_component_boxes(column, torch.tensor([1]), thresholds=(0.0, 0.1, 0.2), seeds=range(8))
    results = check_component_boxes(torch.tensor([[[3]]]), torch.tensor([3]), thresholds=(0.0, 1.0))
    assert results[0][0].tolist() == [[0, 0, 1, 1]] and not results[-1][1].any()


@pytest.mark.parametrize("shape", [(2, 0, 5), (2, 5, 0), (0, 4, 4)])
def test_maps_without_pixels_have_no_component(shape):
    pred = torch.zeros(shape, dtype=torch.long)
    boxes, found = component_boxes(pred, torch.zeros(shape[0], dtype=torch.long), area_thresh=0.0)
    assert boxes.shape == (shape[0], 4) and torch.equal(boxes, torch.zeros(shape[0], 4, dtype=torch.long))
    assert found.shape == (shape[0],) and not found.any()


def _three_components():
    """Three large components of class 1 whose raster order (by first pixel) is not their order
    by box corner, plus small ones; first pixels (0, 20), (2, 0) and (10, 25)."""
    pred = torch.zeros(20, 32, dtype=torch.long)
    for i in range(9):
        pred[i, 20 - i] = 1  # A: a diagonal chain, 9 px, box (0, 12, 9, 21)
    pred[2:6, 0:5] = 1  # B: 20 px, box (2, 0, 6, 5)
    pred[10:15, 25] = pred[14, 25:31] = pred[10:15, 30] = 1  # C: a U, 14 px, box (10, 25, 15, 31)
    pred[18, 3] = pred[0, 30] = 1  # small
    return pred, [(0, 12, 9, 21), (2, 0, 6, 5), (10, 25, 15, 31)]


def test_the_pick_follows_raster_order_and_is_uniform(generator):
    pred, expected = _three_components()
    assert _large_components((pred == 1).numpy(), 1) == expected
    maps = pred.expand(600, -1, -1).contiguous()
    classes = torch.ones(600, dtype=torch.long)
    for max_small in (1, 9):  # three large components, then only B (20 px) and C (14 px)
        check_component_boxes(maps[:40], classes[:40], thresholds=((max_small + 0.5) / pred.numel(),), seeds=range(3))
    boxes, found = component_boxes(maps, classes, area_thresh=1.5 / pred.numel(), generator=generator)
    picked = [tuple(box) for box in boxes.tolist()]
    shares = [picked.count(box) / 600 for box in expected]
    assert found.all() and sum(shares) == 1.0 and all(0.20 <= share <= 0.47 for share in shares), shares


def test_other_dtypes_and_layouts_give_the_same_boxes(generator):
    low = torch.randn(3, 3, 4, 4, generator=generator)
    pred = F.interpolate(low, size=(20, 26), mode="bilinear", align_corners=False).argmax(1)
    classes = torch.tensor([0, 1, 2])
    expected = component_boxes(pred, classes, area_thresh=0.01, generator=torch.Generator().manual_seed(5))
    for other, other_classes in ((pred.int(), classes), (pred.repeat_interleave(2, dim=-1)[..., ::2], classes),
                                 (pred, classes.int())):
        got = component_boxes(other, other_classes, area_thresh=0.01, generator=torch.Generator().manual_seed(5))
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])

"""Connected components on the device equal scipy.ndimage.label with 8-connectivity.

Both backends run on the CPU: the torch iteration (what an accelerator runs) and the batched
scipy labelling (what a CPU run uses); each is checked against per-map scipy labels.
"""

import numpy as np
import pytest
import torch
from scipy import ndimage

from ael.core import connected_components, mask_boxes

EIGHT = np.ones((3, 3), dtype=int)


def assert_same_partition(mask: torch.Tensor, labels: torch.Tensor) -> None:
    """Equal to scipy up to relabeling, and each label is its component's first raster index."""
    for b in range(mask.shape[0]):
        m = mask[b].numpy()
        ref, count = ndimage.label(m, structure=EIGHT)
        ours = labels[b].numpy()
        assert ((ours >= 0) == m).all()
        pairs = set(zip(ours[m].tolist(), ref[m].tolist()))
        assert len(pairs) == count == len(np.unique(ours[m]))
        flat = np.arange(m.size).reshape(m.shape)
        for root, comp in pairs:
            assert root == flat[ref == comp].min()


def _spiral(size: int) -> np.ndarray:
    """A one-pixel-wide square spiral (one long component of length ~size**2/2)."""
    grid = np.zeros((size, size), dtype=bool)
    top, left, bottom, right = 0, 0, size - 1, size - 1
    while top <= bottom and left <= right:
        grid[top, left:right + 1] = True
        grid[top:bottom + 1, right] = True
        if top + 2 <= bottom:
            grid[bottom, left:right + 1] = True
        if left + 2 <= right and top + 2 <= bottom:
            grid[top + 2:bottom + 1, left] = True
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
        if top <= bottom:
            grid[top - 1, left] = True  # the step inwards that links the rings
    return grid


@pytest.fixture(params=["torch", "scipy"])
def backend(request):
    return request.param


@pytest.mark.parametrize("density", [0.2, 0.45, 0.6])
def test_random_maps(generator, density, backend):
    mask = torch.rand(4, 37, 53, generator=generator) < density
    assert_same_partition(mask, connected_components(mask, backend=backend))


def test_blobby_maps(generator, backend):
    low = torch.randn(3, 5, 6, 6, generator=generator)
    pred = torch.nn.functional.interpolate(low, size=(96, 80), mode="bilinear").argmax(1)
    for c in range(5):
        mask = pred == c
        assert_same_partition(mask, connected_components(mask, backend=backend))


def test_backends_agree_and_auto_is_scipy_on_cpu(generator):
    low = torch.randn(4, 6, 9, 9, generator=generator)
    pred = torch.nn.functional.interpolate(low, size=(120, 150), mode="bilinear").argmax(1)
    mask = pred == 2
    ours = connected_components(mask, backend="torch")
    assert torch.equal(connected_components(mask, backend="scipy"), ours)
    assert torch.equal(connected_components(mask), ours)
    assert connected_components(mask).dtype == torch.long


def test_adversarial_maps(backend):
    spiral = _spiral(41)
    assert ndimage.label(spiral, structure=EIGHT)[1] == 1
    snake = np.zeros((31, 31), dtype=bool)  # serpentine: rows joined at alternating ends
    snake[::2] = True
    snake[1::4, -1] = True
    snake[3::4, 0] = True
    diagonals = np.eye(30, dtype=bool) | np.eye(30, k=5, dtype=bool) | np.fliplr(np.eye(30, k=-9, dtype=bool))
    checker = (np.indices((30, 30)).sum(0) % 2).astype(bool)
    maps = [spiral[:30, :30], snake[:30, :30], diagonals, checker, np.ones((30, 30), bool), np.zeros((30, 30), bool)]
    mask = torch.from_numpy(np.stack(maps))
    labels = connected_components(mask, first_check=2, check_every=3, backend=backend)
    assert_same_partition(mask, labels)
    assert (labels[3][mask[3]] == 1).all()  # a checkerboard is one 8-connected component
    assert (labels[4] == 0).all() and (labels[5] == -1).all()
    # the full spiral needs many iterations: exercises the repeated convergence checks
    big = torch.from_numpy(spiral)[None]
    assert_same_partition(big, connected_components(big, first_check=1, check_every=2, backend=backend))


def test_single_pixels_and_thin_shapes(backend):
    mask = torch.zeros(1, 9, 9, dtype=torch.bool)
    mask[0, 0, 0] = mask[0, 8, 8] = mask[0, 4, :] = mask[0, 0, 8] = True
    labels = connected_components(mask, backend=backend)
    assert_same_partition(mask, labels)


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        connected_components(torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="first_check"):
        connected_components(torch.zeros(1, 4, 4, dtype=torch.bool), first_check=0)
    with pytest.raises(ValueError, match="backend"):
        connected_components(torch.zeros(1, 4, 4, dtype=torch.bool), backend="skimage")


def test_mask_boxes_tightest():
    mask = torch.zeros(2, 10, 12, dtype=torch.bool)
    mask[0, 2, 3] = mask[0, 6, 9] = mask[0, 4, 5] = True
    boxes, nonempty = mask_boxes(mask)
    assert boxes[0].tolist() == [2, 3, 7, 10]
    assert nonempty.tolist() == [True, False]


def test_auto_falls_back_to_torch_without_scipy(monkeypatch, generator):
    from ael.core import components

    monkeypatch.setattr(components, "_scipy_components", lambda mask: pytest.fail("scipy used"))
    monkeypatch.setattr(components, "_have_scipy", lambda: False)
    mask = torch.rand(2, 20, 30, generator=generator) < 0.5
    assert_same_partition(mask, connected_components(mask))

"""CutMix bank, partner sampling, component/fallback boxes and mixing."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from ael.core import (
    CutMixBank,
    boxes_to_mask,
    component_boxes,
    cutmix_bank_bits,
    cutmix_boxes,
    mix_with_mask,
    pseudo_labels,
    random_boxes,
    sample_partners,
    update_cutmix_bank,
)


def _counted_map():
    pred = torch.zeros(1, 10, 10, dtype=torch.long)  # class 0: 60 pixels
    pred.view(-1)[60:90] = 1  # class 1: 30
    pred.view(-1)[90:99] = 2  # class 2: 9
    pred.view(-1)[99] = 255  # ignore
    return pred


@pytest.mark.parametrize(
    ("thresh", "expected"),
    [(0.1, [True, True, False, False]), (0.09, [True, True, True, False]), (0.0, [True, True, True, False]),
     (0.31, [True, False, False, False])],
)
def test_bank_bits_exact(thresh, expected):
    bits = cutmix_bank_bits(_counted_map(), num_classes=4, area_thresh2=thresh)
    assert bits.shape == (4, 1)
    assert bits[:, 0].tolist() == expected  # absent class 3 never set, even at threshold 0


def test_bank_update_touches_only_given_columns(generator):
    bank = torch.rand(4, 6, generator=generator) < 0.5
    new = update_cutmix_bank(bank, torch.tensor([4]), _counted_map(), area_thresh2=0.1)
    assert new[:, 4].tolist() == [True, True, False, False]
    keep = [0, 1, 2, 3, 5]
    assert torch.equal(new[:, keep], bank[:, keep])


def test_bank_class_gather_hook_and_state(generator):
    calls = []

    def gather_fn(indices, bits):
        calls.append(indices.tolist())
        return torch.cat([indices, indices + 1]), torch.cat([bits, bits], dim=1)

    bank = CutMixBank(4, 5, area_thresh2=0.1, gather_fn=gather_fn)
    bank.update(torch.tensor([2]), _counted_map())
    assert calls == [[2]]
    assert bank.values[:, 2].tolist() == bank.values[:, 3].tolist() == [True, True, False, False]
    assert not bank.values[:, [0, 1, 4]].any()
    other = CutMixBank(4, 5)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.values, bank.values)
    with pytest.raises(ValueError, match=r"shape \(4, 5\)"):
        other.load_state_dict({"values": torch.zeros(4, 6, dtype=torch.bool)})


def test_partners_only_where_bit_set(generator):
    bank = torch.zeros(3, 50, dtype=torch.bool)
    bank[0, [3, 17, 41]] = True
    bank[1, 8] = True
    classes = torch.tensor([0] * 300 + [1] * 10 + [2] * 300)
    partners = sample_partners(bank, classes, generator=generator)
    assert set(partners[:300].tolist()) == {3, 17, 41}  # uniform among set bits: all three seen
    assert (partners[300:310] == 8).all()
    assert len(set(partners[310:].tolist())) > 40  # empty row: any image


def test_fallback_boxes_are_half_area_and_inside(generator):
    for sampling in ("log_uniform", "uniform"):
        boxes = random_boxes(500, 61, 83, generator=generator, height_sampling=sampling)
        top, left, bottom, right = boxes.t()
        h, w = bottom - top, right - left
        assert (top >= 0).all() and (left >= 0).all() and (bottom <= 61).all() and (right <= 83).all()
        assert ((h * w - 0.5 * 61 * 83).abs() <= (61 + 83) / 2 + 1).all()
        assert (h >= 30).all() and (w >= 41).all()
    with pytest.raises(ValueError, match="height_sampling"):
        random_boxes(1, 8, 8, height_sampling="normal")


def test_component_box_is_tightest_and_large_only(generator):
    pred = torch.zeros(1, 40, 40, dtype=torch.long)
    pred[0, 5:12, 8:20] = 3  # component A: 84 px
    pred[0, 12, 20] = 3  # diagonal neighbour joins A: box grows to row 12, col 20
    pred[0, 30:33, 30:33] = 3  # component B: 9 px
    pred[0, 20, 2] = 3  # single pixel
    for _ in range(5):
        boxes, found = component_boxes(pred, torch.tensor([3]), area_thresh=10 / 1600, generator=generator)
        assert found.tolist() == [True] and boxes[0].tolist() == [5, 8, 13, 21]
    # exact threshold: area must exceed it strictly
    _, found = component_boxes(pred, torch.tensor([3]), area_thresh=85 / 1600, generator=generator)
    assert found.tolist() == [False]
    _, found = component_boxes(pred, torch.tensor([3]), area_thresh=84.5 / 1600, generator=generator)
    assert found.tolist() == [True]


def test_random_pick_among_large_components(generator):
    pred = torch.zeros(2, 30, 30, dtype=torch.long)
    pred[:, 2:8, 2:8] = 1
    pred[:, 20:26, 15:29] = 1
    pred[1] = 0  # class 1 absent in the second map
    seen = set()
    for _ in range(30):
        out = cutmix_boxes(pred, torch.tensor([1, 1]), area_thresh=0.01, generator=generator)
        seen.add(tuple(out.boxes[0].tolist()))
        assert out.found.tolist() == [True, False]
        top, left, bottom, right = out.boxes[1].tolist()  # fallback: half the area
        assert abs((bottom - top) * (right - left) - 450) <= 31
    assert seen == {(2, 2, 8, 8), (20, 15, 26, 29)}


def test_boxes_match_scipy_on_blobby_maps(generator):
    low = torch.randn(3, 4, 5, 5, generator=generator)
    pred = torch.nn.functional.interpolate(low, size=(64, 64), mode="bilinear").argmax(1)
    classes = torch.tensor([0, 1, 2])
    out = cutmix_boxes(pred, classes, area_thresh=0.005, generator=generator)
    for b in range(3):
        ref, _ = ndimage.label((pred[b] == classes[b]).numpy(), structure=np.ones((3, 3)))
        boxes = {tuple(int(v) for v in (s[0].start, s[1].start, s[0].stop, s[1].stop))
                 for i, s in enumerate(ndimage.find_objects(ref)) if (ref == i + 1).sum() > 0.005 * 64 * 64}
        assert bool(out.found[b]) == bool(boxes)
        if boxes:
            assert tuple(out.boxes[b].tolist()) in boxes


def test_plain_cutmix_is_random_half_box(generator):
    pred = torch.zeros(2, 20, 20, dtype=torch.long)
    out = cutmix_boxes(pred, None, area_thresh=0.01, adaptive=False, generator=generator)
    assert out.found.tolist() == [False, False] and out.classes.tolist() == [-1, -1]
    with pytest.raises(ValueError, match="classes"):
        cutmix_boxes(pred, None, area_thresh=0.01)


def test_mixing_images_logits_and_pseudo_labels(generator):
    b, c, h, w = 2, 4, 16, 12
    images_i, images_j = torch.rand(2, b, 3, h, w, generator=generator)
    logits_i, logits_j = torch.randn(2, b, c, h, w, generator=generator)
    boxes = torch.tensor([[2, 3, 9, 10], [0, 0, 16, 6]])
    mask = boxes_to_mask(boxes, h, w)
    assert mask.sum(dim=(1, 2)).tolist() == [49, 96]
    mixed = mix_with_mask(images_i, images_j, mask)
    mixed_logits = mix_with_mask(logits_i, logits_j, mask)
    for k in range(b):
        top, left, bottom, right = boxes[k].tolist()
        inside = torch.zeros(h, w, dtype=torch.bool)
        inside[top:bottom, left:right] = True
        assert torch.equal(mixed[k][:, inside], images_j[k][:, inside])
        assert torch.equal(mixed[k][:, ~inside], images_i[k][:, ~inside])
        assert torch.equal(mixed_logits[k][:, inside], logits_j[k][:, inside])
        assert torch.equal(mixed_logits[k][:, ~inside], logits_i[k][:, ~inside])
    # pseudo-labelling commutes with mixing
    labels_mixed, conf_mixed = pseudo_labels(mixed_logits)
    (labels_i, conf_i), (labels_j, conf_j) = pseudo_labels(logits_i), pseudo_labels(logits_j)
    assert torch.equal(labels_mixed, mix_with_mask(labels_i, labels_j, mask))
    assert torch.equal(conf_mixed, mix_with_mask(conf_i, conf_j, mask))
    with pytest.raises(ValueError, match="cannot mix"):
        mix_with_mask(images_i, logits_j, mask)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64, torch.int64, torch.uint8,
                                   torch.int32, torch.bool])
def test_mix_with_mask_is_bit_exact_for_every_dtype(generator, dtype):
    a = torch.randn(2, 3, 9, 7, generator=generator) * 1e3
    b = torch.randn(2, 3, 9, 7, generator=generator) * 1e-3
    if dtype == torch.bool:
        a, b = a > 0, b > 0
    elif not dtype.is_floating_point:
        a, b = a.abs().to(dtype), (b * 1e6).abs().to(dtype)
    else:
        a, b = a.to(dtype), b.to(dtype)
        # non-finite values and -0.0 on either side must not leak into the other's pixels
        a[0, 0, 0, :4] = torch.tensor([float("inf"), float("nan"), -0.0, -float("inf")])
        b[0, 0, 1, :4] = torch.tensor([float("nan"), float("inf"), -0.0, torch.finfo(dtype).max])
    mask = torch.rand(2, 9, 7, generator=generator) < 0.5
    mask[0, :2, :4] = torch.tensor([[True, False, True, False], [False, True, False, True]])

    def bits(t):
        return t.view(torch.uint8) if t.dtype == torch.bool else t.view(torch.int8).view(-1)

    assert torch.equal(bits(mix_with_mask(a, b, mask)), bits(torch.where(mask.unsqueeze(1), b, a)))
    assert torch.equal(bits(mix_with_mask(a[:, 0], b[:, 0], mask)), bits(torch.where(mask, b[:, 0], a[:, 0])))


def test_mix_with_mask_refuses_mixed_dtypes_and_soft_masks():
    a, mask = torch.zeros(1, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="dtypes"):
        mix_with_mask(a, a.half(), mask)
    with pytest.raises(ValueError, match="bool"):
        mix_with_mask(a, a, mask.float())


@pytest.mark.parametrize("shape", [(4, 23, 29), (1, 1, 1), (2, 1, 300), (2, 300, 1), (0, 8, 8), (3, 0, 5), (3, 5, 0)])
def test_bank_bits_match_bincount_on_any_shape(generator, shape):
    c = 5
    # skewed: some classes cover a few pixels, some much of the map; -1, 5 and 255 are no class
    labels = (torch.rand(shape, generator=generator) ** 3 * (c + 2)).long() - 1
    labels.view(-1)[::13] = 255
    n, h, w = shape
    for t in (0.0, 0.01, 0.1, 0.3, 1.0):
        bits = cutmix_bank_bits(labels, num_classes=c, area_thresh2=t)
        assert bits.shape == (c, n) and bits.dtype == torch.bool
        for i in range(n):
            counts = torch.bincount(labels[i][(labels[i] >= 0) & (labels[i] < c)], minlength=c)
            assert bits[:, i].tolist() == ((counts > 0) & (counts >= t * h * w)).tolist()


def test_bank_bits_of_any_layout_and_of_many_classes(generator):
    pred = torch.randint(0, 7, (2, 12, 20), generator=generator)
    pred[:, 0] = 255
    expected = cutmix_bank_bits(pred, num_classes=5, area_thresh2=0.1)
    for other in (pred.int(), pred.to(torch.uint8), pred.repeat_interleave(2, dim=-1)[..., ::2]):
        assert torch.equal(cutmix_bank_bits(other, num_classes=5, area_thresh2=0.1), expected)
    transposed = pred.transpose(1, 2)
    assert torch.equal(cutmix_bank_bits(transposed, num_classes=5, area_thresh2=0.1),
                       cutmix_bank_bits(transposed.contiguous(), num_classes=5, area_thresh2=0.1))
    many = torch.randint(0, 1 << 16, (4, 64, 64), generator=generator)
    bits = cutmix_bank_bits(many, num_classes=1 << 16, area_thresh2=0.0)
    exact = torch.zeros(1 << 16, 4, dtype=torch.bool)
    for i in range(4):
        exact[many[i].unique(), i] = True
    assert torch.equal(bits, exact)
    with pytest.raises((OverflowError, RuntimeError)):  # an ignore label beyond int64
        cutmix_bank_bits(pred, num_classes=5, area_thresh2=0.1, ignore_index=2**64)


def test_mix_of_strided_inputs(generator):
    outside = torch.randn(2, 3, 8, 8, generator=generator).transpose(2, 3)
    inside = torch.randn(2, 3, 8, 8, generator=generator)
    mask = torch.rand(2, 8, 8, generator=generator) > 0.5
    assert torch.equal(mix_with_mask(outside, inside, mask), torch.where(mask.unsqueeze(1), inside, outside))

"""Transform invariants: nearest labels, ignore padding, flip consistency, seeded randomness."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ael.data.transforms import (
    JointTransform,
    Normalize,
    StrongPhotometric,
    draw_scale,
    hflip,
    image_to_tensor,
    pad_and_crop,
    resize_pair,
    upscale_window,
)


def _pair(h=20, w=28, seed=0):
    rng = np.random.default_rng(seed)
    label = torch.from_numpy(rng.choice(np.array([0, 3, 7, 255]), size=(h, w))).long()
    # The image encodes the label, so geometry can be checked through both.
    image = (label.float() / 255.0)[None].repeat(3, 1, 1)
    return image, label


def test_to_tensor_layout():
    arr = np.zeros((4, 5, 3), np.uint8)
    arr[1, 2] = (255, 0, 51)
    t = image_to_tensor(arr)
    assert t.shape == (3, 4, 5) and t.dtype == torch.float32
    assert t[:, 1, 2].tolist() == pytest.approx([1.0, 0.0, 0.2])


@pytest.mark.parametrize("size", [(7, 9), (53, 61), (20, 28)])
def test_label_resize_is_nearest_only(size):
    image, label = _pair()
    out_image, out_label = resize_pair(image, label, size)
    assert out_image.shape == (3, *size) and out_label.shape == size
    assert set(out_label.unique().tolist()) <= {0, 3, 7, 255}
    assert out_label.dtype == torch.int64


def test_integer_upscale_repeats_pixels():
    _, label = _pair(4, 5)
    _, up = resize_pair(torch.zeros(3, 4, 5), label, (8, 10))
    torch.testing.assert_close(up, label.repeat_interleave(2, 0).repeat_interleave(2, 1))


@pytest.mark.parametrize(("fill", "expected"), [(255, 255), (0, 0)])
def test_crop_pads_label_with_fill_and_image_with_mean(fill, expected, generator):
    image, label = _pair(5, 6)
    mean = (0.1, 0.2, 0.3)
    out_image, out_label = pad_and_crop(image, label, 10, generator, image_fill=mean, label_fill=fill)
    assert out_image.shape == (3, 10, 10) and out_label.shape == (10, 10)
    # The image is smaller than the crop: it sits top-left, the rest is padding.
    torch.testing.assert_close(out_label[:5, :6], label)
    assert (out_label[5:] == expected).all() and (out_label[:, 6:] == expected).all()
    torch.testing.assert_close(out_image[:, 7, 8], torch.tensor(mean))


def test_crop_window_matches_between_image_and_label(generator):
    image, label = _pair(30, 40)
    out_image, out_label = pad_and_crop(image, label, 16, generator, image_fill=(0, 0, 0), label_fill=255)
    torch.testing.assert_close((out_image[0] * 255).round().long(), out_label)


def test_flip_is_consistent():
    image, label = _pair()
    fi, fl = hflip(image, label)
    torch.testing.assert_close(fi[:, :, 0], image[:, :, -1])
    torch.testing.assert_close(fl[:, 0], label[:, -1])


def test_joint_transform_keeps_image_and_label_aligned_and_is_seeded():
    # 10x10 blocks of labels 0, 3, 7, 100; the image encodes the label.
    blocks = torch.tensor([[0, 3, 7, 100, 0], [7, 100, 0, 3, 3], [3, 0, 100, 7, 0], [100, 7, 3, 0, 7]])
    label = blocks.repeat_interleave(10, 0).repeat_interleave(10, 1)
    image = (label.float() / 255.0)[None].repeat(3, 1, 1)
    t = JointTransform(crop_size=24, scale_range=(0.5, 2.0), mean=(0.0, 0.0, 0.0))
    for seed in range(20):
        out_image, out_label = t(image, label, torch.Generator().manual_seed(seed))
        assert out_image.shape == (3, 24, 24) and out_label.shape == (24, 24)
        assert set(out_label.unique().tolist()) <= {0, 3, 7, 100, 255}
        # Away from block edges (blended by bilinear resizing) the image still encodes the label.
        lab = out_label[None, None].float()
        interior = (F.max_pool2d(lab, 5, 1, 2) == -F.max_pool2d(-lab, 5, 1, 2))[0, 0] & (out_label != 255)
        decoded = (out_image[0] * 255).round().long()
        assert interior.any()
        assert (decoded == out_label)[interior].float().mean() > 0.9  # crop edges blend unseen pixels
    a = t(image, label, torch.Generator().manual_seed(5))
    b = t(image, label, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_scale_modes(generator):
    uniform = [draw_scale(generator, (0.5, 2.0)) for _ in range(2000)]
    assert min(uniform) >= 0.5 and max(uniform) <= 2.0
    assert np.mean(np.array(uniform) < 1.0) == pytest.approx(1 / 3, abs=0.04)
    piecewise = [draw_scale(generator, (0.5, 2.0), "piecewise") for _ in range(2000)]
    assert np.mean(np.array(piecewise) < 1.0) == pytest.approx(0.5, abs=0.04)
    assert min(piecewise) >= 0.5 and max(piecewise) <= 2.0
    with pytest.raises(ValueError, match="unknown scale mode 'log'"):
        draw_scale(generator, (0.5, 2.0), "log")


def test_normalize_exact():
    image = torch.full((3, 2, 2), 0.5)
    out = Normalize((0.5, 0.25, 0.0), (0.5, 0.25, 0.5))(image)
    assert out[:, 0, 0].tolist() == [0.0, 1.0, 1.0]


def test_strong_view_is_photometric_only(generator):
    image = torch.zeros(3, 16, 16)
    image[:, :, 8:] = torch.tensor([0.9, 0.2, 0.1]).view(3, 1, 1)
    strong = StrongPhotometric(jitter_prob=1.0, grayscale_prob=0.0, blur_prob=0.0)(image, generator)
    assert strong.shape == image.shape and strong.min() >= 0 and strong.max() <= 1
    assert not torch.equal(strong, image)
    # No geometry: the left half stays uniform, the edge stays between columns 7 and 8.
    assert (strong[:, :, :8] == strong[:, :1, :1]).all()
    grey = StrongPhotometric(jitter_prob=0.0, grayscale_prob=1.0, blur_prob=0.0)(image, generator)
    torch.testing.assert_close(grey[0], grey[1])
    blurred = StrongPhotometric(jitter_prob=0.0, grayscale_prob=0.0, blur_prob=1.0)(image, generator)
    assert blurred[0, 0, 7] > 0 and blurred[0, 0, 8] < 0.9


@pytest.mark.parametrize(("h", "w", "sh", "sw", "crop"), [(36, 48, 72, 96, 30), (20, 30, 41, 77, 50)])
def test_upscale_window_equals_resize_then_crop(h, w, sh, sw, crop):
    gen = torch.Generator().manual_seed(1)
    image, label = torch.rand(3, h, w, generator=gen), torch.randint(0, 11, (h, w), generator=gen)
    full_image, full_label = resize_pair(image, label, (sh, sw))
    big_h, big_w = max(sh, crop), max(sw, crop)
    padded = torch.full((3, big_h, big_w), 0.25)
    padded[:, :sh, :sw] = full_image
    padded_label = torch.full((big_h, big_w), 255)
    padded_label[:sh, :sw] = full_label
    for top, left in ((0, 0), (big_h - crop, big_w - crop), ((big_h - crop) // 2, 1)):
        window, window_label = upscale_window(image, label, (sh, sw), top, left, crop, image_fill=(0.25,) * 3,
                                              label_fill=255)
        torch.testing.assert_close(window, padded[:, top:top + crop, left:left + crop], atol=1e-5, rtol=0)
        torch.testing.assert_close(window_label, padded_label[top:top + crop, left:left + crop])

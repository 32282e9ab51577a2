"""Joint image/label transforms for one sample, random only through a passed ``torch.Generator``.

The training pipeline (weak view) is: random scale (uniform in ``scale_range``, or the release's
piecewise draw), pad to the crop size (image with the mean colour, label with the ignore index
or, as the release, with 0), random crop, horizontal flip, normalisation. Labels are resized
with nearest neighbour only, so no new label value can appear. The Copy-Paste source pipeline
is the same with its own scale range (0.1, 2.0). The strong view (off by default) is a
photometric change of the weak crop: the same geometry, so CutMix boxes and pseudo-labels
line up.

Images enter as (H, W, 3) uint8 numpy arrays and leave as (3, h, w) float32 tensors; labels
enter as (H, W) uint8 and leave as (h, w) int64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ael.data.info import IGNORE_INDEX

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "JointTransform",
    "Normalize",
    "StrongPhotometric",
    "draw_scale",
    "hflip",
    "image_to_tensor",
    "label_to_tensor",
    "pad_and_crop",
    "resize_pair",
    "upscale_window",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def label_to_tensor(label: np.ndarray) -> torch.Tensor:
    """(H, W) integer label map -> (H, W) int64."""
    return torch.from_numpy(np.ascontiguousarray(label)).long()


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def draw_scale(generator: torch.Generator, scale_range: tuple[float, float], mode: str = "uniform") -> float:
    """A random scale factor.

    Args:
        generator: the source of randomness.
        scale_range: (low, high).
        mode: "uniform" in [low, high]; "piecewise" (the release): half the time uniform in
            [low, 1), half the time in [1, high].
    """
    low, high = scale_range
    if mode == "uniform":
        return _uniform(generator, low, high)
    if mode == "piecewise":
        if float(torch.rand((), generator=generator)) < 0.5:
            return _uniform(generator, low, min(1.0, high))
        return _uniform(generator, max(1.0, low), high)
    raise ValueError(f"unknown scale mode {mode!r} (expected 'uniform' or 'piecewise')")


def resize_pair(image: torch.Tensor, label: torch.Tensor | None, size: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Resize (3, H, W) bilinearly (antialiased when shrinking) and (H, W) labels by nearest neighbour."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image, label
    shrink = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=shrink)[0]
    if label is not None:
        # Labels <= 255 are exact in float32; "nearest" copies source values, never blends them.
        label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image, label


def _source_coords(out_positions: torch.Tensor, in_size: int, out_size: int) -> tuple[torch.Tensor, ...]:
    """Bilinear taps as ``F.interpolate(mode="bilinear", align_corners=False)`` computes them."""
    src = ((out_positions.double() + 0.5) * (in_size / out_size) - 0.5).clamp(min=0.0)
    lo = src.floor().long().clamp(max=in_size - 1)
    hi = (lo + 1).clamp(max=in_size - 1)
    frac = (src - lo.double()).float()
    return lo, hi, frac


def upscale_window(image: torch.Tensor, label: torch.Tensor | None, scaled: tuple[int, int], top: int, left: int,
                   crop: int, *, image_fill: tuple[float, float, float], label_fill: int
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The ``crop`` x ``crop`` window at (top, left) of the image resized to ``scaled``, without
    resizing the rest: same values as :func:`resize_pair` then :func:`pad_and_crop` when
    upscaling (no antialiasing), at a cost proportional to the window.

    Args:
        image: (3, H, W).
        label: (H, W) or None.
        scaled: (H', W') >= (H, W), the resized size.
        top, left: window corner in the padded resized image.
        crop: window side.
        image_fill, label_fill: values where the window passes the resized image's edge.
    """
    h, w = image.shape[-2:]
    sh, sw = scaled
    ys = torch.arange(top, min(top + crop, sh))
    xs = torch.arange(left, min(left + crop, sw))
    y0, y1, fy = _source_coords(ys, h, sh)
    x0, x1, fx = _source_coords(xs, w, sw)
    rows = image[:, y0] * (1 - fy)[:, None] + image[:, y1] * fy[:, None]  # (3, ny, W)
    window = rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx  # (3, ny, nx)
    out = torch.tensor(image_fill, dtype=image.dtype).view(3, 1, 1).expand(3, crop, crop).clone()
    out[:, : len(ys), : len(xs)] = window
    out_label = None
    if label is not None:
        # "nearest": source index floor(dst * in / out), as F.interpolate(mode="nearest").
        ny = (ys.double() * (h / sh)).floor().long().clamp(max=h - 1)
        nx = (xs.double() * (w / sw)).floor().long().clamp(max=w - 1)
        out_label = torch.full((crop, crop), label_fill, dtype=label.dtype)
        out_label[: len(ys), : len(xs)] = label[ny][:, nx]
    return out, out_label


def pad_and_crop(image: torch.Tensor, label: torch.Tensor | None, crop: int, generator: torch.Generator, *,
                 image_fill: tuple[float, float, float], label_fill: int
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pad (bottom/right) up to ``crop`` and take a random ``crop`` x ``crop`` window.

    Args:
        image: (3, H, W).
        label: (H, W) or None.
        crop: output side.
        generator: draws the window position.
        image_fill: per-channel value of padded image pixels.
        label_fill: value of padded label pixels (the ignore index, or 0 as the release).
    """
    h, w = image.shape[-2:]
    ph, pw = max(crop - h, 0), max(crop - w, 0)
    if ph or pw:
        fill = torch.tensor(image_fill, dtype=image.dtype).view(3, 1, 1)
        padded = fill.expand(3, h + ph, w + pw).clone()
        padded[:, :h, :w] = image
        image = padded
        if label is not None:
            padded_label = torch.full((h + ph, w + pw), label_fill, dtype=label.dtype)
            padded_label[:h, :w] = label
            label = padded_label
        h, w = h + ph, w + pw
    top = int(torch.randint(0, h - crop + 1, (), generator=generator))
    left = int(torch.randint(0, w - crop + 1, (), generator=generator))
    image = image[:, top:top + crop, left:left + crop]
    if label is not None:
        label = label[top:top + crop, left:left + crop]
    return image, label


def hflip(image: torch.Tensor, label: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mirror left-right: (3, H, W) and (H, W)."""
    return image.flip(-1), (label.flip(-1) if label is not None else None)


@dataclass(frozen=True)
class Normalize:
    """(x - mean) / std per channel on a (3, H, W) [0, 1] image."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=image.dtype).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=image.dtype).view(3, 1, 1)
        return (image - mean) / std


@dataclass(frozen=True)
class JointTransform:
    """Random scale, pad, crop and flip of an image and its label (the weak view).

    Attributes:
        crop_size: output side in pixels.
        scale_range: (low, high) scale factors.
        scale_mode: "uniform" or "piecewise" (release).
        label_fill: label value in padded areas (255 ignore; 0 as the release).
        flip: random horizontal flip with probability 0.5.
        mean: image fill in padded areas, in [0, 1] (becomes 0 after normalisation).
    """

    crop_size: int
    scale_range: tuple[float, float] = (0.5, 2.0)
    scale_mode: str = "uniform"
    label_fill: int = IGNORE_INDEX
    flip: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN

    def __call__(self, image: torch.Tensor, label: torch.Tensor | None, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Transform (3, H, W) [0, 1] and (H, W) int64 into (3, S, S) and (S, S), S = crop_size."""
        scale = draw_scale(generator, self.scale_range, self.scale_mode)
        h, w = image.shape[-2:]
        size = (max(1, math.floor(h * scale + 0.5)), max(1, math.floor(w * scale + 0.5)))
        if size[0] > h and size[1] > w:
            # Upscaling: resample only the crop window (the same values, a fraction of the work).
            crop = self.crop_size
            top = int(torch.randint(0, max(size[0], crop) - crop + 1, (), generator=generator))
            left = int(torch.randint(0, max(size[1], crop) - crop + 1, (), generator=generator))
            image, label = upscale_window(image, label, size, top, left, crop, image_fill=self.mean,
                                          label_fill=self.label_fill)
        else:
            image, label = resize_pair(image, label, size)
            image, label = pad_and_crop(image, label, self.crop_size, generator, image_fill=self.mean,
                                        label_fill=self.label_fill)
        if self.flip and float(torch.rand((), generator=generator)) < 0.5:
            image, label = hflip(image, label)
        return image, label


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(2 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = F.conv2d(F.pad(image[:, None], (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return out[:, 0]


@dataclass(frozen=True)
class StrongPhotometric:
    """The student's strong view: colour jitter, random greyscale and blur, no geometry.

    Attributes:
        jitter_prob: probability of brightness/contrast/saturation jitter.
        strength: each jitter factor is drawn in [1 - strength, 1 + strength].
        grayscale_prob: probability of turning the image grey.
        blur_prob: probability of a Gaussian blur with sigma in ``blur_sigma``.
    """

    jitter_prob: float = 0.8
    strength: float = 0.5
    grayscale_prob: float = 0.2
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(3, H, W) [0, 1] -> (3, H, W) [0, 1]."""
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype).view(3, 1, 1)
        draws = torch.rand(8, generator=generator)
        lo, hi = 1 - self.strength, 1 + self.strength
        factors = lo + (hi - lo) * draws[1:4]
        if draws[0] < self.jitter_prob:
            image = image * factors[0]
            gray_mean = (image * weights).sum(0).mean()
            image = (image - gray_mean) * factors[1] + gray_mean
            gray = (image * weights).sum(0, keepdim=True)
            image = gray + (image - gray) * factors[2]
            image = image.clamp(0.0, 1.0)
        if draws[4] < self.grayscale_prob:
            image = (image * weights).sum(0, keepdim=True).expand(3, -1, -1).contiguous()
        if draws[5] < self.blur_prob:
            s_lo, s_hi = self.blur_sigma
            image = _gaussian_blur(image, float(s_lo + (s_hi - s_lo) * draws[6]))
        return image

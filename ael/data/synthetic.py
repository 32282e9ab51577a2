"""The built-in synthetic long-tailed segmentation set: the default dataset, no files needed.

Every image is a pure function of ``(seed, split, index)``: a textured background, one large
"region" class covering a good share of the picture, a few mid-sized ellipse ("blob") classes
and thin or small tail classes (lines, rings, discs). Pixel shares of the foreground classes
follow ``(rank + 1) ** -tail_power``, so with the defaults (8 classes, power 2) the head
covers most pixels and the last classes stay under 1 %.

The set is meant to be hard in the way real long-tailed data is hard: head and mid classes share
colour prototypes (class ``c`` and ``c + 4`` look alike apart from an offset of about the size of
the per-image colour jitter, and their texture), every image jitters colours and brightness and
adds pixel noise, and tail objects (coloured apart from the head) are rare and small (3-4 px thick lines and rings, discs of
4-6 px radius: learnable by a model predicting at stride 4, but seen in only a fraction of the
images), so a plain supervised model learns the tail clearly worse than the head.
A one-pixel ignore band (label 255) runs along the image edge and around every object on the
background side, as the boundary band of Pascal VOC.

Rendering is vectorised numpy in single precision: about 3 ms of one CPU core for a 96x96 image.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np

from ael.data.base import DatasetError, Sample, SegmentationDataset
from ael.data.info import IGNORE_INDEX, DatasetInfo, default_palette

__all__ = [
    "SPLITS",
    "SyntheticClass",
    "SyntheticLayout",
    "SyntheticSegmentation",
    "render_synthetic",
    "synthetic_layout",
    "synthetic_palette",
]

logger = logging.getLogger(__name__)

SPLITS = ("labeled", "unlabeled", "val")
# Distinct stream ids per split: labeled image 3 and val image 3 are different pictures.
_SPLIT_CODES = {"labeled": 1, "unlabeled": 2, "val": 3}

FOREGROUND_SHARE = 0.5  # target share of all foreground classes together, before occlusion
_TAIL_KINDS = ("line", "ring", "disc")
# Colour prototypes (RGB in [0, 1]) deliberately close to each other: colour alone is ambiguous.
_PROTOTYPES = np.array(
    [[0.45, 0.50, 0.40], [0.55, 0.47, 0.36], [0.42, 0.46, 0.58], [0.58, 0.42, 0.46]], dtype=np.float32
)
_TAIL_PROTOTYPES = np.array([[0.80, 0.30, 0.30], [0.30, 0.75, 0.35], [0.30, 0.40, 0.85]], dtype=np.float32)
_CLASS_OFFSET = 0.1  # per class, per channel, around its prototype (fixed per dataset)
_COLOR_JITTER = 0.06  # per image, per class, per channel (std)
_PIXEL_NOISE = 0.07  # per pixel (std)
# Tail geometry in pixels at image sizes up to 96 (scaled up beyond). Tail objects are at least
# 3 px thick (discs 4 px in radius) so that a small model, whose decoder predicts at stride 4, can
# learn them at all; they stay rare because their instance counts are sized to the class share.
_LINE_THICK = (3.0, 4.0)
_RING_RADIUS = (5.0, 9.0)
_RING_THICK = (3.0, 4.0)
_DISC_RADIUS = (4.0, 6.0)
# Display colours of the classes (overlays, charts), each clearly distinct from the others: a mid
# grey background that neither vanishes like black nor matches a class, then well-separated hues
# (the Tableau 10 set without its grey, then darker and lighter variants). The VOC map gave
# background (black, drawn grey on charts) and the 8th class the same grey.
_DISPLAY_PALETTE = (
    (120, 120, 120), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (0, 0, 128), (128, 0, 0),
    (0, 90, 50), (255, 220, 0), (90, 0, 110), (0, 255, 160),
)


@dataclass(frozen=True)
class SyntheticClass:
    """One class of the synthetic set.

    Attributes:
        name: descriptive name ("background", "region", "blob-1", "line", ...).
        kind: how it is drawn: background, region, blob, line, ring or disc.
        share: target pixel share before occlusion and ignore bands.
    """

    name: str
    kind: str
    share: float


@dataclass(frozen=True)
class SyntheticLayout:
    """Everything that is fixed across images: classes, their appearance, the image size."""

    classes: tuple[SyntheticClass, ...]
    image_size: int
    colors: np.ndarray  # (C, 3) float32 mean colour per class
    texture_freq: np.ndarray  # (C,) cycles per pixel
    texture_angle: np.ndarray  # (C,) radians
    texture_amp: np.ndarray  # (C,)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def synthetic_layout(*, num_classes: int = 8, image_size: int = 96, tail_power: float = 2.0,
                     seed: int = 0) -> SyntheticLayout:
    """The classes, their target shares and appearance for a synthetic set.

    Args:
        num_classes: C, background included (>= 2).
        image_size: side of the square images in pixels.
        tail_power: foreground class of rank r gets a share proportional to (r + 1) ** -tail_power.
        seed: the dataset seed (appearance depends on it, so two seeds are two datasets).
    """
    if num_classes < 2:
        raise ValueError(f"synthetic: num_classes must be >= 2, got {num_classes}")
    if image_size < 16:
        raise ValueError(f"synthetic: image_size must be >= 16, got {image_size}")
    weights = np.arange(1, num_classes, dtype=np.float64) ** -float(tail_power)
    shares = FOREGROUND_SHARE * weights / weights.sum()
    classes = [SyntheticClass("background", "background", 1.0 - FOREGROUND_SHARE)]
    counts: dict[str, int] = {}
    tail_rank = 0
    for share in shares:
        if share >= 0.10:
            kind = "region"
        elif share >= 0.015:
            kind = "blob"
        else:
            kind = _TAIL_KINDS[tail_rank % len(_TAIL_KINDS)]
            tail_rank += 1
        counts[kind] = counts.get(kind, 0) + 1
        classes.append(SyntheticClass(f"{kind}-{counts[kind]}", kind, float(share)))
    # Single instances of a kind keep the plain name ("line" rather than "line-1").
    named = []
    for cls in classes:
        base = cls.kind
        if cls.kind != "background" and counts[base] == 1:
            cls = SyntheticClass(base, cls.kind, cls.share)
        named.append(cls)

    style = np.random.default_rng([seed, 0, 0])
    proto = _PROTOTYPES[np.arange(num_classes) % len(_PROTOTYPES)]
    # Tail classes get colours of their own: what makes them hard is that they are rare and
    # small, as in real long-tailed data, not that they are indistinguishable from a head class
    # (then no method could learn them in a demo's few hundred steps).
    is_tail = np.array([cls.kind in _TAIL_KINDS for cls in named])
    proto[is_tail] = _TAIL_PROTOTYPES[np.arange(int(is_tail.sum())) % len(_TAIL_PROTOTYPES)]
    colors = proto + style.uniform(-_CLASS_OFFSET, _CLASS_OFFSET, size=(num_classes, 3)).astype(np.float32)
    return SyntheticLayout(
        classes=tuple(named),
        image_size=int(image_size),
        colors=colors.astype(np.float32),
        texture_freq=style.uniform(0.06, 0.3, size=num_classes).astype(np.float32),
        texture_angle=style.uniform(0.0, np.pi, size=num_classes).astype(np.float32),
        texture_amp=style.uniform(0.05, 0.11, size=num_classes).astype(np.float32),
    )


def _mean_instance_area(kind: str, size: int) -> float:
    """Expected pixel area of one instance of a tail kind (matches the draws below)."""
    scale = max(1.0, size / 96.0)
    if kind == "line":
        return 0.425 * size * np.mean(_LINE_THICK) * scale  # mean length x mean thickness
    if kind == "ring":
        return 2 * np.pi * np.mean(_RING_RADIUS) * scale * np.mean(_RING_THICK) * scale
    if kind == "disc":
        r_lo, r_hi = _DISC_RADIUS[0] * scale, _DISC_RADIUS[1] * scale
        return np.pi * (r_hi**3 - r_lo**3) / (3 * (r_hi - r_lo))
    raise ValueError(kind)


def _u(rng: np.random.Generator, low: float, high: float, size: tuple[int, ...] | int) -> np.ndarray:
    """Uniform draws in float32: shape maths on (n, S, S) grids stays in single precision."""
    return rng.uniform(low, high, size=size).astype(np.float32)


def _paint_region(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, share: float,
                  size: int) -> np.ndarray:
    """A smooth random field thresholded to cover about ``share`` of the image."""
    freq = rng.uniform(0.5, 2.0, size=(3, 1, 1)) / size
    angle = rng.uniform(0, np.pi, size=(3, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(3, 1, 1))
    amp = rng.uniform(0.5, 1.0, size=(3, 1, 1))
    field = (amp * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)).sum(0)
    fraction = float(np.clip(share * rng.uniform(0.4, 1.6), 0.02, 0.9))
    return field > np.quantile(field, 1.0 - fraction)


def _paint_instances(rng: np.random.Generator, kind: str, yy: np.ndarray, xx: np.ndarray, share: float,
                     size: int) -> np.ndarray:
    """Union mask of a Poisson number of instances of ``kind`` sized to hit ``share`` on average."""
    area = share * size * size
    scale = size / 96.0
    if kind == "blob":
        lam = 2.0
        n = rng.poisson(lam)
        if n == 0:
            return np.zeros(yy.shape, dtype=bool)
        inst_area = area / lam * _u(rng, 0.5, 1.5, size=n)
        aspect = _u(rng, 0.5, 2.0, size=n)
        a = np.sqrt(inst_area / np.pi * aspect)[:, None, None]
        b = np.sqrt(inst_area / np.pi / aspect)[:, None, None]
        cy, cx = (_u(rng, 0, size, size=(2, n, 1, 1)))
        theta = _u(rng, 0, np.pi, size=(n, 1, 1))
        dx, dy = xx - cx, yy - cy
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        return ((u / a) ** 2 + (v / b) ** 2 <= 1.0).any(0)
    n = rng.poisson(area / _mean_instance_area(kind, size))
    if n == 0:
        return np.zeros(yy.shape, dtype=bool)
    cy, cx = _u(rng, 0, size, size=(2, n, 1, 1))
    scale = max(1.0, scale)
    if kind == "line":
        length = _u(rng, 0.25, 0.6, size=(n, 1, 1)) * size
        thick = _u(rng, *_LINE_THICK, size=(n, 1, 1)) * scale
        theta = _u(rng, 0, np.pi, size=(n, 1, 1))
        ux, uy = np.cos(theta), np.sin(theta)
        dx, dy = xx - cx, yy - cy
        along = np.clip(dx * ux + dy * uy, -length / 2, length / 2)
        dist = np.hypot(dx - along * ux, dy - along * uy)
        return (dist <= thick / 2).any(0)
    dist = np.hypot(xx - cx, yy - cy)
    if kind == "ring":
        radius = _u(rng, *_RING_RADIUS, size=(n, 1, 1)) * scale
        thick = _u(rng, *_RING_THICK, size=(n, 1, 1)) * scale
        return (np.abs(dist - radius) <= thick / 2).any(0)
    if kind == "disc":
        radius = _u(rng, *_DISC_RADIUS, size=(n, 1, 1)) * scale
        return (dist <= radius).any(0)
    raise ValueError(f"synthetic: unknown class kind {kind!r}")


def render_synthetic(layout: SyntheticLayout, *, seed: int, split: str, index: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Draw one image and its label map, a pure function of ``(layout, seed, split, index)``.

    Returns:
        image: (S, S, 3) uint8 RGB.
        label: (S, S) uint8 in [0, C) or 255 (ignore band).
    """
    if split not in _SPLIT_CODES:
        raise ValueError(f"synthetic: unknown split {split!r} (expected one of {SPLITS})")
    size = layout.image_size
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    paint = np.zeros((size, size), dtype=np.uint8)  # class of every pixel, before ignore bands
    for c, cls in enumerate(layout.classes):
        if cls.kind == "background":
            continue
        if cls.kind == "region":
            mask = _paint_region(rng, yy, xx, cls.share, size)
        else:
            mask = _paint_instances(rng, cls.kind, yy, xx, cls.share, size)
        paint[mask] = c  # later (rarer) classes are drawn on top

    # Appearance: per-class colour with per-image jitter, an oriented texture, gain and noise.
    c_all = layout.num_classes
    colors = layout.colors + rng.normal(0.0, _COLOR_JITTER, size=(c_all, 3)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(c_all, 1, 1)).astype(np.float32)
    angle = layout.texture_angle[:, None, None]
    texture = layout.texture_amp[:, None, None] * np.sin(
        2 * np.pi * layout.texture_freq[:, None, None] * (xx * np.cos(angle) + yy * np.sin(angle)) + phase
    )  # (C, S, S)
    tex = np.take_along_axis(texture, paint[None].astype(np.int64), axis=0)[0]
    gain = rng.uniform(0.8, 1.2)
    image = (colors[paint] + tex[..., None]) * gain
    image += rng.normal(0.0, _PIXEL_NOISE, size=image.shape).astype(np.float32)
    image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    # Ignore band: background pixels 4-adjacent to an object, and the outermost image ring.
    fg = paint > 0
    near = np.zeros_like(fg)
    near[1:] |= fg[:-1]
    near[:-1] |= fg[1:]
    near[:, 1:] |= fg[:, :-1]
    near[:, :-1] |= fg[:, 1:]
    label = paint.copy()
    label[near & ~fg] = IGNORE_INDEX
    label[[0, -1], :] = IGNORE_INDEX
    label[:, [0, -1]] = IGNORE_INDEX
    return image, label


class SyntheticSegmentation(SegmentationDataset):
    """The synthetic set behind the common dataset interface.

    Args:
        split: "labeled", "unlabeled", "val", or "train" (labeled then unlabeled ids).
        num_labeled: images in the labeled split.
        num_unlabeled: images in the unlabeled split.
        num_val: images in the val split.
        num_classes: C, background included.
        image_size: side of the square images.
        tail_power: decay of the foreground class shares.
        seed: dataset seed; image ``i`` of a split is a function of (seed, split, i) only.
    """

    def __init__(self, split: str = "labeled", *, num_labeled: int = 64, num_unlabeled: int = 512,
                 num_val: int = 64, num_classes: int = 8, image_size: int = 96, tail_power: float = 2.0,
                 seed: int = 0):
        sizes = {"labeled": num_labeled, "unlabeled": num_unlabeled, "val": num_val}
        if split == "train":
            parts = ("labeled", "unlabeled")
        elif split in sizes:
            parts = (split,)
        else:
            raise DatasetError(f"synthetic: unknown split {split!r} (expected train, {', '.join(SPLITS)})")
        self.split = split
        self.seed = int(seed)
        self._tail_power = float(tail_power)
        self.layout = synthetic_layout(num_classes=num_classes, image_size=image_size,
                                       tail_power=tail_power, seed=seed)
        self.info = DatasetInfo(
            name="synthetic",
            class_names=tuple(c.name for c in self.layout.classes),
            palette=synthetic_palette(num_classes),
            ignore_index=IGNORE_INDEX,
        )
        self._entries = tuple((part, i) for part in parts for i in range(sizes[part]))
        self.ids = tuple(f"{part}/{i:06d}" for part, i in self._entries)

    @property
    def target_shares(self) -> np.ndarray:
        """(C,) designed pixel shares (before occlusion and ignore bands)."""
        return np.array([c.share for c in self.layout.classes])

    def load(self, index: int) -> Sample:
        part, i = self._entries[index]
        image, label = render_synthetic(self.layout, seed=self.seed, split=part, index=i)
        return Sample(image=image, label=label, index=index, id=self.ids[index])

    def pixel_frequencies(self) -> np.ndarray:
        """(C,) measured share of non-ignored pixels per class over the first labeled-stream images."""
        key = (self.layout.num_classes, self.layout.image_size, self._tail_power, self.seed)
        return _measured_frequencies(*key).copy()


def synthetic_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """Display colours of ``num_classes`` synthetic classes: distinct hand-picked colours, then the
    VOC map's for classes past them."""
    return tuple(_DISPLAY_PALETTE[:num_classes]) + default_palette(num_classes)[len(_DISPLAY_PALETTE):]


@functools.lru_cache(maxsize=16)
def _measured_frequencies(num_classes: int, image_size: int, tail_power: float, seed: int) -> np.ndarray:
    layout = synthetic_layout(num_classes=num_classes, image_size=image_size, tail_power=tail_power, seed=seed)
    counts = np.zeros(num_classes, dtype=np.float64)
    # The labeled stream is the reference: it is what a run is told about its classes. About
    # 2.4 M pixels (256 images at 96x96) pin every share to a few parts in a thousand.
    for i in range(max(16, round(256 * (96 / image_size) ** 2))):
        _, label = render_synthetic(layout, seed=seed, split="labeled", index=i)
        counts += np.bincount(label.ravel(), minlength=256)[:num_classes]
    return counts / counts.sum()

"""One image sample of a run as a captioned strip of panels, for the live monitor's sample views."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ael.viz import confidence_colormap, draw_box, error_map, overlay, tile

if TYPE_CHECKING:
    from ael.runs import Sample

__all__ = ["sample_strip"]


def _palette_or_default(palette: np.ndarray | None, num_classes: int) -> np.ndarray:
    if palette is not None:
        return palette
    from ael.data.info import default_palette

    return np.asarray(default_palette(max(1, num_classes)), dtype=np.uint8)


def sample_strip(sample: Sample, class_names: list[str], *, alpha: float = 0.6) -> np.ndarray:
    """One sample as a captioned row: images, label overlays, maps in [0, 1], and the error map.

    A ``pseudo`` sample gives image, ground truth, pseudo-label, confidence and pseudo-label
    errors; a ``cutmix`` sample gives images i and j, the mix with its box, and the mixed
    pseudo-label.

    Returns:
        ``(H', W', 3)`` uint8.
    """
    palette = _palette_or_default(sample.palette, len(class_names))
    ignore = sample.ignore_index if sample.ignore_index is not None else 255
    box = sample.record.meta.get("box")
    parts: list[tuple[str, np.ndarray]] = []
    for name, image in sample.images.items():
        if name in ("mixed", "image_b") and isinstance(box, list) and len(box) == 4:
            image = draw_box(image, box, colour=(255, 255, 0), width=1)
        parts.append((name, image))
    base = next((sample.images[k] for k in ("mixed", "image") if k in sample.images), None)
    for name, label in sample.labels.items():
        background = base if base is not None and base.shape[:2] == label.shape else np.zeros((*label.shape, 3),
                                                                                             np.uint8)
        parts.append((name, overlay(background, label, palette, alpha=alpha, ignore_index=ignore)))
    for name, value in sample.maps.items():
        parts.append((name, confidence_colormap(value)))
    if "gt" in sample.labels and "pseudo" in sample.labels:
        parts.append(("errors", error_map(sample.labels["pseudo"], sample.labels["gt"], ignore_index=ignore)))
    size = parts[0][1].shape[:2]
    parts = [(n, p) for n, p in parts if p.shape[:2] == size]
    return tile([p for _, p in parts], [n for n, _ in parts])

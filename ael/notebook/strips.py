"""One image sample of a run as a captioned strip of panels, for the live monitor's sample views."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ael.viz import tile
from ael.viz.sample_panels import sample_panels

if TYPE_CHECKING:
    from ael.runs import Sample

__all__ = ["sample_strip"]


def _palette_or_default(palette: np.ndarray | None, num_classes: int) -> np.ndarray:
    if palette is not None:
        return palette
    from ael.data.info import default_palette

    return np.asarray(default_palette(max(1, num_classes)), dtype=np.uint8)


def sample_strip(sample: Sample, class_names: list[str], *, alpha: float = 0.6) -> np.ndarray:
    """One sample as a captioned row of the dashboard's panels
    (:func:`ael.viz.sample_panels.sample_panels`): a ``pseudo`` sample gives image, ground truth,
    pseudo-label, confidence and pseudo-label errors; a ``copy_paste`` sample before -> after with
    the pasted pixels outlined; a ``cutmix`` sample images A and B, B's pseudo-label, the mix and
    its pseudo-label, with the box framed and the chosen component outlined.

    Returns:
        ``(H', W', 3)`` uint8.
    """
    palette = _palette_or_default(sample.palette, len(class_names))
    ignore = sample.ignore_index if sample.ignore_index is not None else 255
    panels, _ = sample_panels(sample.record.kind, sample.images, sample.labels, sample.maps, sample.record.meta,
                              palette, alpha=alpha, ignore_index=ignore)
    size = panels[0][1].shape[:2]
    panels = [(caption, panel) for caption, panel in panels if panel.shape[:2] == size]
    return tile([panel for _, panel in panels], [caption for caption, _ in panels])

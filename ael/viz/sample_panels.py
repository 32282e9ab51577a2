"""One logged image sample as captioned panels, the same in the dashboard and in a notebook.

``pseudo``: the teacher on a labeled image (input, ground truth, pseudo-label, confidence, errors);
``copy_paste``: a labeled image before -> after, the pasted pixels outlined; ``cutmix``: images A
and B, the mix, the box (a 1-px frame just outside it) and the chosen component of B outlined.
Other kinds are shown part by part as stored.

The sample comes as its decoded parts (``images``, ``labels``, ``maps``: name -> array) and its
index entry's ``meta`` (what :meth:`ael.runs.Run.load_sample` returns), so this module needs no
run reader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ael.viz.images import component_in_box, confidence_colormap, draw_box, draw_outline, error_map, overlay

__all__ = ["BOX_COLOUR", "CAPTIONS", "OUTLINE_COLOUR", "sample_panels"]

BOX_COLOUR = (255, 255, 0)  # the CutMix box: a 1-px frame just outside it
OUTLINE_COLOUR = (255, 0, 255)  # pasted pixels / the chosen component: a 1-px ring around them

#: What each stored part shows, in words, per sample kind.
CAPTIONS = {
    "pseudo": {"image": "labeled image", "gt": "ground truth", "pseudo": "teacher's pseudo-label"},
    "copy_paste": {"before": "before Copy-Paste", "label_before": "label before",
                   "image": "after Copy-Paste (pasted pixels outlined)", "label": "label after (pasted outlined)"},
    "cutmix": {"image_a": "image A (unlabeled)", "image_b": "image B: box and component",
               "mixed": "mixed: A with B's box", "pseudo_b": "teacher's pseudo-label of B",
               "pseudo_mixed": "pseudo-label of the mix"},
}
# Left to right: Copy-Paste as before -> after (older runs stored "after" first); CutMix as A, B
# and what the box was cut from, then the mix.
_ORDER = {"copy_paste": ("before", "label_before", "image", "label"),
          "cutmix": ("image_a", "image_b", "pseudo_b", "mixed", "pseudo_mixed")}
# The image a label is drawn over, when it is not the sample's main image.
_UNDER = {"label_before": "before", "pseudo_b": "image_b"}


def _marks(kind: str, labels: Mapping[str, np.ndarray], maps: Mapping[str, np.ndarray],
           meta: Mapping[str, Any]) -> tuple[np.ndarray | None, list | None, str]:
    """The mask to outline, the CutMix box, and a line saying what the marks are."""
    box = meta.get("box") if isinstance(meta.get("box"), list) and len(meta["box"]) == 4 else None
    if kind == "copy_paste":
        pasted = maps.get("pasted")
        if pasted is None:
            return None, None, "This run did not record the pasted pixels (an older run): no outline."
        mask = pasted > 0.5
        return mask, None, "Magenta outline: the pasted pixels." if mask.any() else "Nothing pasted: no outline."
    if kind == "cutmix" and box is not None:
        cls, label_b = meta.get("class"), labels.get("pseudo_b")
        if not (isinstance(cls, int) and cls >= 0 and meta.get("component_box")):
            return None, box, "Yellow frame: the CutMix box (a random one: no component)."
        if label_b is None:
            return None, box, "Yellow frame: the CutMix box; this run did not record B's pseudo-label (older run)."
        return component_in_box(label_b, cls, box), box, "Yellow frame: the CutMix box; magenta: the component."
    return None, box, ""


def sample_panels(kind: str, images: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                  maps: Mapping[str, np.ndarray], meta: Mapping[str, Any], palette: np.ndarray, *,
                  alpha: float = 0.6, ignore_index: int = 255,
                  shown: Sequence[int] | None = None) -> tuple[list[tuple[str, np.ndarray]], str]:
    """The panels of one sample, left to right, and a line saying what the outlines and frames are.

    Args:
        kind: the sample kind (``pseudo``, ``copy_paste``, ``cutmix``, or another).
        images, labels, maps: the decoded parts: RGB ``(H, W, 3)`` uint8, class ids ``(H, W)``,
            values in [0, 1] ``(H, W)``.
        meta: the sample's index entry metadata (``box``, ``class``, ``component_box``, ...).
        palette: ``(C, 3)`` class colours.
        alpha: label overlay opacity.
        ignore_index: the label value meaning "no class".
        shown: classes drawn in the label overlays (None: all).

    Returns:
        ``([(caption, (H, W, 3) uint8), ...], marks)``.
    """
    mask, box, marks = _marks(kind, labels, maps, meta)
    captions = dict(CAPTIONS.get(kind, {}))
    if kind == "cutmix" and mask is None:
        captions["image_b"] = "image B and the box"

    def marked(image: np.ndarray, name: str) -> np.ndarray:
        # The box and component sit on B and on the mix; the pasted pixels on the "after" views.
        if kind == "cutmix" and name in ("image_b", "mixed", "pseudo_b", "pseudo_mixed"):
            if box is not None:
                image = draw_box(image, box, colour=BOX_COLOUR, outside=True)
            if mask is not None:
                image = draw_outline(image, mask, colour=OUTLINE_COLOUR)
        elif kind == "copy_paste" and name in ("image", "label") and mask is not None:
            image = draw_outline(image, mask, colour=OUTLINE_COLOUR)
        return image

    named = [(name, marked(image, name)) for name, image in images.items()]
    main = next((images[k] for k in ("mixed", "image") if k in images), None)
    for name, label in labels.items():
        base = images.get(_UNDER[name]) if name in _UNDER else main
        background = base if base is not None and base.shape[:2] == label.shape else np.zeros((*label.shape, 3),
                                                                                              np.uint8)
        drawn = overlay(background, label, palette, alpha=alpha, ignore_index=ignore_index, visible_classes=shown)
        named.append((name, marked(drawn, name)))
    order = _ORDER.get(kind, ())
    named.sort(key=lambda p: order.index(p[0]) if p[0] in order else len(order))  # stable: the rest as stored
    panels = [(captions.get(name, name), image) for name, image in named]
    for name, value in maps.items():
        if not (kind == "copy_paste" and name == "pasted"):  # drawn as the outline
            panels.append((f"{name} (0 → 1)", confidence_colormap(value)))
    if "gt" in labels and "pseudo" in labels:
        gt, pseudo = labels["gt"], labels["pseudo"]
        wrong = float(np.mean((gt != pseudo)[gt != ignore_index])) if np.any(gt != ignore_index) else float("nan")
        panels.append((f"error (red wrong, {100 * wrong:.1f}%)", error_map(pseudo, gt, ignore_index=ignore_index)))
    return panels, marks

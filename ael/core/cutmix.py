"""Adaptive CutMix: the mix box and the mixing itself.

For each mixed image the trainer samples a class ``c`` from ``softmax(1 - Conf)``
(:func:`ael.core.distributions.cutmix_class_probs`), picks a partner unlabeled image ``j`` among
those whose CutMix-bank bit ``B[c, j]`` is set (:func:`ael.core.cutmix_bank.sample_partners`),
lets the teacher predict ``i`` and ``j``, and cuts from ``j`` the bounding box of a random large
8-connected component of class ``c`` (:func:`cutmix_boxes`, from
:func:`ael.core.components.component_boxes`), falling back to a random half-area box. The mixed input
is ``i`` outside the box and ``j`` inside, and the teacher's outputs are mixed with the same box
(:func:`boxes_to_mask`, :func:`mix_with_mask`).

Boxes are ``(B, 4)`` int64 ``(top, left, bottom, right)`` with exclusive bottom/right, as
skimage's ``regionprops.bbox``. All functions are batched, run on the tensors' device and draw
randomness only from the passed generator; nothing synchronises with the host except the one
documented convergence read of :func:`ael.core.components.connected_components`.
"""

from __future__ import annotations

import logging
import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from ._channel_ops import select, select_bits
from .components import component_boxes

__all__ = ["CutMixBoxes", "boxes_to_mask", "cutmix_boxes", "mix_with_mask", "random_boxes"]

logger = logging.getLogger(__name__)

_HEIGHT_SAMPLING = ("log_uniform", "uniform")


# --------------------------------------------------------------------------------------------
# boxes
# --------------------------------------------------------------------------------------------


def random_boxes(
    batch_size: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    height_sampling: Literal["log_uniform", "uniform"] = "log_uniform",
) -> Tensor:
    """Random boxes of half the image area (plain CutMix-Seg, and adaptive CutMix's fallback).

    Height fraction ``f`` in [0.5, 1], width fraction ``0.5 / f``, sizes rounded to pixels,
    top-left corner ``round((H - h) * u)``, ``round((W - w) * u)``. The release draws ``f`` as
    ``0.5 ** u`` (``"log_uniform"``, the default here); ``"uniform"`` draws it uniformly.

    Args:
        batch_size: B.
        height: H.
        width: W.
        generator: random source on ``device`` (3 uniforms per box).
        device: where the boxes live.
        height_sampling: ``"log_uniform"`` or ``"uniform"``.

    Returns:
        ``(B, 4)`` int64 boxes ``(top, left, bottom, right)``, bottom/right exclusive.
    """
    if height_sampling not in _HEIGHT_SAMPLING:
        raise ValueError(f"height_sampling must be one of {_HEIGHT_SAMPLING}, got {height_sampling!r}")
    u = torch.rand(batch_size, 3, generator=generator, device=device)
    if height_sampling == "log_uniform":
        frac_h = torch.exp(u[:, 0] * math.log(0.5))
    else:
        frac_h = 0.5 + 0.5 * u[:, 0]
    box_h = torch.round(frac_h * height).clamp(1, height)
    box_w = torch.round(0.5 / frac_h * width).clamp(1, width)
    top = torch.round((height - box_h) * u[:, 1])
    left = torch.round((width - box_w) * u[:, 2])
    return torch.stack([top, left, top + box_h, left + box_w], dim=1).long()


class CutMixBoxes(NamedTuple):
    """The mix boxes of one step, with what the trainer logs."""

    boxes: Tensor  #: (B, 4) int64 (top, left, bottom, right), bottom/right exclusive
    found: Tensor  #: (B,) bool: True where the box is a component's, False for a random box
    classes: Tensor  #: (B,) int64 sampled class per mixed image (-1 for plain CutMix)


def cutmix_boxes(
    pred: Tensor,
    classes: Tensor | None,
    *,
    area_thresh: float,
    adaptive: bool = True,
    generator: torch.Generator | None = None,
    height_sampling: Literal["log_uniform", "uniform"] = "log_uniform",
) -> CutMixBoxes:
    """The mix box of every mixed image: a component box of the sampled class, else random.

    Random draws, in order: one uniform per map for the component pick (adaptive only), then
    3 uniforms per box for the fallback, always drawn so a run's random stream does not depend
    on data.

    Args:
        pred: ``(B, H, W)`` teacher argmax of the partner images j.
        classes: ``(B,)`` sampled classes; ignored (may be None) when not adaptive.
        area_thresh: component area fraction (0.005 Cityscapes, 0.03 VOC).
        adaptive: False gives plain CutMix-Seg (random half-area boxes only).
        generator: random source on ``pred.device``.
        height_sampling: fallback box height distribution, see :func:`random_boxes`.

    Returns:
        :class:`CutMixBoxes`.
    """
    if pred.dim() != 3:
        raise ValueError(f"pred must have shape (B, H, W), got {tuple(pred.shape)}")
    b, h, w = pred.shape
    if adaptive:
        if classes is None:
            raise ValueError("adaptive CutMix needs the sampled classes")
        boxes, found = component_boxes(pred, classes, area_thresh=area_thresh, generator=generator)
    fallback = random_boxes(b, h, w, generator=generator, device=pred.device, height_sampling=height_sampling)
    if not adaptive:
        no_class = torch.full((b,), -1, dtype=torch.long, device=pred.device)
        return CutMixBoxes(fallback, torch.zeros(b, dtype=torch.bool, device=pred.device), no_class)
    boxes = torch.where(found.unsqueeze(1), boxes, fallback)
    return CutMixBoxes(boxes, found, classes.long().to(pred.device))


# --------------------------------------------------------------------------------------------
# mixing
# --------------------------------------------------------------------------------------------


def boxes_to_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """``(B, 4)`` boxes to ``(B, H, W)`` bool masks (True inside the box)."""
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (B, 4), got {tuple(boxes.shape)}")
    ys = torch.arange(height, device=boxes.device)
    xs = torch.arange(width, device=boxes.device)
    rows = (ys >= boxes[:, 0:1]) & (ys < boxes[:, 2:3])  # (B, H)
    cols = (xs >= boxes[:, 1:2]) & (xs < boxes[:, 3:4])  # (B, W)
    return rows.unsqueeze(2) & cols.unsqueeze(1)


def mix_with_mask(outside: Tensor, inside: Tensor, mask: Tensor) -> Tensor:
    """``inside`` where ``mask`` is True, ``outside`` elsewhere.

    Args:
        outside: ``(B, H, W)`` or ``(B, C, H, W)`` (image i, its logits or pseudo-labels).
        inside: same shape (image j, ...).
        mask: ``(B, H, W)`` bool (see :func:`boxes_to_mask`).

    Returns:
        The mixed tensor, shape and dtype of ``outside``.
    """
    if outside.shape != inside.shape:
        raise ValueError(f"cannot mix tensors of shapes {tuple(outside.shape)} and {tuple(inside.shape)}")
    if mask.shape != (outside.shape[0], *outside.shape[-2:]):
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {(outside.shape[0], *outside.shape[-2:])}")
    if outside.dtype != inside.dtype:
        raise ValueError(f"cannot mix tensors of dtypes {outside.dtype} and {inside.dtype}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
    if outside.dim() == 4:
        mask = mask.unsqueeze(1)
    # A bitwise select: the same values as torch.where, several times faster on a CPU.
    return select(outside, inside, select_bits(mask, outside.element_size()))

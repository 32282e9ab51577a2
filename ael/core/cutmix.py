"""Adaptive CutMix: the CutMix bank, partner sampling, the mix box and the mixing itself.

For each mixed image the trainer samples a class ``c`` from ``softmax(1 - Conf)``
(:func:`ael.core.bank.cutmix_class_probs`), picks a partner unlabeled image ``j`` among those
whose CutMix-bank bit ``B[c, j]`` is set (:func:`sample_partners`), lets the teacher predict
``i`` and ``j``, and cuts from ``j`` the bounding box of a random large 8-connected component
of class ``c`` (:func:`cutmix_boxes`), falling back to a random half-area box. The mixed input
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
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from . import _native
from ._channel_ops import select, select_bits
from .components import connected_components, mask_boxes

__all__ = [
    "CutMixBank",
    "CutMixBoxes",
    "GatherFn",
    "boxes_to_mask",
    "component_boxes",
    "cutmix_bank_bits",
    "cutmix_boxes",
    "mix_with_mask",
    "random_boxes",
    "sample_partners",
    "update_cutmix_bank",
]

logger = logging.getLogger(__name__)

#: ``gather_fn(indices, bits) -> (indices, bits)``: collects the CutMix-bank rows every process
#: computed this step so all ranks apply the same update (identity in one process).
GatherFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

_HEIGHT_SAMPLING = ("log_uniform", "uniform")


# --------------------------------------------------------------------------------------------
# the CutMix bank
# --------------------------------------------------------------------------------------------


def cutmix_bank_bits(
    pred: Tensor, *, num_classes: int, area_thresh2: float, ignore_index: int = 255
) -> Tensor:
    """Which classes cover at least ``area_thresh2`` of each predicted map.

    Args:
        pred: ``(N, H, W)`` integer class maps (teacher argmax). ``ignore_index`` and values
            outside [0, num_classes) count as no class.
        num_classes: C.
        area_thresh2: fraction of the ``H * W`` pixels a class must cover.
        ignore_index: label value of invalid pixels.

    Returns:
        ``(C, N)`` bool: ``bits[c, i]`` is True when class c is present in map i and covers
        ``>= area_thresh2 * H * W`` pixels.
    """
    if pred.dim() != 3:
        raise ValueError(f"pred must have shape (N, H, W), got {tuple(pred.shape)}")
    n, h, w = pred.shape
    compiled = _native.class_histogram(pred, num_classes, ignore_index=ignore_index)
    if compiled is not None:
        counts = compiled[0]
    else:
        valid = (pred >= 0) & (pred < num_classes) & (pred != ignore_index)
        index = torch.where(valid, pred.long(), num_classes).reshape(n, h * w)  # extra bin: invalid
        counts = torch.zeros(n, num_classes + 1, dtype=torch.long, device=pred.device)
        counts.scatter_add_(1, index, torch.ones_like(index))
        counts = counts[:, :num_classes]  # (N, C)
    bits = (counts > 0) & (counts >= area_thresh2 * h * w)
    return bits.t().contiguous()


def update_cutmix_bank(
    bank: Tensor, indices: Tensor, pred: Tensor, *, area_thresh2: float, ignore_index: int = 255
) -> Tensor:
    """Overwrite the bank columns of the given unlabeled images from fresh predictions.

    Args:
        bank: ``(C, U)`` bool CutMix bank.
        indices: ``(N,)`` int64 unlabeled-set indices of the predicted images (distinct; with
            duplicates, which prediction wins is unspecified).
        pred: ``(N, H, W)`` teacher argmax maps of those images.
        area_thresh2: see :func:`cutmix_bank_bits`.
        ignore_index: label value of invalid pixels.

    Returns:
        ``(C, U)`` the new bank (a new tensor).
    """
    if bank.dim() != 2:
        raise ValueError(f"bank must have shape (C, U), got {tuple(bank.shape)}")
    if indices.shape != pred.shape[:1]:
        raise ValueError(f"indices must have shape ({pred.shape[0]},), got {tuple(indices.shape)}")
    bits = cutmix_bank_bits(pred, num_classes=bank.shape[0], area_thresh2=area_thresh2, ignore_index=ignore_index)
    return bank.index_copy(1, indices.long().to(bank.device), bits.to(bank.device))


def sample_partners(bank: Tensor, classes: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """For each sampled class, a partner image uniformly among those whose bank bit is set.

    When no image has the bit set, the partner is uniform over all images. Vectorised as the
    argmax of uniform keys lifted by 1 where the bit is set.

    Args:
        bank: ``(C, U)`` bool CutMix bank.
        classes: ``(B,)`` int64 sampled classes.
        generator: random source on ``bank.device``.

    Returns:
        ``(B,)`` int64 unlabeled-set indices.
    """
    if bank.dim() != 2 or classes.dim() != 1:
        raise ValueError(f"bank must be (C, U) and classes (B,), got {tuple(bank.shape)}, {tuple(classes.shape)}")
    rows = bank.index_select(0, classes.long().to(bank.device))  # (B, U)
    keys = torch.rand(rows.shape, generator=generator, device=bank.device) + rows.float()
    return keys.argmax(dim=1)


class CutMixBank:
    """The ``(C, U)`` CutMix bank: starts at zeros, updated from teacher predictions.

    Args:
        num_classes: C.
        num_images: U, the size of the unlabeled set.
        area_thresh2: fraction of an image a class must cover to set its bit.
        ignore_index: label value of invalid prediction pixels.
        gather_fn: called on ``(indices, bits)`` before every update; the trainer passes an
            all-gather so every rank applies every rank's rows. Default: identity.
        device: where the bank lives.
    """

    def __init__(
        self,
        num_classes: int,
        num_images: int,
        *,
        area_thresh2: float = 0.01,
        ignore_index: int = 255,
        gather_fn: GatherFn | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if num_classes < 1 or num_images < 1:
            raise ValueError(f"num_classes and num_images must be >= 1, got {num_classes}, {num_images}")
        self.area_thresh2 = area_thresh2
        self.ignore_index = ignore_index
        self.gather_fn = gather_fn
        self.values = torch.zeros(num_classes, num_images, dtype=torch.bool, device=device)

    @property
    def device(self) -> torch.device:
        return self.values.device

    def to(self, device: torch.device | str) -> CutMixBank:
        """Move the bank to ``device`` (in place); returns self."""
        self.values = self.values.to(device)
        return self

    def update(self, indices: Tensor, pred: Tensor) -> Tensor:
        """Refresh the columns of ``indices`` ``(N,)`` from teacher argmax maps ``(N, H, W)``.

        Returns:
            ``(C, U)`` the new bank (also stored in ``self.values``).
        """
        if indices.shape != pred.shape[:1]:
            raise ValueError(f"indices must have shape ({pred.shape[0]},), got {tuple(indices.shape)}")
        bits = cutmix_bank_bits(
            pred, num_classes=self.values.shape[0], area_thresh2=self.area_thresh2,
            ignore_index=self.ignore_index,
        )  # (C, N)
        indices = indices.long().to(self.device)
        if self.gather_fn is not None:
            indices, bits = self.gather_fn(indices, bits)
        self.values = self.values.index_copy(1, indices, bits.to(self.device))
        return self.values

    def sample_partners(self, classes: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """See :func:`sample_partners`."""
        return sample_partners(self.values, classes, generator=generator)

    def state_dict(self) -> dict[str, Any]:
        """The bank as a checkpointable dict."""
        return {"values": self.values.detach().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`; errors name the key at fault."""
        if "values" not in state:
            raise KeyError(f"CutMix bank state has no 'values' key (keys: {sorted(state)})")
        values = state["values"]
        if not isinstance(values, Tensor) or values.shape != self.values.shape:
            got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"CutMix bank state 'values' must be a tensor of shape {tuple(self.values.shape)}, got {got}")
        self.values = values.detach().to(device=self.device, dtype=torch.bool).clone()


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


def component_boxes(
    pred: Tensor, classes: Tensor, *, area_thresh: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Bounding box of a random large 8-connected component of the given class, per map.

    A component is large when its pixel count exceeds ``area_thresh * H * W``. Among the
    ``L`` large components of ``classes[b]`` in ``pred[b]``, taken in the raster order of their
    first pixels, the ``floor(u * L)``-th is picked for one uniform ``u`` per map: uniformly,
    as the release's "first large one in random order".

    On a CPU, with int64 maps, the compiled kernel labels, measures and picks in one pass per
    map; elsewhere the labels come from :func:`ael.core.components.connected_components` and the
    pick from tensor operations. Both give the same boxes for the same draws.

    Args:
        pred: ``(B, H, W)`` integer class maps (teacher argmax of the partner images).
        classes: ``(B,)`` int64 class per map.
        area_thresh: fraction of the image a component must exceed.
        generator: random source on ``pred.device`` (``B`` uniforms).

    Returns:
        ``(boxes, found)``: ``(B, 4)`` int64 tightest boxes of the chosen components, and
        ``(B,)`` bool, False where the class is absent or no component is large enough (the
        box is then all zeros).
    """
    if pred.dim() != 3 or classes.shape != pred.shape[:1]:
        raise ValueError(f"pred must be (B, H, W) and classes (B,), got {tuple(pred.shape)}, {tuple(classes.shape)}")
    b, h, w = pred.shape
    n = h * w
    # area > area_thresh * n  <=>  area > floor(area_thresh * n), for integer areas
    max_small_area = math.floor(area_thresh * n)
    uniform = torch.rand(b, generator=generator, device=pred.device)
    classes = classes.to(pred.device)
    compiled = _native.component_boxes(pred, classes, uniform, max_small_area)
    if compiled is not None:
        return compiled
    if n == 0:  # maps without pixels have no components
        return torch.zeros(b, 4, dtype=torch.long, device=pred.device), torch.zeros(b, dtype=torch.bool, device=pred.device)
    mask = pred == classes.view(b, 1, 1).to(pred.dtype)
    labels = connected_components(mask).view(b, n)  # -1 background, else root index
    index = torch.where(labels >= 0, labels, n)
    areas = torch.zeros(b, n + 1, dtype=torch.long, device=pred.device)
    areas.scatter_add_(1, index, torch.ones_like(index))
    large_root = areas[:, :n] > max_small_area  # (B, N): only roots carry an area
    large = large_root.sum(dim=1)  # (B,)
    found = large > 0
    # float32 product, as the kernel: the pick is the same for the same draw
    pick = torch.minimum((uniform * large.float()).floor().long(), large - 1)
    rank = large_root.cumsum(dim=1) - 1  # rank of each large root in raster order
    root = (large_root & (rank == pick.unsqueeze(1))).to(torch.uint8).argmax(dim=1)
    chosen = (labels == root.unsqueeze(1)) & found.unsqueeze(1)
    boxes, _ = mask_boxes(chosen.view(b, h, w))
    return torch.where(found.unsqueeze(1), boxes, 0), found


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
    compiled = _native.mix(outside, inside, mask)  # the compiled kernel, on a CPU
    if compiled is not None:
        return compiled
    if outside.dim() == 4:
        mask = mask.unsqueeze(1)
    # A bitwise select: the same values as torch.where, several times faster on a CPU.
    return select(outside, inside, select_bits(mask, outside.element_size()))

"""The CutMix bank: which unlabeled images contain enough of which class.

Adaptive CutMix pairs each unlabeled image ``i`` with a partner ``j`` that contains the sampled
class ``c``. The bank ``B`` (``(C, U)`` bool, U the size of the unlabeled set) says which images
do: ``B[c, j]`` is set when the teacher's latest prediction of ``j`` covers at least
``area_thresh2`` of the image with class ``c``. Every step refreshes the columns of the images it
predicted (:func:`update_cutmix_bank`) and draws partners from it (:func:`sample_partners`).

Batched, device-agnostic, random only through the passed generator, no host synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["CutMixBank", "GatherFn", "cutmix_bank_bits", "sample_partners", "update_cutmix_bank"]

#: ``gather_fn(indices, bits) -> (indices, bits)``: collects the CutMix-bank rows every process
#: computed this step so all ranks apply the same update (identity in one process).
GatherFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


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

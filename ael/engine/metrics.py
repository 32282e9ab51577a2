"""Segmentation metrics from a confusion matrix accumulated on the device.

The confusion matrix has ground truth in rows and prediction in columns. It is built with one
``bincount`` per batch, without host synchronisation (pixels labelled ``ignore_index``, or with
any label outside ``[0, num_classes)``, go to a discarded overflow bin), and is reduced across
ranks once, at the end.

Conventions (those of torchvision's reference scripts and mmsegmentation):

- IoU of class c = TP / (TP + FP + FN). A class absent from both the ground truth and the
  predictions has an empty union: its IoU is NaN and it is left out of the mean. A class
  predicted but absent from the ground truth (or present but never predicted) has IoU 0 and
  counts in the mean.
- mIoU is the mean over the non-NaN IoUs (NaN when every class is NaN).
- Pixel accuracy = correctly labelled pixels / valid pixels; per-class accuracy (recall) =
  TP / GT pixels of the class, NaN for classes absent from the ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ael.engine.distributed import all_reduce_sum_

__all__ = [
    "ConfusionMatrix",
    "SegMetrics",
    "class_pixel_counts",
    "confusion_matrix",
    "metrics_from_confusion",
]


def _countable(target: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """Whether each label may enter the matrix, as a mask (no host sync)."""
    return (target != ignore_index) & (target >= 0) & (target < num_classes)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, *, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """Confusion matrix of one batch, on the inputs' device, without host synchronisation.

    Args:
        pred: ``(...)`` predicted class indices in ``[0, num_classes)``.
        target: ``(...)`` ground-truth labels, same shape; ``ignore_index`` and labels outside
            ``[0, num_classes)`` are dropped.
        num_classes: C.
        ignore_index: Label of pixels that do not count.

    Returns:
        ``(C, C)`` int64, ``[gt, pred]`` pixel counts.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    target = target.reshape(-1).long()
    pred = pred.reshape(-1).long().clamp(0, num_classes - 1)
    valid = _countable(target, num_classes, ignore_index)
    overflow = num_classes * num_classes
    # Dropped pixels land in one extra bin instead of being masked out, which would need
    # a data-dependent shape (and so a host sync).
    index = torch.where(valid, target * num_classes + pred, torch.full_like(target, overflow))
    counts = torch.bincount(index, minlength=overflow + 1)
    return counts[:overflow].reshape(num_classes, num_classes)


def class_pixel_counts(labels: torch.Tensor, *, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """Pixels of each class in a label map or batch of them (ignore and out-of-range dropped).

    Args:
        labels: ``(...)`` integer labels.

    Returns:
        ``(C,)`` int64 counts on the labels' device.
    """
    labels = labels.reshape(-1).long()
    valid = _countable(labels, num_classes, ignore_index)
    index = torch.where(valid, labels, torch.full_like(labels, num_classes))
    return torch.bincount(index, minlength=num_classes + 1)[:num_classes]


@dataclass(frozen=True)
class SegMetrics:
    """Metrics of a whole evaluation.

    Attributes:
        confusion: ``(C, C)`` int64 on the CPU, ``[gt, pred]``.
        iou: ``(C,)`` float64 per-class IoU, NaN for classes absent from GT and prediction.
        miou: Mean of the non-NaN IoUs.
        acc: Pixel accuracy over valid pixels.
        class_acc: ``(C,)`` float64 per-class recall, NaN for classes absent from GT.
    """

    confusion: torch.Tensor
    iou: torch.Tensor
    miou: float
    acc: float
    class_acc: torch.Tensor

    @property
    def class_frequency(self) -> torch.Tensor:
        """``(C,)`` float64 share of valid GT pixels per class (NaN-free; zeros if empty)."""
        gt = self.confusion.sum(1).double()
        return gt / gt.sum().clamp_min(1)

    def to_dict(self, class_names: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
        """Plain JSON-ready numbers; NaN becomes None. IoUs keyed by class name when given."""

        def clean(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        iou = [clean(v) for v in self.iou.tolist()]
        out: dict[str, Any] = {"miou": clean(self.miou), "acc": clean(self.acc), "iou": iou,
                               "class_acc": [clean(v) for v in self.class_acc.tolist()]}
        if class_names is not None:
            if len(class_names) != len(iou):
                raise ValueError(f"{len(class_names)} class names for {len(iou)} classes")
            out["iou_by_class"] = dict(zip(class_names, iou))
        return out


def metrics_from_confusion(confusion: torch.Tensor) -> SegMetrics:
    """mIoU, per-class IoU and accuracies from a ``(C, C)`` ``[gt, pred]`` confusion matrix."""
    if confusion.dim() != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be (C, C), got {tuple(confusion.shape)}")
    cm = confusion.detach().to("cpu", torch.float64)
    tp = cm.diagonal()
    gt = cm.sum(1)
    predicted = cm.sum(0)
    union = gt + predicted - tp
    nan = torch.full_like(tp, float("nan"))
    iou = torch.where(union > 0, tp / union.clamp_min(1), nan)
    class_acc = torch.where(gt > 0, tp / gt.clamp_min(1), nan)
    present = ~torch.isnan(iou)
    miou = float(iou[present].mean()) if bool(present.any()) else float("nan")
    total = cm.sum()
    acc = float(tp.sum() / total) if total > 0 else float("nan")
    return SegMetrics(confusion.detach().to("cpu", torch.int64), iou, miou, acc, class_acc)


class ConfusionMatrix:
    """Accumulates a confusion matrix on a device; reduce once across ranks, then compute.

    Example::

        cm = ConfusionMatrix(num_classes=19, device=device)
        for batch in loader:
            cm.update(pred, label)
        cm.reduce_()          # sums over ranks (no-op in one process)
        metrics = cm.compute()
    """

    def __init__(self, num_classes: int, *, ignore_index: int = 255,
                 device: torch.device | str | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self._reduced = False

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` of the same shape, class indices."""
        if self._reduced:
            raise RuntimeError("ConfusionMatrix.update after reduce_(): call reset() first")
        self.mat += confusion_matrix(pred.to(self.mat.device), target.to(self.mat.device),
                                     num_classes=self.num_classes, ignore_index=self.ignore_index)

    def reduce_(self) -> None:
        """Sum the matrix over all ranks, in place; only once (a second call would double it)."""
        if self._reduced:
            raise RuntimeError("ConfusionMatrix.reduce_ called twice")
        all_reduce_sum_(self.mat)
        self._reduced = True

    def reset(self) -> None:
        """Zero the counts for a new evaluation."""
        self.mat.zero_()
        self._reduced = False

    def compute(self) -> SegMetrics:
        """Metrics of the counts so far (of this rank, unless :meth:`reduce_` was called)."""
        return metrics_from_confusion(self.mat)

"""Per-class diagnostics counted on the device between two class-vector writes.

- :class:`PseudoLabelQuality`: the teacher's pseudo-labels on unlabeled images against their
  ground truth, when the data has it (``data.unlabeled_gt``): per class precision, recall and IoU.
  This is the paper's motivation made visible: tail pseudo-labels are wrong more often. The truth
  is only counted, never used for training.
- :class:`ClassShares`: a per-class ratio of two pixel counts (the share of each class's pixels
  that equalization sampling kept, the mean re-weighting weight of each class's pixels).

Both accumulate with ``bincount`` on the device (no host sync) and turn into ``(C,)`` vectors when
the trainer writes class vectors; a class with no pixel in the interval reads NaN (not drawn).
Under DDP each process counts its own shard; the writing process reports its own.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ClassShares", "PseudoLabelQuality", "class_histogram"]


def class_histogram(labels: Tensor, num_classes: int, ignore_index: int, weights: Tensor | None = None) -> Tensor:
    """``(C,)`` float64 pixel count (or sum of ``weights``) per class of a label map; invalid labels skipped."""
    flat = labels.reshape(-1).long()
    valid = (flat >= 0) & (flat < num_classes) & (flat != ignore_index)
    index = torch.where(valid, flat, num_classes)
    w = None if weights is None else weights.reshape(-1).double()
    return torch.bincount(index, weights=w, minlength=num_classes + 1)[:num_classes].double()


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(num, float("nan"))).float()


class PseudoLabelQuality:
    """Confusion counts of pseudo-labels against ground truth, per class.

    Args:
        num_classes: C.
        ignore_index: ground-truth label of pixels that do not count.
        device: where the counts live.
    """

    def __init__(self, num_classes: int, ignore_index: int, device: torch.device) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.counts = torch.zeros(3, num_classes, dtype=torch.float64, device=device)  # tp, fp, fn

    def update(self, pseudo: Tensor, truth: Tensor) -> None:
        """Count one batch: ``(B, H, W)`` pseudo-labels against ``(B, H, W)`` ground truth."""
        c, ignore = self.num_classes, self.ignore_index
        valid = (truth != ignore) & (truth >= 0) & (truth < c)
        pred = torch.where(valid, pseudo.long(), ignore)
        hit = torch.where(pred == truth.long(), pred, ignore)
        tp = class_histogram(hit, c, ignore)
        self.counts += torch.stack([tp, class_histogram(pred, c, ignore) - tp,
                                    class_histogram(torch.where(valid, truth.long(), ignore), c, ignore) - tp])

    def take(self) -> dict[str, Tensor]:
        """``pseudo_precision``, ``pseudo_recall``, ``pseudo_iou`` since the last call (then reset)."""
        tp, fp, fn = self.counts
        out = {"pseudo_precision": _ratio(tp, tp + fp), "pseudo_recall": _ratio(tp, tp + fn),
               "pseudo_iou": _ratio(tp, tp + fp + fn)}
        self.counts.zero_()
        return out


class ClassShares:
    """Per class, the sum of a per-pixel value over its pixels, divided by its pixel count.

    Args:
        num_classes: C.
        ignore_index: label of pixels that do not count.
        device: where the sums live.
    """

    def __init__(self, num_classes: int, ignore_index: int, device: torch.device) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.sums = torch.zeros(2, num_classes, dtype=torch.float64, device=device)

    def update(self, labels: Tensor, values: Tensor) -> None:
        """Add ``(B, H, W)`` per-pixel ``values`` of the pixels of each class of ``labels``."""
        c, ignore = self.num_classes, self.ignore_index
        self.sums += torch.stack([class_histogram(labels, c, ignore, weights=values),
                                  class_histogram(labels, c, ignore)])

    def take(self) -> Tensor:
        """The ``(C,)`` per-class mean since the last call (NaN for a class with no pixel), then reset."""
        out = _ratio(self.sums[0], self.sums[1])
        self.sums.zero_()
        return out

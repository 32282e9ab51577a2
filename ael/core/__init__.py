"""The AEL core math: pure, batched, device-agnostic tensor functions.

- :mod:`.bank`: confidence bank statistics (per-class GT-probability sums) and their EMA.
- :mod:`.distributions`: the class-sampling distributions the bank induces, and class draws.
- :mod:`.copy_paste`: adaptive Copy-Paste on a labeled batch.
- :mod:`.components`: 8-connected components on the device, and the box of a random large one.
- :mod:`.cutmix_bank`: the CutMix bank (which unlabeled image contains which class) and partners.
- :mod:`.cutmix`: mix boxes and mixing.
- :mod:`.losses`: OHEM cross-entropy, equalization sampling, re-weighted unsupervised loss.

One PyTorch implementation for every device: random draws only through a passed
``torch.Generator``, no host synchronisation in the per-step functions (the one documented
exception: the convergence read of the torch connected-components backend on an accelerator).
The per-pixel reductions over the class axis share one banded pass per logit map
(:mod:`._channel_ops`).
"""

from .bank import (
    ConfidenceBank,
    ReduceFn,
    class_confidence_stats,
    class_confidence_stats_from_gt,
    gt_class_probability,
    init_confidence,
    update_confidence,
)
from .components import component_boxes, connected_components, mask_boxes
from .copy_paste import CopyPasteResult, adaptive_copy_paste, sample_categories
from .cutmix import CutMixBoxes, boxes_to_mask, cutmix_boxes, mix_with_mask, random_boxes
from .cutmix_bank import CutMixBank, GatherFn, cutmix_bank_bits, sample_partners, update_cutmix_bank
from .distributions import (
    copy_paste_class_probs,
    cutmix_class_probs,
    equalization_ratio,
    excluded_class_mask,
    resolve_class_indices,
    sample_classes,
)
from .losses import (
    LogitStats,
    class_argmax,
    equalization_mask,
    logit_stats,
    max_probability,
    ohem_cross_entropy,
    pseudo_labels,
    unsup_loss,
)

__all__ = [
    "ConfidenceBank",
    "CopyPasteResult",
    "CutMixBank",
    "CutMixBoxes",
    "GatherFn",
    "LogitStats",
    "ReduceFn",
    "adaptive_copy_paste",
    "boxes_to_mask",
    "class_argmax",
    "class_confidence_stats",
    "class_confidence_stats_from_gt",
    "component_boxes",
    "connected_components",
    "copy_paste_class_probs",
    "cutmix_bank_bits",
    "cutmix_boxes",
    "cutmix_class_probs",
    "equalization_mask",
    "equalization_ratio",
    "excluded_class_mask",
    "gt_class_probability",
    "init_confidence",
    "logit_stats",
    "mask_boxes",
    "max_probability",
    "mix_with_mask",
    "ohem_cross_entropy",
    "pseudo_labels",
    "random_boxes",
    "resolve_class_indices",
    "sample_categories",
    "sample_classes",
    "sample_partners",
    "unsup_loss",
    "update_confidence",
    "update_cutmix_bank",
]

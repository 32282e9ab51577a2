"""The AEL core math: pure, batched, device-agnostic tensor functions.

- :mod:`.bank`: confidence bank statistics and EMA, class-sampling distributions.
- :mod:`.copy_paste`: adaptive Copy-Paste on a labeled batch.
- :mod:`.components`: 8-connected components on the device.
- :mod:`.cutmix`: CutMix bank, partner sampling, mix boxes, mixing.
- :mod:`.losses`: OHEM cross-entropy, equalization sampling, re-weighted unsupervised loss.

On a CPU the per-pixel work (the reductions over the class axis, the picks of the losses and
the bank, histograms, the equalization mask, the pseudo-label loss, Copy-Paste and the CutMix
component boxes) runs in compiled kernels when ``pip`` built them (``native_kernel_status()``
says; ``AEL_NATIVE=0`` turns them off), else in PyTorch, with the same results.
"""

from ._native import status as native_kernel_status
from .bank import (
    ConfidenceBank,
    ReduceFn,
    class_confidence_stats,
    class_confidence_stats_from_gt,
    copy_paste_class_probs,
    cutmix_class_probs,
    equalization_ratio,
    excluded_class_mask,
    gt_class_probability,
    init_confidence,
    resolve_class_indices,
    sample_classes,
    update_confidence,
)
from .components import connected_components, mask_boxes
from .copy_paste import CopyPasteResult, adaptive_copy_paste, sample_categories
from .cutmix import (
    CutMixBank,
    CutMixBoxes,
    GatherFn,
    boxes_to_mask,
    component_boxes,
    cutmix_bank_bits,
    cutmix_boxes,
    mix_with_mask,
    random_boxes,
    sample_partners,
    update_cutmix_bank,
)
from .losses import (
    LogitStats,
    class_argmax,
    equalization_mask,
    logit_stats,
    max_probability,
    ohem_cross_entropy,
    pseudo_labels,
    random_words,
    uniforms_from_words,
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
    "native_kernel_status",
    "ohem_cross_entropy",
    "pseudo_labels",
    "random_boxes",
    "random_words",
    "resolve_class_indices",
    "sample_categories",
    "sample_classes",
    "sample_partners",
    "uniforms_from_words",
    "unsup_loss",
    "update_confidence",
    "update_cutmix_bank",
]

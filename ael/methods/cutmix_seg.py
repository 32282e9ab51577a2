"""``cutmix_seg``: the mean teacher on CutMix-ed unlabeled images (the paper's "basic framework").

Each mixed image pastes a random half-area box of a partner over an unlabeled image; the student
sees the mix (of the strong views, when the loader makes them) and learns the same mix of the
teacher's pseudo-labels on the two weak views. Mixing commutes with argmax and max-probability
(both per pixel), so the ``(M, H, W)`` pseudo-label maps are mixed rather than the logits.

The partner of mixed image ``i`` is unlabeled image ``i - 1`` of the batch (cyclically), so with
``one_mix_per_batch`` (the release: one mixed image per GPU) the other image is the partner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ael.config.methods import CutMixSegConfig
from ael.core import CutMixBoxes, boxes_to_mask, cutmix_boxes, mix_with_mask
from ael.core.losses import pseudo_labels
from ael.methods.base import TrainBatch
from ael.methods.mean_teacher import MeanTeacherMethod, UnlabeledTargets
from ael.methods.registry import register_method
from ael.methods.storage import StepStorage

__all__ = ["CutMixSegMethod", "MixParts"]


class MixParts:
    """The two sides of a mix: images as the teacher saw them, the student's view, teacher maps.

    Attributes:
        images: ``(M, 3, H, W)`` weak views.
        strong: ``(M, 3, H, W)`` the student's views (the weak ones without a strong view).
        labels: ``(M, H, W)`` teacher argmax.
        confidence: ``(M, H, W)`` teacher max-probability.
    """

    def __init__(self, images: Tensor, strong: Tensor, labels: Tensor, confidence: Tensor) -> None:
        self.images = images
        self.strong = strong
        self.labels = labels
        self.confidence = confidence


@register_method
class CutMixSegMethod(MeanTeacherMethod):
    """Mean teacher + plain CutMix with a random half-area box."""

    name = "cutmix_seg"
    config_class = CutMixSegConfig

    def num_mixed(self, unlabeled_batch: int) -> int:
        return 1 if self.cfg.cutmix.one_mix_per_batch else unlabeled_batch

    def _teacher_extra(self, batch: TrainBatch, num: int) -> list[Tensor]:
        # The rest of the unlabeled batch: partners of the mixed images.
        assert batch.unlabeled is not None
        return [batch.unlabeled["image"][num:]]

    def _unlabeled_targets(self, teacher_logits: Tensor, images: Tensor, strong: Tensor, batch: TrainBatch,
                           storage: StepStorage) -> UnlabeledTargets:
        assert batch.unlabeled is not None
        full = batch.unlabeled["image"]
        full_strong = batch.unlabeled.get("image_strong", full)
        b, m = full.shape[0], images.shape[0]
        labels, confidence = pseudo_labels(teacher_logits[:b])
        partner = (torch.arange(m, device=full.device) - 1) % b  # image i - 1, cyclically
        side_j = MixParts(full[partner], full_strong[partner], labels[partner], confidence[partner])
        side_i = MixParts(images, strong, labels[:m], confidence[:m])
        boxes = cutmix_boxes(side_j.labels, None, area_thresh=0.0, adaptive=False, generator=self.ctx.generator,
                             height_sampling=self.cfg.cutmix.fallback_height)
        return self._mix(side_i, side_j, boxes, storage)

    def _mix(self, side_i: MixParts, side_j: MixParts, boxes: CutMixBoxes, storage: StepStorage) -> UnlabeledTargets:
        """Paste each box of ``side_j`` over ``side_i`` (images, student views and teacher maps)."""
        h, w = side_i.images.shape[-2:]
        mask = boxes_to_mask(boxes.boxes, h, w)  # (M, H, W)
        mixed = UnlabeledTargets(mix_with_mask(side_i.strong, side_j.strong, mask),
                                 mix_with_mask(side_i.labels, side_j.labels, mask),
                                 mix_with_mask(side_i.confidence, side_j.confidence, mask),
                                 teacher_labels=side_i.labels)
        storage.put_scalar("cutmix/box_found", boxes.found.float().mean())
        storage.put_sample("cutmix", images={"image_a": side_i.images[0], "image_b": side_j.images[0],
                                             "mixed": mixed.images[0]},
                           # pseudo_b: the map the box was cut from, so a viewer can outline the component.
                           labels={"pseudo_mixed": mixed.labels[0], "pseudo_b": side_j.labels[0]},
                           maps={"confidence": mixed.confidence[0]},
                           meta={"stream": "unlabeled", "box": boxes.boxes[0], "class": boxes.classes[0],
                                 "component_box": boxes.found[0]},
                           describe=self.describe_class)
        return mixed

    def describe_class(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Sample metadata with the class index named (``class_name``; None for no class)."""
        index = meta.get("class")
        named = isinstance(index, int) and 0 <= index < len(self.ctx.class_names)
        return {**meta, "class_name": self.ctx.class_names[index] if named else None}

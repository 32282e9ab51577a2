"""Adaptive Copy-Paste and CutMix drawn from a given confidence bank, on a small pool of images.

:class:`AugmentationLab` holds the pool on the CPU and calls the same :mod:`ael.core` functions
as the trainer; each draw returns what it did (:class:`CopyPasteDraw`, :class:`CutMixDraw`) and
:meth:`AugmentationLab.distributions` the class distributions a bank induces. Ground-truth label
maps stand in for the teacher's predictions wherever the method reads them (the CutMix bank and
the connected components of the partner image).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ael.core import (
    CutMixBank,
    adaptive_copy_paste,
    boxes_to_mask,
    copy_paste_class_probs,
    cutmix_boxes,
    cutmix_class_probs,
    equalization_ratio,
    excluded_class_mask,
    mix_with_mask,
    resolve_class_indices,
    sample_classes,
)
from ael.data.base import SegmentationDataset
from ael.data.info import IGNORE_INDEX
from ael.viz.images import component_in_box

__all__ = ["AugmentationLab", "CopyPasteDraw", "CutMixDraw", "LabDistributions"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabDistributions:
    """The class distributions a bank induces, each ``(C,)`` float64."""

    bank: np.ndarray
    copy_paste: np.ndarray  # softmax(sqrt(1 - Conf)) over the candidate classes
    cutmix: np.ndarray  # softmax(1 - Conf)
    sampling_ratio: np.ndarray  # r_c


@dataclass(frozen=True)
class CopyPasteDraw:
    """One adaptive Copy-Paste draw on one target image of the pool."""

    target: int  # pool index of the target image
    source: int  # pool index of the paste source
    chosen: list[int]  # classes drawn (duplicates dropped)
    pasted: list[int]  # chosen classes present in the source, hence pasted
    image: np.ndarray  # (H, W, 3) uint8 target before
    label: np.ndarray  # (H, W) uint8 target label before
    source_image: np.ndarray  # (H, W, 3) uint8
    source_label: np.ndarray  # (H, W) uint8
    result_image: np.ndarray  # (H, W, 3) uint8 after pasting
    result_label: np.ndarray  # (H, W) uint8 after pasting
    paste_mask: np.ndarray  # (H, W) bool pixels that came from the source


@dataclass(frozen=True)
class CutMixDraw:
    """One adaptive CutMix draw: image ``a`` outside the box, partner ``b`` inside."""

    sampled_class: int
    image_a: int  # pool index of image i
    image_b: int  # pool index of the partner j (from the CutMix bank)
    partner_has_class: bool  # the bank bit B[c, j] was set (else j was drawn uniformly)
    box: tuple[int, int, int, int]  # (top, left, bottom, right), bottom/right exclusive
    from_component: bool  # True: a component of the class; False: the random half-area fallback
    component_mask: np.ndarray  # (H, W) bool pixels of the sampled class in j
    a: np.ndarray  # (H, W, 3) uint8
    b: np.ndarray  # (H, W, 3) uint8
    mixed: np.ndarray  # (H, W, 3) uint8
    label_a: np.ndarray  # (H, W) uint8
    label_b: np.ndarray  # (H, W) uint8
    mixed_label: np.ndarray  # (H, W) uint8
    component: np.ndarray  # (H, W) bool the chosen component whose box was cut (all False for the fallback)


def _resize_pair(image: np.ndarray, label: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    height, width = size
    if image.shape[:2] == (height, width):
        return image, label
    img = Image.fromarray(image).resize((width, height), Image.BILINEAR)
    lab = Image.fromarray(label).resize((width, height), Image.NEAREST)
    return np.asarray(img), np.asarray(lab)


class AugmentationLab:
    """Adaptive Copy-Paste and CutMix on a pool of labeled images, for a given bank.

    Args:
        images: ``(N, H, W, 3)`` uint8 pool images (N >= 2).
        labels: ``(N, H, W)`` uint8 class indices (``ignore_index`` for no class).
        class_names: the C class names.
        ignore_index: the label value that means "no class".
        num_categories: k, Copy-Paste classes drawn per image (3 Cityscapes, 1 VOC).
        excluded_classes: classes never pasted (indices or names).
        area_thresh: CutMix component area fraction (0.005 Cityscapes, 0.03 VOC).
        area_thresh2: CutMix-bank area fraction (0.01 Cityscapes, 0.03 VOC).
        gamma2: equalization sampling's exponent (``method.sampling.gamma2``) for r_c.
        sampling: whether the run samples at all (``method.sampling.enabled``); without it the
            trainer uses r_c = 1, and :meth:`distributions` shows the rates it would use.

    Raises:
        ValueError: naming the argument at fault (shapes, too few images, bad classes).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        class_names: Sequence[str],
        *,
        ignore_index: int = IGNORE_INDEX,
        num_categories: int = 3,
        excluded_classes: Sequence[int | str] = (),
        area_thresh: float = 0.005,
        area_thresh2: float = 0.01,
        gamma2: float = 1.0,
        sampling: bool = True,
    ) -> None:
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
        if labels.shape != images.shape[:3]:
            raise ValueError(f"labels must be (N, H, W) = {images.shape[:3]}, got {labels.shape}")
        if len(images) < 2:
            raise ValueError(f"the lab needs at least 2 images, got {len(images)}")
        if num_categories < 1:
            raise ValueError(f"num_categories must be >= 1, got {num_categories}")
        if not (0.0 <= area_thresh <= 1.0 and 0.0 <= area_thresh2 <= 1.0):
            raise ValueError(f"area_thresh and area_thresh2 must be in [0, 1], got {area_thresh}, {area_thresh2}")
        if not gamma2 > 0:
            raise ValueError(f"gamma2 must be > 0, got {gamma2}")
        self.class_names = [str(n) for n in class_names]
        self.num_classes = len(self.class_names)
        self.ignore_index = int(ignore_index)
        self.num_categories = int(num_categories)
        self.area_thresh = float(area_thresh)
        self.area_thresh2 = float(area_thresh2)
        self.gamma2 = float(gamma2)
        self.sampling = bool(sampling)
        self.excluded = resolve_class_indices(list(excluded_classes), self.class_names)
        self._excluded_mask = excluded_class_mask(self.num_classes, self.excluded)
        self.images = images
        self.labels = labels.astype(np.uint8)
        self._images_t = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # (N, 3, H, W)
        labels_t = torch.from_numpy(self.labels).long()  # (N, H, W)
        self._labels_t = labels_t
        # Ground truth stands in for the teacher's predictions of the unlabeled images.
        self.cutmix_bank = CutMixBank(self.num_classes, len(images), area_thresh2=self.area_thresh2,
                                      ignore_index=self.ignore_index)
        self.cutmix_bank.update(torch.arange(len(images)), labels_t)

    # ------------------------------------------------------------------------------ building

    @classmethod
    def from_dataset(
        cls,
        dataset: SegmentationDataset,
        *,
        num_images: int = 24,
        max_side: int = 256,
        **params: Any,
    ) -> AugmentationLab:
        """A lab on the first ``num_images`` labeled images of ``dataset``.

        Images are resized to the first image's size, scaled down so the longer side is at most
        ``max_side`` (connected components run on the CPU here).

        Args:
            dataset: any :class:`~ael.data.base.SegmentationDataset` with labels.
            num_images: pool size.
            max_side: longest image side in the pool.
            **params: the keyword arguments of :class:`AugmentationLab` (not the arrays).
        """
        images, labels = [], []
        size: tuple[int, int] | None = None
        for index in range(len(dataset)):
            if len(images) >= num_images:
                break
            sample = dataset.load(index)
            if sample.label is None:
                continue
            if size is None:
                h, w = sample.image.shape[:2]
                scale = min(1.0, max_side / max(h, w))
                size = (max(8, round(h * scale)), max(8, round(w * scale)))
            image, label = _resize_pair(sample.image, sample.label, size)
            images.append(image)
            labels.append(label)
        if len(images) < 2:
            raise ValueError(f"dataset {dataset.info.name!r}: fewer than 2 labeled images for the lab")
        params.setdefault("ignore_index", dataset.info.ignore_index)
        return cls(np.stack(images), np.stack(labels), dataset.info.class_names, **params)

    # ------------------------------------------------------------------------------ draws

    def _bank(self, conf: Sequence[float] | np.ndarray) -> torch.Tensor:
        bank = torch.tensor(np.array(conf, dtype=np.float64), dtype=torch.float32)
        if bank.shape != (self.num_classes,):
            raise ValueError(f"bank must have shape ({self.num_classes},), got {tuple(bank.shape)}")
        if not bool(torch.isfinite(bank).all()):
            raise ValueError("bank holds NaN or infinite values")
        return bank.clamp(0.0, 1.0)

    def distributions(self, conf: Sequence[float] | np.ndarray, *, gamma2: float | None = None) -> LabDistributions:
        """The Copy-Paste and CutMix class distributions and the sampling ratio r_c of a bank ``(C,)``.

        r_c uses ``gamma2`` when given, else the lab's (the run's ``method.sampling.gamma2``).
        """
        bank = self._bank(conf)
        gamma2 = self.gamma2 if gamma2 is None else gamma2
        return LabDistributions(
            bank=bank.double().numpy(),
            copy_paste=copy_paste_class_probs(bank, excluded=self._excluded_mask).double().numpy(),
            cutmix=cutmix_class_probs(bank).double().numpy(),
            sampling_ratio=equalization_ratio(bank, gamma2=gamma2).double().numpy(),
        )

    def copy_paste(self, conf: Sequence[float] | np.ndarray, *, seed: int, target: int | None = None) -> CopyPasteDraw:
        """Adaptive Copy-Paste onto one pool image (always pasted: the lab shows the paste).

        Args:
            conf: ``(C,)`` confidence bank.
            seed: the draw's seed (the same seed and bank give the same draw).
            target: pool index of the target; None: drawn from the seed.
        """
        bank = self._bank(conf)
        generator = torch.Generator().manual_seed(int(seed))
        n = len(self.images)
        if target is None:
            target = int(torch.randint(n, (1,), generator=generator))
        if not 0 <= target < n:
            raise ValueError(f"target must be in [0, {n}), got {target}")
        probs = copy_paste_class_probs(bank, excluded=self._excluded_mask)
        result = adaptive_copy_paste(
            self._images_t[target : target + 1], self._labels_t[target : target + 1], probs,
            source_images=self._images_t, source_labels=self._labels_t,
            source_ids=torch.arange(n), target_ids=torch.tensor([target]),
            num_categories=self.num_categories, prob=1.0, ignore_index=self.ignore_index, generator=generator,
        )
        source = int(result.source[0])
        chosen = [int(c) for c in torch.nonzero(result.chosen[0]).flatten()]
        pasted = [int(c) for c in torch.nonzero(result.pasted[0]).flatten()]
        new_label = result.labels[0].numpy().astype(np.uint8)
        new_image = result.images[0].numpy().transpose(1, 2, 0).astype(np.uint8)
        src_label = self.labels[source]
        mask = np.isin(src_label, np.asarray(chosen, dtype=np.int64)) & (src_label != self.ignore_index)
        return CopyPasteDraw(
            target=target, source=source, chosen=chosen, pasted=pasted,
            image=self.images[target], label=self.labels[target],
            source_image=self.images[source], source_label=src_label,
            result_image=new_image, result_label=new_label, paste_mask=mask,
        )

    def cutmix(self, conf: Sequence[float] | np.ndarray, *, seed: int, image_a: int | None = None,
               sampled_class: int | None = None) -> CutMixDraw:
        """Adaptive CutMix of one pool image with a partner chosen through the CutMix bank.

        Args:
            conf: ``(C,)`` confidence bank.
            seed: the draw's seed.
            image_a: pool index of image i; None: drawn from the seed.
            sampled_class: force the class instead of sampling it from softmax(1 - Conf).
        """
        bank = self._bank(conf)
        generator = torch.Generator().manual_seed(int(seed))
        n = len(self.images)
        if image_a is None:
            image_a = int(torch.randint(n, (1,), generator=generator))
        if not 0 <= image_a < n:
            raise ValueError(f"image_a must be in [0, {n}), got {image_a}")
        if sampled_class is None:
            classes = sample_classes(cutmix_class_probs(bank), 1, generator=generator)  # (1,)
        else:
            if not 0 <= sampled_class < self.num_classes:
                raise ValueError(f"sampled_class must be in [0, {self.num_classes}), got {sampled_class}")
            classes = torch.tensor([sampled_class])
        cls_index = int(classes[0])
        partner = self.cutmix_bank.sample_partners(classes, generator=generator)  # (1,)
        j = int(partner[0])
        has_class = bool(self.cutmix_bank.values[cls_index, j])
        pred_b = self._labels_t[j : j + 1]  # (1, H, W) ground truth standing in for the teacher
        boxes = cutmix_boxes(pred_b, classes, area_thresh=self.area_thresh, generator=generator)
        h, w = self.labels.shape[1:]
        mask = boxes_to_mask(boxes.boxes, h, w)  # (1, H, W)
        mixed = mix_with_mask(self._images_t[image_a : image_a + 1], self._images_t[j : j + 1], mask)
        mixed_label = mix_with_mask(self._labels_t[image_a : image_a + 1], pred_b, mask)
        top, left, bottom, right = (int(v) for v in boxes.boxes[0])
        return CutMixDraw(
            sampled_class=cls_index, image_a=image_a, image_b=j, partner_has_class=has_class,
            box=(top, left, bottom, right), from_component=bool(boxes.found[0]),
            component_mask=self.labels[j] == cls_index,
            a=self.images[image_a], b=self.images[j],
            mixed=mixed[0].numpy().transpose(1, 2, 0).astype(np.uint8),
            label_a=self.labels[image_a], label_b=self.labels[j],
            mixed_label=mixed_label[0].numpy().astype(np.uint8),
            component=(component_in_box(self.labels[j], cls_index, (top, left, bottom, right)) if bool(boxes.found[0])
                       else np.zeros((h, w), dtype=bool)),
        )

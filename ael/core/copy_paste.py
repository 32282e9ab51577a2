"""Adaptive Copy-Paste on a labeled batch.

Categories are sampled from the Copy-Paste distribution (:func:`ael.core.distributions.
copy_paste_class_probs`): k draws with replacement, duplicates dropped. Each target image is
then pasted with probability ``prob``: every pixel of its paste source whose label is one of
its categories is copied, image and label, onto the target. Ignore pixels are never pasted.

Paste sources come from a *pool* ``(S, 3, H, W)`` the trainer supplies (its own augmentation,
e.g. a random scale in [0.1, 2.0], is the data pipeline's job); each target picks one pool entry
uniformly. Pool entries may carry dataset ids so a target never pastes from itself unless
``allow_self_source`` (release behaviour). Without a pool, the batch itself is the pool.

Batched, device-agnostic, random only through the passed generator, no host synchronisation.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torch import Tensor

from .distributions import sample_classes

__all__ = ["CopyPasteResult", "adaptive_copy_paste", "sample_categories"]

logger = logging.getLogger(__name__)


def sample_categories(
    class_probs: Tensor,
    *,
    batch_size: int,
    num_categories: int,
    per_image: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw ``num_categories`` classes with replacement and drop duplicates.

    Inverse-CDF sampling from one uniform per draw, so classes of probability 0 are never
    drawn and nothing synchronises with the host.

    Args:
        class_probs: ``(C,)`` distribution.
        batch_size: B.
        num_categories: k, draws per set.
        per_image: True (paper): one set per image; False (release): one set shared by the
            batch.
        generator: random source on ``class_probs.device`` (``B * k`` or ``k`` uniforms).

    Returns:
        ``(B, C)`` bool: the categories chosen for each image.
    """
    if class_probs.dim() != 1:
        raise ValueError(f"class_probs must have shape (C,), got {tuple(class_probs.shape)}")
    if num_categories < 1:
        raise ValueError(f"num_categories must be >= 1, got {num_categories}")
    c = class_probs.shape[0]
    sets = batch_size if per_image else 1
    drawn = sample_classes(class_probs, sets * num_categories, generator=generator)
    drawn = drawn.view(sets, num_categories)
    chosen = torch.zeros(sets, c, dtype=torch.bool, device=class_probs.device)
    chosen.scatter_(1, drawn, True)
    return chosen.expand(batch_size, c).clone() if not per_image else chosen


class CopyPasteResult(NamedTuple):
    """A Copy-Paste step's output and what the dashboard shows."""

    images: Tensor  #: (B, 3, H, W) images after pasting
    labels: Tensor  #: (B, H, W) labels after pasting
    chosen: Tensor  #: (B, C) bool categories drawn for each image
    pasted: Tensor  #: (B, C) bool categories whose pixels were actually pasted
    applied: Tensor  #: (B,) bool: the image got a paste source (coin and an eligible source)
    source: Tensor  #: (B,) int64 pool index of each image's source (-1 where not applied)


def adaptive_copy_paste(
    images: Tensor,
    labels: Tensor,
    class_probs: Tensor,
    *,
    source_images: Tensor | None = None,
    source_labels: Tensor | None = None,
    source_ids: Tensor | None = None,
    target_ids: Tensor | None = None,
    num_categories: int = 3,
    prob: float = 0.5,
    per_image: bool = True,
    allow_self_source: bool = False,
    ignore_index: int = 255,
    generator: torch.Generator | None = None,
) -> CopyPasteResult:
    """Paste the pixels of sampled categories from paste sources onto a labeled batch.

    Random draws, in order: the categories (:func:`sample_categories`), one uniform per image
    for the paste coin, one uniform key per (image, pool entry) for the source choice.

    Args:
        images: ``(B, 3, H, W)`` target images.
        labels: ``(B, H, W)`` integer target labels.
        class_probs: ``(C,)`` category distribution (``copy_paste_class_probs``; uniform over
            candidates for the non-adaptive counterpart).
        source_images: ``(S, 3, H, W)`` paste-source pool; None uses the batch itself (then
            ``source_ids`` and ``target_ids`` default to ``arange(B)``).
        source_labels: ``(S, H, W)`` labels of the pool.
        source_ids: ``(S,)`` dataset ids of the pool entries, to recognise a target's own image.
        target_ids: ``(B,)`` dataset ids of the targets. Without both ids, pool entries count
            as different images from every target.
        num_categories: k (3 Cityscapes, 1 VOC).
        prob: probability that a target image is pasted onto.
        per_image: one category set per image (True) or per batch (False, release).
        allow_self_source: True (release) lets a target use its own image as the source.
        ignore_index: label value never pasted.
        generator: random source on the images' device.

    Returns:
        :class:`CopyPasteResult`.
    """
    if images.dim() != 4 or labels.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"images must be (B, 3, H, W) and labels (B, H, W), got {tuple(images.shape)}, {tuple(labels.shape)}"
        )
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    b, _, h, w = images.shape
    device = images.device
    c = class_probs.shape[0]
    if source_images is None:
        if source_labels is not None:
            raise ValueError("source_labels given without source_images")
        source_images, source_labels = images, labels
        source_ids = torch.arange(b, device=device) if source_ids is None else source_ids
        target_ids = torch.arange(b, device=device) if target_ids is None else target_ids
    if source_labels is None or source_images.shape[1:] != images.shape[1:] or (
        source_labels.shape != (source_images.shape[0], h, w)
    ):
        raise ValueError(
            f"source_images must be (S, {images.shape[1]}, {h}, {w}) with source_labels (S, {h}, {w}), got "
            f"{tuple(source_images.shape)}, {None if source_labels is None else tuple(source_labels.shape)}"
        )
    s = source_images.shape[0]

    chosen = sample_categories(
        class_probs.to(device), batch_size=b, num_categories=num_categories, per_image=per_image,
        generator=generator,
    )  # (B, C)
    coin = torch.rand(b, generator=generator, device=device) < prob  # (B,)
    eligible = torch.ones(b, s, dtype=torch.bool, device=device)
    if source_ids is not None and target_ids is not None and not allow_self_source:
        eligible = target_ids.to(device).view(b, 1) != source_ids.to(device).view(1, s)
    keys = torch.rand(b, s, generator=generator, device=device).masked_fill(~eligible, -1.0)
    source = keys.argmax(dim=1)  # (B,)
    applied = coin & eligible.any(dim=1)

    src_labels = source_labels.index_select(0, source)  # (B, H, W)
    src_images = source_images.index_select(0, source)  # (B, 3, H, W)
    src_valid = (src_labels >= 0) & (src_labels < c) & (src_labels != ignore_index)
    src_index = torch.where(src_valid, src_labels.long(), 0).view(b, h * w)
    paste = chosen.gather(1, src_index).view(b, h, w) & src_valid & applied.view(b, 1, 1)

    new_images = torch.where(paste.unsqueeze(1), src_images, images)
    new_labels = torch.where(paste, src_labels.to(labels.dtype), labels)
    counts = torch.zeros(b, c, dtype=torch.long, device=device)
    counts.scatter_add_(1, src_index, paste.view(b, h * w).long())
    source = torch.where(applied, source, -1)
    return CopyPasteResult(new_images, new_labels, chosen, counts > 0, applied, source)

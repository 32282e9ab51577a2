"""The class-sampling distributions of AEL, read from the confidence bank.

Each adaptive strategy turns the bank ``Conf`` (``(C,)``, :mod:`ael.core.bank`) into a
distribution over classes: Copy-Paste draws categories from ``softmax(sqrt(1 - Conf))``, CutMix
draws a class from ``softmax(1 - Conf)``, and equalization sampling keeps a pixel of class c with
probability ``r_c = (1 - Conf_c) / max(1 - Conf)``. :func:`sample_classes` draws from any of them
on the device.

Pure tensor functions: batched, device-agnostic, random only through a passed
``torch.Generator``, no host synchronisation. The host-side helpers
:func:`resolve_class_indices` and :func:`excluded_class_mask` run once when a run is set up.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "copy_paste_class_probs",
    "cutmix_class_probs",
    "equalization_ratio",
    "excluded_class_mask",
    "resolve_class_indices",
    "sample_classes",
]

def resolve_class_indices(classes: Sequence[int | str], class_names: Sequence[str]) -> list[int]:
    """Turn a list of class indices and/or names into indices (host side, once per run).

    Raises:
        ValueError: naming the first entry that is neither a valid index nor a known name.
    """
    lookup = {name: i for i, name in enumerate(class_names)}
    out = []
    for item in classes:
        if isinstance(item, str):
            if item not in lookup:
                raise ValueError(f"unknown class name {item!r} (known: {', '.join(class_names)})")
            out.append(lookup[item])
        elif isinstance(item, int) and not isinstance(item, bool):
            if not 0 <= item < len(class_names):
                raise ValueError(f"class index {item} is out of range [0, {len(class_names)})")
            out.append(item)
        else:
            raise ValueError(f"class {item!r} must be an index or a class name")
    return out


def excluded_class_mask(
    num_classes: int, excluded: Sequence[int] = (), *, device: torch.device | str | None = None
) -> Tensor:
    """``(C,)`` bool mask of classes never pasted (host-side validation, once per run).

    Raises:
        ValueError: an index out of range, or every class excluded.
    """
    mask = torch.zeros(num_classes, dtype=torch.bool)
    for c in excluded:
        if not 0 <= int(c) < num_classes:
            raise ValueError(f"excluded class index {c} is out of range [0, {num_classes})")
        mask[int(c)] = True
    if bool(mask.all()):
        raise ValueError(f"every one of the {num_classes} classes is excluded from Copy-Paste")
    return mask.to(device)


def copy_paste_class_probs(
    conf: Tensor, *, excluded: Tensor | None = None, adaptive: bool = True
) -> Tensor:
    """Copy-Paste category distribution: softmax(sqrt(1 - Conf)) over the candidate classes.

    Args:
        conf: ``(C,)`` confidence bank.
        excluded: ``(C,)`` bool mask of classes that get probability 0 (see
            :func:`excluded_class_mask`); None excludes nothing. At least one class must stay.
        adaptive: False gives the non-adaptive counterpart, uniform over the candidates.

    Returns:
        ``(C,)`` probabilities summing to 1.
    """
    if conf.dim() != 1:
        raise ValueError(f"conf must have shape (C,), got {tuple(conf.shape)}")
    scores = (1.0 - conf).clamp_min(0.0).sqrt() if adaptive else torch.zeros_like(conf)
    if excluded is not None:
        if excluded.shape != conf.shape:
            raise ValueError(f"excluded must have shape {tuple(conf.shape)}, got {tuple(excluded.shape)}")
        scores = scores.masked_fill(excluded.to(conf.device), float("-inf"))
    return torch.softmax(scores, dim=0)


def cutmix_class_probs(conf: Tensor, *, adaptive: bool = True) -> Tensor:
    """CutMix class distribution: softmax(1 - Conf) over all classes (uniform if not adaptive).

    Args:
        conf: ``(C,)`` confidence bank.
        adaptive: False gives the uniform distribution.

    Returns:
        ``(C,)`` probabilities summing to 1.
    """
    if conf.dim() != 1:
        raise ValueError(f"conf must have shape (C,), got {tuple(conf.shape)}")
    scores = 1.0 - conf if adaptive else torch.zeros_like(conf)
    return torch.softmax(scores, dim=0)


def equalization_ratio(conf: Tensor, *, gamma2: float = 1.0) -> Tensor:
    """Sampling rate per class: ``r_c = ((1 - Conf_c) / max_k (1 - Conf_k)) ** gamma2``.

    When every class has confidence 1 (max is 0) every rate is 1.

    Args:
        conf: ``(C,)`` confidence bank.
        gamma2: exponent (> 0).

    Returns:
        ``(C,)`` rates in [0, 1]; the weakest class has rate 1.
    """
    if gamma2 <= 0:
        raise ValueError(f"gamma2 must be > 0, got {gamma2}")
    deficit = (1.0 - conf).clamp_min(0.0)  # (C,)
    top = deficit.amax()
    ratio = torch.where(top > 0, deficit / top.clamp_min(torch.finfo(deficit.dtype).tiny), 1.0)
    return ratio.pow(gamma2)


def sample_classes(probs: Tensor, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Draw class indices with replacement from a distribution, on the distribution's device.

    Inverse-CDF sampling (one uniform per draw): no host synchronisation, and a class with
    probability 0 is never drawn.

    Args:
        probs: ``(C,)`` non-negative weights (normalised here).
        num_samples: number of draws.
        generator: random source on ``probs.device``.

    Returns:
        ``(num_samples,)`` int64 class indices.
    """
    if probs.dim() != 1:
        raise ValueError(f"probs must have shape (C,), got {tuple(probs.shape)}")
    cdf = probs.float().cumsum(0)  # (C,)
    u = torch.rand(num_samples, generator=generator, device=probs.device) * cdf[-1]
    index = torch.searchsorted(cdf, u, right=True)
    # Rounding can put u on the total mass; fall back to the last class with mass.
    positive = torch.arange(probs.numel(), device=probs.device) * (probs > 0)
    return torch.minimum(index, positive.amax())

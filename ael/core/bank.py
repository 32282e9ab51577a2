"""The confidence bank and the class-sampling distributions that read it.

The bank ``Conf`` (shape ``(C,)``, values in [0, 1]) is an exponential moving average, per
class, of the student's softmax probability for the ground-truth class on labeled pixels. Every
adaptive strategy of AEL reads it: low confidence means an under-performing class, which gets
pasted, mixed and sampled more often.

Everything here is a pure tensor function: batched, device-agnostic, random only through a
passed ``torch.Generator`` and free of host synchronisation, so it can run inside a training
step on any device. The only host-side helpers are :func:`resolve_class_indices` and
:func:`excluded_class_mask`, which run once when a run is set up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from . import _native
from ._channel_ops import checked_logsumexp, class_probability
from ._channel_ops import logsumexp as _logsumexp

__all__ = [
    "ConfidenceBank",
    "ReduceFn",
    "class_confidence_stats",
    "class_confidence_stats_from_gt",
    "copy_paste_class_probs",
    "cutmix_class_probs",
    "equalization_ratio",
    "excluded_class_mask",
    "gt_class_probability",
    "init_confidence",
    "resolve_class_indices",
    "sample_classes",
    "update_confidence",
]

logger = logging.getLogger(__name__)

#: ``reduce_fn(sums, counts) -> (sums, counts)``: combines the per-class statistics of every
#: process before the update (the trainer passes an all-reduce; identity in one process).
ReduceFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

_INITS = ("constant", "random")
_ABSENT_UPDATES = ("skip", "zero")


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_labels(labels: Tensor, batch: int, height: int, width: int, what: str) -> None:
    if labels.shape != (batch, height, width):
        raise ValueError(f"{what}: labels must have shape {(batch, height, width)}, got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"{what}: labels must be an integer tensor, got {labels.dtype}")


# --------------------------------------------------------------------------------------------
# batch statistics and the EMA update
# --------------------------------------------------------------------------------------------


def gt_class_probability(
    logits: Tensor, labels: Tensor, *, ignore_index: int = 255, logsumexp: Tensor | None = None
) -> Tensor:
    """Softmax probability of the ground-truth class at every pixel, straight from logits.

    Computed as ``exp(logit_gt - logsumexp)`` (the log-sum-exp in cache-sized row bands, or
    passed in when the step already has it), which avoids materialising the full softmax.

    Args:
        logits: ``(B, C, H, W)`` student logits.
        labels: ``(B, H, W)`` integer class map; ``ignore_index`` and labels outside [0, C) are
            invalid.
        ignore_index: label value of unlabeled pixels.
        logsumexp: ``(B, H, W)`` log-sum-exp of ``logits`` (:func:`ael.core.logit_stats`), or
            None to compute it.

    Returns:
        ``(B, H, W)`` float tensor, at most 1 (a log-sum-exp below the logit, from a caller's
        inconsistent input, is taken as equal to it); 1 at invalid pixels (mask them with the
        labels).
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must have shape (B, C, H, W), got {tuple(logits.shape)}")
    b, _, h, w = logits.shape
    _check_labels(labels, b, h, w, "gt_class_probability")
    logits = logits.detach().float()
    logsumexp = _logsumexp(logits) if logsumexp is None else checked_logsumexp(logsumexp, (b, h, w))
    return class_probability(logits, labels, logsumexp, ignore_index=ignore_index)


def class_confidence_stats_from_gt(
    gt_prob: Tensor, labels: Tensor, *, num_classes: int, ignore_index: int = 255
) -> tuple[Tensor, Tensor]:
    """Per-class sums and counts of the ground-truth-class probability.

    Args:
        gt_prob: ``(B, H, W)`` probability of each pixel's ground-truth class.
        labels: ``(B, H, W)`` integer class map. Pixels labeled ``ignore_index`` or outside
            [0, num_classes) are not counted.
        num_classes: C.
        ignore_index: label value of unlabeled pixels.

    Returns:
        ``(sums, counts)``: ``(C,)`` float32 sums of the probability over the pixels of each
        class, and ``(C,)`` int64 pixel counts.
    """
    if gt_prob.dim() != 3:
        raise ValueError(f"gt_prob must have shape (B, H, W), got {tuple(gt_prob.shape)}")
    _check_labels(labels, *gt_prob.shape, what="class_confidence_stats")
    compiled = _native.class_histogram(labels, num_classes, ignore_index=ignore_index, values=gt_prob.detach())
    if compiled is not None:
        counts, sums = compiled
        return sums.sum(dim=0).float(), counts.sum(dim=0)
    valid = (labels >= 0) & (labels < num_classes) & (labels != ignore_index)
    index = torch.where(valid, labels.long(), 0).flatten()  # (B*H*W,)
    values = torch.where(valid, gt_prob.detach().float(), 0.0).flatten()
    sums = torch.zeros(num_classes, dtype=torch.float32, device=gt_prob.device)
    sums.scatter_add_(0, index, values)
    counts = torch.zeros(num_classes, dtype=torch.long, device=gt_prob.device)
    counts.scatter_add_(0, index, valid.flatten().long())
    return sums, counts


def class_confidence_stats(
    probs: Tensor, labels: Tensor, *, ignore_index: int = 255
) -> tuple[Tensor, Tensor]:
    """Per-class sums and counts of the probability the model gives each pixel's GT class.

    Args:
        probs: ``(B, C, H, W)`` softmax probabilities.
        labels: ``(B, H, W)`` integer class map; ``ignore_index`` and labels outside [0, C)
            are not counted.
        ignore_index: label value of unlabeled pixels.

    Returns:
        ``(sums, counts)``, both ``(C,)``: float32 sums and int64 pixel counts.
    """
    if probs.dim() != 4:
        raise ValueError(f"probs must have shape (B, C, H, W), got {tuple(probs.shape)}")
    b, c, h, w = probs.shape
    _check_labels(labels, b, h, w, "class_confidence_stats")
    valid = (labels >= 0) & (labels < c) & (labels != ignore_index)
    index = torch.where(valid, labels.long(), 0).unsqueeze(1)  # (B, 1, H, W)
    gt_prob = probs.detach().gather(1, index).squeeze(1)  # (B, H, W)
    return class_confidence_stats_from_gt(gt_prob, labels, num_classes=c, ignore_index=ignore_index)


def update_confidence(
    conf: Tensor,
    sums: Tensor,
    counts: Tensor,
    *,
    momentum: float = 0.999,
    absent_update: Literal["skip", "zero"] = "skip",
) -> Tensor:
    """One EMA step of the bank: ``conf <- m * conf + (1 - m) * sums / counts``.

    Args:
        conf: ``(C,)`` current bank.
        sums: ``(C,)`` per-class probability sums of the batch.
        counts: ``(C,)`` per-class pixel counts of the batch.
        momentum: m in [0, 1).
        absent_update: what a class with no pixel in the batch does. ``"skip"`` (paper): its
            entry is left unchanged. ``"zero"`` (release): 0 is folded into its EMA.

    Returns:
        ``(C,)`` the new bank (a new tensor, same dtype as ``conf``).
    """
    _check_choice("absent_update", absent_update, _ABSENT_UPDATES)
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if conf.shape != sums.shape or conf.shape != counts.shape or conf.dim() != 1:
        raise ValueError(
            f"conf, sums and counts must all have shape (C,), got {tuple(conf.shape)}, "
            f"{tuple(sums.shape)} and {tuple(counts.shape)}"
        )
    batch = sums.to(conf.dtype) / counts.clamp_min(1).to(conf.dtype)  # absent: 0 / 1 = 0
    ema = momentum * conf + (1.0 - momentum) * batch
    if absent_update == "zero":
        return ema
    return torch.where(counts > 0, ema, conf)


def init_confidence(
    num_classes: int,
    *,
    init: Literal["constant", "random"] = "constant",
    init_value: float = 0.5,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The initial bank.

    Args:
        num_classes: C.
        init: ``"constant"`` (every class starts at ``init_value``) or ``"random"`` (release:
            uniform in [0, 1), drawn through ``generator``).
        init_value: the constant start value.
        generator: random source for ``init="random"`` (on ``device``).
        device: where the bank lives.

    Returns:
        ``(C,)`` float32 tensor.
    """
    _check_choice("init", init, _INITS)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if init == "random":
        return torch.rand(num_classes, generator=generator, device=device)
    if not 0.0 <= init_value <= 1.0:
        raise ValueError(f"init_value must be in [0, 1], got {init_value}")
    return torch.full((num_classes,), float(init_value), device=device)


class ConfidenceBank:
    """The per-class confidence bank with its EMA update and (optional) cross-process reduce.

    Args:
        num_classes: C.
        momentum: EMA momentum m.
        init: ``"constant"`` or ``"random"`` (release), see :func:`init_confidence`.
        init_value: start value for ``init="constant"``.
        absent_update: ``"skip"`` (paper) or ``"zero"`` (release), see :func:`update_confidence`.
        reduce_fn: called on ``(sums, counts)`` before every update; the trainer passes an
            all-reduce so every rank holds the same bank. Default: identity.
        generator: random source for ``init="random"``.
        device: where the bank lives.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        momentum: float = 0.999,
        init: Literal["constant", "random"] = "constant",
        init_value: float = 0.5,
        absent_update: Literal["skip", "zero"] = "skip",
        reduce_fn: ReduceFn | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        _check_choice("absent_update", absent_update, _ABSENT_UPDATES)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.num_classes = num_classes
        self.momentum = momentum
        self.absent_update = absent_update
        self.reduce_fn = reduce_fn
        self.values = init_confidence(
            num_classes, init=init, init_value=init_value, generator=generator, device=device
        )

    @property
    def device(self) -> torch.device:
        return self.values.device

    def to(self, device: torch.device | str) -> ConfidenceBank:
        """Move the bank to ``device`` (in place); returns self."""
        self.values = self.values.to(device)
        return self

    def update(self, sums: Tensor, counts: Tensor) -> Tensor:
        """Fold one batch of per-class statistics into the bank.

        Args:
            sums: ``(C,)`` probability sums (e.g. from :func:`class_confidence_stats`).
            counts: ``(C,)`` pixel counts.

        Returns:
            ``(C,)`` the new bank values (also stored in ``self.values``).
        """
        if self.reduce_fn is not None:
            sums, counts = self.reduce_fn(sums, counts)
        self.values = update_confidence(
            self.values, sums.to(self.device), counts.to(self.device),
            momentum=self.momentum, absent_update=self.absent_update,
        )
        return self.values

    def state_dict(self) -> dict[str, Any]:
        """The bank as a checkpointable dict (``values`` is a detached copy)."""
        return {"values": self.values.detach().clone(), "num_classes": self.num_classes}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`; errors name the key at fault."""
        if "values" not in state:
            raise KeyError(f"confidence bank state has no 'values' key (keys: {sorted(state)})")
        values = state["values"]
        if not isinstance(values, Tensor):
            raise TypeError(f"confidence bank state 'values' must be a tensor, got {type(values).__name__}")
        if values.shape != (self.num_classes,):
            raise ValueError(
                f"confidence bank state 'values' has shape {tuple(values.shape)}, "
                f"expected ({self.num_classes},)"
            )
        self.values = values.detach().to(device=self.device, dtype=self.values.dtype).clone()


# --------------------------------------------------------------------------------------------
# class-sampling distributions
# --------------------------------------------------------------------------------------------


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

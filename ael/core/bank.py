"""The confidence bank: per-class statistics of a labeled batch and their EMA.

The bank ``Conf`` (shape ``(C,)``, values in [0, 1]) is an exponential moving average, per
class, of the student's softmax probability for the ground-truth class on labeled pixels. Every
adaptive strategy of AEL reads it (:mod:`ael.core.distributions`): low confidence means an
under-performing class, which gets pasted, mixed and sampled more often.

Everything here is a pure tensor function: batched, device-agnostic, random only through a
passed ``torch.Generator`` and free of host synchronisation, so it can run inside a training
step on any device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from ._channel_ops import checked_logsumexp, class_probability
from ._channel_ops import logsumexp as _logsumexp

__all__ = [
    "ConfidenceBank",
    "ReduceFn",
    "class_confidence_stats",
    "class_confidence_stats_from_gt",
    "gt_class_probability",
    "init_confidence",
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

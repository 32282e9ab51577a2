"""Per-pixel reductions over the class axis of ``(B, C, H, W)`` logits, without full-size temporaries.

Softmax-style reductions written naively (``(x - max).exp().sum(1)``, ``F.cross_entropy``,
``F.softmax(...).max(1)``) materialise one or more ``(B, C, H, W)`` temporaries. On a CPU a
fresh 90 MB temporary (Cityscapes crop, 19 classes, two images) costs more in page faults than
the arithmetic itself, so here the work runs over bands of rows small enough to stay in cache.
On an accelerator the whole map is one band: same code, one kernel per operation. The band
loop is over a fixed number of row bands (from the shape only), never over classes or data.

Private to :mod:`ael.core`.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Pixels (times C channels) per band on the CPU: about 1-3 MB of float32 at C = 19-21.
_CPU_BAND_PIXELS = 16_384


def row_bands(logits: Tensor) -> list[slice]:
    """Row slices covering ``logits`` ``(B, C, H, W)``: cache-sized on the CPU, one elsewhere."""
    b, _, h, w = logits.shape
    if logits.device.type != "cpu":
        return [slice(0, h)]
    rows = max(1, _CPU_BAND_PIXELS // max(1, b * w))
    return [slice(y, min(y + rows, h)) for y in range(0, h, rows)]


def max_and_expsum(logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pixel maximum, its class, and ``sum_c exp(x_c - max)``.

    Args:
        logits: ``(B, C, H, W)`` float tensor (no gradient is recorded).

    Returns:
        ``(top, labels, expsum)``: ``(B, H, W)`` float maximum, int64 argmax (first maximum,
        as ``Tensor.max``) and float sum, so that softmax max = ``1 / expsum`` and
        logsumexp = ``top + log(expsum)``.
    """
    b, _, h, w = logits.shape
    top = logits.new_empty(b, h, w)
    labels = torch.empty(b, h, w, dtype=torch.long, device=logits.device)
    expsum = logits.new_empty(b, h, w)
    with torch.no_grad():
        for band in row_bands(logits):
            x = logits[:, :, band]
            t, i = x.max(dim=1)
            top[:, band], labels[:, band] = t, i
            torch.sum((x - t.unsqueeze(1)).exp_(), dim=1, out=expsum[:, band])
    return top, labels, expsum


def target_log_softmax(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-pixel logsumexp over classes and the logit of the target class.

    Args:
        logits: ``(B, C, H, W)`` float tensor (no gradient is recorded).
        target: ``(B, H, W)`` int64 class indices in [0, C).

    Returns:
        ``(lse, picked)``, both ``(B, H, W)``: log-softmax of the target is ``picked - lse``.
    """
    b, _, h, w = logits.shape
    lse = logits.new_empty(b, h, w)
    picked = logits.new_empty(b, h, w)
    with torch.no_grad():
        for band in row_bands(logits):
            x = logits[:, :, band]
            t = x.amax(dim=1, keepdim=True)
            s = (x - t).exp_().sum(dim=1)
            lse[:, band] = s.log_().add_(t.squeeze(1))
            picked[:, band] = x.gather(1, target[:, band].unsqueeze(1)).squeeze(1)
    return lse, picked


class PixelCrossEntropy(torch.autograd.Function):
    """Per-pixel cross-entropy ``(B, H, W)`` (0 where ``valid`` is False), banded both ways.

    Same value and gradient as ``F.cross_entropy(logits, target, reduction="none",
    ignore_index=...)``, but saves only the ``(B, H, W)`` logsumexp for backward instead of
    the ``(B, C, H, W)`` log-softmax, and allocates no full-size temporary besides the gradient.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:  # type: ignore[override]
        lse, picked = target_log_softmax(logits, target)
        ctx.save_for_backward(logits, target, valid, lse)
        return torch.where(valid, lse - picked, 0.0)

    @staticmethod
    def backward(ctx, grad_ce: Tensor) -> tuple[Tensor | None, None, None]:  # type: ignore[override]
        logits, target, valid, lse = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        g = torch.where(valid, grad_ce, 0.0)  # (B, H, W)
        grad = torch.empty_like(logits)
        for band in row_bands(logits):
            x = logits[:, :, band]
            gb = g[:, band].unsqueeze(1)
            out = grad[:, :, band]
            torch.mul((x - lse[:, band].unsqueeze(1)).exp_(), gb, out=out)  # softmax * g
            out.scatter_add_(1, target[:, band].unsqueeze(1), -gb)  # minus one-hot * g
        return grad, None, None

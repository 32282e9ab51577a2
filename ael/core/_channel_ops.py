"""Per-pixel reductions over the class axis of ``(B, C, H, W)`` logits, in one banded pass.

Every AEL step reduces several ``(B, C, H, W)`` logit maps over the class axis: the teacher's
argmax and max-probability, the student's log-sum-exp for the cross-entropies, the student's
argmax for equalization sampling. Done naively (``F.softmax(...).max(1)``, ``F.cross_entropy``
per loss, ``Tensor.max(1)``), each reduction is its own pass with full-size temporaries, and on
a CPU the pass costs more than the arithmetic: fresh 90 MB temporaries (Cityscapes crop, 19
classes, two images) page-fault, ``Tensor.max(dim=1)`` with indices and comparisons producing
``bool`` are not vectorised, and ``exp`` is ~2x slower than ``exp2``.

So :func:`channel_stats` computes the maximum, the first argmax and ``sum_c exp(x_c - max)`` of
one map in a single pass over bands of rows that stay in cache, reusing three scratch buffers,
with only vectorised float operations:

- argmax: ``d = x - max`` is exactly 0 at the maxima and negative elsewhere, so
  ``(C - 1 - c) + C * sign(d)`` is ``C - 1 - c`` at the maxima and negative elsewhere; its
  maximum over ``c`` gives the *first* maximum, as ``Tensor.max`` does;
- ``exp(d) = exp2(d * log2(e))`` (a relative error of a few float32 ulps, far inside the
  tolerance of any loss).

Callers share one pass between the consumers of a map (the supervised loss, the bank, the
pseudo-label loss and the sampling of the student's labeled output all read one log-sum-exp).
On an accelerator the whole map is one band: same code, one kernel per operation. The band loop
is over a fixed number of row bands (from the shape only), never over classes or data.

Private to :mod:`ael.core`.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

#: Pixels (times C channels) per band on the CPU: about 1-3 MB of float32 at C = 19-21.
_CPU_BAND_PIXELS = 16_384
#: Elements per band elsewhere: bounds each scratch buffer to 256 MB of float32 (a few bands for
#: a Cityscapes batch), so the reductions add little to the peak memory of a step.
_DEVICE_BAND_ELEMENTS = 1 << 26

_LOG2E = 1.0 / math.log(2.0)

_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def row_bands(logits: Tensor) -> list[slice]:
    """Row slices covering ``logits`` ``(B, C, H, W)``: cache-sized on the CPU, large elsewhere."""
    b, c, h, w = logits.shape
    if logits.device.type == "cpu":
        rows = max(1, _CPU_BAND_PIXELS // max(1, b * w))
    else:
        rows = max(1, _DEVICE_BAND_ELEMENTS // max(1, b * c * w))
    return [slice(y, min(y + rows, h)) for y in range(0, h, rows)]


def select_bits(mask: Tensor, element_size: int) -> Tensor:
    """``mask`` (bool) as an integer tensor of all-one bits where True, for :func:`select`."""
    return mask.to(_INT_OF_SIZE[element_size]).neg_()


def select(outside: Tensor, inside: Tensor, bits: Tensor, out: Tensor | None = None) -> Tensor:
    """``inside`` where ``bits`` (from :func:`select_bits`, broadcastable) is set, else ``outside``.

    ``outside ^ ((outside ^ inside) & bits)`` on the integer view of the values: bit-exact for
    every dtype and value, unlike ``lerp`` or arithmetic blends (NaN, inf, -0.0, overflow).
    """
    int_type = _INT_OF_SIZE[outside.element_size()]
    o, i = outside.view(int_type), inside.view(int_type)
    result = torch.bitwise_xor(o, i, out=None if out is None else out.view(int_type))
    return result.bitwise_and_(bits).bitwise_xor_(o).view(outside.dtype)


class ChannelStats(NamedTuple):
    """Per-pixel reductions over classes of ``(B, C, H, W)`` logits (each ``(B, H, W)``)."""

    top: Tensor  #: float maximum logit
    argmax: Tensor | None  #: int64 first class reaching the maximum (None when not asked for)
    expsum: Tensor | None  #: float ``sum_c exp(x_c - top)`` (None when not asked for)

    def logsumexp(self) -> Tensor:
        """``top + log(expsum)``, computed in place of ``expsum`` (which it consumes)."""
        return self.expsum.log_().add_(self.top)


def channel_stats(logits: Tensor, *, argmax: bool = True, expsum: bool = True) -> ChannelStats:
    """Maximum, first argmax and exp-sum over the class axis, in one banded pass.

    NaN logits give class 0 at that pixel (``Tensor.max`` would give the NaN's class) and a NaN
    maximum and exp-sum, so the losses that read them turn NaN visibly.

    Args:
        logits: ``(B, C, H, W)`` float32 logits (no gradient is recorded; the class indices are
            exact in float32 for any C below 2**24, not in bfloat16).
        argmax: compute the argmax.
        expsum: compute ``sum_c exp(x_c - max)``: softmax maximum = ``1 / expsum``,
            logsumexp = ``top + log(expsum)``.

    Returns:
        :class:`ChannelStats`.
    """
    b, c, h, w = logits.shape
    device = logits.device
    maximum = logits.new_empty(b, h, w)
    reversed_first = logits.new_empty(b, h, w) if argmax else None
    sums = logits.new_empty(b, h, w) if expsum else None
    bands = row_bands(logits)
    rows = bands[0].stop if bands else 0
    diff = logits.new_empty(b, c, rows, w)
    band_top = logits.new_empty(b, 1, rows, w)
    if argmax:
        keys = logits.new_empty(b, c, rows, w)
        reversed_index = torch.arange(c - 1, -1, -1, dtype=logits.dtype, device=device)
        reversed_index = reversed_index.view(1, c, 1, 1)
        if device.type == "cpu":  # a contiguous operand vectorises; on an accelerator broadcasting is free
            reversed_index = reversed_index.expand(b, c, rows, w).contiguous()
    with torch.no_grad():
        for band in bands:
            n = band.stop - band.start
            x = logits[:, :, band]
            t = torch.amax(x, dim=1, keepdim=True, out=band_top[:, :, :n])
            maximum[:, band] = t.squeeze(1)
            d = torch.sub(x, t, out=diff[:, :, :n])  # 0 exactly at the maxima, < 0 elsewhere
            if argmax:
                k = torch.sign(d, out=keys[:, :, :n])
                k = torch.add(reversed_index[:, :, :n], k, alpha=c, out=k)
                torch.amax(k, dim=1, out=reversed_first[:, band])
            if sums is not None:
                torch.sum(d.mul_(_LOG2E).exp2_(), dim=1, out=sums[:, band])
    first = None
    if reversed_first is not None:
        first = reversed_first.neg_().add_(c - 1).long()
    return ChannelStats(maximum, first, sums)


def argmax_and(
    logits: Tensor, value: Literal["logsumexp", "max_probability"], *, argmax: bool = True
) -> tuple[Tensor | None, Tensor]:
    """``(argmax, value)`` of ``(B, C, H, W)`` float32 logits in one pass (no gradient): the first
    argmax (None unless ``argmax``) and the log-sum-exp or the maximum softmax probability
    (``1 / expsum``), both derived in place from :func:`channel_stats`.
    """
    stats = channel_stats(logits, argmax=argmax)
    return stats.argmax, stats.logsumexp() if value == "logsumexp" else stats.expsum.reciprocal_()


def logsumexp(logits: Tensor) -> Tensor:
    """``(B, H, W)`` log-sum-exp over the classes of ``(B, C, H, W)`` logits (no gradient)."""
    return argmax_and(logits, "logsumexp", argmax=False)[1]


def checked_logsumexp(logsumexp: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A caller's precomputed log-sum-exp, checked against the ``(B, H, W)`` shape, as float32."""
    if tuple(logsumexp.shape) != tuple(shape):
        raise ValueError(f"logsumexp must have shape {tuple(shape)}, got {tuple(logsumexp.shape)}")
    return logsumexp.detach().float()


def pick_class(logits: Tensor, target: Tensor) -> Tensor:
    """``(B, H, W)`` logit of class ``target[b, y, x]`` (int64 in [0, C)) at every pixel (no gradient)."""
    with torch.no_grad():
        return logits.gather(1, target.unsqueeze(1)).squeeze(1)


def class_probability(logits: Tensor, labels: Tensor, logsumexp: Tensor, *, ignore_index: int) -> Tensor:
    """``(B, H, W)`` softmax probability of class ``labels[b, y, x]``: ``exp(min(logit - logsumexp, 0))``.

    1 where the label is outside [0, C) or ``ignore_index``. No gradient is recorded.
    """
    with torch.no_grad():
        c = logits.shape[1]
        valid = (labels >= 0) & (labels < c) & (labels != ignore_index)
        target = torch.where(valid, labels.long(), 0)
        return torch.where(valid, pick_class(logits, target).sub_(logsumexp).clamp_max_(0.0).exp_(), 1.0)


class PixelCrossEntropy(torch.autograd.Function):
    """Per-pixel cross-entropy ``(B, H, W)`` (0 where ``valid`` is False), banded both ways.

    Same value and gradient as ``F.cross_entropy(logits, target, reduction="none",
    ignore_index=...)``, but saves only the ``(B, H, W)`` logsumexp for backward instead of
    the ``(B, C, H, W)`` log-softmax, and allocates no full-size temporary besides the gradient.
    ``lse`` may be passed when the caller already has the logsumexp of these logits.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, valid: Tensor, lse: Tensor | None) -> Tensor:  # type: ignore[override]
        lse = logsumexp(logits) if lse is None else lse.detach()
        ctx.save_for_backward(logits, target, valid, lse)
        with torch.no_grad():
            return torch.where(valid, lse - pick_class(logits, target), 0.0)

    @staticmethod
    def backward(ctx, grad_ce: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        logits, target, valid, lse = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        g = torch.where(valid, grad_ce, 0.0)  # (B, H, W)
        grad = torch.empty_like(logits)
        for band in row_bands(logits):
            gb = g[:, band].unsqueeze(1)
            out = torch.sub(logits[:, :, band], lse[:, band].unsqueeze(1), out=grad[:, :, band])
            out.mul_(_LOG2E).exp2_().mul_(gb)  # softmax * g
            out.scatter_add_(1, target[:, band].unsqueeze(1), -gb)  # minus one-hot * g
        return grad, None, None, None

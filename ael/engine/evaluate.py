"""Inference (whole image or sliding window, multi-scale, flip) and evaluation over a loader.

The evaluation protocols papers report with (``train.eval.mode``, :data:`EVAL_MODES`):

- ``whole``: each image in one pass at its full size (VOC in U2PL, UniMatch and AEL).
- ``center_crop``: only the central ``crop_size`` square of image and label is predicted and
  scored (UniMatch's ``center_crop``; a cheap approximation of the full image).
- ``sliding``: windows of ``crop_size`` at stride ``stride_ratio`` x ``crop_size`` (2/3 in the
  field) cover the image, their logits averaged (Cityscapes in U2PL, UniMatch and the AEL
  release).

Each takes optional horizontal ``flip`` and multi-scale ``scales``. :func:`describe_mode` names
the protocol in one line (``sliding 769 stride 2/3``), as every evaluation record says it.

The model is any callable taking ``(B, 3, H, W)`` images and returning logits at the input size,
either as a tensor or as a mapping with an ``"out"`` entry (the DeepLabV3+ contract).

How predictions are combined:

- Sliding window: the (zero-padded) image is covered by ``crop_size`` windows at stride
  ``ceil(crop_size * stride_ratio)``, the last window flush with the bottom/right edge; the
  logits of overlapping windows are averaged pixel by pixel.
- Each scale resizes the image (bilinear), infers it (whole or sliding), resizes the logits
  back to the input size and takes the softmax; with ``flip`` the mirrored image is inferred
  too and its output mirrored back. The softmax probabilities of every (scale, flip) view are
  averaged; the prediction is their argmax.

:func:`evaluate` runs a loader of ``{"image": (B, 3, H, W), "label": (B, H, W)}`` dicts,
accumulates the confusion matrix on the device and all-reduces it once. Under torchrun each
rank evaluates its own shard; give it the unwrapped model (not the DDP wrapper, whose forward
syncs buffers and would hang ranks with different batch counts) and a sampler that does not
pad shards with repeated images, or those images are counted twice.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ael.engine.distributed import all_reduce_sum_
from ael.engine.metrics import ConfusionMatrix, SegMetrics, metrics_from_confusion
from ael.models import precision

__all__ = [
    "EVAL_MODES",
    "EvalResult",
    "center_crop",
    "describe_mode",
    "evaluate",
    "predict",
    "predict_probs",
]

logger = logging.getLogger(__name__)

Model = Callable[[torch.Tensor], Any]
EVAL_MODES = ("whole", "center_crop", "sliding")


def describe_mode(mode: str, *, crop_size: int | Sequence[int] | None = None, stride_ratio: float = 2 / 3,
                  scales: Sequence[float] = (1.0,), flip: bool = False) -> str:
    """The evaluation protocol in one line: ``whole``, ``center_crop 513``, ``sliding 769 stride 2/3``,
    then ``+ flip`` and ``scales 0.75,1,1.25`` when used."""
    if mode not in EVAL_MODES:
        raise ValueError(f"mode must be one of {EVAL_MODES}, got {mode!r}")
    crop = "x".join(str(v) for v in dict.fromkeys(_pair(crop_size, "crop_size"))) if crop_size is not None else "?"
    text = {"whole": "whole", "center_crop": f"center_crop {crop}",
            "sliding": f"sliding {crop} stride {Fraction(stride_ratio).limit_denominator(16)}"}[mode]
    if flip:
        text += " + flip"
    if tuple(scales) != (1.0,):
        text += " scales " + ",".join(f"{s:g}" for s in scales)
    return text


def center_crop(image: torch.Tensor, label: torch.Tensor, crop_size: int | Sequence[int],
                sizes: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The central ``crop_size`` part of each image and its label (the whole of a smaller one).

    Args:
        image: ``(B, 3, H, W)``; label: ``(B, H, W)``.
        crop_size: int or ``(h, w)``.
        sizes: ``(B, 2)`` true (H, W) of each padded image (``pad_collate``'s ``size``); None:
            the tensors' size.

    Returns:
        One ``((1, 3, h, w), (1, h, w))`` pair per image.
    """
    ch, cw = _pair(crop_size, "crop_size")
    out = []
    for b in range(image.shape[0]):
        h, w = (int(v) for v in sizes[b]) if sizes is not None else image.shape[-2:]
        th, tw = min(ch, h), min(cw, w)
        y, x = (h - th) // 2, (w - tw) // 2
        out.append((image[b:b + 1, :, y:y + th, x:x + tw], label[b:b + 1, y:y + th, x:x + tw]))
    return out


@dataclass(frozen=True)
class EvalResult(SegMetrics):
    """:class:`~ael.engine.metrics.SegMetrics` of an evaluation, plus its size and duration.

    Attributes:
        num_images: Images evaluated, summed over ranks.
        seconds: Wall time of this rank's evaluation.
    """

    num_images: int = 0
    seconds: float = 0.0


@contextlib.contextmanager
def _eval_mode(model: Model) -> Iterator[None]:
    was_training = getattr(model, "training", None)
    if isinstance(model, nn.Module):
        model.eval()
    try:
        yield
    finally:
        if isinstance(model, nn.Module) and was_training is not None:
            model.train(was_training)


def _forward(model: Model, images: torch.Tensor, amp_dtype: torch.dtype | None) -> torch.Tensor:
    """``(N, C, h, w)`` float32 logits of ``(N, 3, h, w)`` images."""
    with precision.autocast(images.device, amp_dtype):
        out = model(images)
    if isinstance(out, Mapping):
        if "out" not in out:
            raise KeyError(f"the model returned a mapping without an 'out' entry (keys: {sorted(out)})")
        out = out["out"]
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        raise ValueError("the model must return (N, C, H, W) logits or a mapping with them under 'out'")
    if out.shape[0] != images.shape[0] or out.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"the model returned logits of shape {tuple(out.shape)} for input {tuple(images.shape)}; "
            "logits must be at the input size"
        )
    return out.float()


def _window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Window offsets covering ``[0, size)``; the last one ends exactly at ``size``."""
    if size <= crop:
        return [0]
    count = math.ceil((size - crop) / stride) + 1
    return [min(i * stride, size - crop) for i in range(count)]


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, int) or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


def _sliding_logits(model: Model, image: torch.Tensor, *, crop_size: tuple[int, int],
                    stride_ratio: float, window_batch: int, amp_dtype: torch.dtype | None) -> torch.Tensor:
    """``(B, C, H, W)`` logits averaged over overlapping windows of ``(B, 3, H, W)`` images."""
    b, _, h, w = image.shape
    ch, cw = crop_size
    sh, sw = max(1, math.ceil(ch * stride_ratio)), max(1, math.ceil(cw * stride_ratio))
    pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h))
    hp, wp = image.shape[-2:]
    wh, ww = min(ch, hp), min(cw, wp)
    windows = [(y, x) for y in _window_starts(hp, wh, sh) for x in _window_starts(wp, ww, sw)]
    total: torch.Tensor | None = None
    count = torch.zeros(1, 1, hp, wp, device=image.device)
    for first in range(0, len(windows), window_batch):
        chunk = windows[first:first + window_batch]
        crops = torch.cat([image[:, :, y:y + wh, x:x + ww] for y, x in chunk])  # (len * B, 3, wh, ww)
        logits = _forward(model, crops, amp_dtype)  # (len * B, C, wh, ww)
        if total is None:
            total = logits.new_zeros(b, logits.shape[1], hp, wp)
        for k, (y, x) in enumerate(chunk):
            total[:, :, y:y + wh, x:x + ww] += logits[k * b:(k + 1) * b]
            count[:, :, y:y + wh, x:x + ww] += 1
    assert total is not None
    return (total / count)[:, :, :h, :w]


def predict_probs(model: Model, image: torch.Tensor, *, mode: Literal["whole", "sliding"] = "whole",
                  crop_size: int | Sequence[int] | None = None, stride_ratio: float = 2 / 3,
                  scales: Sequence[float] = (1.0,), flip: bool = False,
                  amp_dtype: torch.dtype | None = None, window_batch: int = 4) -> torch.Tensor:
    """Class probabilities averaged over scales and flips (see the module docstring).

    Runs under the caller's grad mode and the model's current train/eval mode (use
    :func:`predict` or :func:`evaluate` for the eval-mode, no-grad wrappers).

    Args:
        model: Callable returning logits at the input size (tensor or ``{"out": ...}``).
        image: ``(B, 3, H, W)`` normalised images on the model's device.
        mode: ``"whole"`` or ``"sliding"``.
        crop_size: Sliding window size (int or ``(h, w)``); required for ``"sliding"``.
        stride_ratio: Window stride as a fraction of the window, in ``(0, 1]``.
        scales: Resize factors of the image, each > 0.
        flip: Also infer the horizontally mirrored image.
        amp_dtype: Autocast dtype (``torch.bfloat16``/``torch.float16``) or None.
        window_batch: Sliding windows per forward pass (times B).

    Returns:
        ``(B, C, H, W)`` float32 probabilities.
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be (B, 3, H, W), got {tuple(image.shape)}")
    if mode not in ("whole", "sliding"):
        raise ValueError(f"mode must be 'whole' or 'sliding', got {mode!r}")
    if not scales or any(not s > 0 for s in scales):
        raise ValueError(f"scales must be a non-empty list of positive factors, got {tuple(scales)}")
    if not 0 < stride_ratio <= 1:
        raise ValueError(f"stride_ratio must be in (0, 1], got {stride_ratio}")
    if window_batch < 1:
        raise ValueError(f"window_batch must be >= 1, got {window_batch}")
    crop: tuple[int, int] | None = None
    if mode == "sliding":
        if crop_size is None:
            raise ValueError("mode='sliding' needs crop_size")
        crop = _pair(crop_size, "crop_size")
    h, w = image.shape[-2:]
    views = [False, True] if flip else [False]
    probs: torch.Tensor | None = None
    for scale in scales:
        size = (max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5)))
        scaled = image if size == (h, w) else F.interpolate(image, size=size, mode="bilinear",
                                                              align_corners=False)
        for mirrored in views:
            x = scaled.flip(-1) if mirrored else scaled
            if crop is None:
                logits = _forward(model, x, amp_dtype)
            else:
                logits = _sliding_logits(model, x, crop_size=crop, stride_ratio=stride_ratio,
                                         window_batch=window_batch, amp_dtype=amp_dtype)
            if mirrored:
                logits = logits.flip(-1)
            if size != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            p = logits.softmax(1)
            probs = p if probs is None else probs + p
    assert probs is not None
    return probs / (len(scales) * len(views))


def predict(model: Model, image: torch.Tensor, *, mode: Literal["whole", "sliding"] = "whole",
            crop_size: int | Sequence[int] | None = None, stride_ratio: float = 2 / 3,
            scales: Sequence[float] = (1.0,), flip: bool = False,
            amp_dtype: torch.dtype | None = None, window_batch: int = 4) -> torch.Tensor:
    """Predicted class map of one image or a batch, in eval mode without gradients.

    Args:
        model: As for :func:`predict_probs`; put back in its previous train/eval mode after.
        image: ``(3, H, W)`` or ``(B, 3, H, W)`` normalised image(s) on the model's device.
        mode, crop_size, stride_ratio, scales, flip, amp_dtype, window_batch: As for
            :func:`predict_probs`.

    Returns:
        ``(H, W)`` or ``(B, H, W)`` int64 class indices, on the image's device.
    """
    single = image.dim() == 3
    batch = image.unsqueeze(0) if single else image
    with _eval_mode(model), torch.inference_mode():
        probs = predict_probs(model, batch, mode=mode, crop_size=crop_size, stride_ratio=stride_ratio,
                              scales=scales, flip=flip, amp_dtype=amp_dtype, window_batch=window_batch)
    pred = probs.argmax(1)
    return pred[0] if single else pred


def _check_labels(label: torch.Tensor, *, num_classes: int, ignore_index: int, where: str) -> None:
    # One host sync per evaluation batch: a wrong label encoding (e.g. raw Cityscapes ids)
    # would otherwise be silently dropped from the metrics.
    bad = (label != ignore_index) & ((label < 0) | (label >= num_classes))
    if bool(bad.any()):
        values = torch.unique(label[bad])[:10].tolist()
        raise ValueError(
            f"{where}: label values {values} are outside [0, {num_classes}) and are not the "
            f"ignore index {ignore_index}"
        )


def evaluate(model: Model, loader: Iterable[Mapping[str, Any]], *, num_classes: int,
             ignore_index: int = 255, device: torch.device | str,
             mode: Literal["whole", "center_crop", "sliding"] = "whole", crop_size: int | Sequence[int] | None = None,
             stride_ratio: float = 2 / 3, scales: Sequence[float] = (1.0,), flip: bool = False,
             amp_dtype: torch.dtype | None = None, window_batch: int = 4,
             max_batches: int | None = None, check_labels: bool = True) -> EvalResult:
    """Evaluate a segmentation model over a loader (this rank's shard), reduced over ranks once.

    The model runs in eval mode under ``torch.inference_mode`` and is put back in its previous
    mode afterwards.

    Args:
        model: Callable returning logits at the input size (tensor or ``{"out": ...}``); under
            torchrun pass the unwrapped module.
        loader: Yields dicts with ``"image"`` ``(B, 3, H, W)`` float and ``"label"`` ``(B, H, W)``
            integer tensors (other keys ignored; ``"name"`` is used in error messages).
        num_classes: C; the model must output C channels.
        ignore_index: Label of pixels that do not count.
        device: Where inference and the confusion matrix live.
        mode: ``"whole"``, ``"center_crop"`` (image and label cut to the central ``crop_size``
            part, then inferred whole) or ``"sliding"``.
        crop_size, stride_ratio, scales, flip, amp_dtype, window_batch: As for
            :func:`predict_probs`.
        max_batches: Stop after this many batches of this rank (None: the whole loader).
        check_labels: Raise on labels outside ``[0, C)`` that are not ``ignore_index``
            (one host sync per batch).

    Returns:
        :class:`EvalResult` (confusion matrix, per-class IoU, mIoU, accuracies, image count).
    """
    if mode not in EVAL_MODES:
        raise ValueError(f"mode must be one of {EVAL_MODES}, got {mode!r}")
    if mode == "center_crop" and crop_size is None:
        raise ValueError("mode='center_crop' needs crop_size")
    device = torch.device(device)
    cm = ConfusionMatrix(num_classes, ignore_index=ignore_index, device=device)
    images_seen = torch.zeros(1, dtype=torch.int64, device=device)
    start = time.perf_counter()
    with _eval_mode(model), torch.inference_mode():
        for index, batch in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            where = f"evaluation batch {index}"
            if isinstance(batch, Mapping) and "name" in batch:
                where += f" ({batch['name']})"
            if not isinstance(batch, Mapping) or "image" not in batch or "label" not in batch:
                keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
                raise KeyError(f"{where}: expected a dict with 'image' and 'label', got {keys}")
            image = batch["image"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            if label.dim() != 3 or image.dim() != 4 or label.shape != (image.shape[0], *image.shape[-2:]):
                raise ValueError(
                    f"{where}: label shape {tuple(label.shape)} does not match image shape "
                    f"{tuple(image.shape)} (expected (B, H, W) and (B, 3, H, W))"
                )
            if check_labels:
                _check_labels(label, num_classes=num_classes, ignore_index=ignore_index, where=where)
            if mode == "center_crop":
                assert crop_size is not None
                sizes = batch.get("size")
                views = center_crop(image, label, crop_size, sizes if isinstance(sizes, torch.Tensor) else None)
            else:
                views = [(image, label)]
            for view, truth in views:
                probs = predict_probs(model, view.float(), mode="sliding" if mode == "sliding" else "whole",
                                      crop_size=crop_size, stride_ratio=stride_ratio, scales=scales, flip=flip,
                                      amp_dtype=amp_dtype, window_batch=window_batch)
                if probs.shape[1] != num_classes:
                    raise ValueError(f"{where}: the model outputs {probs.shape[1]} classes, expected {num_classes}")
                cm.update(probs.argmax(1), truth)
            images_seen += image.shape[0]
    seconds = time.perf_counter() - start
    all_reduce_sum_([cm.mat, images_seen])
    metrics = metrics_from_confusion(cm.mat)
    result = EvalResult(metrics.confusion, metrics.iou, metrics.miou, metrics.acc, metrics.class_acc,
                        num_images=int(images_seen.item()), seconds=seconds)
    logger.info("evaluated %d images in %.1fs: mIoU %.2f %%, pixel accuracy %.2f %%", result.num_images, seconds,
                100 * result.miou, 100 * result.acc)
    return result

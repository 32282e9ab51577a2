"""The optional compiled CPU kernels (``_native.c``), loaded with ctypes.

``pip install`` builds ``ael/core/_native_lib*.so`` when a C compiler is there (``setup.py``).
Every wrapper here returns None when it cannot run (no build, ``AEL_NATIVE=0`` in the
environment, a tensor that is not a contiguous CPU tensor of the expected dtype, an integer
argument beyond int64), and its caller in :mod:`ael.core` then uses its PyTorch implementation
of the same computation, which is also the implementation on every other device. The kernels
run on PyTorch's OpenMP team when one is found (:func:`use_openmp`).

Private to :mod:`ael.core`.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import os
from pathlib import Path

import torch
from torch import Tensor

#: Set to False (tests, ``AEL_NATIVE=0``) to use the PyTorch implementation everywhere.
enabled = os.environ.get("AEL_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")

#: The interface version this module calls (``ael_native_abi()`` in ``_native.c``).
ABI = 12

_library: ctypes.CDLL | None = None
_load_error: str | None = None


def _find_library() -> Path | None:
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"_native_lib{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _load() -> ctypes.CDLL | None:
    global _library, _load_error
    if _library is not None or _load_error is not None:
        return _library
    path = _find_library()
    if path is None:
        _load_error = "not built (no C compiler when ael was installed)"
        return None
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    signatures = {
        # logits, batch, classes, pixels, top, argmax, sums, logsumexp, max probability, threads
        "ael_channel_stats": [pointer, size, size, size, pointer, pointer, pointer, pointer, pointer, ctypes.c_int],
        # logits, target, batch, classes, pixels, ignore, mask, offset, mode, fill, picked, threads
        "ael_pick_class": [pointer, pointer, size, size, size, size, pointer, pointer, ctypes.c_int,
                           ctypes.c_float, pointer, ctypes.c_int],
        # labels, values, batch, pixels, classes, ignore, counts, sums, threads
        "ael_class_histogram": [pointer, pointer, size, size, size, size, pointer, pointer, ctypes.c_int],
        # pred, classes, uniform, batch, height, width, max_small_area, boxes, found, threads
        "ael_component_boxes": [pointer, pointer, pointer, size, size, size, size, pointer, pointer, ctypes.c_int],
        # pred, rates, random words, batch, pixels, classes, kept, threads
        "ael_keep_mask": [pointer, pointer, pointer, size, size, size, pointer, ctypes.c_int],
        # logits, lse, labels, confidence, sample, batch, classes, pixels, ignore, conf_thresh, gamma, sums, threads
        "ael_pseudo_label_loss": [pointer, pointer, pointer, pointer, pointer, size, size, size, size,
                                  ctypes.c_float, ctypes.c_float, pointer, ctypes.c_int],
        # the same inputs, then scale, grad_logits, threads
        "ael_pseudo_label_loss_backward": [pointer, pointer, pointer, pointer, pointer, size, size, size, size,
                                           ctypes.c_float, ctypes.c_float, pointer, pointer, ctypes.c_int],
        # images, labels, source images, source labels, source, chosen, applied, batch, channels, pixels,
        # classes, ignore, new images, new labels, counts, threads
        "ael_copy_paste": [pointer, pointer, pointer, pointer, pointer, pointer, pointer, size, size, size, size,
                           size, pointer, pointer, pointer, ctypes.c_int],
        # outside, inside, mask, batch, channels, pixels, element size, out, threads
        "ael_mix": [pointer, pointer, pointer, size, size, size, size, pointer, ctypes.c_int],
        # GOMP_parallel, omp_get_thread_num, omp_get_num_threads (all NULL: POSIX threads)
        "ael_use_openmp": [pointer, pointer, pointer],
    }
    try:
        library = ctypes.CDLL(str(path))
        library.ael_native_abi.restype = ctypes.c_int
        library.ael_native_abi.argtypes = []
        built = library.ael_native_abi()
        for name, argtypes in signatures.items():
            function = getattr(library, name)
            function.restype = ctypes.c_int
            function.argtypes = argtypes
    except (OSError, AttributeError) as error:  # a foreign or broken build: fall back, say why in status()
        _load_error = f"{path}: {error}"
        return None
    if built != ABI:
        _load_error = f"{path} is a stale build (interface {built}, expected {ABI}): reinstall ael (pip install -e .)"
        return None
    _set_threads(library, wanted=True)  # before publishing the library to other threads
    _library = library
    return library


_OPENMP_SYMBOLS = ("GOMP_parallel", "omp_get_thread_num", "omp_get_num_threads")
#: Which threads the kernels run on: "openmp" (PyTorch's OpenMP team) or "posix".
threads_kind = "posix"


@functools.cache
def _openmp_addresses() -> tuple[int, ...] | None:
    """Addresses of the OpenMP entry points of the runtime PyTorch has loaded, or None.

    PyTorch loads its OpenMP runtime (libgomp; LLVM's and Intel's export the same GOMP entry
    points) into the process's global namespace; nothing is loaded here.
    """
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        process = ctypes.CDLL(None)
        return tuple(ctypes.cast(getattr(process, name), ctypes.c_void_p).value for name in _OPENMP_SYMBOLS)
    except (OSError, AttributeError, TypeError):  # not exported (another platform): POSIX threads
        return None


def use_openmp(wanted: bool) -> bool:
    """Run the kernels on PyTorch's OpenMP team (``wanted`` and one is found), else on POSIX
    threads; returns whether OpenMP is used. Called at load; tests call it to compare both."""
    library = _library if _library is not None else _load()
    return library is not None and _set_threads(library, wanted=wanted)


def _set_threads(library: ctypes.CDLL, *, wanted: bool) -> bool:
    global threads_kind
    addresses = _openmp_addresses() if wanted else None
    if addresses is None or not all(addresses) or library.ael_use_openmp(*addresses) != 0:
        library.ael_use_openmp(None, None, None)
        threads_kind = "posix"
    else:
        threads_kind = "openmp"
    return threads_kind == "openmp"


_INT64 = (-(2**63), 2**63 - 1)


def _fits_int64(*values: int) -> bool:
    """ctypes would wrap an out-of-range integer silently; PyTorch raises, so such calls fall back."""
    return all(_INT64[0] <= int(v) <= _INT64[1] for v in values)


def available() -> bool:
    """Whether the compiled kernel is built, loads, and is enabled."""
    return enabled and _load() is not None


def status() -> str:
    """One line for diagnostics: which implementation the CPU reductions use, and why."""
    if not enabled:
        return "PyTorch (the compiled kernel is disabled by AEL_NATIVE=0)"
    if _load() is None:
        return f"PyTorch (compiled kernel unavailable: {_load_error})"
    return "compiled kernel"


def _usable(tensor: Tensor, dtype: torch.dtype = torch.float32) -> bool:
    """Plain dense memory the kernel can read as it is (no lazy negation, no opaque layout)."""
    return (tensor.device.type == "cpu" and tensor.dtype == dtype and tensor.layout == torch.strided
            and tensor.is_contiguous() and not tensor.is_neg())


def _library_for(logits: Tensor) -> ctypes.CDLL | None:
    """The loaded kernel when it is enabled and can read ``logits`` ``(B, C, H, W)``, else None."""
    # The kernel keeps class indices in int32; no classes at all is left to PyTorch's own error.
    if not enabled or logits.dim() != 4 or not 0 < logits.shape[1] < 2**31 or not _usable(logits):
        return None
    return _load()


def _check(code: int, name: str, shape: tuple[int, ...]) -> None:
    if code == -2:
        raise MemoryError(f"{name}: out of memory for a map of shape {shape}")
    if code != 0:  # only on sizes the caller has already checked: a bug, not a user error
        raise RuntimeError(f"{name} failed (code {code}) on a tensor of shape {shape}")


def channel_stats(
    logits: Tensor, *, top: bool, argmax: bool, expsum: bool, logsumexp: bool = False, max_probability: bool = False
) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None, Tensor | None] | None:
    """``(top, argmax, expsum, logsumexp, max_probability)`` of ``logits`` ``(B, C, H, W)`` by the
    kernel (None for each one not asked for), or None to fall back.

    The first three: the contract of :func:`ael.core._channel_ops.channel_stats`; then
    ``top + log(expsum)`` and ``1 / expsum``.
    """
    library = _library_for(logits)
    if library is None:
        return None
    b, c, h, w = logits.shape
    outputs = [logits.new_empty(b, h, w) if top else None,
               torch.empty(b, h, w, dtype=torch.int64) if argmax else None,
               *(logits.new_empty(b, h, w) if wanted else None for wanted in (expsum, logsumexp, max_probability))]
    code = library.ael_channel_stats(logits.data_ptr(), b, c, h * w,
                                     *(None if t is None else t.data_ptr() for t in outputs), torch.get_num_threads())
    _check(code, "ael_channel_stats", tuple(logits.shape))
    return tuple(outputs)


#: What :func:`pick_class` returns at a valid pixel (see ``ael_pick_class`` in ``_native.c``).
PICK_MODES = {"logit": 0, "cross_entropy": 1, "probability": 2}


def pick_class(
    logits: Tensor,
    target: Tensor,
    *,
    mode: str = "logit",
    offset: Tensor | None = None,
    ignore_index: int = -1,
    mask: Tensor | None = None,
    fill: float = float("nan"),
) -> Tensor | None:
    """Per-pixel pick of class ``target`` ``(B, H, W)`` from ``logits`` ``(B, C, H, W)``, or None to fall back.

    At a valid pixel (target in [0, C), not ``ignore_index``, ``mask`` True where given): the
    logit (``"logit"``), ``offset - logit`` (``"cross_entropy"``, offset = log-sum-exp) or
    ``exp(min(logit - offset, 0))`` (``"probability"``); ``fill`` elsewhere.
    """
    library = _library_for(logits)
    if library is None:
        return None
    b, c, h, w = logits.shape
    pixel_maps = [(target, torch.int64), (offset, torch.float32), (mask, torch.bool)]
    if any(t is not None and (t.shape != (b, h, w) or not _usable(t, dtype)) for t, dtype in pixel_maps):
        return None
    if mode != "logit" and offset is None:
        raise ValueError(f"pick mode {mode!r} needs an offset")
    if not _fits_int64(ignore_index):
        return None
    picked = logits.new_empty(b, h, w)
    code = library.ael_pick_class(
        logits.data_ptr(), target.data_ptr(), b, c, h * w, ignore_index,
        None if mask is None else mask.data_ptr(), None if offset is None else offset.data_ptr(),
        PICK_MODES[mode], fill, picked.data_ptr(), torch.get_num_threads(),
    )
    _check(code, "ael_pick_class", tuple(logits.shape))
    return picked


def keep_mask(pred: Tensor, rates: Tensor, words: Tensor) -> Tensor | None:
    """``(B, H, W)`` float32 1 where ``u > 1 - rates[pred]`` (pred clamped to [0, C)), else 0; or
    None to fall back. ``pred`` int64 ``(B, H, W)``, ``rates`` ``(C,)`` float32, ``words``
    ``ceil(B*H*W / 2)`` int64 random words, two uniforms each (see :func:`ael.core.losses.uniforms_from_words`)."""
    if not enabled or pred.dim() != 3 or rates.dim() != 1 or rates.shape[0] < 1:
        return None
    if words.shape != ((pred.numel() + 1) // 2,):
        return None
    if not (_usable(pred, torch.int64) and _usable(rates) and _usable(words, torch.int64)):
        return None
    library = _load()
    if library is None:
        return None
    b, h, w = pred.shape
    kept = rates.new_empty(b, h, w)
    code = library.ael_keep_mask(pred.data_ptr(), rates.data_ptr(), words.data_ptr(), b, h * w, rates.shape[0],
                                 kept.data_ptr(), torch.get_num_threads())
    _check(code, "ael_keep_mask", tuple(pred.shape))
    return kept


def _loss_arguments(logits: Tensor, logsumexp: Tensor, labels: Tensor, confidence: Tensor,
                    sample: Tensor | None) -> list | None:
    """The pointer and size arguments shared by the two loss kernels, or None when they cannot read the inputs."""
    b, c, h, w = logits.shape
    maps = [(logsumexp, torch.float32), (labels, torch.int64), (confidence, torch.float32), (sample, torch.float32)]
    if any(t is not None and (t.shape != (b, h, w) or not _usable(t, dtype)) for t, dtype in maps):
        return None
    return [logits.data_ptr(), logsumexp.data_ptr(), labels.data_ptr(), confidence.data_ptr(),
            None if sample is None else sample.data_ptr(), b, c, h * w]


def pseudo_label_loss(
    logits: Tensor,
    logsumexp: Tensor,
    labels: Tensor,
    confidence: Tensor,
    sample: Tensor | None,
    *,
    ignore_index: int,
    conf_thresh: float,
    gamma: float,
) -> Tensor | None:
    """``(3,)`` float64 sums of the re-weighted pseudo-label cross-entropy, or None to fall back.

    A pixel is valid when its label is in [0, C), not ``ignore_index``, and its confidence
    >= ``conf_thresh``; its weight is ``confidence ** gamma * sample``. The sums: weight * CE
    over the valid pixels, the weights of the valid pixels, all weights.
    """
    library = _library_for(logits)
    arguments = None if library is None else _loss_arguments(logits, logsumexp, labels, confidence, sample)
    if arguments is None or not _fits_int64(ignore_index):
        return None
    sums = torch.empty(3, dtype=torch.float64)
    code = library.ael_pseudo_label_loss(*arguments, ignore_index, conf_thresh, gamma, sums.data_ptr(),
                                         torch.get_num_threads())
    _check(code, "ael_pseudo_label_loss", tuple(logits.shape))
    return sums


def pseudo_label_loss_backward(
    logits: Tensor,
    logsumexp: Tensor,
    labels: Tensor,
    confidence: Tensor,
    sample: Tensor | None,
    scale: Tensor,
    *,
    ignore_index: int,
    conf_thresh: float,
    gamma: float,
) -> Tensor:
    """Gradient ``(B, C, H, W)`` of ``sums[0] * scale`` (:func:`pseudo_label_loss`) for the logits.

    ``scale``: a one-element float32 tensor (the upstream gradient over the denominator),
    read by the kernel. Only for inputs :func:`pseudo_label_loss` accepted.
    """
    library = _load()
    arguments = _loss_arguments(logits, logsumexp, labels, confidence, sample)
    scale = scale.detach().to(torch.float32).contiguous()
    if library is None or arguments is None or scale.numel() != 1 or scale.device.type != "cpu":
        raise RuntimeError("pseudo_label_loss_backward called on inputs the kernel cannot read")
    grad = torch.empty_like(logits)
    code = library.ael_pseudo_label_loss_backward(*arguments, ignore_index, conf_thresh, gamma, scale.data_ptr(),
                                                  grad.data_ptr(), torch.get_num_threads())
    _check(code, "ael_pseudo_label_loss_backward", tuple(logits.shape))
    return grad


def copy_paste(
    images: Tensor,
    labels: Tensor,
    source_images: Tensor,
    source_labels: Tensor,
    source: Tensor,
    chosen: Tensor,
    applied: Tensor,
    *,
    ignore_index: int,
) -> tuple[Tensor, Tensor, Tensor] | None:
    """``(new_images, new_labels, counts)`` of the paste in :func:`ael.core.copy_paste.adaptive_copy_paste`
    by the kernel, or None to fall back. ``counts`` ``(B, C)`` int64: pasted pixels per class."""
    if not enabled or images.dim() != 4 or labels.dim() != 3 or chosen.dim() != 2 or not _fits_int64(ignore_index):
        return None
    b, k, h, w = images.shape
    s = source_images.shape[0]
    expected = [(images, torch.float32, (b, k, h, w)), (labels, torch.int64, (b, h, w)),
                (source_images, torch.float32, (s, k, h, w)), (source_labels, torch.int64, (s, h, w)),
                (source, torch.int64, (b,)), (chosen, torch.bool, (b, chosen.shape[1])), (applied, torch.bool, (b,))]
    if chosen.shape[1] < 1 or any(t.shape != shape or not _usable(t, dtype) for t, dtype, shape in expected):
        return None
    library = _load()
    if library is None:
        return None
    new_images = torch.empty_like(images)
    new_labels = torch.empty_like(labels)
    counts = torch.empty(b, chosen.shape[1], dtype=torch.int64)
    code = library.ael_copy_paste(
        images.data_ptr(), labels.data_ptr(), source_images.data_ptr(), source_labels.data_ptr(),
        source.data_ptr(), chosen.data_ptr(), applied.data_ptr(), b, k, h * w, chosen.shape[1], ignore_index,
        new_images.data_ptr(), new_labels.data_ptr(), counts.data_ptr(), torch.get_num_threads(),
    )
    _check(code, "ael_copy_paste", tuple(images.shape))
    return new_images, new_labels, counts


def mix(outside: Tensor, inside: Tensor, mask: Tensor) -> Tensor | None:
    """``inside`` where ``mask`` ``(B, H, W)`` bool, else ``outside`` (``(B, H, W)`` or ``(B, K, H, W)``,
    same dtype), bit for bit; or None to fall back."""
    if not enabled or outside.dim() not in (3, 4) or outside.shape != inside.shape or outside.dtype != inside.dtype:
        return None
    b, h, w = outside.shape[0], *outside.shape[-2:]
    channels = outside.shape[1] if outside.dim() == 4 else 1
    dtype = outside.dtype
    if not (_usable(outside, dtype) and _usable(inside, dtype) and _usable(mask, torch.bool)) or mask.shape != (b, h, w):
        return None
    library = _load()
    if library is None or outside.element_size() not in (1, 2, 4, 8) or dtype.is_complex:
        return None
    out = torch.empty_like(outside)
    code = library.ael_mix(outside.data_ptr(), inside.data_ptr(), mask.data_ptr(), b, channels, h * w,
                           outside.element_size(), out.data_ptr(), torch.get_num_threads())
    _check(code, "ael_mix", tuple(outside.shape))
    return out


def class_histogram(
    labels: Tensor, num_classes: int, *, ignore_index: int, values: Tensor | None = None
) -> tuple[Tensor, Tensor | None] | None:
    """Per-image class counts ``(B, C)`` int64 of ``labels`` ``(B, H, W)`` and, given ``values``
    ``(B, H, W)`` float32, their per-class sums ``(B, C)`` float64; or None to fall back.

    Labels outside [0, C) or equal to ``ignore_index`` are not counted.
    """
    if not enabled or labels.dim() != 3 or num_classes < 1 or not _usable(labels, torch.int64):
        return None
    if not _fits_int64(ignore_index, num_classes):
        return None
    if values is not None and (values.shape != labels.shape or not _usable(values)):
        return None
    library = _load()
    if library is None:
        return None
    b, h, w = labels.shape
    counts = torch.empty(b, num_classes, dtype=torch.int64)
    sums = torch.empty(b, num_classes, dtype=torch.float64) if values is not None else None
    code = library.ael_class_histogram(
        labels.data_ptr(), None if values is None else values.data_ptr(), b, h * w, num_classes, ignore_index,
        counts.data_ptr(), None if sums is None else sums.data_ptr(), torch.get_num_threads(),
    )
    _check(code, "ael_class_histogram", tuple(labels.shape))
    return counts, sums


def component_boxes(
    pred: Tensor, classes: Tensor, uniform: Tensor, max_small_area: int
) -> tuple[Tensor, Tensor] | None:
    """``(boxes (B, 4) int64, found (B,) bool)`` of :func:`ael.core.cutmix.component_boxes` by
    the kernel, or None to fall back. ``uniform`` ``(B,)`` float32 picks among the large components."""
    if not enabled or pred.dim() != 3 or not _usable(pred, torch.int64) or not _fits_int64(max_small_area):
        return None
    b, h, w = pred.shape
    if not (_usable(classes, torch.int64) and classes.shape == (b,) and _usable(uniform) and uniform.shape == (b,)):
        return None
    library = _load()
    if library is None:
        return None
    boxes = torch.empty(b, 4, dtype=torch.int64)
    found = torch.empty(b, dtype=torch.bool)
    code = library.ael_component_boxes(
        pred.data_ptr(), classes.data_ptr(), uniform.data_ptr(), b, h, w, max_small_area,
        boxes.data_ptr(), found.data_ptr(), torch.get_num_threads(),
    )
    _check(code, "ael_component_boxes", tuple(pred.shape))
    return boxes, found

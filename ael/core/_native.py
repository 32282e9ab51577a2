"""The optional compiled CPU kernel (``_native.c``), loaded with ctypes.

``pip install`` builds ``ael/core/_native_lib*.so`` when a C compiler is there (``setup.py``);
without one, or with ``AEL_NATIVE=0`` in the environment, :func:`channel_stats` returns None and
:mod:`ael.core._channel_ops` uses its PyTorch implementation of the same reductions. The kernel
only takes contiguous float32 CPU tensors; anything else also goes the PyTorch way.

Private to :mod:`ael.core`.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import os
from pathlib import Path

import torch
from torch import Tensor

#: Set to False (tests, ``AEL_NATIVE=0``) to use the PyTorch implementation everywhere.
enabled = os.environ.get("AEL_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")

#: The interface version this module calls (``ael_native_abi()`` in ``_native.c``).
ABI = 4

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
        # logits, batch, classes, pixels, top, argmax, sums, threads
        "ael_channel_stats": [pointer, size, size, size, pointer, pointer, pointer, ctypes.c_int],
        # logits, target, batch, classes, pixels, picked, threads
        "ael_pick_class": [pointer, pointer, size, size, size, pointer, ctypes.c_int],
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
    _library = library
    return library


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


def _check(code: int, name: str, logits: Tensor) -> None:
    if code != 0:  # only on sizes the caller has already checked: a bug, not a user error
        raise RuntimeError(f"{name} failed (code {code}) on logits of shape {tuple(logits.shape)}")


def channel_stats(
    logits: Tensor, *, top: bool, argmax: bool, expsum: bool
) -> tuple[Tensor | None, Tensor | None, Tensor | None] | None:
    """``(top, argmax, expsum)`` of ``logits`` ``(B, C, H, W)`` by the kernel, or None to fall back.

    Same contract as :func:`ael.core._channel_ops.channel_stats`.
    """
    library = _library_for(logits)
    if library is None:
        return None
    b, c, h, w = logits.shape
    maximum = logits.new_empty(b, h, w) if top else None
    first = torch.empty(b, h, w, dtype=torch.int64) if argmax else None
    sums = logits.new_empty(b, h, w) if expsum else None
    code = library.ael_channel_stats(
        logits.data_ptr(), b, c, h * w,
        None if maximum is None else maximum.data_ptr(),
        None if first is None else first.data_ptr(),
        None if sums is None else sums.data_ptr(),
        torch.get_num_threads(),
    )
    _check(code, "ael_channel_stats", logits)
    return maximum, first, sums


def pick_class(logits: Tensor, target: Tensor) -> Tensor | None:
    """``(B, H, W)`` logit of class ``target`` ``(B, H, W)`` int64 in [0, C), or None to fall back."""
    library = _library_for(logits)
    if library is None:
        return None
    b, c, h, w = logits.shape
    if target.shape != (b, h, w) or not _usable(target, torch.int64):
        return None
    picked = logits.new_empty(b, h, w)
    code = library.ael_pick_class(
        logits.data_ptr(), target.data_ptr(), b, c, h * w, picked.data_ptr(), torch.get_num_threads()
    )
    _check(code, "ael_pick_class", logits)
    return picked

"""Mixed precision: the one map from a config's ``amp`` name to an autocast dtype."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

__all__ = ["amp_dtype", "autocast"]

_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(name: str) -> torch.dtype | None:
    """The autocast dtype of ``name`` (``none``, ``bf16``, ``fp16``)."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown mixed-precision mode {name!r} (use one of {', '.join(_DTYPES)})") from None


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """Autocast on ``device`` to ``dtype``, or a no-op context for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)

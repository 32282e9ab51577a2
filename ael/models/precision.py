"""Mixed precision: the one map from the config's ``amp`` name to an autocast dtype, and autocast.

The ``train.amp`` setting is ``"none"`` (float32), ``"bf16"`` or ``"fp16"``; training steps,
evaluation and the ``eval`` command all read it through :func:`amp_dtype`, and enter
:func:`autocast` rather than spelling ``torch.autocast`` with a dtype that may be None.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from types import MappingProxyType

import torch

__all__ = ["AMP_DTYPES", "amp_dtype", "autocast"]

#: ``amp`` name -> autocast dtype (None: no autocast, float32 throughout).
AMP_DTYPES: Mapping[str, torch.dtype | None] = MappingProxyType(
    {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16})


def amp_dtype(name: str) -> torch.dtype | None:
    """The autocast dtype of an ``amp`` name: None for ``"none"``, else bfloat16 or float16.

    Raises:
        ValueError: naming the value and the accepted names, for any other value.
    """
    try:
        return AMP_DTYPES[name]
    except (KeyError, TypeError):  # TypeError: an unhashable value
        raise ValueError(f"amp={name!r} is not one of {', '.join(map(repr, AMP_DTYPES))}") from None


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device``'s type (``"cuda:1"`` is ``"cuda"``) with ``dtype``; a no-op
    context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)

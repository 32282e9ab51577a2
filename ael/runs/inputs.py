"""What a writer accepts from its caller: host arrays, numbers, steps, names, palettes, JSON data.

Every check happens on the caller's thread before anything is written, and every error names
the value at fault (``scalar 'loss' at step 3: ...``), so a bad call leaves the run untouched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "NAME",
    "RESERVED_KEYS",
    "SERIES_NAME",
    "as_float",
    "as_step",
    "check_name",
    "check_palette",
    "class_vector",
    "count_matrix",
    "jsonable",
    "to_host_array",
]

# Keys the record formats use themselves; no series, part or kind may take them.
RESERVED_KEYS = frozenset({"step", "time", "resume", "model", "kind", "index", "files", "parts", "meta"})
# Sample kinds, parts and model names (they become parts of file names).
NAME = re.compile(r"[A-Za-z0-9_-]+")
# Scalars, class vectors and eval extras (``loss/sup``, ``time/data``).
SERIES_NAME = re.compile(r"[A-Za-z0-9_./-]+")


def to_host_array(value: Any, what: str) -> np.ndarray:
    """``value`` as a numpy array: numpy, Python numbers/lists, or a CPU torch tensor.

    CUDA tensors are refused rather than copied: moving them is the trainer's decision (it
    batches the copies and avoids syncing the device in the step).

    Raises:
        TypeError: naming ``what`` for a device tensor or an unsupported type.
    """
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.split(".")[0] == "torch" and hasattr(value, "device"):
        if value.device.type != "cpu":
            raise TypeError(
                f"{what}: got a tensor on {value.device}; the run writer takes host values "
                "(copy to the CPU in the trainer, once per log step)"
            )
        value = value.detach()
        try:
            return value.numpy()
        except TypeError:  # bfloat16 and friends have no numpy dtype
            return value.float().numpy()
    try:
        array = np.asarray(value)
    except Exception as err:
        raise TypeError(f"{what}: cannot convert {type(value).__name__} to an array ({err})") from None
    if array.dtype == object:
        raise TypeError(f"{what}: cannot convert {type(value).__name__} to a numeric array")
    return array


def jsonable(value: Any, what: str) -> Any:
    """Plain JSON data from numpy scalars/arrays, CPU tensors, tuples and nested containers.

    Raises:
        TypeError: naming ``what`` for anything else.
    """
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, f"{what}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, what) for v in value]
    if isinstance(value, np.ndarray) or type(value).__module__.split(".")[0] == "torch":
        return to_host_array(value, what).tolist()
    raise TypeError(f"{what}: {type(value).__name__} is not JSON data")


def as_step(step: Any) -> int:
    """A training step: a non-negative int (numpy ints too; not bool or float)."""
    if isinstance(step, (bool, float)) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step must be an int, got {type(step).__name__} {step!r}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return int(step)


def as_float(value: Any, what: str) -> float:
    """One number (Python, numpy, 0-d or 1-element array or CPU tensor) as a float."""
    if type(value) is float:
        return value
    if isinstance(value, (int, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    array = to_host_array(value, what)
    if array.size != 1 or array.dtype.kind not in "fiub":
        raise ValueError(f"{what}: expected one number, got shape {array.shape} dtype {array.dtype}")
    return float(array.reshape(()))


def check_name(name: Any, pattern: re.Pattern[str], what: str) -> str:
    """``name`` if it matches ``pattern`` and is not a reserved key; else ValueError naming ``what``."""
    if not isinstance(name, str) or not pattern.fullmatch(name) or name in RESERVED_KEYS:
        raise ValueError(f"invalid {what} name {name!r}: use {pattern.pattern}, not one of {sorted(RESERVED_KEYS)}")
    return name


def check_palette(palette: Any) -> np.ndarray:
    """A ``(C, 3)`` uint8 palette from integers in [0, 255]."""
    array = np.asarray(palette)
    if array.ndim != 2 or array.shape[1] != 3 or array.dtype.kind not in "iu" or (
        array.size and (array.min() < 0 or array.max() > 255)
    ):
        raise ValueError(f"palette must be (C, 3) integers in [0, 255], got shape {array.shape} dtype {array.dtype}")
    return array.astype(np.uint8)


def class_vector(value: Any, num_classes: int, what: str) -> np.ndarray:
    """A ``(C,)`` float64 vector of numbers."""
    array = to_host_array(value, what)
    if array.ndim != 1 or array.shape[0] != num_classes:
        raise ValueError(f"{what}: expected shape ({num_classes},), got {array.shape}")
    if array.dtype.kind not in "fiub":
        raise ValueError(f"{what}: expected numbers, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def count_matrix(value: Any, num_classes: int, what: str) -> np.ndarray:
    """A ``(C, C)`` matrix of whole counts (a confusion matrix)."""
    matrix = to_host_array(value, what)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"{what} must be ({num_classes}, {num_classes}), got {matrix.shape}")
    if matrix.dtype.kind == "f" and (not np.all(np.isfinite(matrix)) or np.any(matrix != np.round(matrix))):
        raise ValueError(f"{what} must hold whole counts")
    return matrix

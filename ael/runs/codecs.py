"""How the arrays inside run records are stored, each encoder next to its decoder.

- Per-class vectors (``classes.jsonl``): base64 of ``C`` little-endian float32 (JSON number
  parsing would dominate loading a long run, about 7x slower for 150-class vectors); the reader
  also accepts plain JSON number lists.
- Per-class IoU (``evals.jsonl``): a JSON list with 7 significant digits (small, readable).
- Confusion matrices (``evals.jsonl``): base64 of zlib of ``C * C`` little-endian int64,
  row-major (mostly zeros: zlib shrinks them several-fold); or a plain ``C x C`` list.

Image parts are :mod:`ael.runs.images`' job. Non-finite floats are written as
``NaN``/``Infinity``, which Python's ``json`` reads back.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

import numpy as np

from ael.runs.jsonl import RawJson
from ael.runs.schema import RunStoreError

__all__ = [
    "decode_array",
    "decode_confusion",
    "decode_vector",
    "decode_vector_block",
    "encode_array",
    "encode_confusion",
    "encode_vector",
    "format_vector",
    "plausible_confusion",
    "vector_width",
]

_NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


# ------------------------------------------------------------------------------------ raw arrays


def encode_array(values: np.ndarray, dtype: str) -> str:
    """An array as base64 of its little-endian bytes (``dtype`` ``"<f4"`` or ``"<i8"``), row-major."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode("ascii")


def decode_array(text: str, dtype: str, size: int) -> np.ndarray | None:
    """The inverse of :func:`encode_array` as a 1-d array, or None if ``text`` is not ``size`` values."""
    try:
        raw = binascii.a2b_base64(text)  # the length check below catches damaged text
    except (binascii.Error, ValueError):
        return None
    if len(raw) != size * np.dtype(dtype).itemsize:
        return None
    return np.frombuffer(raw, dtype=dtype)


# ------------------------------------------------------------------------------------ class vectors


def encode_vector(values: np.ndarray) -> str:
    """A ``(C,)`` class vector as stored in ``classes.jsonl`` (base64 float32)."""
    return encode_array(values, "<f4")


def vector_width(value: Any) -> int:
    """C of a stored class vector (base64 float32 text or a JSON list); 0 if it is neither."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, str):
        return (len(value) // 4 * 3 - value[-2:].count("=")) // 4
    return 0


def decode_vector(value: Any, width: int) -> np.ndarray | None:
    """A stored class vector as ``(width,)`` floats, or None when it is not one."""
    if isinstance(value, str):
        return decode_array(value, "<f4", width)
    if isinstance(value, list) and len(value) == width and all(type(v) is float or type(v) is int for v in value):
        return np.asarray(value, dtype=np.float64)
    return None


def decode_vector_block(values: list[Any], width: int) -> np.ndarray | None:
    """Many base64 float32 vectors at once, ``(N, width)``; None unless all are whole and unpadded."""
    size = width * 4
    if size % 3:
        return None  # padded base64 does not concatenate
    length = size // 3 * 4
    if not all(type(v) is str and len(v) == length for v in values):
        return None
    try:
        raw = binascii.a2b_base64("".join(values))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != size * len(values):
        return None
    return np.frombuffer(raw, dtype="<f4").reshape(len(values), width)


def format_vector(values: np.ndarray) -> RawJson:
    """A 1-d float array as a JSON list with 7 significant digits (float32-faithful, compact).

    Non-finite values are written as ``NaN``/``Infinity``, which Python's ``json`` reads back.
    """
    text = ",".join(map("{:.7g}".format, values.tolist()))
    if "n" in text:  # "nan", "inf": the only formatted values containing an "n"
        text = ",".join(_NONFINITE.get(t, t) for t in text.split(","))
    return RawJson("[" + text + "]")


# ------------------------------------------------------------------------------------ confusion


def encode_confusion(matrix: np.ndarray) -> str:
    """A ``(C, C)`` count matrix as base64 of zlib of little-endian int64."""
    return base64.b64encode(zlib.compress(np.ascontiguousarray(matrix, dtype="<i8").tobytes(), 1)).decode("ascii")


def plausible_confusion(value: Any, num_classes: int) -> bool:
    """A cheap check at poll time; decoding waits until someone asks for the matrix."""
    if value is None or isinstance(value, str):
        return True
    return isinstance(value, list) and len(value) == num_classes


def decode_confusion(value: Any, num_classes: int) -> np.ndarray | None:
    """A stored confusion matrix as ``(C, C)`` int64 (None when none was logged).

    Raises:
        RunStoreError: if the stored matrix is damaged; ValueError: a list that is not C x C.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            raw = zlib.decompress(binascii.a2b_base64(value))
        except (binascii.Error, zlib.error, ValueError) as err:
            raise RunStoreError(f"damaged confusion matrix ({err})") from None
        if len(raw) != num_classes * num_classes * 8:
            raise RunStoreError(f"damaged confusion matrix ({len(raw)} bytes for {num_classes} classes)")
        return np.frombuffer(raw, dtype="<i8").reshape(num_classes, num_classes)
    matrix = np.asarray(value, dtype=np.int64)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError("confusion is not C x C")
    return matrix

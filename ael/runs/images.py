"""Host-array conversion and the image files of the run store (JPEG, palette PNG, 8-bit PNG maps).

Parts of a sample are stored by type (see :data:`ael.runs.schema.PART_TYPES`):

- ``rgb``: ``(H, W, 3)`` uint8 (or float in [0, 1]) -> JPEG; decoded as ``(H, W, 3)`` uint8.
- ``label``: ``(H, W)`` integer class indices in [0, 255] -> palette PNG (indices are the pixel
  values, the palette only colours them); decoded as ``(H, W)`` uint8 indices.
- ``map``: ``(H, W)`` float in [0, 1] (e.g. teacher confidence) -> 8-bit greyscale PNG;
  decoded as ``(H, W)`` float32 (quantised to 1/255).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["EXTENSIONS", "decode_part", "encode_part", "prepare_part", "to_host_array", "to_uint8", "write_atomic"]

EXTENSIONS = {"rgb": "jpg", "label": "png", "map": "png"}
JPEG_QUALITY = 90
IGNORE_RGB = (0, 0, 0)


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


def _check_rgb(array: np.ndarray, what: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"{what}: an rgb part must be (H, W, 3) or (H, W), got shape {array.shape}")
    if array.dtype.kind not in "fiub":
        raise ValueError(f"{what}: an rgb part must be numeric, got dtype {array.dtype}")
    if array.dtype.kind in "iu" and array.dtype != np.uint8 and array.size and (
        array.min() < 0 or array.max() > 255
    ):
        raise ValueError(f"{what}: integer rgb values must lie in [0, 255]")
    return array


def _check_label(array: np.ndarray, what: str) -> np.ndarray:
    if array.ndim != 2:
        raise ValueError(f"{what}: a label part must be (H, W) class indices, got shape {array.shape}")
    if array.dtype.kind not in "iub":
        raise ValueError(f"{what}: a label part must hold integers, got dtype {array.dtype}")
    if array.dtype != np.uint8 and array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(
            f"{what}: label indices must lie in [0, 255] to fit a palette PNG, "
            f"got [{array.min()}, {array.max()}]"
        )
    return array


def _check_map(array: np.ndarray, what: str) -> np.ndarray:
    if array.ndim != 2:
        raise ValueError(f"{what}: a map part must be (H, W), got shape {array.shape}")
    if array.dtype.kind not in "fiub":
        raise ValueError(f"{what}: a map part must be numeric, got dtype {array.dtype}")
    return array


_CHECKS = {"rgb": _check_rgb, "label": _check_label, "map": _check_map}


def prepare_part(value: Any, part_type: str, what: str) -> np.ndarray:
    """Check one part on the caller's thread and return a private copy (the caller may reuse its buffer).

    Only cheap checks and one copy happen here; conversion to uint8 and encoding are left to
    the writer thread (:func:`encode_part`).

    Raises:
        ValueError / TypeError: naming ``what`` for a bad shape, dtype or value range.
    """
    check = _CHECKS.get(part_type)
    if check is None:
        raise ValueError(f"{what}: unknown part type {part_type!r}")
    array = check(to_host_array(value, what), what)
    if array.dtype == np.uint8 or part_type == "label":
        return np.array(array, dtype=np.uint8, copy=True, order="C")  # labels: range checked above
    if array.dtype.kind in "iub":
        return np.array(array, copy=True, order="C")
    return np.array(array, dtype=np.float32, copy=True, order="C")  # halves what a float64 copy costs


def to_uint8(array: np.ndarray, part_type: str) -> np.ndarray:
    """A prepared part as the uint8 array its file stores (floats: [0, 1] -> [0, 255])."""
    if array.dtype == np.uint8:
        return array
    if part_type == "label" or array.dtype.kind in "iub":
        return array.astype(np.uint8)
    return (np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _palette_bytes(palette: Sequence[Sequence[int]] | np.ndarray | None) -> list[int]:
    table = np.tile(np.asarray(IGNORE_RGB, dtype=np.uint8), (256, 1))
    if palette is not None and len(palette):
        colours = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:256]
        table[: len(colours)] = colours
    return table.reshape(-1).tolist()


def encode_part(array: np.ndarray, part_type: str, f: Any, palette: Any = None) -> None:
    """Write a prepared part (:func:`prepare_part`) to the open binary file ``f`` in its format."""
    array = to_uint8(array, part_type)
    if part_type == "rgb":
        Image.fromarray(array).save(f, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    elif part_type == "label":
        image = Image.frombytes("P", (array.shape[1], array.shape[0]), array.tobytes())
        image.putpalette(_palette_bytes(palette))
        image.save(f, format="PNG", compress_level=1)
    elif part_type == "map":
        Image.fromarray(array).save(f, format="PNG", compress_level=1)
    else:
        raise ValueError(f"unknown part type {part_type!r}")


def write_atomic(path: Path, write: Any) -> None:
    """Write a file through ``write(f)`` to a temp name, fsync it and rename it into place."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def decode_part(path: Path, part_type: str) -> np.ndarray:
    """Read one stored part back (see the module docstring for the decoded forms)."""
    with Image.open(path) as image:
        if part_type == "rgb":
            return np.asarray(image.convert("RGB"))
        if part_type == "label":
            if image.mode not in ("P", "L"):
                raise ValueError(f"{path}: a label part must be a palette PNG, got mode {image.mode}")
            return np.asarray(image).copy()
        if part_type == "map":
            return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    raise ValueError(f"{path}: unknown part type {part_type!r}")

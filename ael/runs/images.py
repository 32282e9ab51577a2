"""The image codec of the run store: sample parts to JPEG, palette PNG and 8-bit PNG maps and back.

Parts of a sample are stored by type (see :data:`ael.runs.schema.PART_TYPES`):

- ``rgb``: ``(H, W, 3)`` uint8 (or float in [0, 1]) -> JPEG; decoded as ``(H, W, 3)`` uint8.
- ``label``: ``(H, W)`` integer class indices in [0, 255] -> palette PNG (indices are the pixel
  values, the palette only colours them); decoded as ``(H, W)`` uint8 indices.
- ``map``: ``(H, W)`` float in [0, 1] (e.g. teacher confidence) -> 8-bit greyscale PNG;
  decoded as ``(H, W)`` float32 (quantised to 1/255).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ael.runs.inputs import NAME, check_name, to_host_array
from ael.runs.records import Sample, SampleRecord
from ael.runs.schema import RunStoreError, resolve_media_path

__all__ = [
    "EXTENSIONS",
    "decode_part",
    "decode_sample",
    "encode_part",
    "prepare_part",
    "prepare_sample",
    "to_uint8",
]

EXTENSIONS = {"rgb": "jpg", "label": "png", "map": "png"}
JPEG_QUALITY = 90
IGNORE_RGB = (0, 0, 0)


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


def prepare_sample(kind: str, step: int, groups: Mapping[str, Mapping[str, Any] | None]) -> dict[str, tuple[str, np.ndarray]]:
    """All parts of one sample, checked and copied: part name -> ``(part type, array)``.

    Args:
        kind: the sample kind (for messages); step: its step.
        groups: part type (``rgb``, ``label``, ``map``) -> part name -> array.

    Raises:
        ValueError / TypeError: naming the part at fault (shape, dtype, a name given twice, no parts).
    """
    parts: dict[str, tuple[str, np.ndarray]] = {}
    for part_type, group in groups.items():
        for name, value in (group or {}).items():
            check_name(name, NAME, f"{kind} part")
            if name in parts:
                raise ValueError(f"sample {kind!r} at step {step}: part {name!r} is given twice")
            parts[name] = (part_type, prepare_part(value, part_type, f"sample {kind!r} part {name!r}"))
    if not parts:
        raise ValueError(f"sample {kind!r} at step {step}: no images, labels or maps given")
    return parts


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


def decode_sample(run_dir: Path, record: SampleRecord, parts: Sequence[str] | None = None, *,
                  palette: np.ndarray | None = None, ignore_index: int | None = None) -> Sample:
    """Decode the files of one sample of the run in ``run_dir`` (all parts, or the ones named).

    Raises:
        KeyError: a part the sample does not have.
        RunStoreError: a path that leaves the run folder, or a missing/undecodable file.
    """
    decoded: dict[str, dict[str, np.ndarray]] = {"rgb": {}, "label": {}, "map": {}}
    for name in parts if parts is not None else list(record.files):
        if name not in record.files:
            raise KeyError(f"sample {record.kind!r} at step {record.step} has no part {name!r}")
        path = resolve_media_path(run_dir, record.files[name])
        part_type = record.parts[name]
        try:
            array = decode_part(path, part_type)
        except FileNotFoundError:
            raise RunStoreError(f"{path}: missing (named by {record.kind!r} at step {record.step})") from None
        except (OSError, ValueError) as err:
            raise RunStoreError(f"{path}: cannot decode ({err})") from None
        decoded[part_type][name] = array
    return Sample(record=record, images=decoded["rgb"], labels=decoded["label"], maps=decoded["map"],
                  palette=palette, ignore_index=ignore_index)

"""The run-store format: file names, schema version, errors and safe path resolution.

A run folder (``<runs_dir>/<run_id>/``) holds::

    manifest.json   replaced atomically; schema version, identity, classes, config, status, heartbeat
    scalars.jsonl   {"step": int, "time": float, <name>: float, ...}
    classes.jsonl   {"step": int, "time": float, <name>: "<base64 of C little-endian float32>", ...}
    evals.jsonl     {"step": int, "time": float, "model": str, "miou": float, "iou": [C floats],
                     "confusion": "<base64 of zlib of C*C little-endian int64, row-major>" | null,
                     <extra name>: float, ...}
    media.jsonl     {"step": int, "time": float, "kind": str, "index": int,
                     "files": {<part>: "media/<file>"}, "parts": {<part>: "rgb" | "label" | "map"},
                     "meta": {...}}
    media/          JPEG images, palette PNG label maps, 8-bit PNG maps in [0, 1]
    checkpoints/    written by the trainer; the reader ignores it

Every ``.jsonl`` file may also hold resume markers ``{"resume": step, "time": float}``: records
written before a marker with a step above ``step`` are superseded (the run went back to a
checkpoint). Within one file the latest record for a step wins.

Big arrays are base64 inside the JSON (parsing JSON numbers would dominate loading a long
run); the reader also accepts plain JSON number lists for class vectors and confusion matrices.
Non-finite floats are written as ``NaN``/``Infinity`` (what Python's ``json`` reads).

This module is the one place that knows the names; the writer and the reader both import it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = [
    "CHECKPOINTS_DIR",
    "CLASSES_FILE",
    "EVALS_FILE",
    "KNOWN_CLASS_VECTORS",
    "MANIFEST_FILE",
    "MEDIA_DIR",
    "MEDIA_FILE",
    "PART_TYPES",
    "RUN_STATUSES",
    "SCALARS_FILE",
    "SCHEMA_VERSION",
    "STREAMS",
    "RunNotFoundError",
    "RunStoreError",
    "SchemaVersionError",
    "check_run_id",
    "resolve_media_path",
    "resolve_run_dir",
]

SCHEMA_VERSION = 1

MANIFEST_FILE = "manifest.json"
SCALARS_FILE = "scalars.jsonl"
CLASSES_FILE = "classes.jsonl"
EVALS_FILE = "evals.jsonl"
MEDIA_FILE = "media.jsonl"
MEDIA_DIR = "media"
CHECKPOINTS_DIR = "checkpoints"

# The append-only streams, by short name.
STREAMS = {"scalars": SCALARS_FILE, "classes": CLASSES_FILE, "evals": EVALS_FILE, "media": MEDIA_FILE}

# Status written in the manifest; a reader adds "stalled" (running with an old heartbeat).
RUN_STATUSES = ("running", "finished", "crashed")

# How an image part is stored: "rgb" -> JPEG (H, W, 3) uint8; "label" -> palette PNG (H, W)
# class indices; "map" -> 8-bit greyscale PNG of values in [0, 1] (e.g. teacher confidence).
PART_TYPES = ("rgb", "label", "map")

# Per-class vector names the trainer writes and the dashboard labels. Others are allowed.
KNOWN_CLASS_VECTORS = {
    "bank": "confidence bank Conf_c",
    "copy_paste_prob": "Copy-Paste class distribution softmax(sqrt(1 - Conf))",
    "cutmix_prob": "CutMix class distribution softmax(1 - Conf)",
    "sampling_ratio": "equalization sampling ratio r_c",
    "freq_labeled": "pixel frequency in labeled pixels",
    "freq_pseudo": "pixel frequency in pseudo-labeled pixels",
    "iou_teacher": "per-class IoU of the teacher at each evaluation",
    "iou_student": "per-class IoU of the student at each evaluation",
}

_RUN_ID = re.compile(r"[A-Za-z0-9._-]+")
_MEDIA_NAME = re.compile(r"[A-Za-z0-9._-]+")


class RunStoreError(ValueError):
    """A run folder or record that cannot be used; the message names the file or id at fault."""


class RunNotFoundError(RunStoreError, FileNotFoundError):
    """The run folder does not exist."""


class SchemaVersionError(RunStoreError):
    """The run was written with a schema version this code does not read."""


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a safe folder name (``[A-Za-z0-9._-]+``, not ``.``/``..``).

    Raises:
        RunStoreError: naming the id, for anything else (slashes, absolute paths, empty).
    """
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or run_id in (".", ".."):
        raise RunStoreError(
            f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only (not '.' or '..')"
        )
    return run_id


def _inside(path: Path, root: Path) -> bool:
    try:
        return os.path.commonpath([os.path.realpath(path), os.path.realpath(root)]) == os.path.realpath(root)
    except ValueError:  # different drives
        return False


def resolve_run_dir(runs_dir: str | os.PathLike[str], run_id: str) -> Path:
    """The folder of ``run_id`` under ``runs_dir``; never a path outside ``runs_dir``.

    Raises:
        RunStoreError: if the id is unsafe or a symlink leads out of ``runs_dir``.
    """
    check_run_id(run_id)
    root = Path(runs_dir)
    path = root / run_id
    if path.is_symlink() and not _inside(path, root):
        raise RunStoreError(f"run {run_id!r} in {root} is a symlink that leads outside the runs folder")
    if not _inside(path, root):
        raise RunStoreError(f"run {run_id!r} resolves outside the runs folder {root}")
    return path


def resolve_media_path(run_dir: Path, relpath: object) -> Path:
    """The file a media record names, checked to lie inside ``run_dir/media``.

    Raises:
        RunStoreError: if the record's path is not ``media/<safe name>`` or escapes the run.
    """
    if not isinstance(relpath, str):
        raise RunStoreError(f"{run_dir / MEDIA_FILE}: media path {relpath!r} is not a string")
    parts = relpath.split("/")
    if len(parts) != 2 or parts[0] != MEDIA_DIR or not _MEDIA_NAME.fullmatch(parts[1]) or parts[1] in (".", ".."):
        raise RunStoreError(f"{run_dir / MEDIA_FILE}: media path {relpath!r} is not media/<file name>")
    path = run_dir / MEDIA_DIR / parts[1]
    if not _inside(path, run_dir / MEDIA_DIR):
        raise RunStoreError(f"{run_dir / MEDIA_FILE}: media path {relpath!r} leads outside the run folder")
    return path

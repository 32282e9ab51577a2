"""The run-store format: file names, schema versions, errors and safe path resolution.

A run folder (``<runs_dir>/<run_id>/``) holds::

    manifest.json   replaced atomically; schema version, identity, classes, config, method, the
                    per-class vectors it declares, comparison group, status, heartbeat
    scalars.jsonl   {"step": int, "time": float, <name>: float, ...}
    classes.jsonl   {"step": int, "time": float, <name>: "<base64 of C little-endian float32>", ...}
    evals.jsonl     {"step": int, "time": float, "model": str, "miou": float, "iou": [C floats],
                     "confusion": "<base64 of zlib of C*C little-endian int64, row-major>" | null,
                     "mode": str (optional: the evaluation protocol), <extra name>: float, ...}
    media.jsonl     {"step": int, "time": float, "kind": str, "index": int,
                     "files": {<part>: "media/<file>"}, "parts": {<part>: "rgb" | "label" | "map"},
                     "meta": {...}}
                    kinds by convention: "pseudo" (rgb image; labels gt, pseudo; map confidence),
                    "cutmix" (rgb image_a, image_b, mixed; label pseudo_mixed; meta box
                    [y0, x0, y1, x1] end-exclusive and class), "copy_paste" (rgb image; label
                    label; meta pasted_classes)
    media/          JPEG images, palette PNG label maps, 8-bit PNG maps in [0, 1]
    checkpoints/    written by the trainer; the reader ignores it

Every ``.jsonl`` file may also hold resume markers ``{"resume": step, "time": float}``: records
written before a marker with a step above ``step`` are superseded (the run went back to a
checkpoint). Within one file the latest record for a step wins.

Schema versions: 1 had no ``method``, ``vectors`` or ``group`` in the manifest (the reader
derives them, see :mod:`ael.runs.manifest`); 2 adds them. The streams are the same in both.

This module is the one place that knows the names; the other modules import them from here.
The manifest's fields are :mod:`ael.runs.manifest`'s; the array encodings :mod:`ael.runs.codecs`'
and :mod:`ael.runs.images`'.
"""

from __future__ import annotations

import os
import re
import time
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
    "READABLE_SCHEMA_VERSIONS",
    "RUN_STATUSES",
    "SCALARS_FILE",
    "SCHEMA_VERSION",
    "STREAMS",
    "RunNotFoundError",
    "RunStoreError",
    "SchemaVersionError",
    "check_run_id",
    "new_run_id",
    "resolve_media_path",
    "resolve_run_dir",
    "unique_run_id",
]

#: The version this code writes.
SCHEMA_VERSION = 2
#: The versions this code reads (and resumes, upgrading the manifest to :data:`SCHEMA_VERSION`).
READABLE_SCHEMA_VERSIONS = (1, 2)

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

# Descriptions of the per-class vectors AEL writes: the fallback for runs that declare none
# (schema 1). A run's manifest names the vectors its method reports; others are allowed too.
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


def new_run_id(preset: str = "run", now: float | None = None) -> str:
    """A default run id: ``YYYYmmdd-HHMMSS-<preset>`` (unsafe characters of the preset become ``_``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    return check_run_id(f"{stamp}-{re.sub(r'[^A-Za-z0-9._-]', '_', preset) or 'run'}")


def unique_run_id(runs_dir: str | os.PathLike[str], preset: str = "run") -> str:
    """:func:`new_run_id` of ``preset``, with ``-2``, ``-3``, ... while that folder exists in ``runs_dir``.

    Generated ids have one-second resolution: two runs started in the same second (a benchmark,
    a notebook) get distinct ids rather than a refusal.
    """
    base = new_run_id(preset)
    run_id, n = base, 1
    while (Path(runs_dir) / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
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

"""``manifest.json``: the one module that reads, checks, builds, writes and interprets it.

The manifest is a JSON object replaced atomically (temp file, fsync, ``os.replace``) by the
writer: at the start, at every heartbeat, after each evaluation and at the end. It holds::

    schema_version, run_id, status ("running" | "finished" | "crashed"), error, created,
    heartbeat, ended, step, total_steps, dataset, split, class_names, palette, ignore_index,
    config (the resolved config as plain data), method, vectors ({name: description}), group,
    host, pid, git_commit, git_dirty, heartbeat_s, stalled_after_s,
    evals ({model: {best_miou, best_step, last_miou, last_step}}),
    media ({written, dropped, failed}), resumes ([{time, step}]), extra

Schema 1 manifests have no ``method``, ``vectors`` or ``group``; :func:`method_of`,
:func:`vectors_of` and :func:`group_of` answer for both versions.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ael.fs import write_atomic
from ael.runs.inputs import SERIES_NAME, check_name
from ael.runs.jsonl import DamagedRunWarning
from ael.runs.records import best_evaluation
from ael.runs.schema import (
    MANIFEST_FILE,
    READABLE_SCHEMA_VERSIONS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    RunNotFoundError,
    RunStoreError,
    SchemaVersionError,
)

__all__ = [
    "check_identity",
    "group_of",
    "method_of",
    "miou_summary",
    "new_manifest",
    "read_manifest",
    "record_eval",
    "reopen_manifest",
    "run_status",
    "vectors_of",
    "write_manifest",
]


def _versions_text() -> str:
    return " or ".join(map(str, READABLE_SCHEMA_VERSIONS))


# ------------------------------------------------------------------------------------ file


def read_manifest(run_dir: Path, *, allow_unknown_schema: bool = False) -> dict[str, Any]:
    """Read and check ``run_dir/manifest.json``.

    Raises:
        RunStoreError: if it is missing or not a JSON object (the message names the file).
        SchemaVersionError: if its schema version is not one this code reads (unless allowed,
            which warns with a :class:`~ael.runs.jsonl.DamagedRunWarning` instead).
    """
    path = Path(run_dir) / MANIFEST_FILE
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise RunStoreError(f"{path}: missing (not a run folder, or a run that never started)") from None
    except (OSError, ValueError) as err:
        raise RunStoreError(f"{path}: unreadable ({err})") from None
    if not isinstance(data, dict):
        raise RunStoreError(f"{path}: expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS or type(version) is not int:
        message = f"{path}: schema version {version!r}, this code reads version {_versions_text()}"
        if not allow_unknown_schema:
            raise SchemaVersionError(message)
        warnings.warn(message, DamagedRunWarning, stacklevel=2)
    return data


def write_manifest(run_dir: Path, manifest: Mapping[str, Any]) -> None:
    """Replace ``run_dir/manifest.json`` atomically with ``manifest``."""
    text = json.dumps(manifest, indent=1)
    write_atomic(Path(run_dir) / MANIFEST_FILE, lambda f: f.write(text.encode("utf-8")))


# ------------------------------------------------------------------------------------ building


def _git_commit() -> tuple[str | None, bool | None]:
    """The commit of the checkout ``ael`` is imported from, and whether it has local changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(dirty)


def check_identity(method: Any, vectors: Any, group: Any) -> dict[str, Any]:
    """The ``method``, ``vectors`` and ``group`` fields as stored, checked.

    Args:
        method: the method's name, or None.
        vectors: per-class vector name -> description, or None (no declaration).
        group: the comparison group, or None.

    Raises:
        TypeError: naming the field that is not a string (or a mapping of strings).
        ValueError: a vector name a class vector cannot have.
    """
    for what, value in (("method", method), ("group", group)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{what} must be a string or None, got {type(value).__name__}")
    declared = None
    if vectors is not None:
        if not isinstance(vectors, Mapping):
            raise TypeError(f"vectors must map names to descriptions, got {type(vectors).__name__}")
        declared = {}
        for name, description in vectors.items():
            check_name(name, SERIES_NAME, "class vector")
            if not isinstance(description, str):
                raise TypeError(f"vectors: the description of {name!r} must be a string, "
                                f"got {type(description).__name__}")
            declared[name] = description
    return {"method": method, "vectors": declared, "group": group}


def new_manifest(
    run_id: str,
    *,
    class_names: Sequence[str],
    palette: list[list[int]] | None,
    ignore_index: int,
    config: dict[str, Any],
    identity: Mapping[str, Any],
    dataset: str | None,
    split: str | None,
    total_steps: int | None,
    heartbeat_s: float,
    stalled_after_s: float,
    extra: dict[str, Any],
    now: float,
) -> dict[str, Any]:
    """The manifest of a run that starts now (``identity`` from :func:`check_identity`)."""
    commit, dirty = _git_commit()
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "status": "running",
        "error": None,
        "created": now,
        "heartbeat": now,
        "ended": None,
        "step": None,
        "total_steps": total_steps,
        "dataset": dataset,
        "split": split,
        "class_names": list(class_names),
        "palette": palette,
        "ignore_index": int(ignore_index),
        "config": config,
        "method": identity["method"],
        "vectors": identity["vectors"],
        "group": identity["group"],
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "git_commit": commit,
        "git_dirty": dirty,
        "heartbeat_s": float(heartbeat_s),
        "stalled_after_s": float(stalled_after_s),
        "evals": {},
        "media": {"written": 0, "dropped": 0, "failed": 0},
        "resumes": [],
        "extra": extra,
    }


def reopen_manifest(run_dir: Path, *, class_names: Sequence[str], resume_step: int | None, now: float,
                    updates: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of a run that resumes now: read, checked, upgraded to this schema, running again.

    ``updates``: fields to replace (``total_steps``, ``method``, ...); None values keep the recorded ones.

    Raises:
        RunNotFoundError: the folder does not exist; SchemaVersionError: a version this code
        does not read; RunStoreError: an unreadable manifest or other class names.
    """
    run_dir = Path(run_dir)
    what = f"cannot resume run {run_dir.name!r}"
    if not run_dir.is_dir():
        raise RunNotFoundError(f"{what}: {run_dir} does not exist")
    try:
        manifest = read_manifest(run_dir)
    except SchemaVersionError as err:
        raise SchemaVersionError(f"{what}: {err}") from None
    except RunStoreError as err:
        raise RunStoreError(f"{what}: {err}") from None
    if manifest.get("class_names") != list(class_names):
        raise RunStoreError(f"{what}: its class names ({run_dir / MANIFEST_FILE}) differ from the ones given")
    if manifest["schema_version"] != SCHEMA_VERSION:
        manifest.update(method=method_of(manifest), vectors=vectors_of(manifest), group=group_of(manifest),
                        schema_version=SCHEMA_VERSION)
    manifest.update(status="running", error=None, ended=None, heartbeat=now, pid=os.getpid(),
                    host=socket.gethostname())
    manifest["resumes"] = [*manifest.get("resumes", []), {"time": now, "step": resume_step}]
    manifest.update({k: v for k, v in (updates or {}).items() if v is not None})
    return manifest


# ------------------------------------------------------------------------------------ reading


def run_status(manifest: Mapping[str, Any], *, now: float | None = None,
               stalled_after_s: float | None = None) -> str:
    """``running``/``finished``/``crashed`` from the manifest, ``damaged`` for another value, or
    ``stalled`` for a running run whose heartbeat is older than ``stalled_after_s`` (default: the
    value the writer recorded)."""
    status = manifest.get("status")
    if status not in RUN_STATUSES:
        return "damaged"
    if status != "running":
        return status
    limit = stalled_after_s if stalled_after_s is not None else manifest.get("stalled_after_s", 120.0)
    beat = manifest.get("heartbeat")
    now = time.time() if now is None else now
    if not isinstance(beat, (int, float)) or now - beat > float(limit):
        return "stalled"
    return "running"


def method_of(manifest: Mapping[str, Any]) -> str | None:
    """The run's semi-supervised method (``ael``, ``supervised``, ``mean_teacher``, ...), or None.

    Schema 1 runs did not record it: a saved config with ``core.unsup.enabled: false`` was the
    supervised baseline, any other saved ``core`` section AEL; without one, None.
    """
    if manifest.get("schema_version") != 1:
        method = manifest.get("method")
        return method if isinstance(method, str) else None
    core = (manifest.get("config") or {}).get("core") if isinstance(manifest.get("config"), dict) else None
    if not isinstance(core, dict):
        return None
    unsup = core.get("unsup")
    return "supervised" if isinstance(unsup, dict) and unsup.get("enabled") is False else "ael"


def vectors_of(manifest: Mapping[str, Any]) -> dict[str, str] | None:
    """The per-class vectors the run's method declared (name -> description), or None when it
    declared none (schema 1 runs, or a writer given no ``vectors``)."""
    vectors = manifest.get("vectors")
    if not isinstance(vectors, dict):
        return None
    return {str(k): v if isinstance(v, str) else str(v) for k, v in vectors.items()}


def group_of(manifest: Mapping[str, Any]) -> str | None:
    """The comparison group the run belongs to (None for schema 1 runs and runs without one)."""
    group = manifest.get("group")
    return group if isinstance(group, str) else None


# ------------------------------------------------------------------------------------ evaluations


def record_eval(manifest: dict[str, Any], model: str, step: int, miou: float) -> None:
    """Fold one evaluation into ``manifest["evals"][model]`` (best by :func:`best_evaluation`, last)."""
    summary = manifest["evals"].setdefault(model, {})
    previous = [{"step": summary["best_step"], "miou": summary["best_miou"]}] if "best_step" in summary else []
    best = best_evaluation([*previous, {"step": step, "miou": miou}])
    summary.update(best_miou=best["miou"], best_step=best["step"], last_miou=miou, last_step=step)


def miou_summary(manifest: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """``(best mIoU, last mIoU)`` of the teacher (else the first model evaluated); Nones without any."""
    evals = manifest.get("evals")
    if not isinstance(evals, dict) or not evals:
        return None, None
    summary = evals.get("teacher") or next(iter(evals.values()))
    if not isinstance(summary, dict):
        return None, None
    return summary.get("best_miou"), summary.get("last_miou")

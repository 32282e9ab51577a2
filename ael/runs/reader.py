"""The run reader: the only way the dashboard and notebooks touch runs.

- :func:`list_runs` summarises every run under a folder from the manifests alone.
- :func:`open_run` returns a :class:`Run` that has read everything so far; ``Run.poll()`` then
  reads only the bytes appended since the previous poll (a torn last line waits for the next
  poll; a replaced or truncated file is re-read) and says what is new. Any number of readers,
  in any processes, may tail one run while it is written.
- Series come back as numpy arrays (or a pandas DataFrame), one value per step (the latest),
  sorted by step; per-class vectors as ``(T, C)`` arrays with the class names; image samples
  decoded to numpy arrays.

Damaged lines are skipped, counted (:attr:`Run.damaged`) and reported with a
:class:`~ael.runs.jsonl.DamagedRunWarning`; everything readable is still returned. A run
written with another schema version raises :class:`~ael.runs.schema.SchemaVersionError`.
"""

from __future__ import annotations

import argparse
import binascii
import functools
import json
import logging
import math
import os
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ael.runs.images import decode_part
from ael.runs.jsonl import DamagedRunWarning, JsonlTail, decode_array
from ael.runs.schema import (
    MANIFEST_FILE,
    PART_TYPES,
    SCHEMA_VERSION,
    STREAMS,
    RunNotFoundError,
    RunStoreError,
    SchemaVersionError,
    check_run_id,
    resolve_media_path,
    resolve_run_dir,
)
from ael.runs.series import Column

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ClassSeries",
    "EvalRecord",
    "Run",
    "RunSummary",
    "RunUpdate",
    "Sample",
    "SampleRecord",
    "cli_main",
    "list_runs",
    "open_run",
    "read_manifest",
    "run_status",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class ClassSeries:
    """A per-class vector over steps: ``values[t, c]`` is class ``c`` at ``steps[t]``."""

    name: str
    steps: np.ndarray  # (T,) int64
    values: np.ndarray  # (T, C) float64
    class_names: list[str]

    def frame(self) -> pd.DataFrame:
        """The series as a DataFrame: index ``step``, one column per class name."""
        import pandas as pd

        return pd.DataFrame(self.values, index=pd.Index(self.steps, name="step"), columns=self.class_names)


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation of one model; ``confusion`` is decoded on first access."""

    step: int
    time: float
    model: str
    miou: float
    iou: np.ndarray  # (C,) float64, NaN where a class is absent
    extra: dict[str, Any] = field(default_factory=dict)
    stored_confusion: Any = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def confusion(self) -> np.ndarray | None:
        """``(C, C)`` int64 confusion matrix, rows = truth, columns = prediction; None if not logged.

        Raises:
            RunStoreError: if the stored matrix is damaged.
        """
        return _decode_confusion(self.stored_confusion, len(self.iou))


@dataclass(frozen=True)
class SampleRecord:
    """The index entry of one image sample; :meth:`Run.load_sample` decodes its files."""

    step: int
    time: float
    kind: str
    index: int
    files: dict[str, str]  # part -> "media/<file>"
    parts: dict[str, str]  # part -> "rgb" | "label" | "map"
    meta: dict[str, Any]


@dataclass(frozen=True)
class Sample:
    """A decoded image sample.

    ``images``: part -> ``(H, W, 3)`` uint8; ``labels``: part -> ``(H, W)`` uint8 class indices
    (the ignore index kept as is); ``maps``: part -> ``(H, W)`` float32 in [0, 1];
    ``palette``: ``(C, 3)`` uint8 class colours (None when the run has none).
    """

    record: SampleRecord
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    maps: dict[str, np.ndarray]
    palette: np.ndarray | None
    ignore_index: int | None


@dataclass(frozen=True)
class RunUpdate:
    """What one :meth:`Run.poll` found.

    ``new``: stream -> records read (``scalars``, ``classes``, ``evals``, ``media``);
    ``reset``: streams whose file was replaced or truncated and re-read from the start;
    ``manifest_changed``: the manifest was replaced (status, heartbeat, evaluations).
    """

    new: dict[str, int]
    reset: frozenset[str]
    manifest_changed: bool

    @property
    def any(self) -> bool:
        """True when anything changed."""
        return self.manifest_changed or bool(self.reset) or any(self.new.values())


@dataclass(frozen=True)
class RunSummary:
    """One row of :func:`list_runs`."""

    run_id: str
    path: Path
    status: str  # running | finished | crashed | stalled | damaged | unsupported
    started: float | None  # epoch seconds
    heartbeat: float | None
    dataset: str | None
    split: str | None
    step: int | None  # last step at the latest heartbeat
    total_steps: int | None
    best_miou: float | None
    last_miou: float | None
    error: str | None  # the crash (type: message) or why the folder could not be read

    @property
    def progress(self) -> float | None:
        """``step / total_steps`` in [0, 1], or None when unknown."""
        if self.step is None or not self.total_steps:
            return None
        return min(1.0, (self.step + 1) / self.total_steps)


# ------------------------------------------------------------------------------------ manifest


def read_manifest(run_dir: Path, *, allow_unknown_schema: bool = False) -> dict[str, Any]:
    """Read and check ``run_dir/manifest.json``.

    Raises:
        RunStoreError: if it is missing or not a JSON object (the message names the file).
        SchemaVersionError: if its schema version is not this code's (unless allowed).
    """
    path = run_dir / MANIFEST_FILE
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise RunStoreError(f"{path}: missing (not a run folder, or a run that never started)") from None
    except (OSError, ValueError) as err:
        raise RunStoreError(f"{path}: unreadable ({err})") from None
    if not isinstance(data, dict):
        raise RunStoreError(f"{path}: expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        message = f"{path}: schema version {version!r}, this code reads version {SCHEMA_VERSION}"
        if not allow_unknown_schema:
            raise SchemaVersionError(message)
        warnings.warn(message, DamagedRunWarning, stacklevel=2)
    return data


def run_status(manifest: dict[str, Any], *, now: float | None = None, stalled_after_s: float | None = None) -> str:
    """``running``/``finished``/``crashed`` from the manifest, or ``stalled`` for a running run
    whose heartbeat is older than ``stalled_after_s`` (default: the value the writer recorded)."""
    status = manifest.get("status")
    if status not in ("running", "finished", "crashed"):
        return "damaged"
    if status != "running":
        return status
    limit = stalled_after_s if stalled_after_s is not None else manifest.get("stalled_after_s", 120.0)
    beat = manifest.get("heartbeat")
    now = time.time() if now is None else now
    if not isinstance(beat, (int, float)) or now - beat > float(limit):
        return "stalled"
    return "running"


def _miou_summary(manifest: dict[str, Any]) -> tuple[float | None, float | None]:
    evals = manifest.get("evals")
    if not isinstance(evals, dict) or not evals:
        return None, None
    summary = evals.get("teacher") or next(iter(evals.values()))
    if not isinstance(summary, dict):
        return None, None
    return summary.get("best_miou"), summary.get("last_miou")


def list_runs(
    runs_dir: str | os.PathLike[str], *, stalled_after_s: float | None = None, now: float | None = None
) -> list[RunSummary]:
    """Summarise every run folder under ``runs_dir``, newest first, from the manifests only.

    Folders that are not readable runs are listed with status ``damaged`` (or ``unsupported``
    for another schema version) and the reason in ``error``; symlinks out of ``runs_dir`` and
    unsafe names are skipped.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise RunNotFoundError(f"runs folder {root} does not exist")
    rows: list[RunSummary] = []
    for entry in sorted(root.iterdir()):
        try:
            check_run_id(entry.name)
            path = resolve_run_dir(root, entry.name)
        except RunStoreError:
            continue
        if not path.is_dir():
            continue
        try:
            manifest = read_manifest(path)
        except SchemaVersionError as err:
            rows.append(RunSummary(entry.name, path, "unsupported", None, None, None, None, None, None,
                                   None, None, str(err)))
            continue
        except RunStoreError as err:
            rows.append(RunSummary(entry.name, path, "damaged", None, None, None, None, None, None,
                                   None, None, str(err)))
            continue
        best, last = _miou_summary(manifest)
        error = manifest.get("error")
        rows.append(
            RunSummary(
                run_id=entry.name,
                path=path,
                status=run_status(manifest, now=now, stalled_after_s=stalled_after_s),
                started=manifest.get("created"),
                heartbeat=manifest.get("heartbeat"),
                dataset=manifest.get("dataset"),
                split=manifest.get("split"),
                step=manifest.get("step"),
                total_steps=manifest.get("total_steps"),
                best_miou=best,
                last_miou=last,
                error=f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else None,
            )
        )
    rows.sort(key=lambda r: (-(r.started or 0.0), r.run_id))
    return rows


# ------------------------------------------------------------------------------------ the run


def _vector_width(value: Any) -> int:
    """C of a stored class vector (base64 float32 text or a JSON list); 0 if it is neither."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, str):
        return (len(value) // 4 * 3 - value[-2:].count("=")) // 4
    return 0


def _decode_vector(value: Any, width: int) -> np.ndarray | None:
    """A stored class vector as ``(width,)`` floats, or None when it is not one."""
    if isinstance(value, str):
        return decode_array(value, "<f4", width)
    if isinstance(value, list) and len(value) == width and all(type(v) is float or type(v) is int for v in value):
        return np.asarray(value, dtype=np.float64)
    return None


def _plausible_confusion(value: Any, num_classes: int) -> bool:
    """A cheap check at poll time; decoding waits until someone asks for the matrix."""
    if value is None:
        return True
    if isinstance(value, str):
        return True
    return isinstance(value, list) and len(value) == num_classes


def _decode_vector_block(values: list[Any], width: int) -> np.ndarray | None:
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


def _decode_confusion(value: Any, num_classes: int) -> np.ndarray | None:
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


class Run:
    """An open run that reads incrementally. Create it with :func:`open_run`.

    Every accessor reflects what the latest :meth:`poll` read; call ``poll()`` to see more.
    One Run may be shared by several threads (e.g. a cached dashboard tailer): polls and
    accessors take a lock. Returned arrays are read-only and stay valid after later polls.
    """

    def __init__(self, run_dir: Path, *, stalled_after_s: float | None = None,
                 allow_unknown_schema: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        self.stalled_after_s = stalled_after_s
        self.allow_unknown_schema = allow_unknown_schema
        self.manifest: dict[str, Any] = {}
        self._manifest_key: tuple[int, int, int] | None = None
        self._manifest_warned = False
        self._tails = {name: JsonlTail(self.run_dir / fname) for name, fname in STREAMS.items()}
        self._invalid = dict.fromkeys(STREAMS, 0)
        self._lock = threading.RLock()
        self._clear()

    def _clear(self, streams: Iterable[str] = tuple(STREAMS)) -> None:
        for stream in streams:
            if stream == "scalars":
                self._scalars: dict[str, Column] = {}
            elif stream == "classes":
                self._classes: dict[str, Column] = {}
            elif stream == "evals":
                self._evals: list[EvalRecord] = []
            elif stream == "media":
                self._media: list[SampleRecord] = []
            self._invalid[stream] = 0

    # -------------------------------------------------------------------------- polling

    def poll(self) -> RunUpdate:
        """Read what was appended since the previous poll (everything, the first time).

        Raises:
            SchemaVersionError: if the manifest has another schema version.
        """
        with self._lock:
            manifest_changed = self._poll_manifest()
            new: dict[str, int] = {}
            reset: set[str] = set()
            for stream, tail in self._tails.items():
                records, was_reset = tail.poll()
                if was_reset:
                    self._clear([stream])
                    reset.add(stream)
                getattr(self, f"_add_{stream}")(records)
                new[stream] = len(records)
        return RunUpdate(new=new, reset=frozenset(reset), manifest_changed=manifest_changed)

    def _poll_manifest(self) -> bool:
        path = self.run_dir / MANIFEST_FILE
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if not self._manifest_warned:
                warnings.warn(f"{path}: missing; status and class names unknown, records still read",
                              DamagedRunWarning, stacklevel=3)
                self._manifest_warned = True
            changed = bool(self.manifest)
            self.manifest, self._manifest_key = {}, None
            return changed
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._manifest_key:
            return False
        try:
            manifest = read_manifest(self.run_dir, allow_unknown_schema=self.allow_unknown_schema)
        except SchemaVersionError:
            raise
        except RunStoreError as err:
            if not self._manifest_warned:
                warnings.warn(f"{err}; records still read", DamagedRunWarning, stacklevel=3)
                self._manifest_warned = True
            return False
        self.manifest, self._manifest_key = manifest, key
        return True

    def _warn_invalid(self, stream: str, count: int, why: str) -> None:
        if count:
            self._invalid[stream] += count
            warnings.warn(f"{self._tails[stream].path}: skipped {count} record(s): {why}",
                          DamagedRunWarning, stacklevel=4)

    @staticmethod
    def _resume_step(record: dict[str, Any]) -> int | None:
        step = record.get("resume")
        return step if type(step) is int else None

    def _scalar_column(self, name: str, size: int) -> Column:
        column = self._scalars.get(name)
        if column is None:
            column = self._scalars[name] = Column(capacity=max(1024, size))
        return column

    def _add_scalars(self, records: list[dict[str, Any]]) -> None:
        bad = 0
        i, n = 0, len(records)
        while i < n:
            record = records[i]
            if type(record.get("step")) is not int:
                resume = self._resume_step(record)
                if resume is None:
                    bad += 1
                else:
                    for column in self._scalars.values():
                        column.cut_after(resume)
                i += 1
                continue
            # Consecutive records with the same keys (the usual case) become one table at once.
            keys = tuple(record)
            j = i + 1
            while j < n and tuple(records[j]) == keys:
                j += 1
            group = records[i:j]
            i = j
            table = None
            if all(type(v) is float or type(v) is int for v in record.values()):
                try:
                    table = np.array([tuple(r.values()) for r in group], dtype=np.float64)
                except (TypeError, ValueError):
                    table = None
            if table is not None:
                step_col = keys.index("step")
                steps = table[:, step_col].astype(np.int64)
                if np.array_equal(steps, table[:, step_col]) and not np.isnan(table).any(axis=0)[step_col]:
                    for col, name in enumerate(keys):
                        if col != step_col:
                            self._scalar_column(name, len(group)).extend(steps, table[:, col])
                    continue
            bad += self._add_scalars_slowly(group)
        self._warn_invalid("scalars", bad, "no integer step, or a value that is not a number")

    def _add_scalars_slowly(self, records: list[dict[str, Any]]) -> int:
        """Record by record, skipping what is not a number; returns how many were skipped."""
        bad = 0
        for record in records:
            step = record.get("step")
            if type(step) is not int:
                bad += 1
                continue
            for name, value in record.items():
                if name == "step":
                    continue
                if type(value) is not float and type(value) is not int:
                    bad += 1
                    continue
                self._scalar_column(name, 1).extend(np.array([step]), np.array([float(value)]))
        return bad

    def _add_classes(self, records: list[dict[str, Any]]) -> None:
        bad = 0
        pending: dict[str, tuple[list[int], list[Any]]] = {}
        manifest_width = len(self.manifest.get("class_names") or ())

        def flush() -> int:
            wrong = 0
            for name, (steps, raw) in pending.items():
                column = self._classes.get(name)
                width = column.width if column is not None else manifest_width or _vector_width(raw[0])
                block = _decode_vector_block(raw, width) if width else None
                if block is not None:
                    if column is None:
                        column = self._classes[name] = Column(width=width, capacity=max(256, len(raw)))
                    column.extend(np.asarray(steps, dtype=np.int64), block)
                    continue
                rows, kept = [], []
                for step, value in zip(steps, raw):
                    row = _decode_vector(value, width) if width else None
                    if row is None:
                        wrong += 1
                    else:
                        rows.append(row)
                        kept.append(step)
                if not rows:
                    continue
                if column is None:
                    column = self._classes[name] = Column(width=width, capacity=max(256, len(rows)))
                column.extend(np.asarray(kept, dtype=np.int64), np.stack(rows))
            pending.clear()
            return wrong

        for record in records:
            step = record.get("step")
            if type(step) is not int:
                resume = self._resume_step(record)
                if resume is None:
                    bad += 1
                    continue
                bad += flush()
                for column in self._classes.values():
                    column.cut_after(resume)
                continue
            for name, value in record.items():
                if name in ("step", "time"):
                    continue
                entry = pending.get(name)
                if entry is None:
                    entry = pending[name] = ([], [])
                entry[0].append(step)
                entry[1].append(value)
        bad += flush()
        self._warn_invalid("classes", bad, "no integer step, or a vector of the wrong length or type")

    def _add_evals(self, records: list[dict[str, Any]]) -> None:
        bad = 0
        for record in records:
            step = record.get("step")
            if type(step) is not int:
                resume = self._resume_step(record)
                if resume is None:
                    bad += 1
                else:
                    self._evals = [e for e in self._evals if e.step <= resume]
                continue
            try:
                iou = np.asarray(record["iou"], dtype=np.float64)
                confusion = record.get("confusion")
                if not _plausible_confusion(confusion, len(iou)):
                    raise ValueError("confusion")
                extra = {k: v for k, v in record.items()
                         if k not in ("step", "time", "model", "miou", "iou", "confusion")}
                self._evals.append(EvalRecord(
                    step=step,
                    time=float(record.get("time", math.nan)),
                    model=str(record.get("model", "teacher")),
                    miou=float(record["miou"]),
                    iou=iou,
                    extra=extra,
                    stored_confusion=confusion,
                ))
            except (KeyError, TypeError, ValueError):
                bad += 1
        self._warn_invalid("evals", bad, "not an evaluation (step, model, miou, iou)")

    def _add_media(self, records: list[dict[str, Any]]) -> None:
        bad = 0
        for record in records:
            step = record.get("step")
            if type(step) is not int:
                resume = self._resume_step(record)
                if resume is None:
                    bad += 1
                else:
                    self._media = [m for m in self._media if m.step <= resume]
                continue
            files, parts = record.get("files"), record.get("parts")
            if (not isinstance(files, dict) or not isinstance(parts, dict) or set(files) != set(parts)
                    or not all(t in PART_TYPES for t in parts.values())
                    or not isinstance(record.get("kind"), str)):
                bad += 1
                continue
            meta = record.get("meta")
            self._media.append(SampleRecord(
                step=step,
                time=float(record.get("time", math.nan)),
                kind=record["kind"],
                index=int(record.get("index", 0)),
                files=files,
                parts=parts,
                meta=meta if isinstance(meta, dict) else {},
            ))
        self._warn_invalid("media", bad, "not a sample index entry (step, kind, files, parts)")

    # -------------------------------------------------------------------------- identity

    @property
    def damaged(self) -> dict[str, int]:
        """Per stream: lines that were not JSON plus records that were not valid, skipped so far."""
        return {s: self._tails[s].damaged + self._invalid[s] for s in STREAMS}

    def status(self, now: float | None = None) -> str:
        """``running``, ``finished``, ``crashed``, ``stalled``; ``damaged`` without a manifest."""
        if not self.manifest:
            return "damaged"
        return run_status(self.manifest, now=now, stalled_after_s=self.stalled_after_s)

    @property
    def error(self) -> dict[str, Any] | None:
        """The crash error ``{"type", "message", "traceback"}``, or None."""
        error = self.manifest.get("error")
        return error if isinstance(error, dict) else None

    @property
    def class_names(self) -> list[str]:
        """The class names, or ``class_0 ...`` when the manifest is missing."""
        names = self.manifest.get("class_names")
        if isinstance(names, list) and names:
            return [str(n) for n in names]
        width = next((c.width for c in self._classes.values() if c.width), 0)
        return [f"class_{i}" for i in range(width or 0)]

    @property
    def num_classes(self) -> int:
        """C."""
        return len(self.class_names)

    @property
    def palette(self) -> np.ndarray | None:
        """``(C, 3)`` uint8 class colours, or None."""
        palette = self.manifest.get("palette")
        return None if palette is None else np.asarray(palette, dtype=np.uint8).reshape(-1, 3)

    @property
    def ignore_index(self) -> int | None:
        """The label value meaning "no class"."""
        return self.manifest.get("ignore_index")

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config the run was started with (plain data)."""
        return self.manifest.get("config") or {}

    @property
    def total_steps(self) -> int | None:
        """Planned iterations."""
        return self.manifest.get("total_steps")

    @property
    def last_step(self) -> int | None:
        """The highest step of any scalar read so far (fresher than the manifest's heartbeat step)."""
        with self._lock:
            steps = [int(c.latest()[0][-1]) for c in self._scalars.values() if len(c.latest()[0])]
        return max(steps) if steps else self.manifest.get("step")

    # -------------------------------------------------------------------------- series

    def scalar_names(self) -> list[str]:
        """Names of the logged scalar series (``time``, the wall clock of each record, is left out)."""
        return sorted(n for n in self._scalars if n != "time")

    def scalar(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps (T,) int64, values (T,) float64)``: one value per step, the latest, by step.

        The arrays are read-only views that stay valid after later polls.

        Raises:
            KeyError: naming the series and the ones that exist.
        """
        with self._lock:
            column = self._scalars.get(name)
            if column is None:
                raise KeyError(f"run {self.run_id!r} has no scalar {name!r} (has: {', '.join(self.scalar_names())})")
            return column.latest()

    def scalars(self, names: Sequence[str] | None = None) -> pd.DataFrame:
        """Scalars as a DataFrame indexed by step (one column per series, NaN where not logged).

        Without ``names``: every series plus ``time`` (wall-clock epoch seconds).
        """
        import pandas as pd

        if names is None:
            names = self.scalar_names() + (["time"] if "time" in self._scalars else [])
        series = {}
        for name in names:
            steps, values = self.scalar(name)
            series[name] = pd.Series(values, index=steps)
        frame = pd.DataFrame(series)
        frame.index.name = "step"
        return frame

    def class_vector_names(self) -> list[str]:
        """Names of the per-class series (``bank``, ..., ``iou_teacher``)."""
        return sorted(self._classes)

    def class_vectors(self, name: str) -> ClassSeries:
        """A per-class series as ``steps (T,)`` and ``values (T, C)``, one row per step (the latest).

        Raises:
            KeyError: naming the series and the ones that exist.
        """
        with self._lock:
            column = self._classes.get(name)
            if column is None:
                raise KeyError(
                    f"run {self.run_id!r} has no class vector {name!r} (has: {', '.join(self.class_vector_names())})"
                )
            steps, values = column.latest()
        names = self.class_names
        if len(names) != column.width:
            names = [f"class_{i}" for i in range(column.width or 0)]
        return ClassSeries(name=name, steps=steps, values=values, class_names=names)

    def evals(self, model: str | None = None) -> list[EvalRecord]:
        """Evaluations by step (the latest per step and model), of one model or all."""
        latest: dict[tuple[int, str], EvalRecord] = {}
        with self._lock:
            evals = list(self._evals)
        for record in evals:
            if model is None or record.model == model:
                latest[(record.step, record.model)] = record
        return [latest[k] for k in sorted(latest)]

    def evals_frame(self) -> pd.DataFrame:
        """Evaluations as a DataFrame: columns ``step``, ``model``, ``miou`` and the extras."""
        import pandas as pd

        rows = [{"step": e.step, "model": e.model, "time": e.time, "miou": e.miou, **e.extra} for e in self.evals()]
        return pd.DataFrame(rows, columns=None if rows else ["step", "model", "time", "miou"])

    # -------------------------------------------------------------------------- samples

    def samples(self, kind: str | None = None, step: int | None = None) -> list[SampleRecord]:
        """Sample index entries by (step, kind, index), the latest for each, optionally filtered."""
        latest: dict[tuple[int, str, int], SampleRecord] = {}
        with self._lock:
            media = list(self._media)
        for record in media:
            if (kind is None or record.kind == kind) and (step is None or record.step == step):
                latest[(record.step, record.kind, record.index)] = record
        return [latest[k] for k in sorted(latest)]

    def sample_kinds(self) -> list[str]:
        """The kinds of samples logged so far."""
        return sorted({m.kind for m in self._media})

    def load_sample(self, record: SampleRecord, parts: Sequence[str] | None = None) -> Sample:
        """Decode a sample's files (all parts, or the ones named).

        Raises:
            RunStoreError: a path that leaves the run folder, or a missing/undecodable file.
        """
        images: dict[str, np.ndarray] = {}
        labels: dict[str, np.ndarray] = {}
        maps: dict[str, np.ndarray] = {}
        for name in parts if parts is not None else list(record.files):
            if name not in record.files:
                raise KeyError(f"sample {record.kind!r} at step {record.step} has no part {name!r}")
            path = resolve_media_path(self.run_dir, record.files[name])
            part_type = record.parts[name]
            try:
                array = decode_part(path, part_type)
            except FileNotFoundError:
                raise RunStoreError(f"{path}: missing (named by {record.kind!r} at step {record.step})") from None
            except (OSError, ValueError) as err:
                raise RunStoreError(f"{path}: cannot decode ({err})") from None
            {"rgb": images, "label": labels, "map": maps}[part_type][name] = array
        return Sample(record=record, images=images, labels=labels, maps=maps, palette=self.palette,
                      ignore_index=self.ignore_index)


def open_run(
    runs_dir: str | os.PathLike[str],
    run_id: str,
    *,
    stalled_after_s: float | None = None,
    allow_unknown_schema: bool = False,
) -> Run:
    """Open ``<runs_dir>/<run_id>`` and read everything written so far.

    Args:
        runs_dir: the folder holding runs.
        run_id: a run folder name; ``..``, slashes and symlinks out of ``runs_dir`` are refused.
        stalled_after_s: override the writer's stalled threshold.
        allow_unknown_schema: read a run of another schema version (with a warning) instead
            of raising.

    Raises:
        RunStoreError: unsafe id; RunNotFoundError: no such folder; SchemaVersionError.
    """
    path = resolve_run_dir(runs_dir, run_id)
    if not path.is_dir():
        raise RunNotFoundError(f"no run {run_id!r} in {runs_dir}")
    run = Run(path, stalled_after_s=stalled_after_s, allow_unknown_schema=allow_unknown_schema)
    run.poll()
    return run


# ------------------------------------------------------------------------------------ CLI


def _fmt_time(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch)) if isinstance(epoch, (int, float)) else "-"


def _fmt_miou(value: float | None) -> str:
    return f"{100 * value:.2f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def format_runs_table(rows: Sequence[RunSummary]) -> str:
    """The runs as a plain-text table (what ``ael runs`` prints)."""
    header = ("RUN", "STATUS", "STARTED", "DATASET", "SPLIT", "PROGRESS", "BEST mIoU", "LAST mIoU")
    table = [header]
    for r in rows:
        if r.step is not None and r.total_steps:
            progress = f"{r.step}/{r.total_steps} ({100 * (r.progress or 0):.0f}%)"
        else:
            progress = "-" if r.step is None else str(r.step)
        table.append((r.run_id, r.status, _fmt_time(r.started), r.dataset or "-", r.split or "-", progress,
                      _fmt_miou(r.best_miou), _fmt_miou(r.last_miou)))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in table)


def cli_main(argv: list[str]) -> int:
    """``ael runs [--runs DIR] [--stalled-after S]``: print a table of the runs in DIR.

    Returns:
        0 on success, 1 when the folder does not exist.
    """
    parser = argparse.ArgumentParser(prog="ael runs", description="List the runs in a runs folder.")
    parser.add_argument("--runs", default="runs", help="the runs folder (default: ./runs)")
    parser.add_argument("--stalled-after", type=float, default=None, metavar="S",
                        help="call a running run stalled after S seconds without heartbeat "
                             "(default: the value the run recorded)")
    args = parser.parse_args(argv)
    try:
        rows = list_runs(args.runs, stalled_after_s=args.stalled_after)
    except RunNotFoundError as err:
        sys.stderr.write(f"ael runs: {err}\n")
        return 1
    if not rows:
        sys.stdout.write(f"no runs in {args.runs}\n")
        return 0
    sys.stdout.write(format_runs_table(rows) + "\n")
    for r in rows:
        if r.error and r.status in ("crashed", "damaged", "unsupported"):
            sys.stdout.write(f"{r.run_id}: {r.error}\n")
    return 0

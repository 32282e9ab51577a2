"""The tailing run reader: the only way the dashboard and notebooks read a run's records.

:func:`open_run` returns a :class:`Run` that has read everything so far; ``Run.poll()`` then
reads only the bytes appended since the previous poll (a torn last line waits for the next
poll; a replaced or truncated file is re-read) and says what is new. Any number of readers, in
any processes, may tail one run while it is written. Series come back as numpy arrays (or a
pandas DataFrame), one value per step (the latest), sorted by step; per-class vectors as
``(T, C)`` arrays with the class names; image samples decoded to numpy arrays.

Damaged lines are skipped, counted (:attr:`Run.damaged`) and reported with a
:class:`~ael.runs.jsonl.DamagedRunWarning`; everything readable is still returned. A run
written with a schema version this code does not read raises
:class:`~ael.runs.schema.SchemaVersionError`. Listing runs is :mod:`ael.runs.listing`'s job.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ael.runs.images import decode_sample
from ael.runs.jsonl import DamagedRunWarning, JsonlTail
from ael.runs.manifest import group_of, method_of, read_manifest, run_status, vectors_of
from ael.runs.records import ClassSeries, EvalRecord, RunUpdate, Sample, SampleRecord, best_evaluation
from ael.runs.schema import (
    KNOWN_CLASS_VECTORS,
    MANIFEST_FILE,
    STREAMS,
    RunNotFoundError,
    RunStoreError,
    SchemaVersionError,
    resolve_run_dir,
)
from ael.runs.streams import ClassStream, EvalStream, MediaStream, ScalarStream

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CLASS_FREQUENCIES_KEY", "Run", "open_run"]

# Where the trainer records the labeled pixel share of each class (``extra`` of the manifest).
CLASS_FREQUENCIES_KEY = "class_frequencies"

_WHY_INVALID = {
    "scalars": "no integer step, or a value that is not a number",
    "classes": "no integer step, or a vector of the wrong length or type",
    "evals": "not an evaluation (step, model, miou, iou)",
    "media": "not a sample index entry (step, kind, files, parts)",
}


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
                self._scalars = ScalarStream()
            elif stream == "classes":
                self._classes = ClassStream()
            elif stream == "evals":
                self._evals = EvalStream()
            elif stream == "media":
                self._media = MediaStream()
            self._invalid[stream] = 0

    # -------------------------------------------------------------------------- polling

    def poll(self) -> RunUpdate:
        """Read what was appended since the previous poll (everything, the first time).

        Raises:
            SchemaVersionError: if the manifest has a schema version this code does not read.
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
                if stream == "classes":
                    bad = self._classes.add(records, len(self.manifest.get("class_names") or ()))
                else:
                    bad = getattr(self, f"_{stream}").add(records)
                if bad:
                    self._invalid[stream] += bad
                    warnings.warn(f"{tail.path}: skipped {bad} record(s): {_WHY_INVALID[stream]}",
                                  DamagedRunWarning, stacklevel=2)
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
        width = next((c.width for c in self._classes.columns.values() if c.width), 0)
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
    def method(self) -> str | None:
        """The semi-supervised method (``ael``, ``supervised``, ...); derived for old runs (see
        :func:`ael.runs.manifest.method_of`); None when unknown."""
        return method_of(self.manifest)

    @property
    def group(self) -> str | None:
        """The comparison group (runs of one multi-seed comparison), or None."""
        return group_of(self.manifest)

    @property
    def vectors(self) -> dict[str, str]:
        """The per-class vectors the method reports, name -> description.

        Runs that declared none (written before schema 2, or without ``vectors``) get the
        vectors logged so far that :data:`~ael.runs.schema.KNOWN_CLASS_VECTORS` describes.
        """
        declared = vectors_of(self.manifest)
        if declared is not None:
            return declared
        return {n: KNOWN_CLASS_VECTORS[n] for n in self.class_vector_names() if n in KNOWN_CLASS_VECTORS}

    def vector_description(self, name: str) -> str | None:
        """What the per-class vector ``name`` is: the run's declaration, else the known
        description (``iou_teacher``, ...), else None."""
        declared = vectors_of(self.manifest) or {}
        return declared.get(name) or KNOWN_CLASS_VECTORS.get(name)

    @property
    def total_steps(self) -> int | None:
        """Planned iterations."""
        return self.manifest.get("total_steps")

    @property
    def last_step(self) -> int | None:
        """The highest step of any scalar read so far (fresher than the manifest's heartbeat step)."""
        with self._lock:
            steps = [int(c.latest()[0][-1]) for c in self._scalars.columns.values() if len(c.latest()[0])]
        return max(steps) if steps else self.manifest.get("step")

    def class_frequencies(self) -> np.ndarray | None:
        """``(C,)`` labeled pixel share of each class: what the trainer recorded in the manifest,
        else the mean of the logged ``freq_labeled`` rows; None when neither is there.

        Feed it to :func:`ael.runs.classes.tail_indices` for the tail classes.
        """
        frequencies = (self.manifest.get("extra") or {}).get(CLASS_FREQUENCIES_KEY)
        if isinstance(frequencies, list) and frequencies and len(frequencies) == self.num_classes:
            try:
                return np.asarray(frequencies, dtype=np.float64)
            except (TypeError, ValueError):
                pass
        if "freq_labeled" in self._classes.columns:
            series = self.class_vectors("freq_labeled")
            if len(series.steps):
                return series.values.mean(axis=0)
        return None

    # -------------------------------------------------------------------------- series

    def scalar_names(self) -> list[str]:
        """Names of the logged scalar series (``time``, the wall clock of each record, is left out)."""
        return sorted(n for n in self._scalars.columns if n != "time")

    def scalar(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps (T,) int64, values (T,) float64)``: one value per step, the latest, by step.

        The arrays are read-only views that stay valid after later polls.

        Raises:
            KeyError: naming the series and the ones that exist.
        """
        with self._lock:
            column = self._scalars.columns.get(name)
            if column is None:
                raise KeyError(f"run {self.run_id!r} has no scalar {name!r} (has: {', '.join(self.scalar_names())})")
            return column.latest()

    def scalars(self, names: Sequence[str] | None = None) -> pd.DataFrame:
        """Scalars as a DataFrame indexed by step (one column per series, NaN where not logged).

        Without ``names``: every series plus ``time`` (wall-clock epoch seconds).
        """
        import pandas as pd

        if names is None:
            names = self.scalar_names() + (["time"] if "time" in self._scalars.columns else [])
        series = {}
        for name in names:
            steps, values = self.scalar(name)
            series[name] = pd.Series(values, index=steps)
        frame = pd.DataFrame(series)
        frame.index.name = "step"
        return frame

    def class_vector_names(self) -> list[str]:
        """Names of the per-class series logged so far (``bank``, ..., ``iou_teacher``)."""
        return sorted(self._classes.columns)

    def class_vectors(self, name: str) -> ClassSeries:
        """A per-class series as ``steps (T,)`` and ``values (T, C)``, one row per step (the latest).

        Raises:
            KeyError: naming the series and the ones that exist.
        """
        with self._lock:
            column = self._classes.columns.get(name)
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
            evals = list(self._evals.records)
        for record in evals:
            if model is None or record.model == model:
                latest[(record.step, record.model)] = record
        return [latest[k] for k in sorted(latest)]

    def best_eval(self, model: str | None = None) -> EvalRecord | None:
        """The best evaluation of ``model`` (or of all) by :func:`ael.runs.records.best_evaluation`."""
        return best_evaluation(self.evals(model))

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
            media = list(self._media.records)
        for record in media:
            if (kind is None or record.kind == kind) and (step is None or record.step == step):
                latest[(record.step, record.kind, record.index)] = record
        return [latest[k] for k in sorted(latest)]

    def sample_kinds(self) -> list[str]:
        """The kinds of samples logged so far."""
        return sorted({m.kind for m in self._media.records})

    def load_sample(self, record: SampleRecord, parts: Sequence[str] | None = None) -> Sample:
        """Decode a sample's files (all parts, or the ones named).

        Raises:
            RunStoreError: a path that leaves the run folder, or a missing/undecodable file.
        """
        return decode_sample(self.run_dir, record, parts, palette=self.palette, ignore_index=self.ignore_index)


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

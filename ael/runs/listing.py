"""The runs of a folder at a glance: :func:`list_runs` summarises each from its manifest alone.

Reading only manifests keeps the listing cheap for any number of runs; the records are the
tailing reader's (:mod:`ael.runs.reader`). :func:`format_runs_table` renders the rows as the
plain-text table ``ael runs`` prints.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ael.runs.manifest import group_of, method_of, miou_summary, read_manifest, run_status
from ael.runs.schema import RunNotFoundError, RunStoreError, SchemaVersionError, check_run_id, resolve_run_dir

__all__ = ["RunSummary", "format_runs_table", "list_runs"]


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
    best_miou: float | None  # of the teacher (else the first model), by ael.runs.best_evaluation
    last_miou: float | None
    error: str | None  # the crash (type: message) or why the folder could not be read
    method: str | None = None  # derived from the config for runs written before schema 2
    group: str | None = None

    @property
    def progress(self) -> float | None:
        """The share of the planned iterations done, in [0, 1], or None when unknown.

        ``step`` is the highest step any record of the run carries: the 0-based index of an
        iteration for per-iteration records, the count of iterations done for evaluations and
        checkpoints. ``(step + 1) / total_steps`` is therefore exact between evaluations and one
        iteration ahead right after one, capped at 1 (a finished run reads 1).
        """
        if self.step is None or not self.total_steps:
            return None
        return min(1.0, (self.step + 1) / self.total_steps)


def _unreadable(run_id: str, path: Path, status: str, error: str) -> RunSummary:
    return RunSummary(run_id, path, status, None, None, None, None, None, None, None, None, error)


def list_runs(
    runs_dir: str | os.PathLike[str], *, stalled_after_s: float | None = None, now: float | None = None
) -> list[RunSummary]:
    """Summarise every run folder under ``runs_dir``, newest first, from the manifests only.

    Folders that are not readable runs are listed with status ``damaged`` (or ``unsupported``
    for a schema version this code does not read) and the reason in ``error``; symlinks out of
    ``runs_dir`` and unsafe names are skipped.

    Raises:
        RunNotFoundError: ``runs_dir`` does not exist.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise RunNotFoundError(f"runs folder {root} does not exist")
    rows: list[RunSummary] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):  # hidden folders (ael compare's .logs) are not runs
            continue
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
            rows.append(_unreadable(entry.name, path, "unsupported", str(err)))
            continue
        except RunStoreError as err:
            rows.append(_unreadable(entry.name, path, "damaged", str(err)))
            continue
        best, last = miou_summary(manifest)
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
                method=method_of(manifest),
                group=group_of(manifest),
            )
        )
    rows.sort(key=lambda r: (-(r.started or 0.0), r.run_id))
    return rows


def _fmt_time(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch)) if isinstance(epoch, (int, float)) else "-"


def _fmt_miou(value: float | None) -> str:
    return f"{100 * value:.2f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def format_runs_table(rows: Sequence[RunSummary]) -> str:
    """The runs as a plain-text table (what ``ael runs`` prints)."""
    header = ("RUN", "STATUS", "STARTED", "METHOD", "GROUP", "DATASET", "SPLIT", "PROGRESS", "BEST mIoU",
              "LAST mIoU")
    table = [header]
    for r in rows:
        if r.step is not None and r.total_steps:
            progress = f"{r.step}/{r.total_steps} ({100 * (r.progress or 0):.0f}%)"
        else:
            progress = "-" if r.step is None else str(r.step)
        table.append((r.run_id, r.status, _fmt_time(r.started), r.method or "-", r.group or "-", r.dataset or "-",
                      r.split or "-", progress, _fmt_miou(r.best_miou), _fmt_miou(r.last_miou)))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in table)

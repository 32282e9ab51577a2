"""The run store: a crash-safe stream of the training state and the one API that reads it.

The trainer (rank 0) starts a run with :func:`start_run` (or reopens one with
``RunWriter(..., resume=True)``) and writes through :class:`RunWriter`; the dashboard and
notebooks read only through :func:`list_runs` and :func:`open_run` (a :class:`Run` that tails
incrementally). The on-disk format is described in :mod:`ael.runs.schema` and
:mod:`ael.runs.manifest`. Three rules have their one home here: the tail classes
(:func:`tail_classes`), the row of a per-class series at a step (:func:`row_at`) and the best
evaluation (:func:`best_evaluation`).

Modules: ``schema`` (names, versions, errors, safe paths), ``manifest`` (manifest.json),
``jsonl`` (append-only streams, tailing), ``codecs`` and ``images`` (array and image encodings),
``inputs`` (checks of what a writer is given), ``files`` (atomic writes, torn-tail repair),
``media_queue`` (background image writes), ``writer`` / ``start`` (writing), ``series`` /
``streams`` / ``records`` / ``reader`` (tailing), ``listing`` (the runs table), ``classes``
(the tail rule).
"""

from ael.runs.classes import TAIL_SHARE, tail_boundary, tail_classes, tail_indices
from ael.runs.jsonl import DamagedRunWarning
from ael.runs.listing import RunSummary, format_runs_table, list_runs
from ael.runs.reader import Run, open_run
from ael.runs.records import (
    ClassSeries,
    EvalRecord,
    RunUpdate,
    Sample,
    SampleRecord,
    best_evaluation,
    row_at,
)
from ael.runs.schema import (
    KNOWN_CLASS_VECTORS,
    READABLE_SCHEMA_VERSIONS,
    SCHEMA_VERSION,
    RunNotFoundError,
    RunStoreError,
    SchemaVersionError,
    new_run_id,
)
from ael.runs.start import start_run
from ael.runs.writer import RunWriter

__all__ = [
    "KNOWN_CLASS_VECTORS",
    "READABLE_SCHEMA_VERSIONS",
    "SCHEMA_VERSION",
    "TAIL_SHARE",
    "ClassSeries",
    "DamagedRunWarning",
    "EvalRecord",
    "Run",
    "RunNotFoundError",
    "RunStoreError",
    "RunSummary",
    "RunUpdate",
    "RunWriter",
    "Sample",
    "SampleRecord",
    "SchemaVersionError",
    "best_evaluation",
    "format_runs_table",
    "list_runs",
    "new_run_id",
    "open_run",
    "row_at",
    "start_run",
    "tail_boundary",
    "tail_classes",
    "tail_indices",
]

"""The run store: a crash-safe stream of the training state (writer) and the one reader API.

The trainer (rank 0) writes with :class:`RunWriter`; the dashboard and notebooks read only
through :func:`list_runs` and :func:`open_run` (a :class:`Run` that tails incrementally).
The on-disk format is described in :mod:`ael.runs.schema`.
"""

from ael.runs.jsonl import DamagedRunWarning
from ael.runs.reader import (
    ClassSeries,
    EvalRecord,
    Run,
    RunSummary,
    RunUpdate,
    Sample,
    SampleRecord,
    cli_main,
    list_runs,
    open_run,
)
from ael.runs.schema import (
    KNOWN_CLASS_VECTORS,
    SCHEMA_VERSION,
    RunNotFoundError,
    RunStoreError,
    SchemaVersionError,
)
from ael.runs.writer import RunWriter, new_run_id, writer_from_config

__all__ = [
    "KNOWN_CLASS_VECTORS",
    "SCHEMA_VERSION",
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
    "cli_main",
    "list_runs",
    "new_run_id",
    "open_run",
    "writer_from_config",
]

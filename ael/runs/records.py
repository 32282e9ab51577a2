"""What the reader hands out: per-class series, evaluations, image samples, poll updates; and two rules.

- :func:`row_at`: the row of a per-class series in force at a step (the dashboard's and the
  notebooks' "at step" views).
- :func:`best_evaluation`: the one definition of the best evaluation (highest finite mIoU,
  the earliest on ties; the last one when none is finite), used by the writer's manifest
  summary, the reader, the notebooks and the dashboard.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ael.runs.codecs import decode_confusion

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ClassSeries", "EvalRecord", "RunUpdate", "Sample", "SampleRecord", "best_evaluation", "row_at"]

T = TypeVar("T")


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

    def row_at(self, step: int | None = None) -> tuple[int, np.ndarray] | None:
        """See :func:`row_at`."""
        return row_at(self, step)


def row_at(series: ClassSeries, step: int | None = None) -> tuple[int, np.ndarray] | None:
    """The latest row of ``series`` at or before ``step``: ``(its step, (C,) float64 values)``.

    ``step=None`` means the last row; a step before the first row gives the first row. None when
    the series has no rows.
    """
    if len(series.steps) == 0:
        return None
    if step is None:
        i = len(series.steps) - 1
    else:
        i = max(0, int(np.searchsorted(series.steps, step, side="right")) - 1)
    return int(series.steps[i]), np.asarray(series.values[i], dtype=np.float64)


def _miou(record: Any) -> float:
    value = record.get("miou") if isinstance(record, Mapping) else getattr(record, "miou", None)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def best_evaluation(records: Iterable[T]) -> T | None:
    """The best of ``records`` (taken in order): the highest finite mIoU, the earliest on ties.

    Args:
        records: evaluations with an ``miou`` attribute (:class:`EvalRecord`) or key (the
            trainer's dicts), in the order they were made.

    Returns:
        That record; the last record when no mIoU is finite; None when there are none.
    """
    best, best_miou, last = None, -math.inf, None
    for record in records:
        last = record
        miou = _miou(record)
        if math.isfinite(miou) and (best is None or miou > best_miou):
            best, best_miou = record, miou
    return best if best is not None else last


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
        return decode_confusion(self.stored_confusion, len(self.iou))


@dataclass(frozen=True)
class SampleRecord:
    """The index entry of one image sample; :meth:`ael.runs.Run.load_sample` decodes its files."""

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

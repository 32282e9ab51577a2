"""The reader's in-memory form of each append-only stream, fed with the records of every poll.

Each stream class takes the records one poll read (file order), applies resume markers
(``{"resume": step}``: what came before with a later step is superseded) and returns how many
records it had to skip as invalid; the reader warns about those. Values come back one per step
(the latest), sorted by step, through :class:`~ael.runs.series.Column`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ael.runs.codecs import decode_vector, decode_vector_block, plausible_confusion, vector_width
from ael.runs.records import EvalRecord, SampleRecord
from ael.runs.schema import PART_TYPES
from ael.runs.series import Column

__all__ = ["ClassStream", "EvalStream", "MediaStream", "ScalarStream"]


def _resume_step(record: dict[str, Any]) -> int | None:
    step = record.get("resume")
    return step if type(step) is int else None


class ScalarStream:
    """``scalars.jsonl``: one :class:`Column` per scalar name (``time`` included)."""

    def __init__(self) -> None:
        self.columns: dict[str, Column] = {}

    def _column(self, name: str, size: int) -> Column:
        column = self.columns.get(name)
        if column is None:
            column = self.columns[name] = Column(capacity=max(1024, size))
        return column

    def add(self, records: list[dict[str, Any]]) -> int:
        """Take one poll's records; return how many were skipped (no integer step, not numbers)."""
        bad = 0
        i, n = 0, len(records)
        while i < n:
            record = records[i]
            if type(record.get("step")) is not int:
                resume = _resume_step(record)
                if resume is None:
                    bad += 1
                else:
                    for column in self.columns.values():
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
                            self._column(name, len(group)).extend(steps, table[:, col])
                    continue
            bad += self._add_slowly(group)
        return bad

    def _add_slowly(self, records: list[dict[str, Any]]) -> int:
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
                self._column(name, 1).extend(np.array([step]), np.array([float(value)]))
        return bad


class ClassStream:
    """``classes.jsonl``: one ``(T, C)`` :class:`Column` per class-vector name."""

    def __init__(self) -> None:
        self.columns: dict[str, Column] = {}

    def add(self, records: list[dict[str, Any]], width: int) -> int:
        """Take one poll's records; ``width`` is C from the manifest (0: guess from the first vector).

        Returns how many records were skipped (no integer step, a vector of the wrong length or type).
        """
        bad = 0
        pending: dict[str, tuple[list[int], list[Any]]] = {}
        for record in records:
            step = record.get("step")
            if type(step) is not int:
                resume = _resume_step(record)
                if resume is None:
                    bad += 1
                    continue
                bad += self._flush(pending, width)
                for column in self.columns.values():
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
        return bad + self._flush(pending, width)

    def _flush(self, pending: dict[str, tuple[list[int], list[Any]]], manifest_width: int) -> int:
        wrong = 0
        for name, (steps, raw) in pending.items():
            column = self.columns.get(name)
            width = column.width if column is not None else manifest_width or vector_width(raw[0])
            block = decode_vector_block(raw, width) if width else None
            if block is not None:
                if column is None:
                    column = self.columns[name] = Column(width=width, capacity=max(256, len(raw)))
                column.extend(np.asarray(steps, dtype=np.int64), block)
                continue
            rows, kept = [], []
            for step, value in zip(steps, raw):
                row = decode_vector(value, width) if width else None
                if row is None:
                    wrong += 1
                else:
                    rows.append(row)
                    kept.append(step)
            if not rows:
                continue
            if column is None:
                column = self.columns[name] = Column(width=width, capacity=max(256, len(rows)))
            column.extend(np.asarray(kept, dtype=np.int64), np.stack(rows))
        pending.clear()
        return wrong


class _RecordStream:
    """A stream of one record per line kept in file order; a resume marker drops the records after
    the step it resumed from (a resumed run rewrites them)."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def _parse(self, record: dict[str, Any], step: int) -> Any:
        """The record object of one line; raises KeyError/TypeError/ValueError for a malformed one."""
        raise NotImplementedError

    def add(self, records: list[dict[str, Any]]) -> int:
        """Take one poll's records; return how many were malformed."""
        bad = 0
        for record in records:
            step = record.get("step")
            if type(step) is not int:
                resume = _resume_step(record)
                if resume is None:
                    bad += 1
                else:
                    self.records = [r for r in self.records if r.step <= resume]
                continue
            try:
                self.records.append(self._parse(record, step))
            except (KeyError, TypeError, ValueError):
                bad += 1
        return bad


class EvalStream(_RecordStream):
    """``evals.jsonl``: the evaluations in file order (confusion matrices decoded on demand); a record
    needs step, model, miou and iou."""

    records: list[EvalRecord]

    def _parse(self, record: dict[str, Any], step: int) -> EvalRecord:
        iou = np.asarray(record["iou"], dtype=np.float64)
        confusion = record.get("confusion")
        if not plausible_confusion(confusion, len(iou)):
            raise ValueError("confusion")
        extra = {k: v for k, v in record.items() if k not in ("step", "time", "model", "miou", "iou", "confusion")}
        return EvalRecord(step=step, time=float(record.get("time", math.nan)), model=str(record.get("model", "teacher")),
                          miou=float(record["miou"]), iou=iou, extra=extra, stored_confusion=confusion)


class MediaStream(_RecordStream):
    """``media.jsonl``: the sample index entries in file order; an entry needs step, kind, files, parts."""

    records: list[SampleRecord]

    def _parse(self, record: dict[str, Any], step: int) -> SampleRecord:
        files, parts = record.get("files"), record.get("parts")
        if (not isinstance(files, dict) or not isinstance(parts, dict) or set(files) != set(parts)
                or not all(t in PART_TYPES for t in parts.values())
                or not isinstance(record.get("kind"), str)):
            raise ValueError("not a sample entry")
        meta = record.get("meta")
        return SampleRecord(step=step, time=float(record.get("time", math.nan)), kind=record["kind"],
                            index=int(record.get("index", 0)), files=files, parts=parts,
                            meta=meta if isinstance(meta, dict) else {})

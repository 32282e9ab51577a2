"""The append-only JSON-lines streams of the run store: one record per line, tailed by byte offset.

Only whole lines count: a writer appends ``line + "\\n"`` in one write, so a line without its
newline is one being written (or torn by a crash) and is left for later. How big arrays inside a
record are encoded is :mod:`ael.runs.codecs`'s job; repairing a torn tail is :mod:`ael.runs.files`'s.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DamagedRunWarning", "JsonlTail", "RawJson", "encode_record"]


class DamagedRunWarning(UserWarning):
    """Some lines of a run file could not be parsed and were skipped (the count is in the message)."""


class RawJson(str):
    """Text that is already valid JSON and is embedded verbatim by :func:`encode_record`."""


def _encode_value(value: Any) -> str:
    if isinstance(value, RawJson):
        return value
    return json.dumps(value, separators=(",", ":"))


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One record as a single UTF-8 JSON line ending in ``\\n`` (keys in insertion order)."""
    body = ",".join(f"{json.dumps(k)}:{_encode_value(v)}" for k, v in record.items())
    return ("{" + body + "}\n").encode("utf-8")


class JsonlTail:
    """Reads the records appended to one ``.jsonl`` file since the previous poll.

    Keeps a byte offset, reads only new bytes, leaves a line without its newline for the next
    poll, and starts over when the file was replaced (new inode) or shrank below the offset.
    Lines that are not JSON objects are skipped, counted in :attr:`damaged` and warned about.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.offset = 0
        self.lines = 0  # complete lines consumed, for line numbers in warnings
        self.damaged = 0
        self._inode: tuple[int, int] | None = None

    def _reset(self) -> None:
        self.offset = 0
        self.lines = 0
        self.damaged = 0

    def poll(self) -> tuple[list[dict[str, Any]], bool]:
        """Read what was appended.

        Returns:
            ``(records, reset)``: the new records in file order, and True when the file was
            replaced or truncated so the caller must drop what it built from earlier polls
            (``records`` then holds the whole file again).
        """
        reset = False
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below, after fstat
        except FileNotFoundError:
            if self._inode is not None:
                self._inode = None
                self._reset()
                return [], True
            return [], False
        with f:
            st = os.fstat(f.fileno())
            inode = (st.st_dev, st.st_ino)
            if self._inode is not None and (inode != self._inode or st.st_size < self.offset):
                self._reset()
                reset = True
            self._inode = inode
            if st.st_size <= self.offset:
                return [], reset
            f.seek(self.offset)
            data = f.read(st.st_size - self.offset)
        end = data.rfind(b"\n")
        if end < 0:
            return [], reset
        self.offset += end + 1
        return self._parse(data[: end + 1]), reset

    def _parse(self, chunk: bytes) -> list[dict[str, Any]]:
        count = chunk.count(b"\n")
        first_line = self.lines + 1
        self.lines += count
        # Fast path: the whole chunk as one JSON array (one C-level replace, one parse).
        try:
            records = json.loads(b"[" + chunk[:-1].replace(b"\n", b",") + b"]")
            if len(records) == count and all(type(r) is dict for r in records):
                return records
        except ValueError:
            pass
        lines = chunk.split(b"\n")[:-1]
        # Slow path: some line is damaged; keep every readable one and say which were not.
        records, bad = [], []
        for number, line in enumerate(lines, start=first_line):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if type(record) is dict:
                records.append(record)
            else:
                bad.append(number)
        if bad:
            self.damaged += len(bad)
            shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
            warnings.warn(
                f"{self.path}: skipped {len(bad)} damaged line(s) (line {shown}); "
                f"{self.damaged} damaged in this file so far",
                DamagedRunWarning,
                stacklevel=3,
            )
        return records

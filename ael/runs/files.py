"""Crash safety of run files: atomic replacement and the repair of a torn JSON-lines tail.

A file that readers must see whole (the manifest, an image) is written under a temp name,
fsynced and renamed over the old one; an append-only ``.jsonl`` file may end in a line torn by a
crash, which a resuming writer cuts off before appending again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ael.runs.schema import MEDIA_DIR, STREAMS

__all__ = ["drop_torn_tail", "repair_run", "write_atomic"]

logger = logging.getLogger(__name__)


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file through ``write(f)`` to a temp name, fsync it and rename it into place."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def drop_torn_tail(path: Path) -> int:
    """Truncate ``path`` after its last newline (a line torn by a crash); return the bytes dropped."""
    if not path.exists():
        return 0
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        end = size
        block = 65536
        keep = 0
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            chunk = f.read(end - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            end = start
        if keep < size:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
            logger.warning("%s: dropped a torn last line (%d bytes)", path, size - keep)
        return size - keep


def repair_run(run_dir: Path) -> None:
    """Make a crashed run folder fit for appending: cut torn last lines, remove half-written media."""
    for fname in STREAMS.values():
        drop_torn_tail(run_dir / fname)
    for tmp in (run_dir / MEDIA_DIR).glob("*.tmp"):
        tmp.unlink(missing_ok=True)

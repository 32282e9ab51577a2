"""Crash safety of run files: atomic replacement and the repair of a torn JSON-lines tail.

A file that readers must see whole (the manifest, an image) is written under a temp name,
fsynced and renamed over the old one; an append-only ``.jsonl`` file may end in a line torn by a
crash, which a resuming writer cuts off before appending again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ael.fs import TEMP_SUFFIX
from ael.runs.schema import MEDIA_DIR, STREAMS

__all__ = ["drop_torn_tail", "repair_run"]

logger = logging.getLogger(__name__)


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
    # ael.fs.write_atomic's temp files end in .tmp, and so did the older writers' (``<name>.tmp``).
    for tmp in (run_dir / MEDIA_DIR).glob(f"*{TEMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)

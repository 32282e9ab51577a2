"""The writer's background media queue: image samples are encoded and written off the training thread.

The caller puts checked, copied parts (:func:`ael.runs.images.prepare_part`); a bounded queue
feeds one daemon thread that encodes each part, writes it atomically under ``media/`` and only
then appends the ``media.jsonl`` line that names the files. When the queue is full a sample is
dropped and counted, so logging never waits on image I/O; a sample whose files cannot be written
is counted as failed and the thread goes on.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ael.fs import write_atomic
from ael.runs.images import EXTENSIONS, encode_part
from ael.runs.jsonl import encode_record
from ael.runs.schema import MEDIA_DIR

__all__ = ["MediaQueue"]

logger = logging.getLogger(__name__)

_STOP = object()


class MediaQueue:
    """A bounded queue of samples and the thread that writes them.

    Args:
        run_dir: the run folder (files go to ``run_dir/media``).
        stream: ``media.jsonl`` opened for appending; written only by the thread.
        palette: ``(C, 3)`` colours of the label PNGs, or None.
        session: how many times the run was resumed before (file names stay unique).
        maxsize: samples that may wait; more are dropped.
        counts: the ``written``, ``dropped`` and ``failed`` counts to continue from (a resumed run).

    Attributes:
        written, dropped, failed: samples written, dropped because the queue was full, and
            given up on because writing them failed.
    """

    def __init__(self, run_dir: Path, stream: BinaryIO, *, palette: np.ndarray | None, session: int, maxsize: int,
                 counts: Mapping[str, int] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.palette = palette
        self.session = session
        counts = counts or {}
        self.written = int(counts.get("written", 0))
        self.dropped = int(counts.get("dropped", 0))
        self.failed = int(counts.get("failed", 0))
        self._stream = stream
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=int(maxsize))
        self._thread = threading.Thread(target=self._loop, name=f"ael-run-media-{self.run_dir.name}", daemon=True)
        self._thread.start()

    def counts(self) -> dict[str, int]:
        """``{"written", "dropped", "failed"}`` so far (what the manifest records)."""
        return {"written": self.written, "dropped": self.dropped, "failed": self.failed}

    def put(self, step: int, kind: str, index: int, parts: dict[str, tuple[str, np.ndarray]],
            meta: dict[str, Any]) -> bool:
        """Queue one sample (``parts``: name -> (part type, prepared array)); False when dropped."""
        try:
            self._queue.put_nowait((step, kind, index, parts, meta, time.time()))
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                logger.warning("run %s: media queue full, %d sample(s) dropped so far", self.run_dir.name,
                               self.dropped)
            return False
        return True

    def _write(self, step: int, kind: str, index: int, parts: dict[str, tuple[str, np.ndarray]],
               meta: dict[str, Any], when: float) -> None:
        files, types = {}, {}
        for name, (part_type, array) in parts.items():
            fname = f"{step:08d}_{kind}_{index}_{name}_s{self.session}.{EXTENSIONS[part_type]}"
            write_atomic(self.run_dir / MEDIA_DIR / fname,
                         lambda fh, a=array, t=part_type: encode_part(a, t, fh, self.palette))
            files[name] = f"{MEDIA_DIR}/{fname}"
            types[name] = part_type
        record = {"step": step, "time": when, "kind": kind, "index": index, "files": files, "parts": types,
                  "meta": meta}
        self._stream.write(encode_record(record))
        self._stream.flush()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                try:
                    self._write(*item)
                    self.written += 1
                except Exception:
                    self.failed += 1
                    logger.exception("run %s: could not write sample %r at step %d", self.run_dir.name, item[1],
                                     item[0])
            finally:
                self._queue.task_done()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued sample is written; False if ``timeout`` seconds passed first."""
        if timeout is None:
            self._queue.join()
            return True
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued (waiting at most ``timeout`` seconds) and stop the thread."""
        if not self.flush(timeout):
            logger.warning("run %s: gave up waiting for queued samples", self.run_dir.name)
        with contextlib.suppress(queue.Full):  # a stuck image write must not keep a crash unreported
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout=timeout)

"""The run writer: rank 0 streams the training state into a run folder, crash-safely.

Scalars, per-class vectors and evaluations are written synchronously as one JSON line each
(write + flush, no fsync): a ``kill -9`` loses at most the line being written. Image samples
go through a bounded background queue (:mod:`ael.runs.media_queue`) and are dropped, and
counted, when it is full, so logging never waits on image I/O. The manifest
(:mod:`ael.runs.manifest`) is replaced atomically at start, at most every ``heartbeat_s`` while
logging (the heartbeat), after each evaluation, and at the end. A new run with a generated id
is started by :func:`ael.runs.start.start_run` (an example is there).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ael.runs.codecs import encode_confusion, encode_vector, format_vector
from ael.runs.files import repair_run
from ael.runs.images import prepare_sample
from ael.runs.inputs import (
    NAME,
    SERIES_NAME,
    as_float,
    as_step,
    check_name,
    check_palette,
    class_vector,
    count_matrix,
    jsonable,
)
from ael.runs.jsonl import encode_record
from ael.runs.manifest import check_identity, new_manifest, record_eval, reopen_manifest, write_manifest
from ael.runs.media_queue import MediaQueue
from ael.runs.schema import CHECKPOINTS_DIR, MEDIA_DIR, STREAMS, RunStoreError, resolve_run_dir

__all__ = ["RunWriter"]

logger = logging.getLogger(__name__)


class RunWriter:
    """Writes one run folder ``<runs_dir>/<run_id>/``; used by rank 0 only, from one thread.

    Args:
        runs_dir: the folder holding runs (created if missing).
        run_id: the run's folder name, ``[A-Za-z0-9._-]+``.
        class_names: the C class names; per-class vectors must have length C.
        palette: ``(C, 3)`` RGB colours of the classes (label PNGs and the dashboard use them).
        ignore_index: the label value that means "no class".
        config: the resolved config as plain data (a dict; nested dicts, lists, numbers, strings).
        dataset: dataset name; split: a description of the labeled split (e.g. ``"1/8 seed 0"``).
        total_steps: the planned number of iterations (progress = step / total_steps).
        heartbeat_s: the manifest's heartbeat is refreshed at most this often while logging.
        stalled_after_s: recorded in the manifest; readers call a running run whose heartbeat is
            older than this "stalled".
        media_queue: how many image samples may wait for the background writer; more are dropped.
        resume: append to an existing run folder (after dropping torn last lines) instead of
            refusing it.
        resume_step: the step training resumes from; records of later steps written before the
            resume are superseded for readers. None: keep them (each step's latest value wins).
        extra: more JSON data for the manifest (e.g. world size, device name).
        method: the semi-supervised method's name (``ael``, ``supervised``, ``mean_teacher``,
            ``cutmix_seg``, ...).
        vectors: the per-class vectors the method logs, name -> description (readers show these
            descriptions); None: no declaration (readers fall back to the known AEL vectors).
        group: a comparison group (the runs of one multi-seed comparison).

    When resuming, the identity arguments given (``dataset``, ``split``, ``total_steps``,
    ``method``, ``vectors``, ``group``) replace the recorded ones; None keeps them.

    Raises:
        RunStoreError: the id is unsafe, the folder exists (and not ``resume``) or is missing
            (``resume``), or a resumed run has other class names or an unreadable schema version.
    """

    def __init__(
        self,
        runs_dir: str | os.PathLike[str],
        run_id: str,
        *,
        class_names: Sequence[str],
        palette: Sequence[Sequence[int]] | np.ndarray | None = None,
        ignore_index: int = 255,
        config: Mapping[str, Any] | None = None,
        dataset: str | None = None,
        split: str | None = None,
        total_steps: int | None = None,
        heartbeat_s: float = 10.0,
        stalled_after_s: float = 120.0,
        media_queue: int = 32,
        resume: bool = False,
        resume_step: int | None = None,
        extra: Mapping[str, Any] | None = None,
        method: str | None = None,
        vectors: Mapping[str, str] | None = None,
        group: str | None = None,
    ) -> None:
        if heartbeat_s <= 0 or stalled_after_s <= 0 or media_queue < 1:
            raise ValueError("heartbeat_s and stalled_after_s must be > 0 and media_queue >= 1")
        self.class_names = [str(n) for n in class_names]
        if not self.class_names:
            raise ValueError("class_names must not be empty")
        self.num_classes = len(self.class_names)
        self.palette = None if palette is None else check_palette(palette)
        self.heartbeat_s = float(heartbeat_s)
        Path(runs_dir).mkdir(parents=True, exist_ok=True)
        self.run_dir = resolve_run_dir(runs_dir, run_id)
        self.run_id = run_id
        self._lock = threading.Lock()  # guards manifest writes (caller and closing paths)
        self._closed, self._last_step = False, None

        now = time.time()
        # Convert before creating anything, so a bad argument leaves no half-made run folder.
        config_data = jsonable(dict(config or {}), "config")
        extra_data = jsonable(dict(extra or {}), "extra")
        identity = check_identity(method, vectors, group)
        json.dumps([config_data, extra_data])
        if resume:
            self._manifest = reopen_manifest(
                self.run_dir, class_names=self.class_names, resume_step=resume_step, now=now,
                updates={"total_steps": total_steps, "dataset": dataset, "split": split, **identity,
                         "heartbeat_s": self.heartbeat_s, "stalled_after_s": float(stalled_after_s)})
            repair_run(self.run_dir)
        else:
            try:
                self.run_dir.mkdir()
            except FileExistsError:
                raise RunStoreError(
                    f"run folder {self.run_dir} already exists; pick another run id or resume it"
                ) from None
            self._manifest = new_manifest(
                run_id, class_names=self.class_names,
                palette=None if self.palette is None else self.palette.tolist(), ignore_index=ignore_index,
                config=config_data, identity=identity, dataset=dataset, split=split, total_steps=total_steps,
                heartbeat_s=self.heartbeat_s, stalled_after_s=stalled_after_s, extra=extra_data, now=now)
        for folder in (MEDIA_DIR, CHECKPOINTS_DIR):
            (self.run_dir / folder).mkdir(exist_ok=True)
        self._files = {name: open(self.run_dir / fname, "ab") for name, fname in STREAMS.items()}  # noqa: SIM115
        if resume and resume_step is not None:
            marker = encode_record({"resume": int(resume_step), "time": now})
            for f in self._files.values():
                f.write(marker)
                f.flush()
        self._media = MediaQueue(self.run_dir, self._files["media"], palette=self.palette,
                                 session=len(self._manifest["resumes"]), maxsize=media_queue,
                                 counts=self._manifest.get("media"))
        self._write_manifest()
        self._last_beat = now
        logger.info("%s run %s at %s", "resumed" if resume else "started", run_id, self.run_dir)

    def _write_manifest(self) -> None:
        with self._lock:
            self._manifest["media"] = self._media.counts()
            write_manifest(self.run_dir, self._manifest)

    # ---------------------------------------------------------------------------- properties

    @property
    def checkpoints_dir(self) -> Path:
        """Where the trainer keeps this run's checkpoints (readers ignore it)."""
        return self.run_dir / CHECKPOINTS_DIR

    @property
    def status(self) -> str:
        """``running``, ``finished`` or ``crashed``."""
        return self._manifest["status"]

    media_written = property(lambda self: self._media.written, doc="Samples written (over every session).")
    media_dropped = property(lambda self: self._media.dropped, doc="Samples dropped: the media queue was full.")
    media_failed = property(lambda self: self._media.failed, doc="Samples whose files could not be written.")

    # ---------------------------------------------------------------------------- records

    def _check_open(self) -> None:
        if self._closed:
            raise RunStoreError(f"run {self.run_id!r} is closed ({self._manifest['status']}); nothing more is written")

    def _append(self, stream: str, record: Mapping[str, Any]) -> None:
        f = self._files[stream]
        f.write(encode_record(record))
        f.flush()

    def _after_record(self, step: int) -> None:
        if self._last_step is None or step > self._last_step:
            self._last_step = step
        if time.time() - self._last_beat >= self.heartbeat_s:
            self.heartbeat()

    def log_scalars(self, step: int, values: Mapping[str, Any]) -> None:
        """Append one line of scalars for ``step`` (never dropped).

        Args:
            step: the training iteration.
            values: name -> number (float, int, numpy scalar, 0-d/1-element CPU tensor). Names
                use ``[A-Za-z0-9_./-]`` (e.g. ``loss/sup``); not ``step``, ``time`` or ``resume``.
                Several calls for one step merge; for a name logged twice the latest wins.

        Raises:
            ValueError / TypeError: naming the scalar at fault; nothing is written then.
        """
        self._check_open()
        step = as_step(step)
        record: dict[str, Any] = {"step": step, "time": time.time()}
        for name, value in values.items():
            check_name(name, SERIES_NAME, "scalar")
            record[name] = as_float(value, f"scalar {name!r} at step {step}")
        self._append("scalars", record)
        self._after_record(step)

    def log_classes(self, step: int, vectors: Mapping[str, Any]) -> None:
        """Append one line of per-class vectors for ``step`` (never dropped).

        Args:
            step: the training iteration.
            vectors: name -> length-C host vector (numpy, list, 1-d CPU tensor); the names the
                method declared in ``vectors`` (others are allowed). Stored as float32.

        Raises:
            ValueError / TypeError: naming the vector at fault (wrong length, not 1-d, ...).
        """
        self._check_open()
        step = as_step(step)
        record: dict[str, Any] = {"step": step, "time": time.time()}
        for name, value in vectors.items():
            check_name(name, SERIES_NAME, "class vector")
            record[name] = encode_vector(class_vector(value, self.num_classes, f"class vector {name!r} at step {step}"))
        self._append("classes", record)
        self._after_record(step)

    def log_eval(
        self,
        step: int,
        *,
        miou: float,
        iou: Any,
        confusion: Any | None = None,
        model: str = "teacher",
        mode: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an evaluation to ``evals.jsonl`` and its IoU as class vector ``iou_<model>``.

        Args:
            step: the iteration evaluated.
            miou: mean IoU as a fraction in [0, 1].
            iou: ``(C,)`` per-class IoU (NaN for classes absent from prediction and truth).
            confusion: ``(C, C)`` integer confusion matrix, rows = truth, columns = prediction.
            model: which network was evaluated (``teacher`` or ``student``).
            mode: the evaluation protocol in words (``"sliding 769 stride 2/3"``), stored as
                ``mode`` (readers: ``EvalRecord.extra["mode"]``).
            extra: more numbers (e.g. ``pixel_acc``, ``eval_seconds``).
        """
        self._check_open()
        step = as_step(step)
        check_name(model, NAME, "model")
        what = f"evaluation of {model} at step {step}"
        now = time.time()
        record: dict[str, Any] = {"step": step, "time": now, "model": model, "miou": as_float(miou, f"{what}: miou")}
        if mode is not None:
            if not isinstance(mode, str) or not mode or len(mode) > 200 or "\n" in mode:
                raise ValueError(f"{what}: mode must be one line of text (at most 200 characters), got {mode!r}")
            record["mode"] = mode
        iou_array = class_vector(iou, self.num_classes, f"{what}: iou")
        record["iou"] = format_vector(iou_array)
        record["confusion"] = (None if confusion is None else
                               encode_confusion(count_matrix(confusion, self.num_classes, f"{what}: confusion")))
        for name, value in (extra or {}).items():
            check_name(name, SERIES_NAME, "eval extra")
            if name == "mode":
                raise ValueError(f"{what}: 'mode' is the mode argument, not an extra number")
            record[name] = as_float(value, f"{what}: {name}")
        self._append("evals", record)
        self._append("classes", {"step": step, "time": now, f"iou_{model}": encode_vector(iou_array)})
        record_eval(self._manifest, model, step, record["miou"])
        self._after_record(step)
        self.heartbeat()

    def log_sample(
        self,
        step: int,
        kind: str,
        *,
        images: Mapping[str, Any] | None = None,
        labels: Mapping[str, Any] | None = None,
        maps: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        index: int = 0,
    ) -> bool:
        """Queue an image sample for the background writer; drop it (and count it) if the queue is full.

        The arrays are checked and copied on this thread; encoding and file writes happen on
        the writer thread.

        Args:
            step: the training iteration.
            kind: what the sample shows, ``[A-Za-z0-9_-]+`` (the conventional kinds and parts
                are listed in :mod:`ael.runs.schema`).
            images: part name -> ``(H, W, 3)`` uint8 or float in [0, 1] (stored as JPEG).
            labels: part name -> ``(H, W)`` class indices in [0, 255] (palette PNG; the ignore
                index stays as is).
            maps: part name -> ``(H, W)`` values in [0, 1] (8-bit PNG).
            meta: JSON data about the sample (numpy scalars and arrays are converted).
            index: tells apart several samples of one kind at one step.

        Returns:
            True when queued, False when dropped because the queue was full.

        Raises:
            ValueError / TypeError: naming the part at fault (shape, dtype, name clash).
        """
        self._check_open()
        step = as_step(step)
        check_name(kind, NAME, "sample kind")
        parts = prepare_sample(kind, step, {"rgb": images, "label": labels, "map": maps})
        meta_data = jsonable(dict(meta or {}), f"sample {kind!r} meta")
        json.dumps(meta_data)  # fail here, on the caller's thread, not in the writer thread
        return self._media.put(step, kind, int(index), parts, meta_data)

    def flush_media(self, timeout: float | None = None) -> bool:
        """Wait until every queued sample is written; False if ``timeout`` seconds passed first."""
        return self._media.flush(timeout)

    def heartbeat(self, step: int | None = None) -> None:
        """Refresh the manifest now (heartbeat time, last step, media counts).

        Logging calls this at most every ``heartbeat_s``; call it yourself during long pauses
        (evaluation, checkpointing) so readers do not mark the run stalled.
        """
        self._check_open()
        if step is not None:
            step = as_step(step)
            if self._last_step is None or step > self._last_step:
                self._last_step = step
        now = time.time()
        self._manifest["heartbeat"] = now
        self._manifest["step"] = self._last_step
        self._last_beat = now
        self._write_manifest()

    # ---------------------------------------------------------------------------- ending

    def _end(self, status: str, error: dict[str, Any] | None, media_timeout: float | None) -> None:
        if self._closed:
            return
        self._media.close(media_timeout)
        self._closed = True
        for f in self._files.values():
            f.close()
        now = time.time()
        self._manifest.update(status=status, error=error, ended=now, heartbeat=now, step=self._last_step)
        self._write_manifest()
        logger.info("run %s %s", self.run_id, status)

    def finish(self) -> None:
        """Write the queued samples and mark the run finished. Idempotent."""
        self._end("finished", None, media_timeout=None)

    def crash(self, exc: BaseException) -> None:
        """Mark the run crashed with ``exc`` (type, message, traceback). Idempotent."""
        error = {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        }
        self._end("crashed", error, media_timeout=10.0)

    def close(self) -> None:
        """Finish the run if it is still open (same as :meth:`finish`)."""
        self.finish()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            self.crash(exc)
        else:
            self.finish()

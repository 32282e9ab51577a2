"""The run writer: rank 0 streams the training state into a run folder, crash-safely.

Scalars, per-class vectors and evaluations are written synchronously as one JSON line each
(write + flush, no fsync): a ``kill -9`` loses at most the line being written. Image samples
are encoded and written by a background thread fed through a bounded queue; when the queue is
full a sample is dropped and counted, so logging never waits on image I/O. Each image file is
written to a temp name, fsynced and renamed before the ``media.jsonl`` line that names it.
The manifest is replaced atomically (temp file, fsync, ``os.replace``) at start, at most every
``heartbeat_s`` while logging (the heartbeat), after each evaluation, and at the end.

Typical use by the trainer::

    with RunWriter("runs", run_id, class_names=names, palette=palette, config=cfg_dict,
                   dataset="cityscapes", split="1/8 seed 0", total_steps=18000) as writer:
        for step in ...:
            writer.log_scalars(step, {"loss": 0.7, "lr": 0.01})
            writer.log_classes(step, {"bank": bank_np})             # every classes_every steps
            writer.log_sample(step, "cutmix", images={...}, labels={...}, meta={"box": [...]})
        writer.log_eval(step, miou=0.61, iou=iou_np, confusion=cm_np, model="teacher")
    # leaving the block by an exception marks the run crashed with the error
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import os
import queue
import re
import socket
import subprocess
import threading
import time
import traceback
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ael.runs.images import EXTENSIONS, encode_part, prepare_part, to_host_array, write_atomic
from ael.runs.jsonl import drop_torn_tail, encode_array, encode_record, format_vector
from ael.runs.schema import (
    CHECKPOINTS_DIR,
    MANIFEST_FILE,
    MEDIA_DIR,
    SCHEMA_VERSION,
    STREAMS,
    RunNotFoundError,
    RunStoreError,
    SchemaVersionError,
    check_run_id,
    resolve_run_dir,
)

__all__ = ["RunWriter", "new_run_id", "writer_from_config"]

logger = logging.getLogger(__name__)

_RESERVED_KEYS = frozenset({"step", "time", "resume", "model", "kind", "index", "files", "parts", "meta"})
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_NAME = re.compile(r"[A-Za-z0-9_./-]+")
_STOP = object()


def new_run_id(preset: str = "run", now: float | None = None) -> str:
    """A default run id: ``YYYYmmdd-HHMMSS-<preset>`` (unsafe characters of the preset become ``_``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    return check_run_id(f"{stamp}-{re.sub(r'[^A-Za-z0-9._-]', '_', preset) or 'run'}")


def _git_commit() -> tuple[str | None, bool | None]:
    """The commit of the checkout ``ael`` is imported from, and whether it has local changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(dirty)


def _jsonable(value: Any, what: str) -> Any:
    """Plain JSON data from numpy scalars/arrays, tuples and nested containers."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{what}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, what) for v in value]
    if isinstance(value, np.ndarray) or type(value).__module__.split(".")[0] == "torch":
        return to_host_array(value, what).tolist()
    raise TypeError(f"{what}: {type(value).__name__} is not JSON data")


def _as_step(step: Any) -> int:
    if isinstance(step, (bool, float)) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step must be an int, got {type(step).__name__} {step!r}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return int(step)


def _as_float(value: Any, what: str) -> float:
    if type(value) is float:
        return value
    if isinstance(value, (int, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    array = to_host_array(value, what)
    if array.size != 1 or array.dtype.kind not in "fiub":
        raise ValueError(f"{what}: expected one number, got shape {array.shape} dtype {array.dtype}")
    return float(array.reshape(()))


class RunWriter:
    """Writes one run folder ``<runs_dir>/<run_id>/``; used by rank 0 only, from one thread.

    Args:
        runs_dir: the folder holding runs (created if missing).
        run_id: the run's folder name, ``[A-Za-z0-9._-]+``.
        class_names: the C class names; per-class vectors must have length C.
        palette: ``(C, 3)`` RGB colours of the classes (label PNGs and the dashboard use them).
        ignore_index: the label value that means "no class".
        config: the resolved config as plain data (``ael.config.config_to_dict``).
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

    Raises:
        RunStoreError: the id is unsafe, the folder exists (and not ``resume``) or is missing
            (``resume``), or a resumed run has other class names or schema version.
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
    ) -> None:
        if heartbeat_s <= 0 or stalled_after_s <= 0 or media_queue < 1:
            raise ValueError("heartbeat_s and stalled_after_s must be > 0 and media_queue >= 1")
        self.class_names = [str(n) for n in class_names]
        if not self.class_names:
            raise ValueError("class_names must not be empty")
        self.num_classes = len(self.class_names)
        self.palette = None if palette is None else self._check_palette(palette)
        self.heartbeat_s = float(heartbeat_s)
        Path(runs_dir).mkdir(parents=True, exist_ok=True)
        self.run_dir = resolve_run_dir(runs_dir, run_id)
        self.run_id = run_id
        self._lock = threading.Lock()  # guards manifest writes (caller and closing paths)
        self._closed = False
        self._last_step: int | None = None
        self.media_written = 0
        self.media_dropped = 0
        self.media_failed = 0

        now = time.time()
        # Convert before creating anything, so a bad config leaves no half-made run folder.
        config_data = _jsonable(dict(config or {}), "config")
        extra_data = _jsonable(dict(extra or {}), "extra")
        json.dumps([config_data, extra_data])
        if resume:
            self._manifest = self._reopen(now, resume_step)
        else:
            try:
                self.run_dir.mkdir()
            except FileExistsError:
                raise RunStoreError(
                    f"run folder {self.run_dir} already exists; pick another run id or resume it"
                ) from None
            commit, dirty = _git_commit()
            self._manifest = {
                "schema_version": SCHEMA_VERSION,
                "run_id": run_id,
                "status": "running",
                "error": None,
                "created": now,
                "heartbeat": now,
                "ended": None,
                "step": None,
                "total_steps": total_steps,
                "dataset": dataset,
                "split": split,
                "class_names": self.class_names,
                "palette": None if self.palette is None else self.palette.tolist(),
                "ignore_index": int(ignore_index),
                "config": config_data,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "git_commit": commit,
                "git_dirty": dirty,
                "heartbeat_s": self.heartbeat_s,
                "stalled_after_s": float(stalled_after_s),
                "evals": {},
                "media": {"written": 0, "dropped": 0, "failed": 0},
                "resumes": [],
                "extra": extra_data,
            }
        (self.run_dir / MEDIA_DIR).mkdir(exist_ok=True)
        (self.run_dir / CHECKPOINTS_DIR).mkdir(exist_ok=True)
        if resume:
            self._manifest.update(
                {k: v for k, v in {"total_steps": total_steps, "dataset": dataset, "split": split}.items()
                 if v is not None}
            )
            self._manifest["heartbeat_s"] = self.heartbeat_s
            self._manifest["stalled_after_s"] = float(stalled_after_s)
        self._session = len(self._manifest["resumes"])
        self._write_manifest()
        self._last_beat = now
        self._files = {name: open(self.run_dir / fname, "ab") for name, fname in STREAMS.items()}  # noqa: SIM115
        if resume and resume_step is not None:
            marker = encode_record({"resume": int(resume_step), "time": now})
            for f in self._files.values():
                f.write(marker)
                f.flush()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=int(media_queue))
        self._worker = threading.Thread(target=self._media_loop, name=f"ael-run-media-{run_id}", daemon=True)
        self._worker.start()
        logger.info("%s run %s at %s", "resumed" if resume else "started", run_id, self.run_dir)

    # ---------------------------------------------------------------------------- set-up

    def _reopen(self, now: float, resume_step: int | None) -> dict[str, Any]:
        path = self.run_dir / MANIFEST_FILE
        if not self.run_dir.is_dir():
            raise RunNotFoundError(f"cannot resume run {self.run_id!r}: {self.run_dir} does not exist")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise RunStoreError(f"cannot resume run {self.run_id!r}: {path} is unreadable ({err})") from None
        if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
            version = manifest.get("schema_version") if isinstance(manifest, dict) else None
            raise SchemaVersionError(
                f"cannot resume run {self.run_id!r}: {path} has schema version {version!r}, "
                f"this code writes {SCHEMA_VERSION}"
            )
        if manifest.get("class_names") != self.class_names:
            raise RunStoreError(
                f"cannot resume run {self.run_id!r}: its class names ({path}) differ from the ones given"
            )
        for fname in STREAMS.values():
            drop_torn_tail(self.run_dir / fname)
        for tmp in (self.run_dir / MEDIA_DIR).glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        manifest["status"] = "running"
        manifest["error"] = None
        manifest["ended"] = None
        manifest["heartbeat"] = now
        manifest["pid"] = os.getpid()
        manifest["host"] = socket.gethostname()
        manifest["resumes"] = [*manifest.get("resumes", []), {"time": now, "step": resume_step}]
        counts = manifest.get("media") or {}
        self.media_written = int(counts.get("written", 0))
        self.media_dropped = int(counts.get("dropped", 0))
        self.media_failed = int(counts.get("failed", 0))
        return manifest

    def _write_manifest(self) -> None:
        with self._lock:
            self._manifest["media"] = {
                "written": self.media_written, "dropped": self.media_dropped, "failed": self.media_failed,
            }
            text = json.dumps(self._manifest, indent=1)
            write_atomic(self.run_dir / MANIFEST_FILE, lambda f: f.write(text.encode("utf-8")))

    # ---------------------------------------------------------------------------- properties

    @property
    def checkpoints_dir(self) -> Path:
        """Where the trainer keeps this run's checkpoints (readers ignore it)."""
        return self.run_dir / CHECKPOINTS_DIR

    @property
    def status(self) -> str:
        """``running``, ``finished`` or ``crashed``."""
        return self._manifest["status"]

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
        step = _as_step(step)
        record: dict[str, Any] = {"step": step, "time": time.time()}
        for name, value in values.items():
            self._check_name(name, _SCALAR_NAME, "scalar")
            record[name] = _as_float(value, f"scalar {name!r} at step {step}")
        self._append("scalars", record)
        self._after_record(step)

    def log_classes(self, step: int, vectors: Mapping[str, Any]) -> None:
        """Append one line of per-class vectors for ``step`` (never dropped).

        Args:
            step: the training iteration.
            vectors: name -> length-C host vector (numpy, list, 1-d CPU tensor). Suggested
                names are in :data:`ael.runs.schema.KNOWN_CLASS_VECTORS` (``bank``,
                ``copy_paste_prob``, ``cutmix_prob``, ``sampling_ratio``, ``freq_labeled``,
                ``freq_pseudo``). Stored as float32.

        Raises:
            ValueError / TypeError: naming the vector at fault (wrong length, not 1-d, ...).
        """
        self._check_open()
        step = _as_step(step)
        record: dict[str, Any] = {"step": step, "time": time.time()}
        for name, value in vectors.items():
            self._check_name(name, _SCALAR_NAME, "class vector")
            record[name] = encode_array(self._vector(value, f"class vector {name!r} at step {step}"), "<f4")
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
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an evaluation to ``evals.jsonl`` and its IoU as class vector ``iou_<model>``.

        Args:
            step: the iteration evaluated.
            miou: mean IoU as a fraction in [0, 1].
            iou: ``(C,)`` per-class IoU (NaN for classes absent from prediction and truth).
            confusion: ``(C, C)`` integer confusion matrix, rows = truth, columns = prediction.
            model: which network was evaluated (``teacher`` or ``student``).
            extra: more numbers (e.g. ``pixel_acc``, ``eval_seconds``).
        """
        self._check_open()
        step = _as_step(step)
        self._check_name(model, _NAME, "model")
        what = f"evaluation of {model} at step {step}"
        now = time.time()
        record: dict[str, Any] = {
            "step": step, "time": now, "model": model, "miou": _as_float(miou, f"{what}: miou"),
        }
        iou_array = self._vector(iou, f"{what}: iou")
        record["iou"] = format_vector(iou_array)
        if confusion is not None:
            matrix = to_host_array(confusion, f"{what}: confusion")
            if matrix.shape != (self.num_classes, self.num_classes):
                raise ValueError(
                    f"{what}: confusion must be ({self.num_classes}, {self.num_classes}), got {matrix.shape}"
                )
            if matrix.dtype.kind == "f" and (
                not np.all(np.isfinite(matrix)) or np.any(matrix != np.round(matrix))
            ):
                raise ValueError(f"{what}: confusion must hold whole counts")
            # Confusion matrices are mostly zeros: zlib shrinks them several-fold before base64.
            record["confusion"] = base64.b64encode(
                zlib.compress(np.ascontiguousarray(matrix, dtype="<i8").tobytes(), 1)
            ).decode("ascii")
        else:
            record["confusion"] = None
        for name, value in (extra or {}).items():
            self._check_name(name, _SCALAR_NAME, "eval extra")
            record[name] = _as_float(value, f"{what}: {name}")
        self._append("evals", record)
        self._append("classes", {"step": step, "time": now, f"iou_{model}": encode_array(iou_array, "<f4")})
        summary = self._manifest["evals"].get(model, {})
        value = record["miou"]
        best = summary.get("best_miou")
        if math.isfinite(value) and (best is None or value > best):
            summary.update(best_miou=value, best_step=step)
        summary.update(last_miou=value, last_step=step)
        self._manifest["evals"][model] = summary
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

        The arrays are checked and copied to compact uint8 on this thread; encoding and file
        writes happen on the writer thread.

        Args:
            step: the training iteration.
            kind: what the sample shows, ``[A-Za-z0-9_-]+``. Conventions: ``pseudo`` (images
                ``image``; labels ``gt``, ``pseudo``; maps ``confidence``), ``cutmix`` (images
                ``image_a``, ``image_b``, ``mixed``; labels ``pseudo_mixed``; meta ``box``
                ``[y0, x0, y1, x1]`` end-exclusive and ``class``), ``copy_paste`` (images
                ``image``; labels ``label``; meta ``pasted_classes``).
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
        step = _as_step(step)
        self._check_name(kind, _NAME, "sample kind")
        parts: dict[str, tuple[str, np.ndarray]] = {}
        for part_type, group in (("rgb", images), ("label", labels), ("map", maps)):
            for name, value in (group or {}).items():
                self._check_name(name, _NAME, f"{kind} part")
                if name in parts:
                    raise ValueError(f"sample {kind!r} at step {step}: part {name!r} is given twice")
                parts[name] = (part_type, prepare_part(value, part_type, f"sample {kind!r} part {name!r}"))
        if not parts:
            raise ValueError(f"sample {kind!r} at step {step}: no images, labels or maps given")
        meta_data = _jsonable(dict(meta or {}), f"sample {kind!r} meta")
        json.dumps(meta_data)  # fail here, on the caller's thread, not in the writer thread
        item = (step, kind, int(index), parts, meta_data, time.time())
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.media_dropped += 1
            if self.media_dropped in (1, 10, 100) or self.media_dropped % 1000 == 0:
                logger.warning("run %s: media queue full, %d sample(s) dropped so far", self.run_id,
                               self.media_dropped)
            return False
        return True

    def heartbeat(self, step: int | None = None) -> None:
        """Refresh the manifest now (heartbeat time, last step, media counts).

        Logging calls this at most every ``heartbeat_s``; call it yourself during long pauses
        (evaluation, checkpointing) so readers do not mark the run stalled.
        """
        self._check_open()
        if step is not None:
            step = _as_step(step)
            if self._last_step is None or step > self._last_step:
                self._last_step = step
        now = time.time()
        self._manifest["heartbeat"] = now
        self._manifest["step"] = self._last_step
        self._last_beat = now
        self._write_manifest()

    # ---------------------------------------------------------------------------- helpers

    @staticmethod
    def _check_palette(palette: Any) -> np.ndarray:
        array = np.asarray(palette)
        if array.ndim != 2 or array.shape[1] != 3 or array.dtype.kind not in "iu" or (
            array.size and (array.min() < 0 or array.max() > 255)
        ):
            raise ValueError(f"palette must be (C, 3) integers in [0, 255], got shape {array.shape} "
                             f"dtype {array.dtype}")
        return array.astype(np.uint8)

    @staticmethod
    def _check_name(name: Any, pattern: re.Pattern[str], what: str) -> None:
        if not isinstance(name, str) or not pattern.fullmatch(name) or name in _RESERVED_KEYS:
            raise ValueError(
                f"invalid {what} name {name!r}: use {pattern.pattern}, not one of {sorted(_RESERVED_KEYS)}"
            )

    def _vector(self, value: Any, what: str) -> np.ndarray:
        array = to_host_array(value, what)
        if array.ndim != 1 or array.shape[0] != self.num_classes:
            raise ValueError(f"{what}: expected shape ({self.num_classes},), got {array.shape}")
        if array.dtype.kind not in "fiub":
            raise ValueError(f"{what}: expected numbers, got dtype {array.dtype}")
        return array.astype(np.float64, copy=False)

    # ---------------------------------------------------------------------------- media thread

    def _media_loop(self) -> None:
        media_dir = self.run_dir / MEDIA_DIR
        f = self._files["media"]
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                step, kind, index, parts, meta, when = item
                try:
                    files, types = {}, {}
                    for name, (part_type, array) in parts.items():
                        fname = f"{step:08d}_{kind}_{index}_{name}_s{self._session}.{EXTENSIONS[part_type]}"
                        write_atomic(
                            media_dir / fname,
                            lambda fh, a=array, t=part_type: encode_part(a, t, fh, self.palette),
                        )
                        files[name] = f"{MEDIA_DIR}/{fname}"
                        types[name] = part_type
                    record = {"step": step, "time": when, "kind": kind, "index": index,
                              "files": files, "parts": types, "meta": meta}
                    f.write(encode_record(record))
                    f.flush()
                    self.media_written += 1
                except Exception:
                    self.media_failed += 1
                    logger.exception("run %s: could not write sample %r at step %d", self.run_id, kind, step)
            finally:
                self._queue.task_done()

    def flush_media(self, timeout: float | None = None) -> bool:
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

    # ---------------------------------------------------------------------------- ending

    def _end(self, status: str, error: dict[str, Any] | None, media_timeout: float | None) -> None:
        if self._closed:
            return
        if not self.flush_media(media_timeout):
            logger.warning("run %s: gave up waiting for queued samples", self.run_id)
        with contextlib.suppress(queue.Full):  # a stuck image write must not keep a crash unreported
            self._queue.put(_STOP, timeout=media_timeout)
        self._worker.join(timeout=media_timeout)
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


def writer_from_config(
    cfg: Any,
    *,
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]] | np.ndarray | None,
    ignore_index: int,
    split: str | None = None,
    run_id: str | None = None,
    preset: str = "run",
    resume: bool = False,
    resume_step: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> RunWriter:
    """Open the run writer from a full :class:`ael.config.Config` (reads ``cfg.run``, records the rest).

    ``run_id`` defaults to ``cfg.run.name``, then to :func:`new_run_id` of ``preset``.
    """
    from ael.config import config_to_dict

    run = cfg.run
    run_id = run_id or run.name
    if run_id is None:
        # Generated ids have one-second resolution: two runs started in the same second (a
        # benchmark, a notebook) get -2, -3, ... rather than a refusal.
        base = new_run_id(preset)
        run_id, n = base, 1
        while (Path(run.runs_dir) / run_id).exists():
            n += 1
            run_id = f"{base}-{n}"
    return RunWriter(
        run.runs_dir,
        run_id,
        class_names=class_names,
        palette=palette,
        ignore_index=ignore_index,
        config=config_to_dict(cfg),
        dataset=cfg.data.dataset,
        split=split,
        total_steps=cfg.train.iterations,
        heartbeat_s=run.heartbeat_s,
        stalled_after_s=run.stalled_after_s,
        media_queue=run.media_queue,
        resume=resume,
        resume_step=resume_step,
        extra=extra,
    )

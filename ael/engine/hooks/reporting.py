"""The run-store reporting hook: drains the step storage into the run writer (rank 0).

- Scalars: the iteration's device values are summed on the device over ``train.log_every``
  iterations and written as their mean, one step late (:class:`~ael.engine.deferred.DeferredScalars`),
  with the host's numbers (learning rates, timings, throughput, memory).
- Per-class vectors every ``train.classes_every`` iterations and at the end: the method's state
  vectors (:meth:`~ael.methods.Method.class_vectors`) and the class counts the step put, as shares.
- Image samples every ``train.media_every`` iterations.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ael.config import TrainConfig
from ael.engine.deferred import DeferredScalars
from ael.engine.hooks.base import Hook
from ael.methods.storage import SampleRecord

if TYPE_CHECKING:
    from ael.engine.trainer import Trainer
    from ael.runs.writer import RunWriter

__all__ = ["RunReporter", "memory_mb"]


def memory_mb(device: torch.device) -> float:
    """Peak memory of this process on ``device``: allocated CUDA memory, else the resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 1024 if sys.platform != "darwin" else usage / 2**20


def _plain(value: Any) -> Any:
    return value.detach().cpu().tolist() if isinstance(value, torch.Tensor) else value


class RunReporter(Hook):
    """Writes what the method's steps put into the storage to the run store.

    Args:
        writer: the run writer (None on ranks other than 0: only the cadence bookkeeping runs).
        train: the training section (cadences, iterations).
        mean, std: the images' normalisation (to write samples as RGB).
        images_per_step: images one iteration trains on over every process (throughput).
        device: the training device.
    """

    def __init__(self, writer: RunWriter | None, *, train: TrainConfig, mean: Sequence[float],
                 std: Sequence[float], images_per_step: int, device: torch.device) -> None:
        self.writer = writer
        self.train = train
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.images_per_step = images_per_step
        self.device = device
        self.deferred = DeferredScalars(device)
        self.recent: list[tuple[int, dict[str, float]]] = []  # records written by the last call
        self._window: dict[str, torch.Tensor] = {}
        self._window_host: dict[str, float] = {}
        self._window_len = 0
        self._window_step = 0
        self._window_lr: dict[str, float] = {}
        self._last_time = time.perf_counter()

    def wants_samples(self, iteration: int) -> bool:
        """Whether iteration ``iteration`` (0-based) writes image samples."""
        every = self.train.media_every
        return self.writer is not None and every > 0 and iteration % every == 0

    def before_train(self, trainer: Trainer) -> None:
        self._last_time = time.perf_counter()

    def after_step(self, trainer: Trainer) -> None:
        it = trainer.iteration - 1
        self.recent = []
        now = time.perf_counter()
        step_s, self._last_time = now - self._last_time, now
        self._add_to_window(trainer, step_s)
        if (it + 1) % self.train.log_every == 0 or trainer.iteration == self.train.iterations:
            self._push(it)
        self._write_ready(flush=False)
        if it % self.train.classes_every == 0 or trainer.iteration == self.train.iterations:
            self._write_classes(trainer, it)
        if self.wants_samples(it):
            for record in trainer.storage.samples():
                self._write_sample(it, record)

    def after_train(self, trainer: Trainer) -> None:
        self.flush()

    def flush(self) -> None:
        """Write every scalar still waiting (before a checkpoint, an evaluation, the end)."""
        if self._window_len:
            self._push(self._window_step)
        self._write_ready(flush=True)

    # ------------------------------------------------------------------ scalars

    def _add_to_window(self, trainer: Trainer, step_s: float) -> None:
        for name, value in trainer.storage.iteration_scalars().items():
            self._window[name] = self._window[name] + value if name in self._window else value
        lr = trainer.last_lr
        host = {"time/step_s": step_s, "time/data_s": trainer.last_data_s,
                "throughput_img_s": self.images_per_step / max(step_s, 1e-9)}
        for name, value in host.items():
            self._window_host[name] = self._window_host.get(name, 0.0) + value
        self._window_len += 1
        self._window_step = trainer.iteration - 1
        self._window_lr = {"lr": lr[0], "lr_head": lr[-1], "memory_mb": memory_mb(self.device)}

    def _push(self, step: int) -> None:
        n = self._window_len
        tensors = {name: total / n for name, total in self._window.items()}
        host = {name: total / n for name, total in self._window_host.items()}
        self.deferred.push(step, tensors, host={**host, **self._window_lr})
        self._window, self._window_host, self._window_len = {}, {}, 0

    def _write_ready(self, *, flush: bool) -> None:
        for step, values in self.deferred.pop_ready(flush=flush):
            if self.writer is not None:
                self.writer.log_scalars(step, {k: v for k, v in values.items() if math.isfinite(v)})
            self.recent.append((step, values))

    # ------------------------------------------------------------------ classes and samples

    def _write_classes(self, trainer: Trainer, step: int) -> None:
        counts = trainer.storage.take_class_counts()
        if self.writer is None:
            return
        vectors = {k: v.detach().float().cpu().numpy() for k, v in trainer.method.class_vectors().items()}
        for name, total in counts.items():
            host = total.cpu().numpy().astype(np.float64)
            if host.sum() > 0:
                vectors[name] = host / host.sum()
        self.writer.log_classes(step, vectors)

    def _rgb(self, image: torch.Tensor) -> np.ndarray:
        return (image.detach().float().cpu() * self.std + self.mean).clamp(0, 1).permute(1, 2, 0).numpy()

    def _write_sample(self, step: int, record: SampleRecord) -> None:
        assert self.writer is not None
        meta = {k: _plain(v) for k, v in record.meta.items()}
        if record.describe is not None:
            meta = record.describe(meta)
        self.writer.log_sample(
            step, record.kind, images={k: self._rgb(v) for k, v in record.images.items()},
            labels={k: v.detach().long().clamp(0, 255).cpu().numpy().astype(np.uint8) for k, v in record.labels.items()},
            maps={k: v.detach().float().cpu().numpy() for k, v in record.maps.items()} or None,
            meta=meta or None)

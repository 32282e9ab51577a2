"""The training loop: data → method step → optimizer and EMA → hooks, on a CPU, a GPU or torchrun.

:class:`Trainer` builds everything from a resolved :class:`ael.config.Config` (each component
takes its own section), then runs the iteration-based loop over infinite rank-sharded streams:

- the method's step (:mod:`ael.methods`, picked by ``method.name``) on each micro-batch,
  ``train.grad_accum`` of them per optimizer step, the loss scaled and back-propagated here (DDP
  ``no_sync`` on all but the last micro-batch);
- the optimizer (through the grad scaler for fp16), the poly schedule and the EMA teacher;
- the hooks (:mod:`ael.engine.hooks`): reporting to the run store, evaluation (final and best),
  checkpoints (from which ``--resume RUN_DIR`` continues in place and reaches the same state as
  an uninterrupted run) and progress.

The trainer knows nothing method-specific. Only rank 0 writes (run store, checkpoints, bar).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ael.config import Config, ConfigError, config_to_dict, dump_config
from ael.data.base import DatasetError
from ael.data.loaders import TrainLoaders, build_train_loaders, build_val_loader
from ael.data.registry import SplitDatasets, build_split_datasets
from ael.data.splits import write_split
from ael.engine import distributed as dist_utils
from ael.engine.build import build_models, collectives, wrap_student
from ael.engine.hooks import CheckpointHook, EvaluationHook, Hook, ProgressHook, RunReporter, StopSignal
from ael.engine.optim import PolyLRScheduler, build_sgd
from ael.engine.result import TrainResult
from ael.engine.run_folder import RunFolderError, load_run_config, run_manifest
from ael.methods import MethodContext, StepStorage, TrainBatch, build_method, method_class
from ael.models import parameter_groups
from ael.models.precision import amp_dtype
from ael.runs import RunWriter, start_run

__all__ = ["EXIT_STOPPED", "RunFolderError", "TrainResult", "Trainer", "TrainingStopped", "load_run_config", "train"]

logger = logging.getLogger(__name__)

#: Exit status of ``ael train`` when a run stopped gracefully (SIGTERM/SIGINT) with a checkpoint: resume it.
EXIT_STOPPED = 75


class TrainingStopped(RuntimeError):
    """Training stopped on request before the planned iterations (the run can be resumed)."""


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class Trainer:
    """Everything one process needs to train; :meth:`fit` runs the loop.

    Args:
        cfg: the resolved config.
        resume_dir: an existing run folder to continue in place, or None for a new run.
        preset: tag for a new run id.
        progress: show a tqdm progress bar on rank 0.
        stop_at: stop (with a checkpoint) after this many iterations (tests, time-boxed jobs).
    """

    def __init__(self, cfg: Config, *, resume_dir: str | os.PathLike[str] | None = None, preset: str = "run",
                 progress: bool = True, stop_at: int | None = None) -> None:
        self.cfg = cfg
        train = cfg.train
        self.dist = dist_utils.setup_distributed(train.device)
        self.device = self.dist.device
        self.seed = dist_utils.rank_seed(train.seed, self.dist.rank)
        dist_utils.seed_everything(self.seed)
        if train.amp == "fp16" and self.device.type != "cuda":
            raise ConfigError("train.amp=fp16 needs a CUDA device (use bf16 or none on the CPU)")
        self.amp_dtype = amp_dtype(train.amp)
        resume_path = Path(resume_dir) if resume_dir is not None else None
        if resume_path is not None:
            run_manifest(resume_path)
        self.end = train.iterations if stop_at is None else min(train.iterations, stop_at)

        # Data, shaped by what the method needs.
        self.data: SplitDatasets = build_split_datasets(cfg.data, unlabeled_labels=cfg.data.unlabeled_gt == "auto")
        self.info = self.data.info
        self.num_classes = self.info.num_classes
        if len(self.data.val) == 0:
            raise DatasetError(f"{cfg.data.dataset}: the validation split is empty")
        needs = method_class(cfg.method.name).loader_needs(cfg.method)
        self.uses_unlabeled = needs.unlabeled
        self.loaders: TrainLoaders = build_train_loaders(
            cfg.data, self.data.labeled, self.data.unlabeled, rank=self.dist.rank, world_size=self.dist.world_size,
            seed=train.seed, paste_source_scale=needs.paste_source_scale, allow_self_source=needs.allow_self_source)
        self.val_loader = build_val_loader(cfg.data, self.data.val, batch_size=train.eval.batch_size,
                                           rank=self.dist.rank, world_size=self.dist.world_size)
        self.frequencies = [float(f) for f in self.data.labeled.pixel_frequencies()]

        # Models and optimisation: every rank builds the same initial student and teacher.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(train.seed)
            self.student, self.teacher = build_models(cfg.model, train, self.num_classes, self.device,
                                                      seed=train.seed, world_size=self.dist.world_size)
        groups = parameter_groups(self.student)
        self.optimizer = build_sgd(groups["backbone"], groups["head"], lr=train.lr, head_lr_mult=train.head_lr_mult,
                                   momentum=train.momentum, weight_decay=train.weight_decay)
        self.scheduler = PolyLRScheduler(self.optimizer, max_iters=train.iterations, power=train.poly_power,
                                         warmup_iters=train.warmup_iters)
        self.scaler = torch.amp.GradScaler("cuda") if train.amp == "fp16" else None
        self.model = wrap_student(self.student, self.dist, compile=train.compile)
        # The release divides every loss by world_size on top of DDP's averaging.
        self.loss_scale = 1.0 / train.grad_accum / (self.dist.world_size if train.loss_div_world_size else 1)

        # The method.
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        context = MethodContext(
            num_classes=self.num_classes, ignore_index=self.info.ignore_index,
            class_names=tuple(self.info.class_names), device=self.device, generator=self.generator,
            student=self.model, teacher=self.teacher, aux_weight=cfg.model.aux_weight if cfg.model.aux_head else 0.0,
            amp_dtype=self.amp_dtype, channels_last=train.channels_last, collectives=collectives(self.dist),
            unlabeled_batch_size=cfg.data.batch_size_unlabeled, num_unlabeled=len(self.data.unlabeled),
            fetch_unlabeled=self.loaders.fetch_unlabeled, pin_memory=cfg.data.pin_memory,
            unlabeled_gt=getattr(self.data.unlabeled, "with_labels", False))
        try:
            self.method = build_method(cfg.method, context)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.storage = StepStorage(self.device)
        self.iteration = 0
        self.stopping = False
        self.last_lr: list[float] = self.scheduler.get_last_lr()
        self.last_data_s = 0.0
        self.stop = StopSignal(agree_every=train.classes_every, distributed=self.dist.is_distributed,
                               device=self.device)

        # Hooks, then the resume (which restores their state), then the run store.
        self.writer: RunWriter | None = None
        self.run_dir = resume_path
        images = cfg.data.batch_size_labeled + (cfg.data.batch_size_unlabeled if self.uses_unlabeled else 0)
        self.reporter = RunReporter(None, train=train, mean=cfg.data.mean, std=cfg.data.std,
                                    images_per_step=images * train.grad_accum * self.dist.world_size,
                                    device=self.device)
        self.evaluator = EvaluationHook(train.eval, iterations=train.iterations, crop_size=cfg.data.crop_size)
        self.checkpointer = CheckpointHook(every=train.checkpoint_every, keep=train.keep_checkpoints)
        self.progress = ProgressHook(bar=progress, enabled=self.dist.is_main)
        self.hooks: list[Hook] = [self.reporter, self.evaluator, self.checkpointer, self.progress]
        if resume_path is not None:
            self.checkpointer.restore(self, resume_path)
        self.method.before_train(self.iteration * train.grad_accum)
        if self.dist.is_main:
            self.writer = self._open_writer(resume_path, preset)
            self.run_dir = self.writer.run_dir
            self.reporter.writer = self.writer

    # ------------------------------------------------------------------ run store

    def _open_writer(self, resume_path: Path | None, preset: str) -> RunWriter:
        cfg, data = self.cfg, self.data
        split = data.split.describe()  # where the split came from (shipped list, seeded draw, files) and its sizes
        extra = {
            "world_size": self.dist.world_size, "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "global_batch_labeled": cfg.data.batch_size_labeled * self.dist.world_size * cfg.train.grad_accum,
            "global_batch_unlabeled": (cfg.data.batch_size_unlabeled * self.dist.world_size * cfg.train.grad_accum
                                       if self.uses_unlabeled else 0),
            "lr": cfg.train.lr, "grad_accum": cfg.train.grad_accum, "torch": torch.__version__,
            "class_frequencies": self.frequencies,
        }
        run = cfg.run
        common = {"class_names": self.info.class_names, "palette": self.info.palette,
                  "ignore_index": self.info.ignore_index, "config": config_to_dict(cfg),
                  "dataset": cfg.data.dataset, "split": split, "total_steps": cfg.train.iterations,
                  "heartbeat_s": run.heartbeat_s, "stalled_after_s": run.stalled_after_s,
                  "media_queue": run.media_queue, "extra": extra, "method": self.method.name,
                  "vectors": self.method.vectors(), "group": run.group}
        if resume_path is not None:
            return RunWriter(resume_path.parent, resume_path.name, resume=True, resume_step=self.iteration, **common)
        writer = start_run(run.runs_dir, run.name, preset=preset, **common)
        dump_config(cfg, writer.run_dir / "config.yaml")
        self._write_split(writer.run_dir)
        return writer

    def _write_split(self, run_dir: Path) -> None:
        try:
            write_split(self.data.split, run_dir)
        except OSError as err:  # the run is still usable without its split files
            logger.warning("could not record the split in %s: %s", run_dir, err)

    # ------------------------------------------------------------------ the loop

    def request_stop(self, reason: str = "on request") -> None:
        """Ask the loop to stop after the current iteration, with a checkpoint (safe from a signal handler)."""
        self.stop.request(reason)

    @contextlib.contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """While inside, SIGTERM / SIGINT stop training gracefully (see :meth:`StopSignal.on_signals`)."""
        with self.stop.on_signals():
            yield

    def _next_batch(self) -> TrainBatch:
        # A DataLoader draws its base seed from the global RNG when its iterator is (re)created,
        # which a resumed run does at another iteration than an uninterrupted one: keep that
        # draw off the global stream that dropout reads.
        with torch.random.fork_rng(devices=[]):
            labeled = _to_device(next(self.loaders.labeled), self.device)
            unlabeled = _to_device(next(self.loaders.unlabeled), self.device) if self.uses_unlabeled else None
        return TrainBatch(labeled=labeled, unlabeled=unlabeled)

    def run_iteration(self) -> None:
        """One optimizer step: ``grad_accum`` micro-batches through the method, then optimizer and EMA."""
        it, accum = self.iteration, self.cfg.train.grad_accum
        self.storage.begin_iteration(wants_samples=self.reporter.wants_samples(it))
        data_s = 0.0
        for k in range(accum):
            t0 = time.perf_counter()
            batch = self._next_batch()
            data_s += time.perf_counter() - t0
            self.storage.wants_samples = self.storage.wants_samples and k == 0
            last = k == accum - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") else self.model.no_sync()
            with sync:
                loss = self.method.train_step(batch, iteration=it, micro_step=it * accum + k, storage=self.storage)
                scaled = loss * self.loss_scale
                with torch.profiler.record_function("ael.backward"):
                    (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        self.last_lr = self.scheduler.get_last_lr()
        self.last_data_s = data_s
        with torch.profiler.record_function("ael.optimizer"):
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
        with torch.profiler.record_function("ael.ema"):
            self.teacher.update(self.student, it)
        self.iteration = it + 1

    def fit(self) -> TrainResult:
        """Train to ``train.iterations`` (or ``stop_at``), evaluating and checkpointing on the way.

        Raises:
            TrainingStopped: a stop was requested (signal, :meth:`request_stop`, ``stop_at``).
        """
        try:
            for hook in self.hooks:
                hook.before_train(self)
            self.model.train()
            while self.iteration < self.end:
                self.run_iteration()
                self.stopping = self.iteration < self.end and self.stop.should_stop(self.iteration - 1)
                for hook in self.hooks:
                    hook.after_step(self)
                if self.stopping:
                    break
            for hook in self.hooks:
                hook.after_train(self)
            if self.iteration < self.cfg.train.iterations:
                # Recorded in the run store like a crash, with this type: the dashboard and the
                # notebooks show the run as stopped and resumable.
                raise TrainingStopped(f"stopped at iteration {self.iteration} of {self.cfg.train.iterations} "
                                      f"{self.stop.reason or 'on request'}; "
                                      f"continue with: ael train --resume {self.run_dir}")
        except BaseException as exc:
            self.progress.close()
            if self.writer is not None:
                self.writer.crash(exc)
            self.close()
            raise
        if self.writer is not None:
            self.writer.finish()
        self.close()
        return self.result()

    def result(self) -> TrainResult:
        """The final and best evaluation of each model so far."""
        return TrainResult(run_dir=self.run_dir if self.dist.is_main else None, is_main=self.dist.is_main,
                           iterations=self.iteration, class_names=list(self.info.class_names),
                           frequencies=self.frequencies, method=self.method.name, final=self.evaluator.final(),
                           best=self.evaluator.best())

    def close(self) -> None:
        """Stop background threads and loader workers."""
        self.method.close()
        self.loaders.close()


def train(cfg: Config, *, resume_dir: str | os.PathLike[str] | None = None, preset: str = "run",
          progress: bool = True, stop_at: int | None = None) -> TrainResult:
    """Train as ``cfg`` says (a new run, or ``resume_dir`` continued in place).

    Args:
        cfg: the resolved config (for a resume: :func:`load_run_config` of the run folder).
        resume_dir: a run folder to continue from its latest valid checkpoint.
        preset: tag of a new run's id.
        progress: tqdm progress bar on rank 0.
        stop_at: stop after this many iterations, with a checkpoint (raises :class:`TrainingStopped`).

    Returns:
        :class:`TrainResult` with the final and best evaluation of each model.
    """
    return Trainer(cfg, resume_dir=resume_dir, preset=preset, progress=progress, stop_at=stop_at).fit()

"""The training loop: one entry point for a CPU, one GPU and torchrun, resumable exactly.

:func:`train` builds everything from a resolved :class:`ael.config.Config` (the thin adapters
``build_*_from_config`` read the sections; components get explicit arguments), then runs the
iteration-based loop over the infinite rank-sharded streams:

- the step (:class:`ael.engine.step.AELStep`) on each micro-batch, ``train.grad_accum`` of them
  per optimizer step (DDP ``no_sync`` on all but the last);
- CutMix partners drawn on the device and loaded one step ahead (:mod:`ael.engine.partner`);
- scalars each step, gathered as one device tensor and read one step late
  (:class:`ael.engine.deferred.DeferredScalars`); per-class vectors every
  ``train.classes_every``; image samples every ``train.media_every``; evaluations of the teacher
  and/or student every ``train.eval.every`` and at the end (final and best both recorded);
- atomic checkpoints into ``RUN_DIR/checkpoints`` (student, teacher, optimizer, scheduler, grad
  scaler, both banks, RNG states of every rank incl. the step generator, loader positions, the
  pending partner request), from which ``--resume RUN_DIR`` continues in place and reaches the
  same state as an uninterrupted run.

Only rank 0 writes (run store, checkpoints, progress bar).
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ael.config import Config, ConfigError, apply_overrides, config_from_dict, config_to_dict, dump_config
from ael.core.bank import ConfidenceBank, resolve_class_indices
from ael.core.cutmix import CutMixBank
from ael.data.base import DatasetError
from ael.data.loaders import TrainLoaders, build_train_loaders, build_val_loader
from ael.data.registry import SplitDatasets, build_split_datasets
from ael.engine import distributed as dist_utils
from ael.engine.checkpoint import (
    CheckpointError,
    capture_rng_state,
    check_state_dict_compatible,
    checkpoint_metadata,
    load_latest_valid,
    restore_rng_state,
    save_checkpoint,
)
from ael.engine.deferred import DeferredScalars
from ael.engine.evaluate import EvalResult, evaluate, resolve_amp_dtype
from ael.engine.optim import PolyLRScheduler, build_sgd
from ael.engine.partner import PartnerFetcher
from ael.engine.step import AELStep, StepBatch, StepOutput, step_options_from_config, unsup_rampup
from ael.models import build_ema, build_model, maybe_sync_batchnorm, parameter_groups, unwrap_model
from ael.runs.schema import CHECKPOINTS_DIR, MANIFEST_FILE, RunStoreError
from ael.runs.writer import RunWriter, writer_from_config

__all__ = [
    "RunFolderError",
    "TrainResult",
    "TrainingStopped",
    "build_models_from_config",
    "load_run_config",
    "tail_classes",
    "train",
]

logger = logging.getLogger(__name__)

TAIL_SHARE = 0.25  # a class is "tail" when its pixel share is below a quarter of the uniform share


class RunFolderError(RunStoreError):
    """A folder given as a run (``--resume``, ``ael eval``) is not one; the message names it."""


class TrainingStopped(RuntimeError):
    """Training stopped on request before the planned iterations (the run can be resumed)."""


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------


def tail_classes(frequencies: Sequence[float]) -> list[bool]:
    """Which classes are "tail": pixel share below a quarter of the uniform share ``1 / C``."""
    c = len(frequencies)
    return [float(f) < TAIL_SHARE / c for f in frequencies]


@dataclass
class TrainResult:
    """What a training run ended with (complete on rank 0; other ranks get the same numbers).

    Attributes:
        run_dir: the run folder (None on ranks other than 0).
        is_main: True on rank 0.
        iterations: iterations completed.
        class_names: the C class names.
        frequencies: ``(C,)`` labeled pixel share per class (for head / tail marking).
        final: model name -> the last evaluation's metrics dict (``miou``, ``iou``, ``step``).
        best: model name -> the best evaluation's metrics dict over the run.
    """

    run_dir: Path | None
    is_main: bool
    iterations: int
    class_names: list[str]
    frequencies: list[float]
    final: dict[str, dict[str, Any]] = field(default_factory=dict)
    best: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        """A per-class IoU table (head / tail marked) with the final and best mIoU of each model."""
        lines = []
        tails = tail_classes(self.frequencies)
        models = list(self.final)
        if models:
            header = f"{'class':<16} {'share':>7}  {'':4}" + "".join(f"{m + ' IoU':>14}" for m in models)
            lines.append(header)
            lines.append("-" * len(header))
            for c, name in enumerate(self.class_names):
                row = f"{name[:16]:<16} {100 * self.frequencies[c]:6.2f}%  {'tail' if tails[c] else 'head':4}"
                for m in models:
                    v = self.final[m]["iou"][c]
                    row += f"{'-' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{100 * v:.1f}':>14}"
                lines.append(row)
            lines.append("-" * len(header))
            for m in models:
                f, b = self.final[m], self.best.get(m, self.final[m])
                tail_iou = [v for v, t in zip(f["iou"], tails) if t and v is not None and not math.isnan(v)]
                head_iou = [v for v, t in zip(f["iou"], tails) if not t and v is not None and not math.isnan(v)]
                extra = ""
                if tail_iou and head_iou:
                    extra = (f"; head mean {100 * sum(head_iou) / len(head_iou):.1f}, "
                             f"tail mean {100 * sum(tail_iou) / len(tail_iou):.1f}")
                lines.append(f"{m}: final mIoU {100 * f['miou']:.2f} (step {f['step']}), "
                             f"best {100 * b['miou']:.2f} (step {b['step']}){extra}")
        else:
            lines.append("no evaluation was run")
        if self.run_dir is not None:
            lines.append(f"run folder: {self.run_dir}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# run folders
# ------------------------------------------------------------------------------------------------


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST_FILE
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: no such run folder")
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: not a run folder (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RunFolderError(f"{path}: unreadable run manifest ({err})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise RunFolderError(f"{path}: not an ael run manifest (no 'config' entry)")
    return manifest


def load_run_config(run_dir: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Config:
    """The resolved config saved with a run, with ``key=value`` overrides applied.

    Raises:
        RunFolderError: ``run_dir`` is not a run folder (names the folder or file).
        ConfigError: the saved config or an override is invalid.
    """
    run_dir = Path(run_dir)
    manifest = _read_manifest(run_dir)
    data = manifest["config"]
    source = str(run_dir / MANIFEST_FILE)
    if overrides:
        apply_overrides(data, overrides)
        source += " + command line"
    return config_from_dict(data, source)


# ------------------------------------------------------------------------------------------------
# builders (the thin adapters that read config sections)
# ------------------------------------------------------------------------------------------------


def build_models_from_config(cfg: Config, num_classes: int, device: torch.device, *, seed: int,
                             world_size: int = 1) -> tuple[nn.Module, Any]:
    """Student (SyncBN when distributed on CUDA, channels_last if asked) and its EMA teacher."""
    student = build_model(cfg.model, num_classes).to(device)
    if cfg.train.channels_last:
        student = student.to(memory_format=torch.channels_last)

    def builder() -> nn.Module:
        model = build_model(cfg.model, num_classes).to(device)
        return model.to(memory_format=torch.channels_last) if cfg.train.channels_last else model

    teacher = build_ema(cfg.train.ema, student, teacher_builder=builder, seed=seed + 7919)
    student = maybe_sync_batchnorm(student, world_size=world_size, device=device)
    return student, teacher


def _excluded_classes(cfg: Config, class_names: Sequence[str]) -> tuple[int, ...]:
    listed = []
    for item in cfg.core.copy_paste.excluded_classes:
        if isinstance(item, int) and not 0 <= item < len(class_names):
            # The release's list [0, 1, 2, 8, 10] names classes a small dataset may not have.
            logger.warning("core.copy_paste.excluded_classes: class %d does not exist (%d classes); ignored",
                           item, len(class_names))
            continue
        listed.append(item)
    try:
        out = set(resolve_class_indices(listed, class_names))
    except ValueError as err:
        raise ConfigError(f"core.copy_paste.excluded_classes: {err}") from None
    if len(out) >= len(class_names):
        raise ConfigError("core.copy_paste.excluded_classes excludes every class")
    return tuple(sorted(out))


# ------------------------------------------------------------------------------------------------
# the trainer
# ------------------------------------------------------------------------------------------------


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 1024 if sys.platform != "darwin" else usage / 2**20


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
        self.progress = progress
        self.stop_at = stop_at
        self._stop_reason: str | None = None
        self.ctx = dist_utils.setup_distributed(cfg.train.device)
        self.device = self.ctx.device
        self.seed = dist_utils.rank_seed(cfg.train.seed, self.ctx.rank)
        dist_utils.seed_everything(self.seed)
        if cfg.train.amp == "fp16" and self.device.type != "cuda":
            raise ConfigError("train.amp=fp16 needs a CUDA device (use bf16 or none on the CPU)")

        resume_path = Path(resume_dir) if resume_dir is not None else None
        checkpoint = None
        if resume_path is not None:
            _read_manifest(resume_path)
        # Data.
        self.data: SplitDatasets = build_split_datasets(cfg.data)
        info = self.data.info
        self.info = info
        self.num_classes = info.num_classes
        if len(self.data.val) == 0:
            raise DatasetError(f"{cfg.data.dataset}: the validation split is empty")
        cp = cfg.core.copy_paste
        self.loaders: TrainLoaders = build_train_loaders(
            cfg.data, self.data.labeled, self.data.unlabeled, rank=self.ctx.rank,
            world_size=self.ctx.world_size, seed=cfg.train.seed,
            paste_source_scale=cp.source_scale if cp.enabled else None, allow_self_source=cp.allow_self_source)
        self.val_loader = build_val_loader(cfg.data, self.data.val, batch_size=cfg.train.eval.batch_size,
                                           rank=self.ctx.rank, world_size=self.ctx.world_size)
        self.frequencies = [float(f) for f in self.data.labeled.pixel_frequencies()]

        # Models and optimisation.
        # Every rank builds the same initial student and teacher (the run seed, not the rank seed).
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(cfg.train.seed)
            self.student, self.teacher = build_models_from_config(
                cfg, self.num_classes, self.device, seed=cfg.train.seed, world_size=self.ctx.world_size)
        groups = parameter_groups(self.student)
        self.optimizer = build_sgd(groups["backbone"], groups["head"], lr=cfg.train.lr,
                                   head_lr_mult=cfg.train.head_lr_mult, momentum=cfg.train.momentum,
                                   weight_decay=cfg.train.weight_decay)
        self.scheduler = PolyLRScheduler(self.optimizer, max_iters=cfg.train.iterations,
                                         power=cfg.train.poly_power, warmup_iters=cfg.train.warmup_iters)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.train.amp == "fp16" else None
        self.model: nn.Module = self.student
        if self.ctx.is_distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.student, device_ids=ids)
        if cfg.train.compile:
            self.model = torch.compile(self.model)

        # Banks, generator, step.
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        bank_cfg = cfg.core.bank
        sync_bank = bank_cfg.sync and self.ctx.world_size > 1
        self.bank = ConfidenceBank(
            self.num_classes, momentum=bank_cfg.momentum, init=bank_cfg.init, init_value=bank_cfg.init_value,
            absent_update=bank_cfg.absent_update, reduce_fn=_all_reduce_pair if sync_bank else None,
            generator=self.generator, device=self.device)
        self.options = step_options_from_config(
            cfg, num_classes=self.num_classes, ignore_index=info.ignore_index, world_size=self.ctx.world_size,
            excluded=_excluded_classes(cfg, info.class_names))
        self.cutmix_bank = None
        if self.options.adaptive_partners:
            sync_cm = cfg.core.cutmix.bank_sync and self.ctx.world_size > 1
            self.cutmix_bank = CutMixBank(
                self.num_classes, len(self.data.unlabeled), area_thresh2=cfg.core.cutmix.area_thresh2,
                ignore_index=info.ignore_index, gather_fn=_all_gather_pair if sync_cm else None,
                device=self.device)
        self.step = AELStep(student=self.model, teacher=self.teacher, optimizer=self.optimizer,
                            scheduler=self.scheduler, bank=self.bank, cutmix_bank=self.cutmix_bank,
                            options=self.options, generator=self.generator, scaler=self.scaler)
        self.fetcher = None
        if self.options.adaptive_partners:
            self.fetcher = PartnerFetcher(self.loaders.fetch_unlabeled, device=self.device,
                                          pin_memory=cfg.data.pin_memory)
        self.iteration = 0
        self.evals: dict[str, list[dict[str, Any]]] = {}

        # Resume.
        if resume_path is not None:
            checkpoint = self._load_checkpoint(resume_path / CHECKPOINTS_DIR)
        if checkpoint is None and self.fetcher is not None:
            self.fetcher.request(0, *self.step.draw_partners(self._num_mixed()))

        # Run store (rank 0).
        self.writer: RunWriter | None = None
        if self.ctx.is_main:
            split = (f"{cfg.data.split.labeled} seed {cfg.data.split.seed}: {len(self.data.labeled)} labeled, "
                     f"{len(self.data.unlabeled)} unlabeled")
            extra = {
                "world_size": self.ctx.world_size, "device": str(self.device),
                "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
                "global_batch_labeled": cfg.data.batch_size_labeled * self.ctx.world_size * cfg.train.grad_accum,
                "global_batch_unlabeled": cfg.data.batch_size_unlabeled * self.ctx.world_size * cfg.train.grad_accum,
                "lr": cfg.train.lr, "grad_accum": cfg.train.grad_accum, "torch": torch.__version__,
                "class_frequencies": self.frequencies,
            }
            if resume_path is not None:
                self.writer = RunWriter(
                    resume_path.parent, resume_path.name, class_names=info.class_names, palette=info.palette,
                    ignore_index=info.ignore_index, config=config_to_dict(cfg), dataset=cfg.data.dataset,
                    split=split, total_steps=cfg.train.iterations, heartbeat_s=cfg.run.heartbeat_s,
                    stalled_after_s=cfg.run.stalled_after_s, media_queue=cfg.run.media_queue, resume=True,
                    resume_step=self.iteration, extra=extra)
            else:
                self.writer = writer_from_config(cfg, class_names=info.class_names, palette=info.palette,
                                                 ignore_index=info.ignore_index, split=split, preset=preset,
                                                 extra=extra)
                dump_config(cfg, self.writer.run_dir / "config.yaml")
                _write_split(self.data, self.writer.run_dir)
        self.run_dir = self.writer.run_dir if self.writer is not None else resume_path

    # -------------------------------------------------------------------------------- state

    def _num_mixed(self) -> int:
        return self.step.num_mixed(self.cfg.data.batch_size_unlabeled)

    def _metadata(self) -> dict[str, Any]:
        return checkpoint_metadata(num_classes=self.num_classes, backbone=self.cfg.model.backbone)

    def _rank_state(self) -> dict[str, Any]:
        return {
            "rng": capture_rng_state({"step": self.generator}),
            "loaders": self.loaders.state_dict(),
            "partner": self.fetcher.state_dict() if self.fetcher is not None else {"step": -1},
            "bank": self.bank.state_dict()["values"],
            "cutmix_bank": self.cutmix_bank.state_dict()["values"] if self.cutmix_bank is not None else None,
        }

    def save(self) -> Path | None:
        """Write a checkpoint of the current iteration (gathers every rank's state; rank 0 writes)."""
        ranks = [self._rank_state()]
        if self.ctx.world_size > 1:
            gathered: list[Any] = [None] * self.ctx.world_size
            torch.distributed.all_gather_object(gathered, _to_cpu(ranks[0]))
            ranks = gathered
        path = None
        if self.ctx.is_main:
            state = {
                "student": unwrap_model(self.student).state_dict(),
                "teacher": self.teacher.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "ranks": [_to_cpu(r) for r in ranks],
                "evals": json.dumps(self.evals),
                "config": dump_config(self.cfg),
                "world_size": self.ctx.world_size,
            }
            assert self.run_dir is not None
            path = save_checkpoint(self.run_dir / CHECKPOINTS_DIR, state, iteration=self.iteration,
                                   metadata=self._metadata(), keep=self.cfg.train.keep_checkpoints)
            if self.writer is not None:
                self.writer.heartbeat(self.iteration)
        dist_utils.barrier()
        return path

    def _load_checkpoint(self, directory: Path) -> dict[str, Any] | None:
        found = load_latest_valid(directory, map_location=self.device, expected_metadata=self._metadata())
        if found is None:
            logger.warning("%s: no checkpoint yet; the run starts over from iteration 0", directory)
            return None
        path, data = found
        student = unwrap_model(self.student)
        check_state_dict_compatible(data["student"], student, source=path)
        student.load_state_dict(data["student"])
        check_state_dict_compatible(data["teacher"], self.teacher.module, source=path)
        self.teacher.load_state_dict(data["teacher"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        if self.scaler is not None and data.get("scaler") is not None:
            self.scaler.load_state_dict(data["scaler"])
        ranks = data["ranks"]
        if len(ranks) != self.ctx.world_size:
            raise CheckpointError(f"{path}: saved by {len(ranks)} process(es); resume it with the same number "
                                  f"(this run has {self.ctx.world_size})")
        mine = ranks[self.ctx.rank]
        restore_rng_state(mine["rng"], {"step": self.generator})
        try:
            self.loaders.load_state_dict(mine["loaders"])
        except ValueError as err:
            raise CheckpointError(f"{path}: {err}") from None
        self.bank.load_state_dict({"values": mine["bank"]})
        if self.cutmix_bank is not None:
            if mine.get("cutmix_bank") is None:
                raise CheckpointError(f"{path}: saved without adaptive CutMix; its config differs from this one")
            self.cutmix_bank.load_state_dict({"values": mine["cutmix_bank"]})
        if self.fetcher is not None:
            self.fetcher.load_state_dict(mine["partner"])
            if self.fetcher.pending_step is None:
                raise CheckpointError(f"{path}: no pending CutMix partners saved; its config differs from this one")
        self.evals = json.loads(data.get("evals", "{}"))
        self.iteration = int(data["iteration"])
        logger.info("resumed from %s at iteration %d", path, self.iteration)
        return data

    # -------------------------------------------------------------------------------- loop

    def _next(self, loader: Any) -> dict[str, Any]:
        # A DataLoader draws its base seed from the global RNG when its iterator is (re)created,
        # which a resumed run does at another iteration than an uninterrupted one: keep that
        # draw off the global stream that dropout reads.
        with torch.random.fork_rng(devices=[]):
            return _to_device(next(loader), self.device)

    def _next_batch(self, micro: int) -> StepBatch:
        lab = self._next(self.loaders.labeled)
        batch = StepBatch(labeled_images=lab["image"], labeled_labels=lab["label"], labeled_ids=lab["index"],
                          source_images=lab.get("source_image"), source_labels=lab.get("source_label"),
                          source_ids=lab.get("source_index"))
        if self.options.unsup:
            unl = self._next(self.loaders.unlabeled)
            batch.unlabeled_images, batch.unlabeled_ids = unl["image"], unl["index"]
            batch.unlabeled_strong = unl.get("image_strong")
            if self.fetcher is not None:
                partners = self.fetcher.get(micro)
                batch.partner_images, batch.partner_ids = partners.images, partners.indices
                batch.partner_classes, batch.partner_strong = partners.classes, partners.strong
        return batch

    def _micro_index(self, iteration: int, k: int) -> int:
        return iteration * self.cfg.train.grad_accum + k

    def fit(self) -> TrainResult:
        """Train to ``train.iterations`` (or ``stop_at``), evaluating and checkpointing on the way."""
        try:
            self._loop()
        except BaseException as exc:
            if self.writer is not None:
                self.writer.crash(exc)
            self.close()
            raise
        if self.writer is not None:
            self.writer.finish()
        self.close()
        return self._result()

    def request_stop(self, reason: str = "on request") -> None:
        """Ask the loop to stop after the current iteration, with a checkpoint (safe from a signal handler).

        In a distributed run the request is shared at the per-class logging cadence
        (``train.classes_every``), so every rank stops at the same iteration.
        """
        self._stop_reason = reason

    @contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """While inside, SIGTERM / SIGINT stop training gracefully (a second one aborts at once).

        The first signal lets the iteration finish, writes a checkpoint and ends :meth:`fit` with
        :class:`TrainingStopped`, so ``ael train --resume`` loses nothing (cluster pre-emption,
        the notebooks' Stop button). Outside the main thread signals cannot be caught: no-op.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            if self._stop_reason is not None:
                raise KeyboardInterrupt(f"second {name}: aborting without a checkpoint")
            logger.warning("%s received: stopping after this iteration with a checkpoint "
                           "(send it again to abort at once)", name)
            self.request_stop(f"on {name}")

        for sig in previous:
            signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old_handler in previous.items():
                signal.signal(sig, old_handler)

    def _should_stop(self, iteration: int) -> bool:
        """Whether a stop was requested here (agreed across ranks at the class-vector cadence)."""
        if not self.ctx.is_distributed:
            return self._stop_reason is not None
        if iteration % self.cfg.train.classes_every != 0:
            return False
        flag = torch.tensor([0.0 if self._stop_reason is None else 1.0], device=self.device)
        dist_utils.all_reduce_sum_([flag])
        if flag.item() > 0 and self._stop_reason is None:  # another rank was signalled
            self._stop_reason = "on request (another rank)"
        return self._stop_reason is not None

    def close(self) -> None:
        """Stop background threads and loader workers."""
        if self.fetcher is not None:
            self.fetcher.close()
        self.loaders.close()

    def _loop(self) -> None:
        cfg = self.cfg.train
        total = cfg.iterations
        end = total if self.stop_at is None else min(total, self.stop_at)
        deferred = DeferredScalars(self.device)
        bar = None
        if self.ctx.is_main and self.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.iteration, desc="train", dynamic_ncols=True,
                       unit="it", smoothing=0.1)
        freq_l = torch.zeros(self.num_classes, dtype=torch.long, device=self.device)
        freq_p = torch.zeros(self.num_classes, dtype=torch.long, device=self.device)
        images_per_step = (self.cfg.data.batch_size_labeled + (self.cfg.data.batch_size_unlabeled
                           if self.options.unsup else 0)) * cfg.grad_accum * self.ctx.world_size
        self.model.train()
        last_time = time.perf_counter()
        while self.iteration < end:
            it = self.iteration
            want_media = (self.writer is not None and cfg.media_every > 0 and it % cfg.media_every == 0)
            data_s = 0.0
            outputs: list[StepOutput] = []
            for k in range(cfg.grad_accum):
                t0 = time.perf_counter()
                batch = self._next_batch(self._micro_index(it, k))
                data_s += time.perf_counter() - t0
                out = self.step(batch, want_media=want_media and k == 0, sync_grads=k == cfg.grad_accum - 1,
                                unsup_scale=unsup_rampup(it, self.cfg.core.unsup.rampup_iters))
                if self.fetcher is not None:
                    assert out.next_partner_ids is not None and out.next_partner_classes is not None
                    self.fetcher.request(self._micro_index(it, k) + 1, out.next_partner_ids,
                                         out.next_partner_classes)
                freq_l += out.labeled_counts
                if out.pseudo_counts is not None:
                    freq_p += out.pseudo_counts
                outputs.append(out)
            lr = self.scheduler.get_last_lr()
            self.step.optimizer_step(it)
            self.iteration = it + 1
            now = time.perf_counter()
            step_s = now - last_time
            last_time = now
            scalars = {k: torch.stack([o.scalars[k] for o in outputs]).mean() for k in outputs[0].scalars}
            deferred.push(it, scalars, host={
                "lr": lr[0], "lr_head": lr[-1], "time/step_s": step_s, "time/data_s": data_s,
                "throughput_img_s": images_per_step / max(step_s, 1e-9), "memory_mb": _memory_mb(self.device),
            })
            for step, values in deferred.pop_ready():
                self._log_scalars(step, values, bar)
            if self.writer is not None and (it % cfg.classes_every == 0 or self.iteration == total):
                self._log_classes(it, freq_l, freq_p)
                freq_l.zero_()
                freq_p.zero_()
            if want_media:
                self._log_media(it, outputs[0])
            if bar is not None:
                bar.update(1)
            do_eval = self.iteration == total or (cfg.eval.every > 0 and self.iteration % cfg.eval.every == 0)
            if do_eval:
                for step, values in deferred.pop_ready(flush=True):
                    self._log_scalars(step, values, bar)
                self.run_eval()
            stop = self.iteration < end and self._should_stop(it)
            if stop or self.iteration == end or (cfg.checkpoint_every > 0
                                                 and self.iteration % cfg.checkpoint_every == 0):
                # Scalars still waiting for their one-step-late write belong before the checkpoint:
                # a run resumed from it would otherwise never write them.
                for step, values in deferred.pop_ready(flush=True):
                    self._log_scalars(step, values, bar)
                self.save()
            if stop:
                break
        for step, values in deferred.pop_ready(flush=True):
            self._log_scalars(step, values, bar)
        if bar is not None:
            bar.close()
        if self.iteration < total:
            raise TrainingStopped(f"stopped at iteration {self.iteration} of {total} "
                                  f"{self._stop_reason or 'on request'}; "
                                  f"continue with: ael train --resume {self.run_dir}")

    # -------------------------------------------------------------------------------- logging

    def _log_scalars(self, step: int, values: dict[str, float], bar: Any) -> None:
        if self.writer is not None:
            self.writer.log_scalars(step, {k: v for k, v in values.items() if math.isfinite(v)})
        if bar is not None:
            bar.set_postfix_str(
                f"loss {values.get('loss/total', float('nan')):.3f} sup {values.get('loss/sup', float('nan')):.3f} "
                f"unsup {values.get('loss/unsup_mixed', 0.0) + values.get('loss/unsup_labeled', 0.0):.3f} "
                f"{values.get('throughput_img_s', 0.0):.1f} img/s", refresh=False)
        elif self.ctx.is_main and step % 50 == 0:
            logger.info("step %d: loss %.4f, %.1f img/s", step, values.get("loss/total", float("nan")),
                        values.get("throughput_img_s", 0.0))

    def _log_classes(self, step: int, freq_l: torch.Tensor, freq_p: torch.Tensor) -> None:
        assert self.writer is not None
        vectors = {k: v.detach().float().cpu().numpy() for k, v in self.step.class_vectors().items()}
        for name, counts in (("freq_labeled", freq_l), ("freq_pseudo", freq_p)):
            host = counts.cpu().numpy().astype(np.float64)
            if host.sum() > 0:
                vectors[name] = host / host.sum()
        self.writer.log_classes(step, vectors)

    def _log_media(self, step: int, out: StepOutput) -> None:
        assert self.writer is not None
        media = {k: v.detach().cpu() for k, v in out.media.items()}
        mean = torch.tensor(self.cfg.data.mean).view(3, 1, 1)
        std = torch.tensor(self.cfg.data.std).view(3, 1, 1)

        def rgb(x: torch.Tensor) -> np.ndarray:
            return (x.float() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()

        def lab(x: torch.Tensor) -> np.ndarray:
            return x.long().clamp(0, 255).numpy().astype(np.uint8)

        if "pseudo_image" in media:
            self.writer.log_sample(step, "pseudo", images={"image": rgb(media["pseudo_image"])},
                                   labels={"gt": lab(media["pseudo_gt"]), "pseudo": lab(media["pseudo_label"])},
                                   maps={"confidence": media["pseudo_conf"].float().numpy()})
        if "mixed" in media:
            box = [int(v) for v in media["box"].tolist()]
            meta = {"box": box, "class": int(media["box_class"]),
                    "class_name": (self.info.class_names[int(media["box_class"])]
                                   if int(media["box_class"]) >= 0 else None),
                    "component_box": bool(media["box_found"])}
            maps = {"confidence": media["pseudo_conf_mixed"].float().numpy()} if "pseudo_conf_mixed" in media else None
            self.writer.log_sample(step, "cutmix", images={"image_a": rgb(media["mix_a"]), "image_b": rgb(media["mix_b"]),
                                                           "mixed": rgb(media["mixed"])},
                                   labels={"pseudo_mixed": lab(media["pseudo_mixed"])}, maps=maps, meta=meta)
        if "cp_image" in media:
            pasted = [int(c) for c in torch.nonzero(media["cp_pasted"]).flatten().tolist()]
            self.writer.log_sample(step, "copy_paste", images={"image": rgb(media["cp_image"]),
                                                               "before": rgb(media["cp_before"])},
                                   labels={"label": lab(media["cp_label"])},
                                   meta={"pasted_classes": pasted,
                                         "pasted_names": [self.info.class_names[c] for c in pasted]})

    # -------------------------------------------------------------------------------- evaluation

    def run_eval(self) -> dict[str, EvalResult]:
        """Evaluate the configured model(s) on the validation split; recorded on rank 0."""
        ecfg = self.cfg.train.eval
        names = ["teacher", "student"] if ecfg.model == "both" else [ecfg.model]
        results = {}
        for name in names:
            model = self.teacher.module if name == "teacher" else unwrap_model(self.student)
            result = evaluate(model, self.val_loader, num_classes=self.num_classes,
                              ignore_index=self.info.ignore_index, device=self.device, mode=ecfg.mode,
                              crop_size=ecfg.crop_size or self.cfg.data.crop_size, stride_ratio=ecfg.stride_ratio,
                              scales=ecfg.scales, flip=ecfg.flip, amp_dtype=resolve_amp_dtype(self.cfg.train.amp))
            if name == "teacher":
                self.teacher.module.train(self.teacher.train_mode)
            results[name] = result
            record = {"step": self.iteration, "miou": float(result.miou),
                      "iou": [None if math.isnan(v) else float(v) for v in result.iou.tolist()]}
            self.evals.setdefault(name, []).append(record)
            if self.writer is not None:
                self.writer.log_eval(self.iteration, miou=result.miou, iou=result.iou.numpy(),
                                     confusion=result.confusion.numpy(), model=name,
                                     extra={"pixel_acc": result.acc, "eval_seconds": result.seconds})
            logger.info("iteration %d: %s mIoU %.2f", self.iteration, name, 100 * result.miou)
        self.model.train()
        return results

    def _result(self) -> TrainResult:
        final, best = {}, {}
        for name, records in self.evals.items():
            final[name] = records[-1]
            finite = [r for r in records if not math.isnan(r["miou"])]
            best[name] = max(finite, key=lambda r: r["miou"]) if finite else records[-1]
        return TrainResult(run_dir=self.run_dir if self.ctx.is_main else None, is_main=self.ctx.is_main,
                           iterations=self.iteration, class_names=list(self.info.class_names),
                           frequencies=self.frequencies, final=final, best=best)


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _all_reduce_pair(sums: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sums, counts = sums.clone(), counts.clone()
    dist_utils.all_reduce_sum_([sums, counts])
    return sums, counts


def _all_gather_pair(indices: torch.Tensor, bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # bits (C, N) -> gather along N via (N, C); every rank contributes the same N per step.
    all_indices = dist_utils.all_gather_cat(indices, same_size=True)
    all_bits = dist_utils.all_gather_cat(bits.t().contiguous().to(torch.uint8), same_size=True)
    return all_indices, all_bits.t().bool()


def _write_split(data: SplitDatasets, run_dir: Path) -> None:
    from ael.data.splits import write_split

    try:
        write_split(data.split, run_dir)
    except OSError as err:  # the run is still usable without its split files
        logger.warning("could not record the split in %s: %s", run_dir, err)


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
    trainer = Trainer(cfg, resume_dir=resume_dir, preset=preset, progress=progress, stop_at=stop_at)
    return trainer.fit()

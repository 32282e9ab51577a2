"""The checkpoint hook: atomic checkpoints of everything a resume needs, and the resume itself.

A checkpoint holds the student, the teacher, the optimizer, the schedule, the grad scaler, every
hook's state, and per process the random states (incl. the step generator), the loader positions,
the method's state (banks, pending CutMix partners) and, with several processes, the
teacher's buffers (each process's own BN statistics). Written every ``train.checkpoint_every``
iterations, at the end and on a graceful stop (rank 0 writes, after gathering every rank's
state); ``ael train --resume`` continues from the newest valid one and reaches the same state as
an uninterrupted run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ael.config import dump_config
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
from ael.engine.hooks.base import Hook
from ael.models import unwrap_model
from ael.runs.schema import CHECKPOINTS_DIR

if TYPE_CHECKING:
    from ael.engine.trainer import Trainer

__all__ = ["CheckpointHook"]

logger = logging.getLogger(__name__)


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


class CheckpointHook(Hook):
    """Saves at its cadence, at the end of the loop and when it stops; restores on resume.

    Args:
        every: iterations between checkpoints (0: only at the end and on a stop).
        keep: older checkpoints kept besides the latest.
    """

    def __init__(self, *, every: int, keep: int) -> None:
        self.every = every
        self.keep = keep

    def after_step(self, trainer: Trainer) -> None:
        due = self.every > 0 and trainer.iteration % self.every == 0
        if trainer.stopping or trainer.iteration == trainer.end or due:
            # Scalars still waiting for their one-step-late write belong before the checkpoint:
            # a run resumed from it would otherwise never write them.
            trainer.reporter.flush()
            self.save(trainer)

    @staticmethod
    def metadata(trainer: Trainer) -> dict[str, Any]:
        """What a checkpoint must match to resume this run."""
        return checkpoint_metadata(num_classes=trainer.num_classes, backbone=trainer.cfg.model.backbone,
                                   method=trainer.method.name)

    @staticmethod
    def _rank_state(trainer: Trainer) -> dict[str, Any]:
        state = {"rng": capture_rng_state({"step": trainer.generator}), "loaders": trainer.loaders.state_dict(),
                 "method": trainer.method.state_dict()}
        if trainer.dist.world_size > 1:
            # Each process's teacher has its own BN statistics (the EMA of its student's, which are
            # per process without SyncBN, e.g. DDP on the CPU): keep every rank's, not only rank 0's.
            state["teacher_buffers"] = dict(trainer.teacher.module.named_buffers())
        return state

    def save(self, trainer: Trainer) -> Path | None:
        """Write a checkpoint of the current iteration (gathers every rank's state; rank 0 writes)."""
        ranks = [_to_cpu(self._rank_state(trainer))]
        if trainer.dist.world_size > 1:
            gathered: list[Any] = [None] * trainer.dist.world_size
            torch.distributed.all_gather_object(gathered, ranks[0])
            ranks = gathered
        path = None
        if trainer.dist.is_main:
            state = {
                "student": unwrap_model(trainer.student).state_dict(),
                "teacher": trainer.teacher.state_dict(),
                "optimizer": trainer.optimizer.state_dict(),
                "scheduler": trainer.scheduler.state_dict(),
                "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
                "ranks": ranks,
                "hooks": {h.state_key: h.state_dict() for h in trainer.hooks if h.state_key is not None},
                "config": dump_config(trainer.cfg),
                "world_size": trainer.dist.world_size,
            }
            assert trainer.run_dir is not None
            path = save_checkpoint(trainer.run_dir / CHECKPOINTS_DIR, state, iteration=trainer.iteration,
                                   metadata=self.metadata(trainer), keep=self.keep)
            if trainer.writer is not None:
                trainer.writer.heartbeat(trainer.iteration)
        dist_utils.barrier()
        return path

    def restore(self, trainer: Trainer, run_dir: Path) -> bool:
        """Load the newest valid checkpoint of ``run_dir`` into ``trainer``; False when there is none.

        Raises:
            CheckpointError: the checkpoint does not fit this run (the message names the file).
        """
        directory = run_dir / CHECKPOINTS_DIR
        found = load_latest_valid(directory, map_location=trainer.device, expected_metadata=self.metadata(trainer))
        if found is None:
            logger.warning("%s: no checkpoint yet; the run starts over from iteration 0", directory)
            return False
        path, data = found
        student = unwrap_model(trainer.student)
        check_state_dict_compatible(data["student"], student, source=path)
        student.load_state_dict(data["student"])
        check_state_dict_compatible(data["teacher"], trainer.teacher.module, source=path)
        trainer.teacher.load_state_dict(data["teacher"])
        trainer.optimizer.load_state_dict(data["optimizer"])
        trainer.scheduler.load_state_dict(data["scheduler"])
        if trainer.scaler is not None and data.get("scaler") is not None:
            trainer.scaler.load_state_dict(data["scaler"])
        ranks = data["ranks"]
        if len(ranks) != trainer.dist.world_size:
            raise CheckpointError(f"{path}: saved by {len(ranks)} process(es); resume it with the same number "
                                  f"(this run has {trainer.dist.world_size})")
        mine = ranks[trainer.dist.rank]
        restore_rng_state(mine["rng"], {"step": trainer.generator})
        try:
            trainer.loaders.load_state_dict(mine["loaders"])
            trainer.method.load_state_dict(mine["method"])
        except ValueError as err:
            raise CheckpointError(f"{path}: {err}") from None
        if "teacher_buffers" in mine:
            own = dict(trainer.teacher.module.named_buffers())
            if set(mine["teacher_buffers"]) != set(own):
                raise CheckpointError(f"{path}: the teacher's per-process buffers do not match this model")
            with torch.no_grad():
                for name, value in mine["teacher_buffers"].items():
                    own[name].copy_(value)
        hooks = data.get("hooks", {})
        for hook in trainer.hooks:
            if hook.state_key is not None and hook.state_key in hooks:
                hook.load_state_dict(hooks[hook.state_key])
        trainer.iteration = int(data["iteration"])
        logger.info("resumed from %s at iteration %d", path, trainer.iteration)
        return True

"""The trainer's builders: each reads its config section and hands components explicit arguments."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ael.config import ModelConfig, TrainConfig
from ael.engine import distributed as dist_utils
from ael.methods import Collectives
from ael.models import build_ema, build_model, maybe_sync_batchnorm

__all__ = ["build_models", "collectives", "wrap_student"]


def build_models(model_cfg: ModelConfig, train_cfg: TrainConfig, num_classes: int, device: torch.device, *,
                 seed: int, world_size: int = 1) -> tuple[nn.Module, Any]:
    """Student (SyncBN when distributed on CUDA, channels_last if asked) and its EMA teacher."""

    def builder() -> nn.Module:
        model = build_model(model_cfg, num_classes).to(device)
        return model.to(memory_format=torch.channels_last) if train_cfg.channels_last else model

    student = builder()
    teacher = build_ema(train_cfg.ema, student, teacher_builder=builder, seed=seed + 7919)
    student = maybe_sync_batchnorm(student, world_size=world_size, device=device)
    return student, teacher


def wrap_student(student: nn.Module, dist: dist_utils.DistContext, *, compile: bool) -> nn.Module:
    """The student as the step calls it: DDP-wrapped under torchrun, compiled when asked."""
    model = student
    if dist.is_distributed:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(student, device_ids=ids)
    return torch.compile(model) if compile else model


def collectives(dist: dist_utils.DistContext) -> Collectives:
    """The cross-process operations a method may use (identities on one process)."""
    if not dist.is_distributed:
        return Collectives()
    return Collectives(world_size=dist.world_size, all_reduce_sum_=dist_utils.all_reduce_sum_,
                       all_gather_cat=lambda t: dist_utils.all_gather_cat(t, same_size=True))

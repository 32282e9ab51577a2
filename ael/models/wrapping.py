"""Model wrappers for distributed and compiled runs: unwrapping and SyncBN conversion."""

from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = ["maybe_sync_batchnorm", "unwrap_model"]

logger = logging.getLogger(__name__)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under DDP / DataParallel / ``torch.compile`` wrappers (any nesting)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def maybe_sync_batchnorm(model: nn.Module, *, world_size: int, device: torch.device | str) -> nn.Module:
    """Convert every BatchNorm to SyncBatchNorm for multi-process CUDA runs.

    Call before wrapping in DDP (and before building the optimizer). A single process, or a
    CPU run (SyncBatchNorm needs CUDA), gets the model back unchanged.

    Args:
        model: the student (unwrapped).
        world_size: number of processes.
        device: the training device.

    Returns:
        The converted model (a new module tree when converted; parameters are shared).
    """
    if world_size <= 1 or torch.device(device).type != "cuda":
        return model
    logger.info("converting BatchNorm to SyncBatchNorm across %d processes", world_size)
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)

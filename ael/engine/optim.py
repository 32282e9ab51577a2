"""SGD with backbone/head learning-rate groups and the poly schedule, in iterations.

The method trains with SGD (momentum 0.9, weight decay 1e-4), the head (decoder and auxiliary
head) at ``head_lr_mult`` (10x) the backbone rate, and the poly decay
``lr = base_lr * (1 - it / max_it) ** power``. ``ael`` counts training in iterations;
:func:`epochs_to_iterations` converts the release's epochs over the unlabeled loader.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["PolyLRScheduler", "build_sgd", "epochs_to_iterations", "poly_lr"]

logger = logging.getLogger(__name__)


def poly_lr(base_lr: float, it: int, max_it: int, power: float = 0.9, warmup_iters: int = 0) -> float:
    """Learning rate of iteration ``it`` (0-based) under poly decay with optional linear warmup.

    ``lr = base_lr * (1 - it / max_it) ** power``, times ``(it + 1) / warmup_iters`` while
    ``it < warmup_iters`` (so the first step already moves, and the ramp reaches the poly
    curve at ``it = warmup_iters``). Iterations at or past ``max_it`` get 0.

    Args:
        base_lr: Rate at iteration 0 without warmup.
        it: Current iteration, starting at 0.
        max_it: Total iterations of the run.
        power: Poly exponent (0.9 in the method).
        warmup_iters: Length of the linear warmup; 0 for none.

    Raises:
        ValueError: Negative ``it``/``power``/``warmup_iters`` or non-positive ``max_it``.
    """
    if max_it <= 0:
        raise ValueError(f"max_it must be > 0, got {max_it}")
    if it < 0:
        raise ValueError(f"it must be >= 0, got {it}")
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    if warmup_iters < 0:
        raise ValueError(f"warmup_iters must be >= 0, got {warmup_iters}")
    remaining = max(0.0, 1.0 - it / max_it)
    lr = base_lr * remaining**power if remaining > 0 else 0.0
    if it < warmup_iters:
        lr *= (it + 1) / warmup_iters
    return lr


def build_sgd(backbone_params: Iterable[nn.Parameter], head_params: Iterable[nn.Parameter], *,
              lr: float, head_lr_mult: float = 10.0, momentum: float = 0.9,
              weight_decay: float = 1e-4, nesterov: bool = False) -> torch.optim.SGD:
    """SGD with two parameter groups: ``backbone`` at ``lr`` and ``head`` at ``lr * head_lr_mult``.

    Parameters that do not require gradients are left out. Each group carries its ``name`` and
    ``lr_mult`` so logs and schedulers can tell them apart.

    Args:
        backbone_params: Encoder parameters.
        head_params: Decoder and auxiliary-head parameters.
        lr: Backbone learning rate.
        head_lr_mult: Head rate as a multiple of ``lr``.
        momentum: SGD momentum.
        weight_decay: L2 penalty, the same for both groups.
        nesterov: Nesterov momentum.

    Raises:
        ValueError: Bad hyper-parameters, no trainable parameter, or a parameter in both groups.
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not head_lr_mult > 0:
        raise ValueError(f"head_lr_mult must be > 0, got {head_lr_mult}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    backbone = [p for p in backbone_params if p.requires_grad]
    head = [p for p in head_params if p.requires_grad]
    if not backbone and not head:
        raise ValueError("build_sgd: no trainable parameter in either group")
    shared = {id(p) for p in backbone} & {id(p) for p in head}
    if shared:
        raise ValueError(f"build_sgd: {len(shared)} parameter(s) are in both the backbone and head groups")
    groups = [
        {"params": backbone, "lr": lr, "lr_mult": 1.0, "name": "backbone"},
        {"params": head, "lr": lr * head_lr_mult, "lr_mult": head_lr_mult, "name": "head"},
    ]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


class PolyLRScheduler:
    """Sets every group's rate to :func:`poly_lr` of its base rate, once per iteration.

    Construction applies iteration 0; call :meth:`step` after each ``optimizer.step()``. The
    base rates are kept in each group's ``initial_lr`` (as torch's schedulers do), so a
    scheduler built on a resumed optimizer finds them again. :meth:`state_dict` holds plain
    numbers only (safe for ``torch.load(weights_only=True)``); :meth:`load_state_dict` restores
    the iteration and re-applies its rates, whatever the order the optimizer and the scheduler
    were restored in. The schedule's shape (``max_iters``, ``power``, warmup) comes from the
    constructor, i.e. the current config; a difference from the checkpoint is logged.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, max_iters: int, power: float = 0.9,
                 warmup_iters: int = 0) -> None:
        if max_iters <= 0:
            raise ValueError(f"max_iters must be > 0, got {max_iters}")
        if warmup_iters < 0 or warmup_iters >= max_iters:
            raise ValueError(f"warmup_iters must be in [0, max_iters={max_iters}), got {warmup_iters}")
        if power < 0:
            raise ValueError(f"power must be >= 0, got {power}")
        self.optimizer = optimizer
        self.max_iters = int(max_iters)
        self.power = float(power)
        self.warmup_iters = int(warmup_iters)
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", float(group["lr"]))
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_iter = 0
        self._apply()

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = poly_lr(base, self.last_iter, self.max_iters, self.power, self.warmup_iters)

    def step(self) -> None:
        """Advance one iteration and set the rates for it."""
        self.last_iter += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """The rate of every group for the current iteration."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Progress and schedule as plain numbers."""
        return {
            "last_iter": self.last_iter,
            "max_iters": self.max_iters,
            "power": self.power,
            "warmup_iters": self.warmup_iters,
            "base_lrs": list(self.base_lrs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at the saved iteration; the group rates are set for it."""
        if "last_iter" not in state:
            raise KeyError("scheduler state has no 'last_iter' (not a PolyLRScheduler state)")
        saved = {k: state.get(k) for k in ("max_iters", "power", "warmup_iters", "base_lrs")}
        now = {"max_iters": self.max_iters, "power": self.power, "warmup_iters": self.warmup_iters,
               "base_lrs": self.base_lrs}
        for key, value in saved.items():
            if value is not None and value != now[key]:
                logger.warning("resumed schedule: %s was %s, now %s", key, value, now[key])
        self.last_iter = int(state["last_iter"])
        self._apply()


def epochs_to_iterations(epochs: int, num_unlabeled: int, batch_unlabeled_per_gpu: int,
                         world_size: int) -> int:
    """Iterations of ``epochs`` passes over the unlabeled loader, counted as the release does.

    The release shards the unlabeled set with ``DistributedSampler`` (each rank gets
    ``ceil(N / world_size)`` images, padding with repeats) and batches with ``drop_last=True``,
    so one epoch is ``floor(ceil(N / world_size) / batch)`` iterations. Cityscapes 1/2 (1488
    unlabeled), 200 epochs, 2 per GPU on 8 GPUs: 200 * 93 = 18 600.

    Raises:
        ValueError: Non-positive arguments, or a batch larger than one rank's shard.
    """
    for name, value in (("epochs", epochs), ("num_unlabeled", num_unlabeled),
                        ("batch_unlabeled_per_gpu", batch_unlabeled_per_gpu), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    per_rank = math.ceil(num_unlabeled / world_size)
    per_epoch = per_rank // batch_unlabeled_per_gpu
    if per_epoch == 0:
        raise ValueError(
            f"batch_unlabeled_per_gpu={batch_unlabeled_per_gpu} exceeds the {per_rank} unlabeled images "
            f"per rank ({num_unlabeled} over {world_size} ranks): an epoch would have no iteration"
        )
    return epochs * per_epoch

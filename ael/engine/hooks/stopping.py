"""Graceful stop: SIGTERM / SIGINT or a request end the loop after the iteration, with a checkpoint."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ael.engine import distributed as dist_utils

__all__ = ["StopSignal"]

logger = logging.getLogger(__name__)


class StopSignal:
    """A stop request, agreed across processes.

    Args:
        agree_every: in a distributed run the request is shared every this many iterations
            (the class-vector cadence), so every rank stops at the same iteration.
        distributed: whether there are other processes to agree with.
        device: where the agreement's flag lives.
    """

    def __init__(self, *, agree_every: int, distributed: bool, device: torch.device) -> None:
        self.agree_every = agree_every
        self.distributed = distributed
        self.device = device
        self.reason: str | None = None

    def request(self, reason: str = "on request") -> None:
        """Ask the loop to stop after the current iteration (safe from a signal handler)."""
        self.reason = reason

    def should_stop(self, iteration: int) -> bool:
        """Whether the loop stops after ``iteration`` (0-based); a collective every ``agree_every``."""
        if not self.distributed:
            return self.reason is not None
        if iteration % self.agree_every != 0:
            return False
        flag = torch.tensor([0.0 if self.reason is None else 1.0], device=self.device)
        dist_utils.all_reduce_sum_([flag])
        if flag.item() > 0 and self.reason is None:  # another rank was signalled
            self.reason = "on request (another rank)"
        return self.reason is not None

    @contextmanager
    def on_signals(self) -> Iterator[None]:
        """While inside, SIGTERM / SIGINT request a stop (a second one aborts at once).

        The first signal lets the iteration finish, writes a checkpoint and ends training with
        :class:`ael.engine.trainer.TrainingStopped`, so ``ael train --resume`` loses nothing
        (cluster pre-emption, the notebooks' Stop button). Outside the main thread signals cannot
        be caught: no-op.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            if self.reason is not None:
                raise KeyboardInterrupt(f"second {name}: aborting without a checkpoint")
            logger.warning("%s received: stopping after this iteration with a checkpoint "
                           "(send it again to abort at once)", name)
            self.request(f"on {name}")

        for sig in previous:
            signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old_handler in previous.items():
                signal.signal(sig, old_handler)

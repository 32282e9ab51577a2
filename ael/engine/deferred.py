"""Per-step scalars read on the host one step late, so logging never stalls the device.

The step's scalars (losses, lr, ...) are stacked into ONE detached device tensor and copied to
a (pinned, on CUDA) host buffer with ``non_blocking=True``; an event marks the copy. The values
of step ``t`` are handed to the writer while step ``t + 1`` is already queued on the device, so
waiting for the event costs nothing on the critical path. On the CPU the copy is immediate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["DeferredScalars"]


class DeferredScalars:
    """A small queue of per-step scalar records whose device values are copied asynchronously.

    Args:
        device: where the step's tensors live.
        lag: how many newer steps must be queued before a record is handed out (1: one step late).
    """

    def __init__(self, device: torch.device | str, *, lag: int = 1) -> None:
        self.device = torch.device(device)
        self.lag = int(lag)
        self._pending: deque[tuple[int, list[str], torch.Tensor, Any, dict[str, float]]] = deque()

    def push(self, step: int, tensors: Mapping[str, torch.Tensor], host: Mapping[str, float] | None = None) -> None:
        """Queue the scalars of ``step``.

        Args:
            step: the training iteration.
            tensors: name -> 0-d (or one-element) device tensor; stacked and copied in one go.
            host: name -> plain numbers already on the host (timings, lr), passed through.
        """
        names = list(tensors)
        if names:
            stacked = torch.stack([t.detach().reshape(()).float() for t in tensors.values()])
            buffer = torch.empty(stacked.shape, dtype=torch.float32,
                                 pin_memory=self.device.type == "cuda")
            buffer.copy_(stacked, non_blocking=True)
        else:
            buffer = torch.empty(0)
        event = None
        if self.device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
        self._pending.append((int(step), names, buffer, event, dict(host or {})))

    def pop_ready(self, *, flush: bool = False) -> list[tuple[int, dict[str, float]]]:
        """Records old enough to read (all of them with ``flush``), oldest first, as plain floats."""
        out = []
        while self._pending and (flush or len(self._pending) > self.lag):
            step, names, buffer, event, host = self._pending.popleft()
            if event is not None:
                event.synchronize()
            values = dict(zip(names, buffer.tolist()))
            values.update(host)
            out.append((step, values))
        return out

    def __len__(self) -> int:
        return len(self._pending)

"""AEL's CutMix partners: drawn one step ahead, loaded on a background thread, checkpointed.

Adaptive CutMix draws, for each mixed image, a class ``c`` and a partner image ``j`` among the
unlabeled images whose CutMix-bank entry for ``c`` is set. The draw happens on the training
device; reading its result on the host at the same step would stall the device (a sync in the
hot path). So :class:`PartnerStream` draws the partners of micro-step ``t + 1`` during micro-step
``t`` (from the confidence bank and CutMix bank as they stand then), starts a non-blocking copy
of the indices to the host, and a worker thread waits for the copy, decodes and augments the
images and pins them while step ``t`` still runs. At step ``t + 1`` :meth:`PartnerStream.take`
returns them on the device. The stream owns the whole round trip: draw, fetch and the pending
request a checkpoint must keep.

This one-step lag is the only timing deviation from the method: the partners of step ``t + 1``
are drawn from the banks as they stand during step ``t``, one update older than the method's
draw. With the bank momentum of 0.999 the confidence moves by about 0.1 % a step, so the class
distribution of the draw is the same to three decimals.

Randomness of the partner's augmentation is a function of (run seed, step, index) (the loader's
``fetch_unlabeled``), not of a shared generator, so it does not depend on thread timing and a
resumed run redraws exactly the same partner crops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["DrawFn", "PartnerBatch", "PartnerStream"]

logger = logging.getLogger(__name__)

# (indices of the unlabeled dataset, step) -> {"image": (M, 3, H, W), ...} CPU tensors.
LoadFn = Callable[[Sequence[int], int], dict[str, torch.Tensor]]
# () -> ((M,) int64 unlabeled-set indices, (M,) int64 classes), on the training device.
DrawFn = Callable[[], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class PartnerBatch:
    """The partners of one step.

    Attributes:
        step: the training step they belong to.
        images: ``(M, 3, H, W)`` float images on the training device.
        strong: ``(M, 3, H, W)`` strong views when the loader makes them, else None.
        indices: ``(M,)`` int64 positions in the unlabeled dataset, on the training device.
        classes: ``(M,)`` int64 class ``c`` each partner was drawn for (-1: drawn uniformly).
    """

    step: int
    images: torch.Tensor
    indices: torch.Tensor
    classes: torch.Tensor
    strong: torch.Tensor | None = None


class PartnerStream:
    """Draws the CutMix partners of the next micro-step and loads them while the current one runs.

    Args:
        draw: draws the next partners on the device (from the banks and the step's generator).
        load: ``load(indices, step) -> {"image": (M, 3, H, W), ...}`` CPU tensors: reads unlabeled
            images ``indices`` with the unlabeled stream's weak augmentation seeded by the step
            (``ael.data.loaders.TrainLoaders.fetch_unlabeled``).
        device: the training device.
        pin_memory: pin the loaded batch (CUDA only) so the copy to the device is asynchronous.
    """

    def __init__(self, draw: DrawFn, load: LoadFn, *, device: torch.device, pin_memory: bool = True) -> None:
        self._draw = draw
        self._load = load
        self.device = torch.device(device)
        self.pin_memory = bool(pin_memory) and self.device.type == "cuda"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ael-partners")
        self._pending: tuple[int, torch.Tensor, torch.Tensor, Future[dict[str, torch.Tensor]]] | None = None

    def start(self, step: int) -> None:
        """Draw and start loading the partners of ``step`` unless they are already pending (resume)."""
        if self._pending is None:
            self.advance(step)

    def advance(self, step: int) -> None:
        """Draw the partners of ``step`` now and start loading them (no host sync)."""
        self.request(step, *self._draw())

    def request(self, step: int, indices: torch.Tensor, classes: torch.Tensor) -> None:
        """Start loading the partners of ``step`` (drawn on the device; no host sync here).

        Args:
            step: the step that will use them (usually the current step + 1).
            indices: ``(M,)`` int64 unlabeled-dataset positions, on the training device.
            classes: ``(M,)`` int64 classes they were drawn for, on the training device.
        """
        if self._pending is not None:
            raise RuntimeError(f"partners of step {self._pending[0]} were requested but never taken")
        indices = indices.detach()
        classes = classes.detach()
        host = torch.empty(indices.shape, dtype=torch.int64, pin_memory=self.pin_memory)
        host.copy_(indices, non_blocking=True)
        event = None
        if indices.device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
        future = self._pool.submit(self._work, host, event, int(step))
        self._pending = (int(step), indices, classes, future)

    def _work(self, host: torch.Tensor, event: Any, step: int) -> dict[str, torch.Tensor]:
        if event is not None:
            event.synchronize()  # waits on this worker thread only
        batch = self._load(host.tolist(), step)
        if self.pin_memory:
            batch = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return batch

    @property
    def pending_step(self) -> int | None:
        """The step whose partners are being loaded, or None."""
        return None if self._pending is None else self._pending[0]

    def take(self, step: int) -> PartnerBatch:
        """The partners of ``step`` on the device (waits for the loader if it is still busy).

        Raises:
            RuntimeError: nothing, or the partners of another step, were requested.
        """
        if self._pending is None:
            raise RuntimeError(f"no partners were requested for step {step}")
        pending_step, indices, classes, future = self._pending
        if pending_step != step:
            raise RuntimeError(f"partners were requested for step {pending_step}, not {step}")
        self._pending = None
        batch = future.result()
        images = batch["image"].to(self.device, non_blocking=True)
        strong = batch.get("image_strong")
        if strong is not None:
            strong = strong.to(self.device, non_blocking=True)
        return PartnerBatch(step=pending_step, images=images, indices=indices, classes=classes, strong=strong)

    def state_dict(self) -> dict[str, Any]:
        """The pending request (host copies; a sync, for checkpoints only)."""
        if self._pending is None:
            return {"step": -1}
        step, indices, classes, _ = self._pending
        return {"step": step, "indices": indices.cpu(), "classes": classes.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Drop any pending request and re-issue the saved one (same step, same images)."""
        self.cancel()
        if int(state.get("step", -1)) >= 0:
            self.request(int(state["step"]), state["indices"].to(self.device), state["classes"].to(self.device))

    def cancel(self) -> None:
        """Forget the pending request (its result, if any, is discarded)."""
        if self._pending is not None:
            self._pending[3].cancel()
            self._pending = None

    def close(self) -> None:
        """Stop the worker thread."""
        self.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)

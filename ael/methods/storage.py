"""Where a training step puts what it reports; the trainer's reporting hook drains it.

The step puts device tensors and never reads them on the host: scalars are averaged over the
micro-steps of an iteration on the device, class counts are summed until the class-vector
cadence, and samples (only when :attr:`StepStorage.wants_samples`) keep device tensors until the
reporting hook writes them. (After detectron2's ``EventStorage``: the step puts, writers drain.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["SampleRecord", "StepStorage"]


@dataclass
class SampleRecord:
    """One image sample a step shows (device tensors until written).

    Attributes:
        kind: what it shows (``pseudo``, ``cutmix``, ``copy_paste``, ...).
        images: name -> ``(3, H, W)`` normalised image.
        labels: name -> ``(H, W)`` integer label map.
        maps: name -> ``(H, W)`` float map in [0, 1] (confidence).
        meta: JSON-able values, or 0-d / 1-d tensors (converted with ``tolist`` when written).
        describe: applied to the converted ``meta`` when written (to name classes, say): the
            step itself never reads a device value on the host.
    """

    kind: str
    images: dict[str, Tensor] = field(default_factory=dict)
    labels: dict[str, Tensor] = field(default_factory=dict)
    maps: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    describe: Callable[[dict[str, Any]], dict[str, Any]] | None = None


class StepStorage:
    """The scalars, class counts and samples of the current iteration.

    Args:
        device: the training device (where plain-number scalars are put).

    Attributes:
        wants_samples: whether the trainer writes samples this iteration (a step may skip the
            work of preparing them otherwise).
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.wants_samples = False
        self._scalars: dict[str, list[Tensor]] = {}
        self._counts: dict[str, Tensor] = {}
        self._samples: list[SampleRecord] = []

    def begin_iteration(self, *, wants_samples: bool) -> None:
        """Start an iteration: scalars and samples of the previous one are dropped."""
        self.wants_samples = wants_samples
        self._scalars.clear()
        self._samples.clear()

    def put_scalar(self, name: str, value: Tensor | float) -> None:
        """A 0-d value of this micro-step (detached; averaged over the iteration's micro-steps)."""
        if isinstance(value, Tensor):
            value = value.detach().reshape(())
        else:
            value = torch.tensor(float(value), device=self.device)
        self._scalars.setdefault(name, []).append(value)

    def put_scalars(self, values: Mapping[str, Tensor | float]) -> None:
        """:meth:`put_scalar` for each item."""
        for name, value in values.items():
            self.put_scalar(name, value)

    def put_class_counts(self, name: str, counts: Tensor) -> None:
        """``(C,)`` counts added to the running total of ``name`` (a frequency vector when drained)."""
        counts = counts.detach()
        total = self._counts.get(name)
        self._counts[name] = counts.clone() if total is None else total + counts

    def put_sample(self, kind: str, *, images: Mapping[str, Tensor] | None = None,
                   labels: Mapping[str, Tensor] | None = None, maps: Mapping[str, Tensor] | None = None,
                   meta: Mapping[str, Any] | None = None,
                   describe: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        """An image sample (kept only when :attr:`wants_samples`)."""
        if not self.wants_samples:
            return
        detach = lambda d: {k: v.detach() for k, v in (d or {}).items()}  # noqa: E731
        self._samples.append(SampleRecord(kind, detach(images), detach(labels), detach(maps), dict(meta or {}),
                                          describe))

    def iteration_scalars(self) -> dict[str, Tensor]:
        """Each scalar's mean over the iteration's micro-steps (device tensors)."""
        return {name: torch.stack(values).float().mean() for name, values in self._scalars.items()}

    def take_class_counts(self) -> dict[str, Tensor]:
        """The counts summed since the last call, and a fresh start."""
        counts, self._counts = self._counts, {}
        return counts

    def samples(self) -> list[SampleRecord]:
        """The samples put this iteration."""
        return list(self._samples)

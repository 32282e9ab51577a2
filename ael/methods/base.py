"""The method interface: what a semi-supervised method owns, and what the trainer gives it.

A method (AEL, a baseline, a method of your own) owns its config section, its state (banks,
queues: whatever must survive a checkpoint), its training step on one micro-batch, the per-class
vectors it reports and the image samples it shows. The trainer owns everything common to every
method: the data streams, the student and its EMA teacher, the optimizer, precision, the backward
pass, distribution, evaluation, checkpoints and the run store. The trainer, the run store and the
dashboard know nothing method-specific: they read what the method declares.

A method's step puts what it wants reported into a :class:`~ael.methods.storage.StepStorage`
(scalars, class counts, image samples) and returns its loss; it never reads a device value on the
host, so the step queues on an accelerator without stalls.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ael.config.methods import MethodConfig
from ael.methods.storage import StepStorage
from ael.models.precision import autocast

__all__ = ["Collectives", "LoaderNeeds", "Method", "MethodContext", "TrainBatch"]

# (indices of the unlabeled dataset, micro-step) -> {"image": (M, 3, H, W), ...} CPU tensors.
FetchFn = Callable[[Sequence[int], int], dict[str, Tensor]]


def _local_all_reduce_sum_(tensors: Sequence[Tensor]) -> Sequence[Tensor]:
    return tensors


def _local_all_gather_cat(tensor: Tensor) -> Tensor:
    return tensor


@dataclass(frozen=True)
class Collectives:
    """The collective operations a method may use (identities on one process).

    Attributes:
        world_size: number of processes.
        all_reduce_sum_: sums a list of tensors across processes, in place.
        all_gather_cat: concatenates a tensor (same shape on every process) along dim 0 over
            the processes, in rank order.
    """

    world_size: int = 1
    all_reduce_sum_: Callable[[Sequence[Tensor]], Any] = _local_all_reduce_sum_
    all_gather_cat: Callable[[Tensor], Tensor] = _local_all_gather_cat


@dataclass(frozen=True)
class LoaderNeeds:
    """What a method needs from the data streams, read before the loaders are built.

    Attributes:
        unlabeled: the step takes an unlabeled batch each micro-step.
        paste_source_scale: scale range of a second, independently augmented view of a labeled
            image per labeled sample (Copy-Paste sources), or None for no such view.
        allow_self_source: a paste source may be the target image itself.
    """

    unlabeled: bool = True
    paste_source_scale: tuple[float, float] | None = None
    allow_self_source: bool = False


@dataclass
class MethodContext:
    """Everything a method is given besides its config section.

    Attributes:
        num_classes: C.
        ignore_index: the label of unlabeled pixels.
        class_names: the C class names.
        device: the training device.
        generator: the step's random source, on ``device`` (checkpointed by the trainer).
        student: the student as the step calls it (DDP-wrapped or compiled when configured);
            returns ``{"out": (B, C, H, W), "aux": ...}`` logits at the input size.
        teacher: the EMA teacher (``teacher(x)`` predicts; the trainer updates it).
        aux_weight: weight of the auxiliary head's loss (0 without one).
        amp_dtype: autocast dtype of the forward passes, or None.
        channels_last: feed the models channels-last tensors.
        collectives: reductions across processes.
        unlabeled_batch_size: B_u per micro-step.
        num_unlabeled: size of the unlabeled set.
        fetch_unlabeled: loads unlabeled images by index with the unlabeled stream's weak
            augmentation seeded by the micro-step (for a method that picks its own partners).
        pin_memory: pin host batches before copying them to a CUDA device.
        unlabeled_gt: unlabeled batches carry their ground truth (``label``) for diagnostics
            (``data.unlabeled_gt``); a method may count against it, never train on it.
    """

    num_classes: int
    ignore_index: int
    class_names: tuple[str, ...]
    device: torch.device
    generator: torch.Generator
    student: nn.Module
    teacher: Any
    aux_weight: float = 0.0
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    collectives: Collectives = field(default_factory=Collectives)
    unlabeled_batch_size: int = 0
    num_unlabeled: int = 0
    fetch_unlabeled: FetchFn | None = None
    pin_memory: bool = False
    unlabeled_gt: bool = False


@dataclass
class TrainBatch:
    """One micro-batch, already on the training device.

    Attributes:
        labeled: ``image`` (B_l, 3, H, W), ``label`` (B_l, H, W) int64, ``index`` (B_l,) int64,
            and with Copy-Paste sources ``source_image``, ``source_label``, ``source_index``.
        unlabeled: ``image`` (B_u, 3, H, W) weak view, ``index`` (B_u,), and ``image_strong``
            when the loader makes a photometric view; None for a method without unlabeled data.
    """

    labeled: dict[str, Tensor]
    unlabeled: dict[str, Tensor] | None = None


class Method(abc.ABC):
    """A semi-supervised segmentation method, driven by the trainer one micro-batch at a time.

    Subclasses set :attr:`name` and :attr:`config_class`, implement :meth:`train_step`, and
    register with :func:`ael.methods.register_method`.

    Args:
        cfg: the method's config section (an instance of :attr:`config_class`).
        ctx: what the trainer gives it.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]]

    def __init__(self, cfg: MethodConfig, ctx: MethodContext) -> None:
        if not isinstance(cfg, self.config_class):
            raise TypeError(f"method {self.name!r} takes a {self.config_class.__name__}, "
                            f"got {type(cfg).__name__}")
        self.cfg = cfg
        self.ctx = ctx

    @classmethod
    def loader_needs(cls, cfg: MethodConfig) -> LoaderNeeds:
        """What the data streams must provide (called before the method is built)."""
        return LoaderNeeds()

    @abc.abstractmethod
    def train_step(self, batch: TrainBatch, *, iteration: int, micro_step: int, storage: StepStorage) -> Tensor:
        """Forward one micro-batch and return its loss (the trainer scales it and back-propagates).

        Args:
            batch: the micro-batch.
            iteration: the optimizer step it belongs to (schedules such as a ramp-up).
            micro_step: its index over the whole run (``iteration * grad_accum + k``).
            storage: where the step puts scalars, class counts and (when it asks) samples.

        Returns:
            The 0-d loss with its graph; ``storage`` gets ``loss/total`` and its parts.
        """

    def vectors(self) -> dict[str, str]:
        """The per-class vectors this method reports: name -> one-line description."""
        return {}

    def class_vectors(self) -> dict[str, Tensor]:
        """The value of each state vector (``(C,)`` device tensors) of :meth:`vectors`, at the cadence.

        Called once per class-vector write (``train.classes_every``) on the writing process; a
        vector the method counts over steps (pseudo-label quality) covers the steps since the last
        call. Class frequencies come through the storage instead.
        """
        return {}

    def before_train(self, micro_step: int) -> None:
        """Called once before the first step of a run (new or resumed), at ``micro_step``."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """This process's state for a checkpoint (tensors may stay on the device)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output.

        Raises:
            ValueError: the state does not fit this method's configuration (the trainer adds
                the checkpoint's path to the message).
        """
        return None

    def close(self) -> None:
        """Stop background work (threads)."""
        return None

    # ------------------------------------------------------------------------------ helpers

    def autocast(self) -> Any:
        """The forward passes' autocast context (a no-op without mixed precision)."""
        return autocast(self.ctx.device, self.ctx.amp_dtype)

    def model_input(self, x: Tensor) -> Tensor:
        """``x`` in the memory format the models are in."""
        return x.contiguous(memory_format=torch.channels_last) if self.ctx.channels_last else x

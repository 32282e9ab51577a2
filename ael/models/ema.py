"""The mean teacher: an exponential moving average of the student.

After every optimizer step ``t`` (0-based global iteration),
``teacher <- d_t * teacher + (1 - d_t) * student`` with ``d_t = min(1 - 1/(t + 1), decay)``,
so the first update copies the student. By default parameters and floating-point buffers (BN
running statistics) are averaged and integer buffers (``num_batches_tracked``) copied; the
release averages parameters only and leaves the teacher's buffers to its own forward passes.

The update is one fused ``torch._foreach_lerp_`` over all tensors, takes the decay as a Python
float (no host sync) and works on the module under DDP / ``torch.compile`` wrappers. The
teacher never holds gradients.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ael.models.wrapping import unwrap_model

__all__ = ["EmaTeacher", "build_independent_teacher", "ema_decay"]

logger = logging.getLogger(__name__)


def ema_decay(step: int, decay: float) -> float:
    """Decay of the EMA update after optimizer step ``step`` (0-based): ``min(1 - 1/(step+1), decay)``."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return min(1.0 - 1.0 / (step + 1), decay)


def build_independent_teacher(builder: Callable[[], nn.Module], *, seed: int) -> nn.Module:
    """Build a teacher separately from the student, with its own seed (the release's init).

    The global RNG state is restored afterwards, so building the teacher does not change what
    the rest of the run draws.

    Args:
        builder: builds the same architecture as the student (pretrained weights included).
        seed: seed of the teacher's random initialisation.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder()


class EmaTeacher:
    """An EMA copy of a student model.

    Args:
        student: the student (DDP / compile wrappers are unwrapped).
        decay: the EMA decay cap (0.99 in AEL).
        average_buffers: True: average float buffers and copy integer ones; False (release):
            parameters only, buffers left alone.
        train_mode: run the teacher in train mode (release: batch statistics and dropout);
            default eval mode.
        teacher: an independently initialised teacher (see :func:`build_independent_teacher`);
            None: a deep copy of the student.

    Attributes:
        module: the teacher network; call it (or this object) for predictions.
    """

    def __init__(
        self,
        student: nn.Module,
        *,
        decay: float = 0.99,
        average_buffers: bool = True,
        train_mode: bool = False,
        teacher: nn.Module | None = None,
    ) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        student = unwrap_model(student)
        if teacher is None:
            teacher = copy.deepcopy(student)
        else:
            teacher = unwrap_model(teacher)
            reference = next(student.parameters())
            teacher.to(reference.device)
            if any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last)
                   and not p.is_contiguous() for p in student.parameters()):
                # Same memory format as the student keeps the fused update on its fast path.
                teacher.to(memory_format=torch.channels_last)
        self.module: nn.Module = teacher
        self.decay = decay
        self.average_buffers = average_buffers
        self.train_mode = train_mode
        self.module.requires_grad_(False)
        for p in self.module.parameters():
            p.grad = None
        self.module.train(train_mode)
        self._check_matches(student)
        self._params = list(self.module.parameters())
        self._float_buffers = [b for b in self.module.buffers() if b.is_floating_point()]
        self._int_buffers = [b for b in self.module.buffers() if not b.is_floating_point()]

    def _check_matches(self, student: nn.Module) -> None:
        ours = {k: v.shape for k, v in self.module.state_dict().items()}
        theirs = {k: v.shape for k, v in student.state_dict().items()}
        if ours != theirs:
            diff = sorted(set(ours.items()) ^ set(theirs.items()))[:8]
            raise ValueError(f"teacher and student architectures differ (first differing entries: {diff})")

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> float:
        """Move the teacher towards the student after optimizer step ``step`` (0-based).

        Returns:
            The decay used.
        """
        student = unwrap_model(student)
        d = ema_decay(step, self.decay)
        s_params = list(student.parameters())
        if len(s_params) != len(self._params):
            raise ValueError(f"student has {len(s_params)} parameters, the teacher {len(self._params)}")
        # lerp_(end, w) = self + w * (end - self) = (1 - w) * self + w * end
        torch._foreach_lerp_(self._params, s_params, 1.0 - d)
        if self.average_buffers:
            s_buffers = list(student.buffers())
            s_float = [b for b in s_buffers if b.is_floating_point()]
            s_int = [b for b in s_buffers if not b.is_floating_point()]
            if s_float:
                torch._foreach_lerp_(self._float_buffers, s_float, 1.0 - d)
            if s_int:
                torch._foreach_copy_(self._int_buffers, s_int)
        return d

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Teacher predictions, without autograd, in the configured mode.

        The mode is restored first when something (an evaluator calling ``.eval()`` on
        ``module``) changed it, so a release-mode teacher keeps using batch statistics.
        """
        if self.module.training != self.train_mode:
            self.module.train(self.train_mode)
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The teacher's weights (a plain model state dict, loadable for evaluation too)."""
        return self.module.state_dict()

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore the teacher on resume (strict: every key must match)."""
        self.module.load_state_dict(state, strict=True)
        self.module.train(self.train_mode)

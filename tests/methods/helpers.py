"""Shared set-up of the method tests: pixel-wise models, batches, contexts and a partner loader.

The models are 1x1 convolutions (no BatchNorm, no randomness), so every quantity a step computes
can be recomputed exactly from the inputs; and since the teacher is pixel-wise, its prediction on
a mixed image is the mix of its predictions on the two images.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ael.config.methods import AdaptiveCutMixConfig, AELConfig, BankConfig, MethodConfig, OhemConfig
from ael.core import boxes_to_mask
from ael.methods import AELMethod, Method, MethodContext, SampleRecord, StepStorage, TrainBatch, build_method
from ael.models.ema import EmaTeacher

C = 3
H = W = 16
CLASS_NAMES = ("road", "car", "sign")
OPEN_METHODS: list[Method] = []  # closed after every test (conftest.py): their partner threads


class PixelNet(nn.Module):
    """A 1x1 conv segmenter: the class of a pixel is a linear function of its colour."""

    def __init__(self, weight: Tensor | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, C, 1)
        with torch.no_grad():
            self.conv.weight.copy_(weight if weight is not None else torch.eye(C).view(C, 3, 1, 1) * 4)
            self.conv.bias.zero_()
        self.inputs: list[Tensor] = []

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        self.inputs.append(x.detach().clone())
        out = self.conv(x)
        return {"out": out, "aux": out * 0.5}


def make_models() -> tuple[PixelNet, EmaTeacher]:
    student = PixelNet()
    return student, EmaTeacher(student, decay=0.99)


def colour_image(label: Tensor) -> Tensor:
    """(H, W) class map -> (3, H, W) image whose brightest channel is the class."""
    return F.one_hot(label.long(), C).permute(2, 0, 1).float()


def partner_label() -> Tensor:
    """(H, W): one large component of class 2 at rows 4..9, cols 3..11 on class 0."""
    label = torch.zeros(H, W, dtype=torch.long)
    label[4:10, 3:12] = 2
    return label


def partner_images(n: int) -> Tensor:
    return colour_image(partner_label()).unsqueeze(0).repeat(n, 1, 1, 1)


class FixedPartners:
    """``fetch_unlabeled``: every requested unlabeled image is the class-2 partner image.

    Records each call as ``(indices, micro_step)`` (it runs on the partner stream's thread).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[list[int], int]] = []
        self._lock = threading.Lock()

    def __call__(self, indices: Sequence[int], micro_step: int) -> dict[str, Tensor]:
        with self._lock:
            self.calls.append((list(indices), int(micro_step)))
        return {"image": partner_images(len(indices))}


def make_batch(b: int = 2, seed: int = 1) -> TrainBatch:
    """The old step test's batch: labels with two ignored rows, paste sources, noisy unlabeled images."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (b, H, W), generator=g)
    labels[:, :2] = 255
    sources = torch.randint(0, C, (b, H, W), generator=g)
    unl = torch.randint(0, C, (b, H, W), generator=g)
    labeled = {
        "image": torch.stack([colour_image(x.clamp(max=C - 1)) for x in labels]),
        "label": labels, "index": torch.arange(b),
        "source_image": torch.stack([colour_image(x) for x in sources]), "source_label": sources,
        "source_index": torch.arange(b) + 1,
    }
    unlabeled = {
        "image": torch.stack([colour_image(x) for x in unl]) + 0.1 * torch.rand(b, 3, H, W, generator=g),
        "index": torch.arange(b),
    }
    return TrainBatch(labeled=labeled, unlabeled=unlabeled)


def noise_batch(b_l: int, b_u: int, *, size: int = H, seed: int = 2) -> TrainBatch:
    """Labeled colour images and ``b_u`` unlabeled images of uniform noise (no two pixels alike)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (b_l, size, size), generator=g)
    labeled = {"image": torch.stack([colour_image(x) for x in labels]), "label": labels,
               "index": torch.arange(b_l)}
    unlabeled = {"image": torch.rand(b_u, 3, size, size, generator=g), "index": torch.arange(b_u)}
    return TrainBatch(labeled=labeled, unlabeled=unlabeled)


def make_context(student: nn.Module, teacher: Any, *, aux_weight: float = 0.4, seed: int = 0,
                 fetch: Any = None, unlabeled_batch_size: int = 2, num_unlabeled: int = 10) -> MethodContext:
    return MethodContext(num_classes=C, ignore_index=255, class_names=CLASS_NAMES, device=torch.device("cpu"),
                         generator=torch.Generator().manual_seed(seed), student=student, teacher=teacher,
                         aux_weight=aux_weight, unlabeled_batch_size=unlabeled_batch_size,
                         num_unlabeled=num_unlabeled, fetch_unlabeled=fetch)


def make_method(cfg: MethodConfig, **context: Any) -> tuple[Method, PixelNet, EmaTeacher]:
    """``build_method(cfg, ctx)`` with fresh pixel-wise models (closed after the test)."""
    student, teacher = make_models()
    method = build_method(cfg, make_context(student, teacher, **context))
    OPEN_METHODS.append(method)
    return method, student, teacher


def ael_config(**sections: Any) -> AELConfig:
    """The old step test's options as an ``ael`` section; ``sections`` replace fields of sub-sections.

    ``ael_config(copy_paste={"enabled": False})`` is ``copy_paste=CopyPasteConfig(enabled=False)``.
    """
    cfg = AELConfig(ohem=OhemConfig(min_kept=10), cutmix=AdaptiveCutMixConfig(area_thresh=0.01, area_thresh2=0.01),
                    bank=BankConfig(momentum=0.9, init_value=0.5))
    changes = {name: replace(getattr(cfg, name), **fields) for name, fields in sections.items()}
    return replace(cfg, **changes)


def pin_partners(method: AELMethod, step: int, ids: Sequence[int], classes: Sequence[int]) -> None:
    """Make the pending CutMix partners of ``step`` the given unlabeled images and classes."""
    assert method.partners is not None
    method.partners.load_state_dict({"step": step, "indices": torch.tensor(ids), "classes": torch.tensor(classes)})


def make_ael(*, aux_weight: float = 0.4, start: bool = True, pin: bool = True, unlabeled_batch_size: int = 2,
             confidence: Sequence[float] = (0.9, 0.5, 0.2), **sections: Any
             ) -> tuple[AELMethod, PixelNet, EmaTeacher, FixedPartners]:
    """The old ``make_step``: an AEL method with bank ``confidence`` (0.9, 0.5, 0.2), a CutMix bank over 10 images.

    With adaptive CutMix and ``start``, ``before_train(0)`` is called and (``pin``) the partners of
    micro-step 0 are unlabeled images 5, 6 drawn for class 2, as the old batches gave them.
    """
    fetch = FixedPartners()
    method, student, teacher = make_method(ael_config(**sections), aux_weight=aux_weight, fetch=fetch,
                                           unlabeled_batch_size=unlabeled_batch_size)
    assert isinstance(method, AELMethod)
    method.bank.values = torch.tensor(list(confidence))
    if method.partners is not None and start:
        method.before_train(0)
        if pin:
            m = method.num_mixed(unlabeled_batch_size)
            pin_partners(method, 0, [5 + k for k in range(m)], [2] * m)
    return method, student, teacher, fetch


def run_step(method: Method, batch: TrainBatch, *, iteration: int = 0, micro_step: int = 0,
             samples: bool = False) -> tuple[Tensor, StepStorage]:
    """One ``train_step`` into a fresh storage; returns the loss and the storage."""
    storage = StepStorage()
    storage.begin_iteration(wants_samples=samples)
    loss = method.train_step(batch, iteration=iteration, micro_step=micro_step, storage=storage)
    return loss, storage


def sample(storage: StepStorage, kind: str) -> SampleRecord:
    """The one sample of ``kind`` the step put."""
    found = [s for s in storage.samples() if s.kind == kind]
    assert len(found) == 1, [s.kind for s in storage.samples()]
    return found[0]


def pasted_region(mixed: Tensor, base: Tensor) -> Tensor:
    """``(B, H, W)`` bool: where a mixed image differs from the image it was pasted onto."""
    return (mixed != base).any(dim=1)


def bounding_box(region: Tensor) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` of the True pixels of an ``(H, W)`` mask (bottom/right exclusive)."""
    rows = region.any(1).nonzero().flatten()
    cols = region.any(0).nonzero().flatten()
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def is_box(region: Tensor) -> bool:
    """The True pixels of an ``(H, W)`` mask fill their bounding box exactly."""
    if not region.any():
        return False
    box = torch.tensor([bounding_box(region)])
    return torch.equal(boxes_to_mask(box, *region.shape)[0], region)


def make_disagreeing(teacher: EmaTeacher) -> None:
    """Give the teacher its own mind: class c follows colour channel c - 1 (plus a fixed perturbation)."""
    weight = torch.eye(C).roll(1, dims=0) * 3 + 0.5 * torch.randn(C, 3, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        teacher.module.conv.weight.copy_(weight.view(C, 3, 1, 1))

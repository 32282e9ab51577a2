"""The AEL step on tensors: each ablation switch changes exactly what it should.

The models here are 1x1 convolutions (no BatchNorm, no randomness), so every quantity the step
computes can be recomputed exactly from the inputs.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from ael.engine.step import SCALAR_LOGS, AELStep, StepBatch, StepOptions
from torch import nn

from ael.core.bank import ConfidenceBank, class_confidence_stats, equalization_ratio, update_confidence
from ael.core.cutmix import CutMixBank
from ael.models.ema import EmaTeacher

C = 3
H = W = 16


class PixelNet(nn.Module):
    """A 1x1 conv segmenter: the class of a pixel is a linear function of its colour."""

    def __init__(self, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, C, 1)
        with torch.no_grad():
            self.conv.weight.copy_(weight if weight is not None else torch.eye(C).view(C, 3, 1, 1) * 4)
            self.conv.bias.zero_()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.inputs.append(x.detach().clone())
        out = self.conv(x)
        return {"out": out, "aux": out * 0.5}


def make_step(**changes) -> tuple[AELStep, PixelNet, EmaTeacher]:
    options = dataclasses.replace(StepOptions(num_classes=C, min_kept=10, area_thresh=0.01), **changes)
    student = PixelNet()
    teacher = EmaTeacher(student, decay=0.99)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    bank = ConfidenceBank(C, momentum=0.9, init_value=0.5)
    bank.values = torch.tensor([0.9, 0.5, 0.2])
    cutmix_bank = CutMixBank(C, 10, area_thresh2=0.01)
    step = AELStep(student=student, teacher=teacher, optimizer=optimizer, scheduler=None, bank=bank,
                   cutmix_bank=cutmix_bank, options=options, generator=torch.Generator().manual_seed(0))
    return step, student, teacher


def colour_image(label: torch.Tensor) -> torch.Tensor:
    """(H, W) class map -> (3, H, W) image whose brightest channel is the class."""
    return F.one_hot(label.long(), C).permute(2, 0, 1).float()


def make_batch(b: int = 2, seed: int = 1) -> StepBatch:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (b, H, W), generator=g)
    labels[:, :2] = 255
    sources = torch.randint(0, C, (b, H, W), generator=g)
    unl = torch.randint(0, C, (b, H, W), generator=g)
    partner = torch.zeros(b, H, W, dtype=torch.long)
    partner[:, 4:10, 3:12] = 2  # one large component of class 2 in every partner
    return StepBatch(
        labeled_images=torch.stack([colour_image(x.clamp(max=C - 1)) for x in labels]),
        labeled_labels=labels, labeled_ids=torch.arange(b),
        source_images=torch.stack([colour_image(x) for x in sources]), source_labels=sources,
        source_ids=torch.arange(b) + 1,
        unlabeled_images=torch.stack([colour_image(x) for x in unl]) + 0.1 * torch.rand(b, 3, H, W, generator=g),
        unlabeled_ids=torch.arange(b),
        partner_images=torch.stack([colour_image(x) for x in partner]), partner_ids=torch.arange(b) + 5,
        partner_classes=torch.full((b,), 2),
    )


def test_full_step_returns_every_log_and_moves_the_bank():
    step, _, _ = make_step()
    before = step.bank.values.clone()
    out = step(make_batch())
    assert set(out.scalars) == set(SCALAR_LOGS)
    assert out["loss"].shape == () and torch.isfinite(out["loss"])
    assert all(v.dim() == 0 and not v.requires_grad for v in out.scalars.values())
    assert not torch.equal(step.bank.values, before)
    assert out.next_partner_ids.shape == (2,) and out.next_partner_classes.shape == (2,)
    # The adaptive box is the class-2 component of the partner (rows 4..9, cols 3..11).
    assert out.scalars["cutmix/box_found"].item() == 1.0


def test_adaptive_box_is_the_component_and_the_mix_uses_it():
    step, student, _ = make_step(copy_paste=False)
    batch = make_batch()
    out = step(batch, want_media=True)
    assert out.media["box"].tolist() == [4, 3, 10, 12]
    assert out.media["box_class"].item() == 2 and bool(out.media["box_found"])
    mixed = student.inputs[0][2:]  # student sees labeled + mixed
    inside = (slice(None), slice(None), slice(4, 10), slice(3, 12))
    assert torch.equal(mixed[inside], batch.partner_images[inside])
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[4:10, 3:12] = False
    assert torch.equal(mixed[:, :, outside], batch.unlabeled_images[:, :, outside])
    # The CutMix bank learnt the partners (ids 5, 6) hold class 2 and the unlabeled images theirs.
    assert step.cutmix_bank.values[2, 5] and step.cutmix_bank.values[2, 6]
    assert step.cutmix_bank.values[:, :2].any(0).all()


def test_plain_cutmix_box_is_a_random_half_area_box_from_the_batch():
    step, student, _ = make_step(copy_paste=False, cutmix_adaptive=False)
    batch = make_batch()
    batch.partner_images = batch.partner_ids = batch.partner_classes = None  # not needed
    areas = []
    for _ in range(20):
        student.inputs.clear()
        out = step(batch, want_media=True)
        top, left, bottom, right = out.media["box"].tolist()
        areas.append((bottom - top) * (right - left) / (H * W))
        assert out.media["box_class"].item() == -1 and not bool(out.media["box_found"])
        assert out.next_partner_ids is None
        # The partner is the other image of the unlabeled batch.
        mixed = student.inputs[0][2:]
        assert torch.equal(mixed[0, :, top:bottom, left:right],
                           batch.unlabeled_images[1, :, top:bottom, left:right])
    assert all(0.4 <= a <= 0.6 for a in areas)
    assert step.cutmix_bank.values.sum() == 0  # the CutMix bank is not used


def test_sampling_off_keeps_every_pixel_and_on_subsamples_confident_classes():
    off, _, _ = make_step(sampling=False)
    assert off(make_batch()).scalars["unsup/mask_ratio"].item() == 1.0
    on, _, _ = make_step(sampling=True)
    ratio = on(make_batch()).scalars["unsup/mask_ratio"].item()
    assert 0.0 < ratio < 1.0


def test_copy_paste_off_leaves_labels_untouched_and_on_pastes_only_allowed_classes():
    batch = make_batch()
    off, _, _ = make_step(copy_paste=False)
    counts = torch.bincount(batch.labeled_labels[batch.labeled_labels != 255], minlength=C)
    assert torch.equal(off(batch).labeled_counts, counts)
    on, _, _ = make_step(copy_paste=True, copy_paste_prob=1.0, copy_paste_k=5, copy_paste_excluded=(0, 1))
    out = on(batch, want_media=True)
    assert out.scalars["copy_paste/applied"].item() == 1.0
    assert out.media["cp_pasted"].tolist() == [False, False, True]
    changed = out.media["cp_label"] != batch.labeled_labels[0]
    assert changed.any() and (out.media["cp_label"][changed] == 2).all()


def test_unsup_off_is_supervised_only_without_a_teacher_forward():
    step, student, teacher = make_step(unsup=False, cutmix=False, copy_paste=False, ohem=False, aux_weight=0.0)
    calls = []
    teacher.module.register_forward_hook(lambda *a: calls.append(1))
    batch = make_batch()
    out = step(batch)
    assert not calls
    assert student.inputs[0].shape[0] == 2  # labeled images only
    expected = F.cross_entropy(student.conv(batch.labeled_images), batch.labeled_labels, ignore_index=255)
    assert torch.allclose(out["loss/total"], expected)
    assert out["loss/unsup_mixed"].item() == 0.0 and out["loss/unsup_labeled"].item() == 0.0


def test_mean_teacher_uses_uniform_weights_and_the_unmixed_images():
    step, student, teacher = make_step(copy_paste=False, cutmix=False, sampling=False, reweight=False,
                                       ohem=False, aux_weight=0.0)
    with torch.no_grad():
        teacher.module.conv.weight.mul_(-1)  # a teacher that disagrees with the student
    batch = make_batch()
    out = step(batch)
    assert torch.equal(student.inputs[0][2:], batch.unlabeled_images)
    with torch.no_grad():
        s_logits = student.conv(torch.cat([batch.labeled_images, batch.unlabeled_images]))
        t_u = teacher.module.conv(batch.unlabeled_images)
        t_l = teacher.module.conv(batch.labeled_images)
    unsup_m = F.cross_entropy(s_logits[2:], t_u.argmax(1))
    unsup_l = F.cross_entropy(s_logits[:2], t_l.argmax(1))
    assert torch.allclose(out["loss/unsup_mixed"], unsup_m, atol=1e-6)
    assert torch.allclose(out["loss/unsup_labeled"], unsup_l, atol=1e-6)


def test_reweighting_weights_pixels_by_teacher_confidence():
    step, student, teacher = make_step(copy_paste=False, cutmix=False, sampling=False, reweight=True, gamma=2.0)
    batch = make_batch()
    out = step(batch)
    with torch.no_grad():
        s = student.conv(batch.unlabeled_images)
        probs = teacher.module.conv(batch.unlabeled_images).softmax(1)
    conf, pseudo = probs.max(1)
    ce = F.cross_entropy(s, pseudo, reduction="none")
    w = conf**2
    assert torch.allclose(out["loss/unsup_mixed"], (w * ce).sum() / w.sum(), atol=1e-6)


@pytest.mark.parametrize("when", ["end_of_step", "before_unsup_loss"])
def test_bank_update_uses_the_student_main_head_on_labeled_pixels(when):
    step, student, _ = make_step(copy_paste=False, bank_update=when, sampling=True)
    batch = make_batch()
    old = step.bank.values.clone()
    with torch.no_grad():
        probs = student.conv(batch.labeled_images).softmax(1)
    sums, counts = class_confidence_stats(probs, batch.labeled_labels)
    expected = update_confidence(old, sums, counts, momentum=0.9)
    # The sampling ratio of the step is read from the old bank (paper) or the new one (release).
    g = torch.Generator().manual_seed(0)
    step.generator = g
    step(batch)
    assert torch.allclose(step.bank.values, expected, atol=1e-6)
    ratio_used = equalization_ratio(expected if when == "before_unsup_loss" else old)
    assert ratio_used.shape == (C,)


def test_one_mix_per_batch_mixes_a_single_image_and_loss_scale_divides():
    step, student, _ = make_step(one_mix_per_batch=True, loss_scale=0.25)
    batch = make_batch()
    batch.partner_images, batch.partner_ids, batch.partner_classes = (
        batch.partner_images[:1], batch.partner_ids[:1], batch.partner_classes[:1])
    out = step(batch)
    assert student.inputs[0].shape[0] == 3  # 2 labeled + 1 mixed
    assert torch.allclose(out["loss"], out["loss/total"] * 0.25)


def test_optimizer_step_moves_the_student_and_the_ema_teacher():
    step, student, teacher = make_step()
    before = teacher.module.conv.weight.clone()
    step(make_batch())
    step.optimizer_step(0)  # decay 0 at step 0: the teacher becomes the student
    assert torch.equal(teacher.module.conv.weight, student.conv.weight)
    assert not torch.equal(before, student.conv.weight)
    assert all(p.grad is None for p in student.parameters())


def test_unsup_rampup_values_and_scaling():
    from ael.engine.step import unsup_rampup

    assert unsup_rampup(0, 0) == 1.0 and unsup_rampup(10, 10) == 1.0
    assert unsup_rampup(0, 100) == pytest.approx(math.exp(-5.0))
    assert unsup_rampup(50, 100) == pytest.approx(math.exp(-1.25))
    step, _, _ = make_step(copy_paste=False)
    out = step(make_batch(), unsup_scale=0.0)
    assert torch.allclose(out["loss/total"], out["loss/sup"] + 0.4 * out["loss/sup_aux"])

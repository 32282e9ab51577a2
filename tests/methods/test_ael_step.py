"""The AEL step on tensors: each ablation switch changes exactly what it should.

Ported from ``tests/engine/test_step.py`` (the monolithic ``AELStep`` driven by ``StepOptions``
flags) to the method layer: ``unsup=False`` is the ``supervised`` method, ``cutmix=False`` with
Copy-Paste, sampling and re-weighting off is ``mean_teacher``, every other switch is a field of the
``ael`` section. The partners of adaptive CutMix come from the method's partner stream, pinned to
the old batches' partners (unlabeled images 5 and 6, class 2) for the first micro-step.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ael.config.methods import MeanTeacherConfig, OhemConfig, SupervisedConfig
from ael.core import class_confidence_stats, equalization_ratio, update_confidence
from ael.methods import unsup_rampup

from .helpers import C, H, W, make_ael, make_batch, make_method, partner_images, run_step, sample

# The scalars an AEL step reports (the old step's SCALAR_LOGS).
AEL_SCALARS = {"loss/total", "loss/sup", "loss/sup_aux", "loss/unsup_labeled", "loss/unsup_mixed",
               "unsup/mask_ratio", "unsup/pseudo_conf", "cutmix/box_found", "copy_paste/applied"}


def test_full_step_returns_every_log_and_moves_the_bank():
    method, _, _, _ = make_ael()
    before = method.bank.values.clone()
    loss, storage = run_step(method, make_batch())
    scalars = storage.iteration_scalars()
    assert set(scalars) == AEL_SCALARS
    assert loss.shape == () and torch.isfinite(loss)
    assert all(v.dim() == 0 and not v.requires_grad for v in scalars.values())
    assert not torch.equal(method.bank.values, before)
    pending = method.partners.state_dict()  # the partners drawn for the next micro-step
    assert pending["step"] == 1
    assert pending["indices"].shape == (2,) and pending["classes"].shape == (2,)
    # The adaptive box is the class-2 component of the partner (rows 4..9, cols 3..11).
    assert scalars["cutmix/box_found"].item() == 1.0


def test_adaptive_box_is_the_component_and_the_mix_uses_it():
    method, student, _, _ = make_ael(copy_paste={"enabled": False})
    batch = make_batch()
    _, storage = run_step(method, batch, samples=True)
    cutmix = sample(storage, "cutmix")
    assert cutmix.meta["box"].tolist() == [4, 3, 10, 12]
    assert cutmix.meta["class"].item() == 2 and bool(cutmix.meta["component_box"])
    mixed = student.inputs[0][2:]  # student sees labeled + mixed
    partners = partner_images(2)
    inside = (slice(None), slice(None), slice(4, 10), slice(3, 12))
    assert torch.equal(mixed[inside], partners[inside])
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[4:10, 3:12] = False
    assert torch.equal(mixed[:, :, outside], batch.unlabeled["image"][:, :, outside])
    # The CutMix bank learnt the partners (ids 5, 6) hold class 2 and the unlabeled images theirs.
    assert method.cutmix_bank.values[2, 5] and method.cutmix_bank.values[2, 6]
    assert method.cutmix_bank.values[:, :2].any(0).all()


def test_plain_cutmix_box_is_a_random_half_area_box_from_the_batch():
    method, student, _, fetch = make_ael(copy_paste={"enabled": False}, cutmix={"adaptive": False})
    batch = make_batch()
    areas = []
    for k in range(20):
        student.inputs.clear()
        _, storage = run_step(method, batch, micro_step=k, samples=True)
        cutmix = sample(storage, "cutmix")
        top, left, bottom, right = cutmix.meta["box"].tolist()
        areas.append((bottom - top) * (right - left) / (H * W))
        assert cutmix.meta["class"].item() == -1 and not bool(cutmix.meta["component_box"])
        assert method.partners is None  # no partners drawn for a next step
        # The partner is the other image of the unlabeled batch.
        mixed = student.inputs[0][2:]
        assert torch.equal(mixed[0, :, top:bottom, left:right],
                           batch.unlabeled["image"][1, :, top:bottom, left:right])
    assert all(0.4 <= a <= 0.6 for a in areas)
    assert method.cutmix_bank is None and not fetch.calls  # the CutMix bank is not used


def test_sampling_off_keeps_every_pixel_and_on_subsamples_confident_classes():
    off, _, _, _ = make_ael(sampling={"enabled": False})
    _, storage = run_step(off, make_batch())
    assert storage.iteration_scalars()["unsup/mask_ratio"].item() == 1.0
    on, _, _, _ = make_ael(sampling={"enabled": True})
    _, storage = run_step(on, make_batch())
    ratio = storage.iteration_scalars()["unsup/mask_ratio"].item()
    assert 0.0 < ratio < 1.0


def test_copy_paste_off_leaves_labels_untouched_and_on_pastes_only_allowed_classes():
    batch = make_batch()
    off, _, _, _ = make_ael(copy_paste={"enabled": False})
    labels = batch.labeled["label"]
    counts = torch.bincount(labels[labels != 255], minlength=C)
    _, storage = run_step(off, batch)
    assert torch.equal(storage.take_class_counts()["freq_labeled"], counts)
    on, _, _, _ = make_ael(copy_paste={"enabled": True, "prob": 1.0, "num_categories": 5,
                                       "excluded_classes": (0, 1)})
    _, storage = run_step(on, batch, samples=True)
    assert storage.iteration_scalars()["copy_paste/applied"].item() == 1.0
    paste = sample(storage, "copy_paste")
    assert paste.meta["pasted"].tolist() == [False, False, True]
    changed = paste.labels["label"] != labels[0]
    assert changed.any() and (paste.labels["label"][changed] == 2).all()


def test_unsup_off_is_supervised_only_without_a_teacher_forward():
    method, student, teacher = make_method(SupervisedConfig(ohem=OhemConfig(enabled=False)), aux_weight=0.0)
    calls = []
    teacher.module.register_forward_hook(lambda *a: calls.append(1))
    batch = make_batch()
    _, storage = run_step(method, batch)
    assert not calls
    assert student.inputs[0].shape[0] == 2  # labeled images only
    expected = F.cross_entropy(student.conv(batch.labeled["image"]), batch.labeled["label"], ignore_index=255)
    scalars = storage.iteration_scalars()
    assert torch.allclose(scalars["loss/total"], expected)
    # No unsupervised loss at all: the supervised method does not even report one.
    assert "loss/unsup_mixed" not in scalars and "loss/unsup_labeled" not in scalars


def test_mean_teacher_uses_uniform_weights_and_the_unmixed_images():
    method, student, teacher = make_method(MeanTeacherConfig(ohem=OhemConfig(enabled=False)), aux_weight=0.0)
    with torch.no_grad():
        teacher.module.conv.weight.mul_(-1)  # a teacher that disagrees with the student
    batch = make_batch()
    _, storage = run_step(method, batch)
    images_l, images_u = batch.labeled["image"], batch.unlabeled["image"]
    assert torch.equal(student.inputs[0][2:], images_u)
    with torch.no_grad():
        s_logits = student.conv(torch.cat([images_l, images_u]))
        t_u = teacher.module.conv(images_u)
        t_l = teacher.module.conv(images_l)
    unsup_m = F.cross_entropy(s_logits[2:], t_u.argmax(1))
    unsup_l = F.cross_entropy(s_logits[:2], t_l.argmax(1))
    scalars = storage.iteration_scalars()
    assert torch.allclose(scalars["loss/unsup_mixed"], unsup_m, atol=1e-6)
    assert torch.allclose(scalars["loss/unsup_labeled"], unsup_l, atol=1e-6)


def test_reweighting_weights_pixels_by_teacher_confidence():
    # Re-weighting without CutMix no longer exists (every ael step mixes): plain CutMix, and the
    # expected loss on the mixed images the student saw. The teacher is pixel-wise, so its
    # prediction on the mixed image is the mix of its predictions, which the step uses.
    method, student, teacher, _ = make_ael(copy_paste={"enabled": False}, cutmix={"adaptive": False},
                                           sampling={"enabled": False}, reweight={"enabled": True, "gamma": 2.0})
    batch = make_batch()
    _, storage = run_step(method, batch)
    mixed = student.inputs[0][2:]
    assert not torch.equal(mixed, batch.unlabeled["image"])
    with torch.no_grad():
        s = student.conv(mixed)
        probs = teacher.module.conv(mixed).softmax(1)
    conf, pseudo = probs.max(1)
    ce = F.cross_entropy(s, pseudo, reduction="none")
    w = conf**2
    assert torch.allclose(storage.iteration_scalars()["loss/unsup_mixed"], (w * ce).sum() / w.sum(), atol=1e-6)


@pytest.mark.parametrize("when", ["end_of_step", "before_unsup_loss"])
def test_bank_update_uses_the_student_main_head_on_labeled_pixels(when):
    method, student, _, _ = make_ael(copy_paste={"enabled": False}, bank={"update": when},
                                     sampling={"enabled": True})
    batch = make_batch()
    old = method.bank.values.clone()
    with torch.no_grad():
        probs = student.conv(batch.labeled["image"]).softmax(1)
    sums, counts = class_confidence_stats(probs, batch.labeled["label"])
    expected = update_confidence(old, sums, counts, momentum=0.9)
    # The sampling ratio of the step is read from the old bank (paper) or the new one (release):
    # test_ael_method.py checks which one the sampled loss reads.
    run_step(method, batch)
    assert torch.allclose(method.bank.values, expected, atol=1e-6)
    ratio_used = equalization_ratio(expected if when == "before_unsup_loss" else old)
    assert ratio_used.shape == (C,)


def test_one_mix_per_batch_mixes_a_single_image():
    # The old test also checked loss == loss/total * loss_scale: the trainer scales now, and the
    # method returns the unscaled total.
    method, student, _, fetch = make_ael(cutmix={"one_mix_per_batch": True})
    assert method.partners.state_dict()["indices"].tolist() == [5]  # one partner per micro-step
    loss, storage = run_step(method, make_batch())
    assert student.inputs[0].shape[0] == 3  # 2 labeled + 1 mixed
    assert torch.allclose(loss, storage.iteration_scalars()["loss/total"])
    assert method.partners.state_dict()["indices"].shape == (1,)
    run_step(method, make_batch(seed=2), micro_step=1)  # takes (so waits for) the partner of step 1
    assert [len(ids) for ids, step in fetch.calls if step == 1] == [1]


def test_optimizer_step_moves_the_student_and_the_ema_teacher():
    # The trainer now owns backward, the optimizer and the EMA: done here by hand, as it does.
    method, student, teacher, _ = make_ael()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    before = teacher.module.conv.weight.clone()
    loss, _ = run_step(method, make_batch())
    loss.backward()
    assert all(p.grad is None for p in teacher.module.parameters())  # the teacher is not trained
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    teacher.update(student, 0)  # decay 0 at step 0: the teacher becomes the student
    assert torch.equal(teacher.module.conv.weight, student.conv.weight)
    assert not torch.equal(before, student.conv.weight)
    assert all(p.grad is None for p in student.parameters())


def test_unsup_rampup_values_and_scaling():
    assert unsup_rampup(0, 0) == 1.0 and unsup_rampup(10, 10) == 1.0
    assert unsup_rampup(0, 100) == pytest.approx(math.exp(-5.0))
    assert unsup_rampup(50, 100) == pytest.approx(math.exp(-1.25))
    # The old step's unsup_scale=0: a zero lambda_u leaves the supervised losses alone.
    method, _, _, _ = make_ael(copy_paste={"enabled": False}, unsup={"weight": 0.0})
    _, storage = run_step(method, make_batch())
    s = storage.iteration_scalars()
    assert torch.allclose(s["loss/total"], s["loss/sup"] + 0.4 * s["loss/sup_aux"])
    # With the ramp: lambda_u * exp(-5 (1 - t)^2) at iteration 50 of 100.
    method, _, _, _ = make_ael(copy_paste={"enabled": False}, unsup={"weight": 1.5, "rampup_iters": 100})
    _, storage = run_step(method, make_batch(), iteration=50)
    s = storage.iteration_scalars()
    unsup = s["loss/unsup_labeled"] + s["loss/unsup_mixed"]
    assert unsup > 0
    assert torch.allclose(s["loss/total"], s["loss/sup"] + 0.4 * s["loss/sup_aux"] + 1.5 * math.exp(-1.25) * unsup,
                          atol=1e-6)

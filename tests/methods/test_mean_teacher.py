"""``mean_teacher``: the supervised loss plus cross-entropy on the EMA teacher's argmax."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ael.config.methods import MeanTeacherConfig, OhemConfig, UnsupConfig
from ael.core import ohem_cross_entropy
from ael.methods import MeanTeacherMethod

from .helpers import C, make_batch, make_disagreeing, make_method, run_step


def test_mean_teacher_loss_is_sup_plus_ramped_pseudo_label_cross_entropy():
    cfg = MeanTeacherConfig(ohem=OhemConfig(min_kept=10), unsup=UnsupConfig(weight=2.0, conf_thresh=0.0,
                                                                            rampup_iters=100))
    method, student, teacher = make_method(cfg, aux_weight=0.4)
    assert isinstance(method, MeanTeacherMethod)
    make_disagreeing(teacher)
    batch = make_batch()
    loss, storage = run_step(method, batch, iteration=30)

    images_l, labels, images_u = batch.labeled["image"], batch.labeled["label"], batch.unlabeled["image"]
    assert len(student.inputs) == 1 and torch.equal(student.inputs[0], torch.cat([images_l, images_u]))
    assert len(teacher.module.inputs) == 1 and torch.equal(teacher.module.inputs[0], torch.cat([images_u, images_l]))
    with torch.no_grad():
        s_l, s_u = student.conv(images_l), student.conv(images_u)
        t_l, t_u = teacher.module.conv(images_l), teacher.module.conv(images_u)
    sup = ohem_cross_entropy(s_l, labels, thresh=0.7, min_kept=10, ignore_index=255)
    sup_aux = ohem_cross_entropy(0.5 * s_l, labels, thresh=0.7, min_kept=10, ignore_index=255)
    unsup_u = F.cross_entropy(s_u, t_u.argmax(1))
    unsup_l = F.cross_entropy(s_l, t_l.argmax(1))
    ramp = math.exp(-5.0 * (1.0 - 30 / 100) ** 2)
    expected = sup + 0.4 * sup_aux + 2.0 * ramp * (unsup_u + unsup_l)
    assert torch.allclose(loss.detach(), expected, atol=1e-6)

    scalars = storage.iteration_scalars()
    assert torch.allclose(scalars["loss/unsup_mixed"], unsup_u, atol=1e-6)
    assert torch.allclose(scalars["loss/unsup_labeled"], unsup_l, atol=1e-6)
    assert torch.allclose(scalars["unsup/pseudo_conf"], t_u.softmax(1).amax(1).mean(), atol=1e-6)
    counts = storage.take_class_counts()
    assert torch.equal(counts["freq_pseudo"], torch.bincount(t_u.argmax(1).flatten(), minlength=C))
    assert torch.equal(counts["freq_labeled"], torch.bincount(labels[labels != 255], minlength=C))


def test_mean_teacher_without_on_labeled_leaves_the_labeled_batch_to_the_supervised_loss():
    method, _, teacher = make_method(MeanTeacherConfig(unsup=UnsupConfig(on_labeled=False)), aux_weight=0.0)
    make_disagreeing(teacher)
    batch = make_batch()
    loss, storage = run_step(method, batch)
    assert torch.equal(teacher.module.inputs[0], batch.unlabeled["image"])  # the teacher sees no labeled image
    s = storage.iteration_scalars()
    assert s["loss/unsup_labeled"].item() == 0.0
    assert torch.allclose(loss.detach(), s["loss/sup"] + s["loss/unsup_mixed"])


def test_mean_teacher_student_sees_the_strong_view_and_learns_the_weak_views_labels():
    method, student, teacher = make_method(MeanTeacherConfig(), aux_weight=0.0)
    make_disagreeing(teacher)
    batch = make_batch()
    weak = batch.unlabeled["image"]
    strong = weak.flip(-1) * 0.7 + 0.2
    batch.unlabeled["image_strong"] = strong
    _, storage = run_step(method, batch)
    assert torch.equal(student.inputs[0][2:], strong)
    assert torch.equal(teacher.module.inputs[0][:2], weak)
    with torch.no_grad():
        expected = F.cross_entropy(student.conv(strong), teacher.module.conv(weak).argmax(1))
    assert torch.allclose(storage.iteration_scalars()["loss/unsup_mixed"], expected, atol=1e-6)


def test_conf_thresh_drops_pixels_below_it():
    method, _, teacher = make_method(MeanTeacherConfig(unsup=UnsupConfig(conf_thresh=1.0)), aux_weight=0.0)
    make_disagreeing(teacher)
    _, storage = run_step(method, make_batch())
    s = storage.iteration_scalars()  # no teacher probability reaches 1: nothing left
    assert s["loss/unsup_mixed"].item() == 0.0 and s["loss/unsup_labeled"].item() == 0.0


def test_mean_teacher_needs_the_unlabeled_batch():
    method, _, _ = make_method(MeanTeacherConfig())
    batch = make_batch()
    batch.unlabeled = None
    with pytest.raises(ValueError, match="needs unlabeled images"):
        run_step(method, batch)
    assert MeanTeacherMethod.loader_needs(MeanTeacherConfig()).unlabeled

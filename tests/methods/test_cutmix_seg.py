"""``cutmix_seg``: the mean teacher on unlabeled images with a random half-area box of a batch partner.

The unlabeled images are uniform noise, so where a mixed image differs from its own image is
exactly the pasted box; the teacher is pixel-wise, so its prediction on a mixed image is the mix
of its predictions, which is what the step must train on.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ael.config.methods import CutMixConfig, CutMixSegConfig
from ael.methods import CutMixSegMethod

from .helpers import (
    C,
    H,
    W,
    bounding_box,
    is_box,
    make_disagreeing,
    make_method,
    noise_batch,
    pasted_region,
    run_step,
    sample,
)


def test_each_image_gets_a_half_area_box_of_the_previous_image():
    method, student, teacher = make_method(CutMixSegConfig(), aux_weight=0.0)
    assert isinstance(method, CutMixSegMethod)
    make_disagreeing(teacher)
    batch = noise_batch(2, 3)
    _, storage = run_step(method, batch, samples=True)
    u = batch.unlabeled["image"]
    mixed = student.inputs[0][2:]
    assert mixed.shape == u.shape
    regions = pasted_region(mixed, u)
    for i in range(3):
        region, partner = regions[i], (i - 1) % 3  # cyclic: image 0 takes from image 2
        assert is_box(region)
        assert 0.4 <= region.sum().item() / (H * W) <= 0.6
        assert torch.equal(mixed[i][:, region], u[partner][:, region])
        assert torch.equal(mixed[i][:, ~region], u[i][:, ~region])
    cutmix = sample(storage, "cutmix")
    assert tuple(cutmix.meta["box"].tolist()) == bounding_box(regions[0])
    assert cutmix.meta["class"].item() == -1 and not bool(cutmix.meta["component_box"])
    assert torch.equal(cutmix.images["image_b"], u[2]) and torch.equal(cutmix.images["mixed"], mixed[0])
    # The teacher's maps are mixed with the same boxes: the loss trains on its prediction of the mix.
    with torch.no_grad():
        t_mixed = teacher.module.conv(mixed)
        s_mixed = student.conv(mixed)
    assert torch.equal(storage.take_class_counts()["freq_pseudo"],
                       torch.bincount(t_mixed.argmax(1).flatten(), minlength=C))
    scalars = storage.iteration_scalars()
    assert torch.allclose(scalars["loss/unsup_mixed"], F.cross_entropy(s_mixed, t_mixed.argmax(1)), atol=1e-6)
    assert torch.allclose(scalars["unsup/pseudo_conf"], t_mixed.softmax(1).amax(1).mean(), atol=1e-6)
    assert scalars["cutmix/box_found"].item() == 0.0


def test_one_mix_per_batch_mixes_the_first_image_with_the_other_one():
    method, student, teacher = make_method(CutMixSegConfig(cutmix=CutMixConfig(one_mix_per_batch=True)),
                                           aux_weight=0.0)
    batch = noise_batch(2, 2)
    u = batch.unlabeled["image"]
    for step in range(5):
        student.inputs.clear()
        teacher.module.inputs.clear()
        run_step(method, batch, micro_step=step)
        assert student.inputs[0].shape[0] == 3  # 2 labeled + 1 mixed
        assert torch.equal(teacher.module.inputs[0][:2], u)  # the teacher predicts the partner too
        mixed = student.inputs[0][2:]
        region = pasted_region(mixed, u[:1])[0]
        assert is_box(region)  # not mixed with itself: a box of another image is there
        assert torch.equal(mixed[0][:, region], u[1][:, region])
        assert torch.equal(mixed[0][:, ~region], u[0][:, ~region])


def test_the_student_mixes_strong_views_and_the_labels_come_from_the_weak_ones():
    method, student, teacher = make_method(CutMixSegConfig(), aux_weight=0.0)
    make_disagreeing(teacher)
    batch = noise_batch(2, 3)
    weak = batch.unlabeled["image"]
    strong = torch.rand(weak.shape, generator=torch.Generator().manual_seed(9))
    batch.unlabeled["image_strong"] = strong
    _, storage = run_step(method, batch)
    mixed = student.inputs[0][2:]
    regions = pasted_region(mixed, strong)
    weak_mixed = weak.clone()
    for i in range(3):
        assert is_box(regions[i])
        assert torch.equal(mixed[i][:, regions[i]], strong[(i - 1) % 3][:, regions[i]])
        weak_mixed[i][:, regions[i]] = weak[(i - 1) % 3][:, regions[i]]
    with torch.no_grad():
        pseudo = teacher.module.conv(weak_mixed).argmax(1)
        expected = F.cross_entropy(student.conv(mixed), pseudo)
    assert torch.allclose(storage.iteration_scalars()["loss/unsup_mixed"], expected, atol=1e-6)
    assert torch.equal(storage.take_class_counts()["freq_pseudo"], torch.bincount(pseudo.flatten(), minlength=C))


def mean_height_fraction(fallback_height: str, *, steps: int, images: int, size: int) -> tuple[float, float]:
    method, student, _ = make_method(CutMixSegConfig(cutmix=CutMixConfig(fallback_height=fallback_height)),
                                     aux_weight=0.0, seed=11)
    heights, areas = [], []
    for step in range(steps):
        batch = noise_batch(1, images, size=size, seed=100 + step)
        student.inputs.clear()
        run_step(method, batch, micro_step=step)
        regions = pasted_region(student.inputs[0][1:], batch.unlabeled["image"])
        heights.append(regions.any(2).sum(1).float() / size)
        areas.append(regions.sum((1, 2)).float() / size**2)
    return torch.cat(heights).mean().item(), torch.cat(areas).mean().item()


def test_fallback_height_changes_the_box_height_distribution():
    # Height fraction f in [0.5, 1]: log-uniform f = 0.5 ** u has mean 1 / (2 ln 2); uniform 0.75.
    log_uniform, area_l = mean_height_fraction("log_uniform", steps=10, images=200, size=32)
    uniform, area_u = mean_height_fraction("uniform", steps=10, images=200, size=32)
    assert log_uniform == pytest.approx(1 / (2 * math.log(2)), abs=0.01)
    assert uniform == pytest.approx(0.75, abs=0.01)
    assert uniform - log_uniform > 0.015
    assert area_l == pytest.approx(0.5, abs=0.02) and area_u == pytest.approx(0.5, abs=0.02)

"""The release overlay's method options (README "Paper or release"), each with and without, on one step.

Each test runs the same step with the paper default and with the release value and checks that
the quantity the option changes changes as specified, and that the rest of the step does not.
Pixel-wise 1x1-conv models (helpers.py) make every quantity computable by hand.

Options tested elsewhere: ``bank.update`` (test_ael_method.py::
test_sampled_loss_reads_the_bank_of_its_update_timing), ``cutmix.one_mix_per_batch``
(test_ael_step.py::test_one_mix_per_batch_mixes_a_single_image, test_cutmix_seg.py::
test_one_mix_per_batch_mixes_the_first_image_with_the_other_one), and the per-rank banks,
``loss_div_world_size`` and ``min_kept`` per rank in a two-process run
(tests/engine/test_release_options.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ael.methods.ael.method as ael_method_module
from ael.config.methods import OhemConfig, SupervisedConfig
from ael.core import ohem_cross_entropy
from ael.methods import Collectives, MethodContext, SupervisedMethod, TrainBatch

from .helpers import (
    CLASS_NAMES,
    C,
    FixedPartners,
    H,
    W,
    ael_config,
    colour_image,
    make_ael,
    make_batch,
    make_disagreeing,
    make_method,
    make_models,
    run_step,
)

# ------------------------------------------------------------------ bank.init: random


def _bank_at_init(init: str, seed: int):
    method, _, _ = make_method(ael_config(bank={"init": init}), seed=seed, fetch=FixedPartners())
    return method


@pytest.mark.parametrize("seed", [0, 7])
def test_random_bank_init_is_uniform_from_the_step_generator_and_seeded(seed):
    reference = torch.Generator().manual_seed(seed)
    expected = torch.rand(C, generator=reference)  # uniform in [0, 1): the first C draws of the step generator
    rand = _bank_at_init("random", seed)
    assert torch.equal(rand.bank.values, expected)
    # It took exactly those C draws: the step's random stream continues right after them.
    assert torch.equal(torch.rand(5, generator=rand.ctx.generator), torch.rand(5, generator=reference))
    assert torch.equal(_bank_at_init("random", seed).bank.values, expected)  # reproducible by seed
    assert not torch.equal(_bank_at_init("random", seed + 1).bank.values, expected)
    # The paper's constant start draws nothing.
    const = _bank_at_init("constant", seed)
    assert torch.equal(const.bank.values, torch.full((C,), 0.5))
    assert torch.equal(torch.rand(5, generator=const.ctx.generator),
                       torch.rand(5, generator=torch.Generator().manual_seed(seed)))


# ------------------------------------------------------------------ bank.absent_update: zero


def test_an_absent_class_folds_zero_into_its_entry_only_with_absent_update_zero():
    batch = make_batch()
    labels = batch.labeled["label"]
    labels[labels == 2] = 0  # class 2 ("sign") is absent from the labeled batch
    batch.labeled["image"] = torch.stack([colour_image(x.clamp(max=C - 1)) for x in labels])
    results = {}
    for absent in ("skip", "zero"):
        method, _, _, _ = make_ael(copy_paste={"enabled": False}, bank={"absent_update": absent})
        old = method.bank.values.clone()  # (0.9, 0.5, 0.2), momentum 0.9
        loss, _ = run_step(method, batch)
        results[absent] = (loss, method.bank.values.clone())
    skip, zero = results["skip"][1], results["zero"][1]
    assert zero[2].item() == pytest.approx(0.9 * old[2].item(), abs=1e-7)  # 0.9 * 0.2 + 0.1 * 0
    assert skip[2] == old[2]
    assert torch.equal(skip[:2], zero[:2]) and not torch.equal(skip[:2], old[:2])  # present classes: the same EMA
    assert torch.equal(results["skip"][0], results["zero"][0])  # the step's loss does not change


# ------------------------------------------------------------------ copy_paste.per_image: false


def _pasted_classes(method, student, batch) -> list[set[int]]:
    """The classes visibly pasted onto each labeled image (colour images: the brightest channel)."""
    run_step(method, batch)
    images = batch.labeled["image"]
    seen = student.inputs[0][: images.shape[0]]  # the labeled batch as the student saw it
    changed = (seen != images).any(1)  # (B, H, W)
    return [set(seen[i].argmax(0)[changed[i]].tolist()) for i in range(images.shape[0])]


@pytest.mark.parametrize("per_image", [True, False])
def test_one_copy_paste_class_set_per_batch_pastes_the_same_class_on_every_image(per_image):
    # k = 1 class drawn uniformly, every image pasted: per image (paper) the eight images get
    # different classes; per batch (release) all eight the same one.
    method, student, _, _ = make_ael(copy_paste={"per_image": per_image, "prob": 1.0, "num_categories": 1,
                                                 "adaptive": False})
    batch = make_batch(b=8)
    batch.unlabeled = make_batch(b=2).unlabeled
    pasted = _pasted_classes(method, student, batch)
    assert all(len(p) == 1 for p in pasted), pasted  # one class each, visible on every image
    distinct = set().union(*pasted)
    assert (len(distinct) > 1) if per_image else (len(distinct) == 1), pasted


# ------------------------------------------------------------------ copy_paste.allow_self_source: true


def _self_source_batch() -> TrainBatch:
    """Targets 0 and 1 (black, class 0) and a pool holding the same two images as paste sources.

    Source entry k is filled with the value k + 1 and labeled class 1 (the only pastable class
    below), so a pasted target shows which entry it came from.
    """
    batch = make_batch(b=2)
    batch.labeled.update({
        "image": torch.zeros(2, 3, H, W), "label": torch.zeros(2, H, W, dtype=torch.long), "index": torch.arange(2),
        "source_image": torch.stack([torch.full((3, H, W), 1.0), torch.full((3, H, W), 2.0)]),
        "source_label": torch.ones(2, H, W, dtype=torch.long), "source_index": torch.arange(2)})
    return batch


@pytest.mark.parametrize("allow", [False, True])
def test_a_target_is_pasted_from_itself_only_with_allow_self_source(allow):
    method, student, _, _ = make_ael(copy_paste={"allow_self_source": allow, "prob": 1.0,
                                                 "excluded_classes": ("road", "sign")})
    batch = _self_source_batch()
    sources = []
    for step in range(16):
        student.inputs.clear()
        run_step(method, batch, micro_step=step)
        seen = student.inputs[0][:2]
        assert (seen == seen[:, :1, :1, :1]).all()  # every pixel pasted from one source
        sources.append(seen[:, 0, 0, 0].long() - 1)  # the source entry (= dataset id) of targets 0, 1
    sources = torch.stack(sources)  # (steps, 2)
    self_pasted = int((sources == torch.arange(2)).sum())
    if allow:
        assert 0 < self_pasted < sources.numel()  # a random pick among both entries, itself included
    else:
        assert self_pasted == 0  # always the other image


# ------------------------------------------------------------------ reweight.normalize: all


def test_reweighted_loss_is_normalised_over_valid_or_all_pixels_exactly():
    # Teacher confidence c, weight c ** 2, pixels below conf_thresh contribute no cross-entropy:
    # loss = sum(w * CE * valid) / sum(w * valid) (paper) or / sum(w) (release). Checked on the
    # labeled batch and on the mixed images (a pixel-wise teacher predicts a mixed image as the
    # mix of its predictions).
    batch = make_batch()
    steps = {}
    for normalize in ("valid", "all"):
        method, student, teacher, _ = make_ael(copy_paste={"enabled": False}, sampling={"enabled": False},
                                               reweight={"normalize": normalize}, unsup={"conf_thresh": 0.55})
        make_disagreeing(teacher)
        with torch.no_grad():
            teacher.module.conv.weight.mul_(0.3)  # confidences between 0.47 and 0.62
        _, storage = run_step(method, batch)
        steps[normalize] = (storage.iteration_scalars(), method.bank.values.clone(), student.inputs[0])
        with torch.no_grad():
            images = student.inputs[0]  # labeled, then mixed
            conf, pseudo = teacher.module.conv(images).softmax(1).max(1)
            ce = F.cross_entropy(student.conv(images), pseudo, reduction="none")
        valid = conf >= 0.55
        assert 0.2 < valid.float().mean() < 0.8  # the two normalisations differ
        w = conf**2
        for name, part in (("loss/unsup_labeled", slice(0, 2)), ("loss/unsup_mixed", slice(2, 4))):
            numerator = (w * ce * valid)[part].sum()
            denominator = (w * valid)[part].sum() if normalize == "valid" else w[part].sum()
            loss = steps[normalize][0][name].item()
            assert loss == pytest.approx((numerator / denominator).item(), rel=1e-5), (normalize, name)
    (valid, bank_v, seen_v), (every, bank_a, seen_a) = steps["valid"], steps["all"]
    assert every["loss/unsup_mixed"] < valid["loss/unsup_mixed"]
    # Nothing else moves: the same inputs, supervised loss and bank.
    assert torch.equal(seen_v, seen_a) and torch.equal(bank_v, bank_a)
    assert torch.equal(valid["loss/sup"], every["loss/sup"])


# ------------------------------------------------------------------ sampling.shared_field: true


@pytest.mark.parametrize("shared", [False, True])
def test_shared_sampling_field_gives_identical_images_identical_masks(shared, monkeypatch):
    # Two identical unlabeled images, mixed with the same partner box, are two identical mixed
    # images. With one uniform field per class shared by the batch (release) their sampling masks
    # are identical, and exactly field[c][pixel] > 1 - r_c; with one uniform per pixel (paper)
    # they differ.
    calls = []
    real = ael_method_module.equalization_mask

    def spy(pred, ratio, *, shared_field, generator):
        state = generator.get_state()
        mask = real(pred, ratio, shared_field=shared_field, generator=generator)
        calls.append((pred, ratio, state, mask))
        return mask

    monkeypatch.setattr(ael_method_module, "equalization_mask", spy)
    method, _, _, _ = make_ael(copy_paste={"enabled": False}, sampling={"shared_field": shared})
    batch = make_batch()
    batch.unlabeled["image"][1] = batch.unlabeled["image"][0]
    run_step(method, batch)
    pred, ratio, state, mask = calls[0]  # the mixed images' (the labeled batch's comes second)
    assert pred.shape == (2, H, W) and torch.equal(pred[0], pred[1])
    assert 0.2 < mask.mean() < 0.95  # rates (1/8, 5/8, 1): a real subsample
    assert torch.equal(mask[0], mask[1]) == shared
    if shared:
        g = torch.Generator()
        g.set_state(state)
        field = torch.rand(C, H * W, generator=g).gather(0, pred.reshape(2, H * W)).view(2, H, W)
        assert torch.equal(mask, (field > 1.0 - ratio[pred]).float())


# ------------------------------------------------------------------ ohem.min_kept_per_gpu


@pytest.mark.parametrize("per_gpu", [False, True])
def test_ohem_keeps_min_kept_of_this_gpus_batch_or_its_share_of_the_global_one(per_gpu):
    # World of 2: the global batch keeps min_kept = 200 pixels, 100 on each rank (ours); the release
    # keeps 200 on each. The threshold 0.001 keeps almost nothing by itself, so min_kept decides.
    student, teacher = make_models()
    with torch.no_grad():
        student.conv.weight.copy_(torch.randn(C, 3, 1, 1, generator=torch.Generator().manual_seed(3)) * 2)
    ctx = MethodContext(num_classes=C, ignore_index=255, class_names=CLASS_NAMES, device=torch.device("cpu"),
                        generator=torch.Generator(), student=student, teacher=teacher,
                        collectives=Collectives(world_size=2))
    method = SupervisedMethod(SupervisedConfig(ohem=OhemConfig(thresh=0.001, min_kept=200,
                                                               min_kept_per_gpu=per_gpu)), ctx)
    batch = make_batch(b=2)
    batch.labeled["image"] = batch.labeled["image"] + torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(4))
    loss, _ = run_step(method, batch)
    with torch.no_grad():
        logits = student.conv(batch.labeled["image"])
    labels = batch.labeled["label"]

    def ohem(k):
        return ohem_cross_entropy(logits, labels, thresh=0.001, min_kept=k, ignore_index=255)

    assert torch.allclose(loss, ohem(200 if per_gpu else 100), atol=1e-6)
    assert not torch.allclose(ohem(200), ohem(100), atol=1e-3)  # the two settings are told apart

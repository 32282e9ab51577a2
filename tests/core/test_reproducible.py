"""Bit-identical reruns from one seed, and CPU/CUDA agreement (CUDA tests are gpu-marked)."""

import pytest
import torch

from ael.core import (
    adaptive_copy_paste,
    class_confidence_stats,
    connected_components,
    copy_paste_class_probs,
    cutmix_bank_bits,
    cutmix_boxes,
    cutmix_class_probs,
    equalization_mask,
    equalization_ratio,
    ohem_cross_entropy,
    pseudo_labels,
    random_boxes,
    sample_classes,
    sample_partners,
    unsup_loss,
    update_confidence,
)

C = 6


def _inputs(device):
    g = torch.Generator().manual_seed(123)
    low = torch.randn(2, C, 6, 6, generator=g)
    logits = torch.nn.functional.interpolate(low, size=(48, 40), mode="bilinear") * 3
    labels = logits.argmax(1)
    labels[:, :3] = 255
    images = torch.rand(2, 3, 48, 40, generator=g)
    return logits.to(device), labels.to(device), images.to(device)


def _step(device, seed):
    """One step's worth of core calls; returns every output."""
    g = torch.Generator(device=device).manual_seed(seed)
    logits, labels, images = _inputs(device)
    conf = torch.linspace(0.1, 0.9, C, device=device)
    out = {}
    cp = adaptive_copy_paste(images, labels, copy_paste_class_probs(conf), prob=0.7, generator=g)
    out.update(cp_images=cp.images, cp_labels=cp.labels, cp_pasted=cp.pasted)
    sums, counts = class_confidence_stats(logits.softmax(1), cp.labels)
    out["conf"] = update_confidence(conf, sums, counts, momentum=0.9)
    classes = sample_classes(cutmix_class_probs(out["conf"]), 2, generator=g)
    bank = cutmix_bank_bits(labels.clamp(max=C - 1), num_classes=C, area_thresh2=0.01)
    out["partners"] = sample_partners(bank, classes, generator=g)
    boxes = cutmix_boxes(labels, classes, area_thresh=0.005, generator=g)
    out.update(boxes=boxes.boxes, found=boxes.found)
    pl, pc = pseudo_labels(logits)
    mask = equalization_mask(pl, equalization_ratio(out["conf"]), generator=g)
    out["unsup"] = unsup_loss(logits.flip(0), pl, pc, sample_mask=mask)
    out["ohem"] = ohem_cross_entropy(logits, labels, min_kept=500)
    return out


def test_bit_identical_reruns():
    a, b = _step("cpu", 7), _step("cpu", 7)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    c = _step("cpu", 8)
    assert not all(torch.equal(a[k], c[k]) for k in ("cp_labels", "boxes", "unsup"))


@pytest.mark.gpu
def test_cuda_runs_with_cuda_generator_and_reruns_identically():
    a, b = _step("cuda", 7), _step("cuda", 7)
    for key in a:
        assert a[key].device.type == "cuda", key
        assert torch.equal(a[key], b[key]), key


@pytest.mark.gpu
def test_deterministic_parts_match_cpu():
    for device in ("cpu", "cuda"):
        logits, labels, _ = _inputs(device)
        if device == "cpu":
            ref = logits, labels
            ref_stats = class_confidence_stats(logits.softmax(1), labels)
            ref_cc = connected_components(labels == 2)
            ref_losses = ohem_cross_entropy(logits, labels, min_kept=500), pseudo_labels(logits)
            continue
        stats = class_confidence_stats(logits.softmax(1), labels)
        torch.testing.assert_close(stats[0].cpu(), ref_stats[0])
        assert torch.equal(stats[1].cpu(), ref_stats[1])
        assert torch.equal(connected_components(labels == 2).cpu(), ref_cc)
        torch.testing.assert_close(ohem_cross_entropy(logits, labels, min_kept=500).cpu(), ref_losses[0])
        pl, pc = pseudo_labels(logits)
        assert torch.equal(pl.cpu(), ref_losses[1][0])
        torch.testing.assert_close(pc.cpu(), ref_losses[1][1])
        bits = cutmix_bank_bits(labels.clamp(max=C - 1), num_classes=C, area_thresh2=0.01)
        assert torch.equal(bits.cpu(), cutmix_bank_bits(ref[1].clamp(max=C - 1), num_classes=C, area_thresh2=0.01))
        boxes = random_boxes(64, 48, 40, generator=torch.Generator("cuda").manual_seed(0), device="cuda")
        assert ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - 960).abs().max() <= 45

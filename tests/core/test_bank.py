"""Exact values for the confidence bank and the class-sampling distributions."""

import math

import pytest
import torch

from ael.core import (
    ConfidenceBank,
    class_confidence_stats,
    class_confidence_stats_from_gt,
    copy_paste_class_probs,
    cutmix_class_probs,
    equalization_ratio,
    excluded_class_mask,
    gt_class_probability,
    init_confidence,
    resolve_class_indices,
    sample_classes,
    update_confidence,
)


def _probs_and_labels():
    # (1, 3, 2, 3): per-pixel class probabilities, written pixel by pixel.
    pixels = [
        [0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8],
        [0.8, 0.1, 0.1], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25],
    ]
    probs = torch.tensor(pixels).t().reshape(1, 3, 2, 3)
    # class 0 at (0,0) p=.6 and (1,0) p=.8; class 1 at (0,1) p=.3; 255 ignored; 7 out of range;
    # class 2 absent.
    labels = torch.tensor([[[0, 1, 255], [0, 7, 255]]])
    return probs, labels


def test_stats_exact_with_ignored_and_invalid_pixels():
    probs, labels = _probs_and_labels()
    sums, counts = class_confidence_stats(probs, labels, ignore_index=255)
    torch.testing.assert_close(sums, torch.tensor([1.4, 0.3, 0.0]))
    assert counts.tolist() == [2, 1, 0]
    assert counts.dtype == torch.long


def test_stats_from_logits_match_softmax():
    probs, labels = _probs_and_labels()
    logits = probs.log() + 3.0  # any constant shift gives the same softmax
    gt = gt_class_probability(logits, labels)
    valid = labels < 3
    torch.testing.assert_close(gt[valid], torch.tensor([0.6, 0.3, 0.8]))


@pytest.mark.parametrize(("absent", "expected_absent"), [("skip", 0.5), ("zero", 0.45)])
def test_update_exact(absent, expected_absent):
    probs, labels = _probs_and_labels()
    sums, counts = class_confidence_stats(probs, labels)
    conf = torch.full((3,), 0.5)
    new = update_confidence(conf, sums, counts, momentum=0.9, absent_update=absent)
    # class 0: 0.9*0.5 + 0.1*0.7; class 1: 0.9*0.5 + 0.1*0.3
    torch.testing.assert_close(new, torch.tensor([0.52, 0.48, expected_absent]))
    assert conf.tolist() == [0.5, 0.5, 0.5]  # pure function


def test_update_rejects_bad_arguments():
    conf = torch.zeros(3)
    with pytest.raises(ValueError, match="absent_update"):
        update_confidence(conf, conf, conf.long(), absent_update="drop")
    with pytest.raises(ValueError, match="momentum"):
        update_confidence(conf, conf, conf.long(), momentum=1.0)
    with pytest.raises(ValueError, match="shape"):
        update_confidence(conf, torch.zeros(4), conf.long())


def test_init_constant_and_random():
    assert init_confidence(4, init_value=0.25).tolist() == [0.25] * 4
    a = init_confidence(5, init="random", generator=torch.Generator().manual_seed(3))
    b = init_confidence(5, init="random", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and bool(((a >= 0) & (a < 1)).all())
    with pytest.raises(ValueError, match="init"):
        init_confidence(3, init="ones")


def test_bank_class_reduce_hook_and_state_dict():
    seen = []

    def reduce_fn(sums, counts):
        seen.append((sums.clone(), counts.clone()))
        return sums * 2, counts * 2  # as if two identical ranks were summed

    bank = ConfidenceBank(3, momentum=0.9, reduce_fn=reduce_fn)
    probs, labels = _probs_and_labels()
    values = bank.update(*class_confidence_stats(probs, labels))
    assert len(seen) == 1
    torch.testing.assert_close(values, torch.tensor([0.52, 0.48, 0.5]))  # means unchanged by x2

    other = ConfidenceBank(3)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.values, bank.values)
    with pytest.raises(KeyError, match="values"):
        other.load_state_dict({})
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        other.load_state_dict({"values": torch.zeros(4)})


def test_copy_paste_probs_with_exclusion():
    conf = torch.tensor([0.0, 0.75, 0.96, 1.0])  # sqrt(1 - conf) = 1, .5, .2, 0
    excluded = excluded_class_mask(4, [1])
    p = copy_paste_class_probs(conf, excluded=excluded)
    z = math.exp(1.0) + math.exp(0.2) + math.exp(0.0)
    torch.testing.assert_close(p, torch.tensor([math.exp(1.0) / z, 0.0, math.exp(0.2) / z, 1.0 / z]))
    uniform = copy_paste_class_probs(conf, excluded=excluded, adaptive=False)
    torch.testing.assert_close(uniform, torch.tensor([1 / 3, 0.0, 1 / 3, 1 / 3]))
    no_exclusion = copy_paste_class_probs(conf)
    z = math.exp(1.0) + math.exp(0.5) + math.exp(0.2) + 1.0
    torch.testing.assert_close(no_exclusion, torch.tensor([math.exp(1.0), math.exp(0.5), math.exp(0.2), 1.0]) / z)


def test_excluded_mask_errors_and_name_resolution():
    with pytest.raises(ValueError, match="out of range"):
        excluded_class_mask(3, [3])
    with pytest.raises(ValueError, match="every one"):
        excluded_class_mask(2, [0, 1])
    names = ["road", "sidewalk", "pole"]
    assert resolve_class_indices(["pole", 0], names) == [2, 0]
    with pytest.raises(ValueError, match="'sky'"):
        resolve_class_indices(["sky"], names)
    with pytest.raises(ValueError, match="out of range"):
        resolve_class_indices([5], names)


def test_cutmix_probs_exact():
    conf = torch.tensor([0.0, 0.75, 0.96, 1.0])
    e = torch.tensor([1.0, 0.25, 0.04, 0.0]).exp()
    torch.testing.assert_close(cutmix_class_probs(conf), e / e.sum())
    torch.testing.assert_close(cutmix_class_probs(conf, adaptive=False), torch.full((4,), 0.25))


def test_equalization_ratio_exact():
    conf = torch.tensor([0.2, 0.6, 1.0, 0.8])  # deficits .8 .4 0 .2
    torch.testing.assert_close(equalization_ratio(conf), torch.tensor([1.0, 0.5, 0.0, 0.25]))
    torch.testing.assert_close(equalization_ratio(conf, gamma2=2.0), torch.tensor([1.0, 0.25, 0.0, 0.0625]))
    torch.testing.assert_close(equalization_ratio(conf, gamma2=0.5), torch.tensor([1.0, 0.5**0.5, 0.0, 0.5]))
    assert equalization_ratio(torch.ones(3)).tolist() == [1.0, 1.0, 1.0]  # max deficit 0
    with pytest.raises(ValueError, match="gamma2"):
        equalization_ratio(conf, gamma2=0.0)


def test_sample_classes_frequencies_and_zero_mass(generator):
    probs = torch.tensor([0.5, 0.0, 0.3, 0.2, 0.0])
    draws = sample_classes(probs, 20000, generator=generator)
    freq = torch.bincount(draws, minlength=5).float() / draws.numel()
    assert freq[1] == 0 and freq[4] == 0
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)


def _histogram_reference(labels, values, num_classes, ignore_index):
    valid = (labels >= 0) & (labels < num_classes) & (labels != ignore_index)
    counts = torch.bincount(labels[valid].long(), minlength=num_classes)
    sums = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels[valid].long(), values[valid].double())
    return counts, sums


@pytest.mark.parametrize("ignore_index", [255, 0])
@pytest.mark.parametrize("shape", [(2, 37, 41), (3, 1, 1), (1, 1, 300), (1, 300, 1), (0, 5, 5), (2, 0, 7), (2, 7, 0)])
def test_stats_from_gt_match_float64_on_any_shape(generator, shape, ignore_index):
    c = 6
    labels = torch.randint(-2, c + 2, shape, generator=generator)
    labels.view(-1)[::17] = 255
    prob = (-torch.rand(shape, generator=generator) * 20).exp()  # arbitrary float32 values
    sums, counts = class_confidence_stats_from_gt(prob, labels, num_classes=c, ignore_index=ignore_index)
    exact_counts, exact_sums = _histogram_reference(labels, prob, c, ignore_index)
    assert counts.dtype == torch.int64 and sums.dtype == torch.float32 and sums.shape == (c,)
    assert torch.equal(counts, exact_counts)
    torch.testing.assert_close(sums.double(), exact_sums, rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda labels, values: (labels.int(), values),
        lambda labels, values: (labels.to(torch.uint8), values),
        lambda labels, values: (labels.transpose(1, 2), values.transpose(1, 2)),
        lambda labels, values: (labels.repeat_interleave(2, dim=-1)[..., ::2], values),
        lambda labels, values: (labels, values.double()),
    ],
    ids=["int32 labels", "uint8 labels", "transposed", "strided labels", "float64 values"],
)
def test_stats_from_gt_of_any_label_layout(generator, make):
    base = torch.randint(0, 7, (2, 12, 20), generator=generator)
    base[:, 0] = 255
    labels, values = make(base, torch.rand(2, 12, 20, generator=generator))
    sums, counts = class_confidence_stats_from_gt(values, labels, num_classes=5)
    exact_counts, exact_sums = _histogram_reference(labels, values, 5, 255)
    assert torch.equal(counts, exact_counts)
    torch.testing.assert_close(sums.double(), exact_sums, rtol=1e-6, atol=0)

"""Exact values for OHEM, equalization sampling and the re-weighted unsupervised loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from ael.core import (
    equalization_mask,
    equalization_ratio,
    logit_stats,
    ohem_cross_entropy,
    pseudo_labels,
    unsup_loss,
)


def _logits_from_gt_probs(gt_probs):
    """Two-class logits (1, 2, 1, W) whose class-1 probability is each given value."""
    p = torch.tensor(gt_probs, dtype=torch.float64)
    return torch.stack([(1 - p).log(), p.log()]).float().view(1, 2, 1, -1)


GT = [0.9, 0.8, 0.6, 0.5, 0.3, 0.95, 0.4]
LABELS = torch.tensor([[[1, 1, 1, 1, 1, 1, 255]]])  # the last pixel is ignored


def _mean_nll(probs):
    return sum(-math.log(p) for p in probs) / len(probs)


@pytest.mark.parametrize(
    ("min_kept", "kept"),
    [
        (2, [0.6, 0.5, 0.3]),  # 2nd smallest 0.5 < thresh: threshold 0.7
        (5, [0.9, 0.8, 0.6, 0.5, 0.3]),  # 5th smallest 0.9 > thresh: threshold 0.9
        (6, GT[:6]),  # exactly as many valid pixels as min_kept: all kept
        (7, GT[:6]),  # fewer valid pixels than min_kept: all valid kept
        (0, [0.6, 0.5, 0.3]),  # no minimum: the threshold alone
    ],
)
def test_ohem_keep_rule(min_kept, kept):
    loss = ohem_cross_entropy(_logits_from_gt_probs(GT), LABELS, thresh=0.7, min_kept=min_kept)
    assert loss.item() == pytest.approx(_mean_nll(kept), rel=1e-5)


def test_ohem_no_valid_pixel_is_zero_and_differentiable():
    logits = _logits_from_gt_probs(GT).requires_grad_()
    loss = ohem_cross_entropy(logits, torch.full((1, 1, 7), 255), min_kept=3)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_ohem_errors():
    with pytest.raises(ValueError, match="labels"):
        ohem_cross_entropy(torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="min_kept"):
        ohem_cross_entropy(torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long), min_kept=-1)


def test_pseudo_labels_match_softmax(generator):
    logits = torch.randn(2, 5, 4, 3, generator=generator) * 4
    labels, conf = pseudo_labels(logits)
    top = logits.softmax(1).max(1)
    assert torch.equal(labels, top.indices)
    torch.testing.assert_close(conf, top.values)


# unsupervised loss: 4 pixels, pseudo-labels 0, 1, ignore, 0; confidences .9 .6 .8 .5
CE0, CE1 = -math.log(0.7), -math.log(0.4)


def _unsup_inputs():
    # student probability of the pseudo-label: .7, .4 (class 1), -, .2
    student_class0 = torch.tensor([0.7, 0.6, 0.5, 0.2], dtype=torch.float64)
    logits = torch.stack([student_class0.log(), (1 - student_class0).log()]).float().view(1, 2, 1, 4)
    labels = torch.tensor([[[0, 1, 255, 0]]])
    conf = torch.tensor([[[0.9, 0.6, 0.8, 0.5]]])
    return logits, labels, conf


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, (0.81 * CE0 + 0.36 * CE1) / (0.81 + 0.36)),
        ({"normalize": "all"}, (0.81 * CE0 + 0.36 * CE1) / (0.81 + 0.36 + 0.64 + 0.25)),
        ({"sample_mask": [1.0, 0.0, 1.0, 1.0]}, CE0),
        ({"sample_mask": [1.0, 0.0, 1.0, 1.0], "normalize": "all"}, 0.81 * CE0 / (0.81 + 0.64 + 0.25)),
        ({"reweight": False}, (CE0 + CE1) / 2),
        ({"reweight": False, "normalize": "all"}, (CE0 + CE1) / 4),
        ({"gamma": 1.0}, (0.9 * CE0 + 0.6 * CE1) / 1.5),
    ],
)
def test_unsup_loss_exact(kwargs, expected):
    logits, labels, conf = _unsup_inputs()
    if "sample_mask" in kwargs:
        kwargs = {**kwargs, "sample_mask": torch.tensor(kwargs["sample_mask"]).view(1, 1, 4)}
    # conf_thresh 0.55 drops the last pixel (0.5); the third is ignored
    loss = unsup_loss(logits, labels, conf, conf_thresh=0.55, **kwargs)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_unsup_loss_threshold_zero_keeps_everything_valid():
    logits, labels, conf = _unsup_inputs()
    ce3 = -math.log(0.2)
    loss = unsup_loss(logits, labels, conf, conf_thresh=0.0)
    expected = (0.81 * CE0 + 0.36 * CE1 + 0.25 * ce3) / (0.81 + 0.36 + 0.25)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_unsup_loss_empty_is_zero_with_gradient():
    logits, labels, conf = _unsup_inputs()
    logits.requires_grad_()
    loss = unsup_loss(logits, labels, conf, sample_mask=torch.zeros(1, 1, 4))
    loss.backward()
    assert loss.item() == 0.0


def test_unsup_loss_errors():
    logits, labels, conf = _unsup_inputs()
    with pytest.raises(ValueError, match="normalize"):
        unsup_loss(logits, labels, conf, normalize="mean")
    with pytest.raises(ValueError, match="confidence"):
        unsup_loss(logits, labels, conf[..., :2])


# Adaptive equalization sampling from a bank, by hand: Conf = (0.2, 0.6, 0.9, 0.95, 1.0) has deficits
# 1 - Conf = (0.8, 0.4, 0.1, 0.05, 0), max 0.8, so r_c = (1 - Conf_c) / 0.8 = (1, 1/2, 1/8, 1/16, 0);
# with gamma2 = 2 each squared: (1, 1/4, 1/64, 1/256, 0).
BANK = torch.tensor([0.2, 0.6, 0.9, 0.95, 1.0])
RATES = [1.0, 0.5, 0.125, 0.0625, 0.0]
RATES_SQUARED = [1.0, 0.25, 0.015625, 0.00390625, 0.0]


def test_equalization_rates_of_a_bank_hand_computed():
    assert equalization_ratio(BANK).tolist() == pytest.approx(RATES, abs=1e-7)
    assert equalization_ratio(BANK, gamma2=2.0).tolist() == pytest.approx(RATES_SQUARED, abs=1e-7)
    # Only the ratio to the weakest class matters: scaling every deficit by one factor keeps r.
    halved = 1.0 - (1.0 - BANK) / 2  # (0.6, 0.8, 0.95, 0.975, 1.0)
    assert equalization_ratio(halved).tolist() == pytest.approx(RATES, abs=1e-7)


def test_equalization_mask_of_a_bank_hand_computed():
    # Ten pixels of predicted classes, and the uniforms a generator seeded 11 draws for them.
    pred = torch.tensor([[[0, 1, 2, 3, 4], [1, 1, 2, 3, 0]]])
    u = [[0.149042, 0.486553, 0.985662, 0.168401, 0.583943], [0.693599, 0.583085, 0.128438, 0.572123, 0.924839]]
    assert torch.rand(1, 2, 5, generator=torch.Generator().manual_seed(11))[0].tolist() == [
        pytest.approx(row, abs=1e-6) for row in u]
    # A pixel of class c is kept when u > 1 - r_c: class 0 (r 1) always, class 4 (r 0) never;
    # class 1 (r 1/2): u .487 no, .694 and .583 yes; class 2 (r 1/8, above .875): .986 yes, .128 no;
    # class 3 (r 1/16, above .9375): .168 and .572 no.
    expected = [[[1.0, 0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0, 1.0]]]
    mask = equalization_mask(pred, equalization_ratio(BANK), generator=torch.Generator().manual_seed(11))
    assert mask.tolist() == expected


def test_equalization_sampling_keeps_each_class_of_a_bank_at_its_hand_computed_rate():
    pred = torch.arange(5).repeat_interleave(40_000).view(2, 400, 250)  # 40 000 pixels a class
    for gamma2, rates in ((1.0, RATES), (2.0, RATES_SQUARED)):
        mask = equalization_mask(pred, equalization_ratio(BANK, gamma2=gamma2),
                                 generator=torch.Generator().manual_seed(2))
        kept = [mask[pred == c].mean().item() for c in range(5)]
        # binomial standard deviation at 40 000 draws is at most 0.0025: 4 sigma
        assert kept == [pytest.approx(r, abs=0.01) for r in rates]
        assert kept[0] == 1.0 and kept[4] == 0.0


def test_equalization_mask_rates(generator):
    pred = torch.randint(0, 3, (4, 64, 64), generator=generator)
    ratio = torch.tensor([1.0, 0.0, 0.3])
    mask = equalization_mask(pred, ratio, generator=generator)
    assert (mask[pred == 0] == 1).all() and (mask[pred == 1] == 0).all()
    assert mask[pred == 2].mean().item() == pytest.approx(0.3, abs=0.03)


def test_equalization_mask_shared_field_exact():
    pred = torch.randint(0, 3, (1, 8, 8), generator=torch.Generator().manual_seed(1)).expand(2, 8, 8)
    ratio = torch.tensor([0.2, 0.5, 0.9])
    mask = equalization_mask(pred, ratio, shared_field=True, generator=torch.Generator().manual_seed(5))
    fields = torch.rand(3, 64, generator=torch.Generator().manual_seed(5))
    u = fields.gather(0, pred[:1].reshape(1, 64)).view(1, 8, 8)
    expected = (u > 1 - ratio[pred[:1]]).float()
    assert torch.equal(mask, expected.expand(2, 8, 8))  # same field for both images
    independent = equalization_mask(pred, ratio, generator=torch.Generator().manual_seed(5))
    assert not torch.equal(independent[0], independent[1])


def test_equalization_mask_keeps_each_class_at_its_rate():
    ratio = torch.tensor([0.1, 0.5, 0.9, 1.0, 0.0])
    pred = torch.arange(5).repeat_interleave(40_000).view(2, 400, 250)
    mask = equalization_mask(pred, ratio, generator=torch.Generator().manual_seed(1))
    kept = torch.stack([mask[pred == c].mean() for c in range(5)])
    assert (kept - ratio).abs().max() < 0.01 and kept[3] == 1 and kept[4] == 0


def test_equalization_mask_is_one_uniform_per_pixel_above_one_minus_the_rate(generator):
    ratio = torch.tensor([0.0, 1.0, 0.5, 0.25, 1e-7, 1.0 - 2**-24])
    c = ratio.shape[0]
    pred = torch.randint(-3, c + 3, (2, 37, 41), generator=generator)  # outside [0, C): clamped
    pred[0, 0, :4] = torch.tensor([-(2**62), 2**62, -1, c])
    clamped = pred.clamp(0, c - 1)
    for seed in range(3):
        mask = equalization_mask(pred, ratio, generator=torch.Generator().manual_seed(seed))
        u = torch.rand(2, 37, 41, generator=torch.Generator().manual_seed(seed))
        assert mask.dtype == torch.float32 and torch.equal(mask, (u > 1.0 - ratio[clamped]).float())
        assert not mask[clamped == 0].any() and mask[clamped == 1].all()  # rates 0 and 1


def test_equalization_mask_of_other_dtypes_and_layouts(generator):
    ratio = torch.rand(5, generator=generator)
    pred = torch.randint(0, 5, (2, 11, 13), generator=generator)

    def mask(p, r=ratio, **kwargs):
        return equalization_mask(p, r, generator=torch.Generator().manual_seed(3), **kwargs)

    strided = pred.repeat_interleave(2, dim=-1)[..., ::2]
    for shared in (False, True):
        for other in (pred.int(), strided):
            assert torch.equal(mask(other, shared_field=shared), mask(pred, shared_field=shared))
        assert torch.equal(mask(pred, ratio.double(), shared_field=shared), mask(pred, shared_field=shared))


def _loss_inputs(generator, b=2, c=5, h=13, w=17):
    logits = torch.randn(b, c, h, w, generator=generator) * 3
    labels = torch.randint(-2, c + 2, (b, h, w), generator=generator)
    labels[0, 0, :4] = 255
    confidence = torch.rand(b, h, w, generator=generator)
    sample = (torch.rand(b, h, w, generator=generator) > 0.3).float()
    return logits, labels, confidence, sample


@pytest.mark.parametrize("normalize", ["valid", "all"])
@pytest.mark.parametrize(
    "options",
    [{"gamma": 2.0}, {"gamma": 1.5}, {"gamma": 0.0}, {"reweight": False}, {"conf_thresh": 0.4},
     {"sampled": False}, {"given_logsumexp": True}],
)
def test_unsup_loss_value_and_gradient_match_f_cross_entropy(generator, normalize, options):
    logits, labels, confidence, sample = _loss_inputs(generator)
    options = {"gamma": 2.0, "reweight": True, "conf_thresh": 0.0, **options}
    sample_mask = sample if options.pop("sampled", True) else None
    lse = logit_stats(logits).logsumexp if options.pop("given_logsumexp", False) else None
    x = logits.clone().requires_grad_()
    loss = unsup_loss(x, labels, confidence, sample_mask=sample_mask, normalize=normalize, logsumexp=lse,
                      **options)
    loss.backward()
    y = logits.clone().requires_grad_()
    valid = (labels >= 0) & (labels < 5) & (labels != 255) & (confidence >= options["conf_thresh"])
    ce = F.cross_entropy(y, torch.where(valid, labels, 0), reduction="none") * valid
    weight = confidence ** options["gamma"] if options["reweight"] else torch.ones_like(confidence)
    if sample_mask is not None:
        weight = weight * sample_mask
    expected = (weight * ce).sum() / ((weight * valid).sum() if normalize == "valid" else weight.sum())
    expected.backward()
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-5, atol=0)
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-4, atol=1e-8)


def test_unsup_loss_with_nothing_valid_is_zero_with_a_zero_gradient(generator):
    logits, labels, confidence, sample = _loss_inputs(generator)
    x = logits.clone().requires_grad_()
    loss = unsup_loss(x, torch.full_like(labels, 255), confidence, sample_mask=sample)
    loss.backward()
    assert loss == 0 and torch.equal(x.grad, torch.zeros_like(x.grad))


def test_unsup_loss_of_other_dtypes_and_its_gradient_scale(generator):
    logits, labels, confidence, sample = _loss_inputs(generator)
    expected = unsup_loss(logits, labels, confidence, sample_mask=sample)
    torch.testing.assert_close(unsup_loss(logits.double(), labels, confidence, sample_mask=sample).float(),
                               expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(unsup_loss(logits, labels.int(), confidence, sample_mask=sample), expected,
                               rtol=1e-6, atol=0)
    grads = []
    for scale in (1.0, -3.5):
        x = logits.clone().requires_grad_()
        (unsup_loss(x, labels, confidence, sample_mask=sample) * scale).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0] * -3.5, rtol=1e-6, atol=1e-9)


def test_a_nan_logit_or_weight_makes_loss_and_gradient_nan(generator):
    logits, labels, confidence, _ = _loss_inputs(generator)
    labels = labels.clamp(0, 4)
    nan_logit = logits.clone()
    nan_logit[1, :, 3, 3] = torch.nan
    assert unsup_loss(nan_logit, labels, confidence).isnan()
    # a diverged teacher: NaN confidence makes the pixel invalid, but its weight is still NaN
    x = torch.randn(1, 3, 1, 2, generator=generator).requires_grad_()
    loss = unsup_loss(x, torch.tensor([[[0, 1]]]), torch.tensor([[[0.9, float("nan")]]]), normalize="valid")
    loss.backward()
    assert loss.isnan() and x.grad[..., 0].isnan().all()

"""The one-pass class-axis reductions: exact argmax, log-sum-exp, max-probability, cross-entropy.

Maps are sized so that the band loop runs several bands with a ragged last one; edge cases
(ties, NaN and infinite logits, empty and one-pixel-wide maps, invalid labels) are checked
against PyTorch's own reductions and float64 references.
"""

import pytest
import torch
import torch.nn.functional as F

from ael.core import (
    class_argmax,
    equalization_mask,
    gt_class_probability,
    logit_stats,
    max_probability,
    ohem_cross_entropy,
    pseudo_labels,
    unsup_loss,
)
from ael.core._channel_ops import PixelCrossEntropy, channel_stats, class_probability, logsumexp, row_bands


@pytest.fixture
def logits(generator):
    x = torch.randn(2, 7, 45, 1000, generator=generator) * 3
    assert len(row_bands(x)) > 2 and 45 % row_bands(x)[0].stop != 0  # several bands, ragged end
    return x


def test_argmax_is_the_first_maximum_with_ties(generator):
    # small integer logits: many exact ties, which must resolve to the first class as Tensor.max
    x = torch.randint(0, 3, (2, 6, 45, 1000), generator=generator).float()
    assert torch.equal(class_argmax(x), x.max(1).indices)
    assert torch.equal(class_argmax(torch.zeros(1, 5, 4, 4)), torch.zeros(1, 4, 4, dtype=torch.long))
    x[0, :, 0, 0] = torch.tensor([1.0, 2.0, 2.0, -1.0, 2.0, 0.0])
    assert class_argmax(x)[0, 0, 0].item() == 1


def test_argmax_on_strided_inputs(logits):
    for view in (logits.contiguous(memory_format=torch.channels_last), logits[:, :, ::2], logits.transpose(2, 3),
                 logits.double(), torch._neg_view(logits)):  # the last: lazily negated
        assert torch.equal(class_argmax(view), view.max(1).indices)


def test_logit_stats(logits):
    stats = logit_stats(logits)
    assert torch.equal(stats.argmax, logits.max(1).indices)
    torch.testing.assert_close(stats.logsumexp, torch.logsumexp(logits, 1), rtol=1e-6, atol=1e-6)
    assert logit_stats(logits, argmax=False).argmax is None


def test_max_probability_and_pseudo_labels(logits):
    reference = logits.softmax(1).max(1)
    torch.testing.assert_close(max_probability(logits), reference.values, rtol=1e-6, atol=1e-7)
    labels, conf = pseudo_labels(logits)
    assert torch.equal(labels, reference.indices) and torch.equal(conf, max_probability(logits))


def test_max_probability_of_a_mix_is_that_of_the_mixed_logits(logits, generator):
    inside = torch.randn(logits.shape, generator=generator)
    mask = torch.rand(2, 45, 1000, generator=generator) < 0.4
    mixed = torch.where(mask.unsqueeze(1), inside, logits)
    assert torch.equal(max_probability(logits, inside=inside, mask=mask), max_probability(mixed))
    # an infinite logit on the side not taken does not reach the mix
    logits[0, 0, 0, 0], inside[1, 2, 5, 5] = float("inf"), float("-inf")
    mask[0, 0, 0], mask[1, 5, 5] = True, False
    mixed = torch.where(mask.unsqueeze(1), inside, logits)
    assert torch.equal(max_probability(logits, inside=inside, mask=mask), max_probability(mixed))
    with pytest.raises(ValueError, match="mask"):
        max_probability(logits, inside=inside)
    with pytest.raises(ValueError, match="bool"):
        max_probability(logits, inside=inside, mask=mask.float())
    with pytest.raises(ValueError, match="shapes"):
        max_probability(logits, inside=inside[:1], mask=mask)


def test_shared_logsumexp_gives_the_same_losses_and_gradients(logits, generator):
    labels = torch.randint(0, 7, (2, 45, 1000), generator=generator)
    labels[:, :3] = 255
    conf = torch.rand(2, 45, 1000, generator=generator)
    lse = logit_stats(logits).logsumexp
    for loss_fn in (
        lambda x, **kw: ohem_cross_entropy(x, labels, min_kept=5000, **kw),
        lambda x, **kw: unsup_loss(x, labels, conf, **kw),
    ):
        a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        loss_a, loss_b = loss_fn(a), loss_fn(b, logsumexp=lse)
        loss_a.backward()
        loss_b.backward()
        assert torch.equal(loss_a, loss_b) and torch.equal(a.grad, b.grad)
    assert torch.equal(gt_class_probability(logits, labels), gt_class_probability(logits, labels, logsumexp=lse))
    with pytest.raises(ValueError, match="logsumexp"):
        unsup_loss(logits, labels, conf, logsumexp=lse[:, :2])


def test_cross_entropy_matches_torch_in_value_and_gradient(logits, generator):
    labels = torch.randint(0, 7, (2, 45, 1000), generator=generator)
    labels[:, :, :10] = 255
    ours = logits.clone().requires_grad_()
    theirs = logits.clone().requires_grad_()
    # min_kept above the pixel count keeps every valid pixel: plain mean cross-entropy
    ohem_cross_entropy(ours, labels, thresh=0.0, min_kept=10**6).backward()
    F.cross_entropy(theirs, labels, ignore_index=255).backward()
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-5, atol=1e-9)


def test_degenerate_shapes_and_transposed_predictions(generator):
    labels, conf = pseudo_labels(torch.randn(2, 3, 0, 4))
    assert labels.shape == conf.shape == (2, 0, 4)
    assert torch.equal(class_argmax(torch.randn(1, 1, 3, 3)), torch.zeros(1, 3, 3, dtype=torch.long))
    pred = torch.randint(0, 5, (2, 8, 6), generator=generator).transpose(1, 2)
    for shared in (False, True):
        mask = equalization_mask(pred, torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0]), shared_field=shared,
                                 generator=generator)
        assert torch.equal(mask, ((pred != 2) & (pred != 4)).float())


def test_a_float64_logsumexp_is_accepted(logits, generator):
    labels = torch.randint(0, 7, (2, 45, 1000), generator=generator)
    conf = torch.rand(2, 45, 1000, generator=generator)
    x = logits.clone().requires_grad_()
    loss = unsup_loss(x, labels, conf, logsumexp=logit_stats(logits).logsumexp.double())
    loss.backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    "shape", [(1, 1, 1, 1), (2, 19, 37, 41), (3, 2, 1, 300), (1, 21, 16, 8), (2, 5, 0, 7), (0, 3, 4, 4)]
)
def test_stats_on_ragged_and_empty_shapes(generator, shape):
    x = torch.randn(*shape, generator=generator) * 5
    stats = channel_stats(x)
    assert stats.argmax.dtype == torch.int64 and stats.top.shape == (shape[0], *shape[2:])
    if x.numel():
        assert torch.equal(stats.top, x.amax(1)) and torch.equal(stats.argmax, x.max(1).indices)
    exact = (x.double() - x.double().amax(1, keepdim=True)).exp().sum(1) if x.numel() else stats.expsum.double()
    torch.testing.assert_close(stats.expsum.double(), exact, rtol=1e-6, atol=0)


def test_ties_extremes_and_nan(generator):
    x = torch.randint(-2, 3, (2, 6, 20, 30), generator=generator).float()  # many exact ties
    x[0, :, 0, 0] = torch.tensor([-torch.inf, 5.0, 5.0, -torch.inf, 0.0, 1.0])
    x[0, :, 0, 1] = -torch.inf  # every class impossible: max -inf, exp-sum NaN, as torch
    x[0, :, 0, 2] = torch.tensor([1e30, -1e30, 3e38, 3e38, 0.0, -3e38])
    x[1, 3, 5, 5] = torch.nan
    x[1, 0, 6, 6] = torch.nan
    x[1, :, 7, 7] = torch.tensor([-100.0, -130.0, -200.0, -99.5, -1e4, -126.9])  # exp of deep negatives
    x[1, :, 8, 8] = torch.tensor([torch.inf, 0.0, torch.inf, 1.0, -torch.inf, 2.0])  # +inf: max inf, exp-sum NaN
    x[1, :, 9, 9] = torch.tensor([1.0, 0.0, torch.nan, torch.inf, -torch.inf, 2.0])  # NaN wins over inf
    stats = channel_stats(x)
    assert torch.equal(stats.top.nan_to_num(nan=7.0), x.amax(1).nan_to_num(nan=7.0))
    assert torch.equal(stats.argmax, torch.where(x.isnan().any(1), 0, x.max(1).indices))  # NaN: class 0
    exact = (x.double() - x.double().amax(1, keepdim=True)).exp().sum(1)
    torch.testing.assert_close(stats.expsum.double(), exact, rtol=1e-6, atol=0, equal_nan=True)
    assert stats.argmax[0, 0, 0] == 1 and stats.top[1, 5, 5].isnan() and stats.expsum[1, 6, 6].isnan()
    assert stats.expsum[0, 0, 1].isnan() and stats.expsum[1, 8, 8].isnan()


def test_exp_sum_is_accurate_against_float64(generator):
    x = torch.randn(2, 19, 33, 65, generator=generator) * 20
    exact = (x.double() - x.double().amax(1, keepdim=True)).exp().sum(1)
    torch.testing.assert_close(channel_stats(x).expsum.double(), exact, rtol=1e-6, atol=0)


def test_logsumexp_and_max_probability_match_float64(generator):
    scale = torch.tensor([0.01, 1.0, 8.0, 40.0]).repeat(11)[:41].view(1, 1, 41, 1)
    x = torch.randn(2, 19, 41, 53, generator=generator) * scale
    x[0, :, 0, 0] = 0.0  # exp-sum exactly C
    x[0, :, 0, 1] = torch.linspace(-200, 0, 19)  # exp-sum just above 1
    x[1, :, 0, 0] = 1e30  # huge, equal
    stats, (labels, confidence) = logit_stats(x), pseudo_labels(x)
    torch.testing.assert_close(stats.logsumexp.double(), torch.logsumexp(x.double(), 1), rtol=2e-7, atol=2e-6)
    torch.testing.assert_close(confidence.double(), torch.softmax(x.double(), 1).amax(1), rtol=1e-6, atol=0)
    assert torch.equal(max_probability(x), confidence) and torch.equal(labels, stats.argmax)
    assert torch.equal(labels, x.argmax(dim=1))


def test_logsumexp_keeps_nan_and_infinity():
    x = torch.zeros(1, 3, 1, 4)
    x[0, :, 0, 0] = torch.tensor([0.0, torch.nan, 1.0])
    x[0, :, 0, 1] = torch.tensor([torch.inf, 0.0, 1.0])
    x[0, :, 0, 2] = -torch.inf
    x[0, :, 0, 3] = torch.tensor([-torch.inf, 2.0, -torch.inf])
    lse = logit_stats(x).logsumexp
    assert lse[0, 0, :3].isnan().all() and lse[0, 0, 3] == 2.0


def test_non_finite_logits_show_in_a_mix_only_where_taken(generator):
    outside, inside = torch.randn(2, 2, 7, 23, 29, generator=generator).unbind(0)
    mask = torch.rand(2, 23, 29, generator=generator) < 0.4
    mask[0, 0, :4] = torch.tensor([True, True, False, False])
    inside[0, 1, 0, 0], outside[0, 2, 0, 2] = torch.inf, -torch.inf  # taken: they show
    outside[0, 2, 0, 1], inside[0, 3, 0, 3] = torch.nan, torch.nan  # not taken: they must not
    mixed = torch.where(mask.unsqueeze(1), inside, outside)
    result = max_probability(outside, inside=inside, mask=mask)
    assert torch.equal(result.nan_to_num(nan=7.0), max_probability(mixed).nan_to_num(nan=7.0))
    assert result[0, 0, 0].isnan() and result[0, 0, 1:4].isfinite().all()
    strided = (torch.rand(2, 23, 58, generator=generator) < 0.5)[:, :, ::2]
    mixed = torch.where(strided.unsqueeze(1), inside, outside)
    assert torch.equal(max_probability(outside, inside=inside, mask=strided).nan_to_num(nan=7.0),
                       max_probability(mixed).nan_to_num(nan=7.0))


@pytest.mark.parametrize("ignore_index", [255, 0, -1])
def test_class_probability_is_the_softmax_and_one_at_invalid_labels(generator, ignore_index):
    c = 7
    x = torch.randn(2, c, 19, 23, generator=generator) * 4
    labels = torch.randint(-3, c + 3, (2, 19, 23), generator=generator)
    labels[0, 0, :4] = torch.tensor([255, 0, c, -(2**40)])
    labels[1, -1, -3:] = torch.tensor([2**40, 255, -1])
    prob = class_probability(x, labels, logsumexp(x), ignore_index=ignore_index)
    valid = (labels >= 0) & (labels < c) & (labels != ignore_index)
    assert (prob[~valid] == 1.0).all() and (prob <= 1.0).all()
    exact = x.double().softmax(1).gather(1, torch.where(valid, labels, 0).unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(prob[valid].double(), exact[valid], rtol=1e-5, atol=0)


def test_class_probability_caps_at_one_and_keeps_nan():
    x = torch.tensor([[[[3.0, 0.0, 1.0, 0.0, 0.0, -200.0, 0.0]], [[1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]]]])
    labels = torch.tensor([[[0, 0, 1, 0, 0, 0, 9]]])
    # offset below the logit (an inconsistent caller), -inf, NaN, +inf, exactly the logit, deep, invalid
    offset = torch.tensor([[[2.0, -torch.inf, torch.nan, torch.inf, 0.0, -100.0, 0.0]]])
    result = class_probability(x, labels, offset, ignore_index=255)
    assert result[0, 0, :2].tolist() == [1.0, 1.0] and result[0, 0, 2].isnan()
    assert result[0, 0, 3:5].tolist() == [0.0, 1.0] and result[0, 0, 6] == 1.0
    assert 0.0 <= result[0, 0, 5] < 2.0**-126  # exp(-100): a float32 subnormal


def test_gt_class_probability_of_any_label_layout(generator):
    c = 6
    x = torch.randn(3, c, 15, 22, generator=generator) * 3
    labels = torch.randint(-1, c + 1, (3, 15, 22), generator=generator)
    labels[:, ::4, ::3] = 255
    expected = gt_class_probability(x, labels)
    assert torch.equal(expected, gt_class_probability(x, labels, logsumexp=logsumexp(x)))
    wide = torch.randint(-1, c + 1, (3, 15, 44), generator=generator)
    for other in (labels.int(), labels.to(torch.int16), wide[:, :, ::2]):
        assert torch.equal(gt_class_probability(x, other), gt_class_probability(x, other.long().contiguous()))


@pytest.mark.parametrize("given", [True, False], ids=["given logsumexp", "own logsumexp"])
def test_pixel_cross_entropy_matches_f_cross_entropy_with_any_upstream_gradient(generator, given):
    c = 6
    logits = torch.randn(2, c, 17, 21, generator=generator) * 3
    target = torch.randint(0, c, (2, 17, 21), generator=generator)
    valid = torch.rand(2, 17, 21, generator=generator) < 0.7
    upstream = torch.rand(2, 17, 21, generator=generator)
    x = logits.clone().requires_grad_(True)
    ce = PixelCrossEntropy.apply(x, target, valid, logsumexp(logits) if given else None)
    (ce * upstream).sum().backward()
    assert (ce[~valid] == 0.0).all()
    y = logits.clone().requires_grad_(True)
    expected = F.cross_entropy(y, torch.where(valid, target, -100), reduction="none")
    (expected * upstream).sum().backward()
    torch.testing.assert_close(ce.detach(), expected.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("size", [(50, 61), (3, 5)])
def test_results_do_not_depend_on_the_thread_count(generator, size):
    x = torch.randn(2, 19, *size, generator=generator)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            results.append(channel_stats(x))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(results[0], results[1]))

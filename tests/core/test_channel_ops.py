"""The one-pass class-axis reductions: exact argmax, log-sum-exp, max-probability, cross-entropy.

Every test runs twice: through the compiled CPU kernel (skipped where it is not built) and
through the PyTorch implementation. Maps are sized so that the PyTorch band loop runs several
bands with a ragged last one, and the kernel's pixel blocks end ragged too.
"""

import pytest
import torch
import torch.nn.functional as F

from ael.core import (
    _native,
    class_argmax,
    equalization_mask,
    gt_class_probability,
    logit_stats,
    max_probability,
    ohem_cross_entropy,
    pseudo_labels,
    unsup_loss,
)
from ael.core._channel_ops import row_bands


@pytest.fixture(autouse=True, params=["compiled", "pytorch"])
def implementation(request, monkeypatch):
    """Which implementation the reductions use for this run of the test."""
    if request.param == "compiled" and not _native.available():
        pytest.skip(f"compiled kernel not available: {_native.status()}")
    monkeypatch.setattr(_native, "enabled", request.param == "compiled")
    return request.param


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
    for view in (logits.contiguous(memory_format=torch.channels_last), logits[:, :, ::2], logits.transpose(2, 3)):
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

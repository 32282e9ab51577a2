"""The compiled CPU kernel (ael/core/_native.c) against the PyTorch implementation it replaces.

The maximum, the argmax and the picked logits must be identical; the exp-sum agrees to float32
rounding. Skipped where the kernel is not built (no C compiler at install), except in CI, which
sets AEL_REQUIRE_NATIVE=1 so that a build that silently fell back fails here.
"""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from ael.core import (
    _native,
    class_confidence_stats_from_gt,
    component_boxes,
    cutmix_bank_bits,
    equalization_mask,
    gt_class_probability,
    max_probability,
    unsup_loss,
    update_cutmix_bank,
)
from ael.core._channel_ops import PixelCrossEntropy, channel_stats, class_probability, logsumexp, pick_class
from ael.core.losses import random_words, uniforms_from_words

if not _native.available():
    if os.environ.get("AEL_REQUIRE_NATIVE") == "1":
        raise RuntimeError(f"AEL_REQUIRE_NATIVE=1 but {_native.status()}")
    pytest.skip(f"compiled kernel not available: {_native.status()}", allow_module_level=True)


#: The kernel wrappers of ``_native`` that the public functions call (those of this build).
KERNELS = tuple(
    name for name in ("channel_stats", "pick_class", "class_histogram", "keep_mask", "component_boxes",
                      "pseudo_label_loss")
    if hasattr(_native, name)
)


def both(monkeypatch, fn, *kernels):
    """``fn()`` through the compiled kernels, then through PyTorch (``_native.enabled = False``).

    The first run must call the kernel (each of ``kernels`` when named, else any) and no kernel
    call of it may fall back (return None); the second must run none.
    """
    calls = []

    def spying_on(name, original):
        def spy(*args, **kwargs):
            result = original(*args, **kwargs)
            calls.append((name, result is not None))
            return result
        return spy

    for name in KERNELS:
        monkeypatch.setattr(_native, name, spying_on(name, getattr(_native, name)))
    monkeypatch.setattr(_native, "enabled", True)
    compiled = fn()
    assert calls, "the compiled kernel did not run"
    fell_back = sorted({name for name, ran in calls if not ran})
    assert not fell_back, f"fell back to PyTorch in {fell_back}"
    missing = set(kernels) - {name for name, _ in calls}
    assert not missing, f"the compiled {sorted(missing)} did not run"
    monkeypatch.setattr(_native, "enabled", False)
    calls.clear()
    reference = fn()
    assert not any(ran for _, ran in calls), "the PyTorch run used the kernel"
    return compiled, reference


def assert_same_stats(compiled, reference):
    assert torch.equal(compiled.top.nan_to_num(nan=7.0), reference.top.nan_to_num(nan=7.0))
    assert torch.equal(compiled.argmax, reference.argmax)
    torch.testing.assert_close(compiled.expsum, reference.expsum, rtol=2e-6, atol=0, equal_nan=True)


@pytest.mark.parametrize(
    "shape", [(1, 1, 1, 1), (2, 19, 37, 41), (3, 2, 1, 300), (1, 21, 16, 8), (2, 5, 0, 7), (0, 3, 4, 4)]
)
def test_stats_match_pytorch_on_ragged_shapes(monkeypatch, generator, shape):
    x = torch.randn(*shape, generator=generator) * 5
    compiled, reference = both(monkeypatch, lambda: channel_stats(x), "channel_stats")
    assert_same_stats(compiled, reference)
    assert compiled.argmax.dtype == torch.int64 and compiled.top.shape == (shape[0], *shape[2:])


def test_ties_extremes_and_nan(monkeypatch, generator):
    x = torch.randint(-2, 3, (2, 6, 20, 30), generator=generator).float()  # many exact ties
    x[0, :, 0, 0] = torch.tensor([-torch.inf, 5.0, 5.0, -torch.inf, 0.0, 1.0])
    x[0, :, 0, 1] = -torch.inf  # every class impossible: max -inf, exp-sum NaN, as torch
    x[0, :, 0, 2] = torch.tensor([1e30, -1e30, 3e38, 3e38, 0.0, -3e38])
    x[1, 3, 5, 5] = torch.nan
    x[1, 0, 6, 6] = torch.nan
    x[1, :, 7, 7] = torch.tensor([-100.0, -130.0, -200.0, -99.5, -1e4, -126.9])  # exp of deep negatives
    x[1, :, 8, 8] = torch.tensor([torch.inf, 0.0, torch.inf, 1.0, -torch.inf, 2.0])  # +inf: max inf, exp-sum NaN
    x[1, :, 9, 9] = torch.tensor([1.0, 0.0, torch.nan, torch.inf, -torch.inf, 2.0])  # NaN wins over inf
    compiled, reference = both(monkeypatch, lambda: channel_stats(x), "channel_stats")
    assert torch.equal(compiled.top.nan_to_num(nan=7.0), reference.top.nan_to_num(nan=7.0))
    assert torch.equal(compiled.argmax, reference.argmax)
    assert torch.equal(compiled.argmax, torch.where(x.isnan().any(1), 0, x.max(1).indices))
    torch.testing.assert_close(compiled.expsum, reference.expsum, rtol=2e-6, atol=0, equal_nan=True)
    assert compiled.argmax[0, 0, 0] == 1 and compiled.top[1, 5, 5].isnan() and compiled.expsum[1, 6, 6].isnan()


def test_exp_sum_is_accurate_against_float64(generator):
    x = torch.randn(2, 19, 33, 65, generator=generator) * 20
    stats = channel_stats(x)
    exact = (x.double() - x.double().amax(1, keepdim=True)).exp().sum(1)
    torch.testing.assert_close(stats.expsum.double(), exact, rtol=1e-6, atol=0)


def test_max_probability_of_a_mix_matches_the_mixed_logits(monkeypatch, generator):
    outside, inside = torch.randn(2, 2, 7, 23, 29, generator=generator).unbind(0)
    mask = torch.rand(2, 23, 29, generator=generator) < 0.4
    mask[0, 0, :4] = torch.tensor([True, True, False, False])
    inside[0, 1, 0, 0], outside[0, 2, 0, 1] = torch.inf, torch.nan  # taken: they show
    inside[0, 3, 0, 2], outside[0, 4, 0, 3] = torch.nan, -torch.inf  # not taken: they must not
    mixed = torch.where(mask.unsqueeze(1), inside, outside)
    compiled, reference = both(
        monkeypatch, lambda: max_probability(outside, inside=inside, mask=mask), "channel_stats"
    )
    torch.testing.assert_close(compiled, reference, rtol=2e-6, atol=0, equal_nan=True)
    monkeypatch.setattr(_native, "enabled", True)
    assert torch.equal(compiled.nan_to_num(nan=7.0), max_probability(mixed).nan_to_num(nan=7.0))


def test_pick_class_matches_gather(monkeypatch, generator):
    x = torch.randn(3, 11, 17, 19, generator=generator)
    target = torch.randint(0, 11, (3, 17, 19), generator=generator)
    compiled, reference = both(monkeypatch, lambda: pick_class(x, target), "pick_class")
    assert torch.equal(compiled, reference)
    assert torch.equal(compiled, x.gather(1, target.unsqueeze(1)).squeeze(1))


def test_pick_class_gives_nan_for_targets_outside_the_classes():
    x = torch.zeros(1, 3, 2, 2)
    target = torch.tensor([[[0, 3], [-1, 2]]])
    picked = _native.pick_class(x, target)
    assert picked is not None
    assert torch.equal(picked.isnan(), torch.tensor([[[False, True], [True, False]]]))


@pytest.mark.parametrize("size", [(50, 61), (3, 5)], ids=["many blocks", "fewer blocks than threads"])
def test_results_do_not_depend_on_the_thread_count(generator, size):
    x = torch.randn(2, 19, *size, generator=generator)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 3, 64):  # 64: more threads than blocks in the small map
            torch.set_num_threads(count)
            results.append(channel_stats(x))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert torch.equal(results[0].top, other.top) and torch.equal(results[0].argmax, other.argmax)
        assert torch.equal(results[0].expsum, other.expsum)


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x.double(),
        lambda x: x.contiguous(memory_format=torch.channels_last),
        lambda x: x[:, :, ::2],
        lambda x: torch._neg_view(x),  # lazily negated: the raw memory is not the values
    ],
    ids=["float64", "channels_last", "strided", "negative view"],
)
def test_other_layouts_fall_back_to_pytorch(generator, make):
    x = make(torch.randn(2, 5, 12, 10, generator=generator))
    assert _native.channel_stats(x, top=True, argmax=True, expsum=True) is None
    assert _native.pick_class(x, torch.zeros(2, *x.shape[2:], dtype=torch.long)) is None
    assert torch.equal(channel_stats(x).argmax, x.max(1).indices)


def test_a_mix_with_a_strided_mask(generator):
    x, y = torch.randn(2, 2, 3, 8, 8, generator=generator).unbind(0)
    mask = (torch.rand(2, 8, 16, generator=generator) < 0.5)[:, :, ::2]
    mixed = torch.where(mask.unsqueeze(1), y, x)
    assert torch.equal(max_probability(x, inside=y, mask=mask), max_probability(mixed))


def test_the_environment_switch_disables_the_kernel():
    code = "from ael.core import _native; print(_native.available()); print(_native.status())"
    env = {**os.environ, "AEL_NATIVE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["False", "PyTorch (the compiled kernel is disabled by AEL_NATIVE=0)"]
    assert _native.status() == "compiled kernel"


def test_an_install_without_the_kernel_falls_back(monkeypatch, generator):
    monkeypatch.setattr(_native, "_library", None)
    monkeypatch.setattr(_native, "_load_error", None)
    monkeypatch.setattr(_native, "_find_library", lambda: None)
    assert not _native.available()
    assert _native.status() == "PyTorch (compiled kernel unavailable: not built (no C compiler when ael was installed))"
    x = torch.randn(2, 4, 9, 9, generator=generator)
    assert _native.channel_stats(x, top=True, argmax=True, expsum=True) is None
    assert torch.equal(channel_stats(x).argmax, x.max(1).indices)


def test_a_broken_build_falls_back_and_says_why(monkeypatch, tmp_path):
    broken = tmp_path / "_native_lib.so"
    broken.write_bytes(b"not a shared library")
    monkeypatch.setattr(_native, "_library", None)
    monkeypatch.setattr(_native, "_load_error", None)
    monkeypatch.setattr(_native, "_find_library", lambda: broken)
    assert not _native.available()
    assert _native.status().startswith(f"PyTorch (compiled kernel unavailable: {broken}")


def test_the_maximum_can_be_left_out(generator):
    x = torch.randn(2, 7, 13, 17, generator=generator)
    full, lean = channel_stats(x), channel_stats(x, top=False)
    assert lean.top is None
    assert torch.equal(lean.argmax, full.argmax) and torch.equal(lean.expsum, full.expsum)
    assert torch.equal(channel_stats(x, top=False, expsum=False).argmax, full.argmax)


def test_a_stale_build_is_refused(monkeypatch):
    monkeypatch.setattr(_native, "_library", None)
    monkeypatch.setattr(_native, "_load_error", None)
    monkeypatch.setattr(_native, "ABI", _native.ABI + 1)  # as if the Python side were newer than the build
    assert not _native.available()
    assert "stale build" in _native.status() and "pip install -e ." in _native.status()


def test_the_status_names_the_compiled_kernel():
    assert _native.available() and _native.status() == "compiled kernel"


# --------------------------------------------------------------------------------------------
# picking one class per pixel: logit, cross-entropy, probability
# --------------------------------------------------------------------------------------------

#: Targets no map has: negative, >= C, the usual ignore label, and far outside any buffer.
_BAD_TARGETS = [-1, -7, 5, 6, 255, 2**31, -(2**31), 2**62, -(2**62)]


@pytest.mark.parametrize("mode", ["logit", "cross_entropy", "probability"])
def test_pick_modes_give_fill_at_invalid_targets_and_never_read_outside(generator, mode):
    c = 5
    x = torch.randn(2, c, 13, 11, generator=generator) * 3
    target = torch.randint(0, c, (2, 13, 11), generator=generator)
    target[0, 0, : len(_BAD_TARGETS)] = torch.tensor(_BAD_TARGETS)
    target[1, -1, -len(_BAD_TARGETS):] = torch.tensor(_BAD_TARGETS)  # the last pixels of the buffer
    mask = torch.rand(2, 13, 11, generator=generator) < 0.8
    lse = logsumexp(x)
    offset = None if mode == "logit" else lse
    picked = _native.pick_class(x, target, mode=mode, offset=offset, ignore_index=2, mask=mask, fill=-7.5)
    assert picked is not None and picked.dtype == torch.float32 and picked.shape == target.shape
    valid = (target >= 0) & (target < c) & (target != 2) & mask
    logit = x.gather(1, torch.where(valid, target, 0).unsqueeze(1)).squeeze(1)
    assert (picked[~valid] == -7.5).all() and (~valid).sum() > 2 * len(_BAD_TARGETS)
    if mode == "logit":
        assert torch.equal(picked[valid], logit[valid])
    elif mode == "cross_entropy":  # one float32 subtraction, as the PyTorch path
        assert torch.equal(picked[valid], (lse - logit)[valid])
    else:
        expected = (logit - lse).clamp_max(0.0).exp()
        torch.testing.assert_close(picked[valid], expected[valid], rtol=2e-6, atol=0)
    unmasked = _native.pick_class(x, target, mode=mode, offset=offset, ignore_index=2, fill=-7.5)
    assert torch.equal(unmasked[valid], picked[valid]) and (unmasked[~valid & mask] == -7.5).all()


@pytest.mark.parametrize("ignore_index", [255, 0, -1])
def test_class_probability_matches_pytorch_and_is_one_at_invalid_labels(monkeypatch, generator, ignore_index):
    c = 7
    x = torch.randn(2, c, 19, 23, generator=generator) * 4
    labels = torch.randint(-3, c + 3, (2, 19, 23), generator=generator)
    labels[0, 0, :4] = torch.tensor([255, 0, c, -(2**40)])
    labels[1, -1, -3:] = torch.tensor([2**40, 255, -1])
    lse = logsumexp(x)  # one offset for both paths
    compiled, reference = both(
        monkeypatch, lambda: class_probability(x, labels, lse, ignore_index=ignore_index), "pick_class"
    )
    valid = (labels >= 0) & (labels < c) & (labels != ignore_index)
    assert (compiled[~valid] == 1.0).all() and (reference[~valid] == 1.0).all()
    torch.testing.assert_close(compiled, reference, rtol=2e-6, atol=0)
    exact = x.double().softmax(1).gather(1, torch.where(valid, labels, 0).unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(compiled[valid].double(), exact[valid], rtol=1e-5, atol=0)
    if ignore_index == 0:
        assert (compiled[labels == 0] == 1.0).all()


def test_class_probability_caps_at_one_keeps_nan_and_flushes_only_below_float32_normals(monkeypatch):
    x = torch.tensor([[[[3.0, 0.0, 1.0, 0.0, 0.0, -200.0, 0.0]], [[1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]]]])
    labels = torch.tensor([[[0, 0, 1, 0, 0, 0, 9]]])
    # offset below the logit (an inconsistent caller), -inf, NaN, +inf, exactly the logit, deep, invalid
    offset = torch.tensor([[[2.0, -torch.inf, torch.nan, torch.inf, 0.0, -100.0, 0.0]]])
    compiled, reference = both(monkeypatch, lambda: class_probability(x, labels, offset, ignore_index=255))
    for result in (compiled, reference):
        assert result[0, 0, :2].tolist() == [1.0, 1.0] and result[0, 0, 2].isnan()
        assert result[0, 0, 3:5].tolist() == [0.0, 1.0] and result[0, 0, 6] == 1.0
    # exp(-100) is a float32 subnormal: the kernel flushes values below 2^-126 to 0
    assert 0.0 <= compiled[0, 0, 5] <= reference[0, 0, 5] < 2.0**-126
    torch.testing.assert_close(compiled, reference, rtol=2e-6, atol=2.0**-126, equal_nan=True)


@pytest.mark.parametrize("given_logsumexp", [True, False], ids=["given logsumexp", "own logsumexp"])
def test_gt_class_probability_matches_pytorch_for_any_label_layout(monkeypatch, generator, given_logsumexp):
    c = 6
    x = torch.randn(3, c, 15, 22, generator=generator) * 3
    labels = torch.randint(-1, c + 1, (3, 15, 22), generator=generator)
    labels[:, ::4, ::3] = 255
    lse = logsumexp(x) if given_logsumexp else None
    needed = ("pick_class",) if given_logsumexp else ("channel_stats", "pick_class")
    compiled, reference = both(monkeypatch, lambda: gt_class_probability(x, labels, logsumexp=lse), *needed)
    torch.testing.assert_close(compiled, reference, rtol=2e-6, atol=0)
    valid = (labels >= 0) & (labels < c)
    assert (compiled[~valid] == 1.0).all() and (compiled <= 1.0).all()
    # int32 and strided labels are not the kernel's: PyTorch computes the same probabilities
    wide = torch.randint(-1, c + 1, (3, 15, 44), generator=generator)
    for other in (labels.int(), wide[:, :, ::2]):
        assert _native.pick_class(x, other, mode="probability", offset=logsumexp(x), fill=1.0) is None
        torch.testing.assert_close(
            gt_class_probability(x, other, logsumexp=lse),
            gt_class_probability(x, other.long().contiguous(), logsumexp=lse), rtol=2e-6, atol=0,
        )


def test_pixel_cross_entropy_is_exact_against_pytorch_and_close_to_f_cross_entropy(monkeypatch, generator):
    c = 6
    logits = torch.randn(2, c, 17, 21, generator=generator) * 3
    target = torch.randint(0, c, (2, 17, 21), generator=generator)
    valid = torch.rand(2, 17, 21, generator=generator) < 0.7
    upstream = torch.rand(2, 17, 21, generator=generator)
    lse = logsumexp(logits)

    def run(given):
        x = logits.clone().requires_grad_(True)
        ce = PixelCrossEntropy.apply(x, target, valid, lse if given else None)
        (ce * upstream).sum().backward()
        return ce.detach(), x.grad

    # with the same log-sum-exp both paths compute the same float32 operations: bit-exact
    (ce, grad), (ce_ref, grad_ref) = both(monkeypatch, lambda: run(True), "pick_class")
    assert torch.equal(ce, ce_ref) and torch.equal(grad, grad_ref)
    assert (ce[~valid] == 0.0).all()
    (own, own_grad), (own_ref, own_grad_ref) = both(monkeypatch, lambda: run(False), "channel_stats", "pick_class")
    torch.testing.assert_close(own, own_ref, rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(own_grad, own_grad_ref, rtol=1e-5, atol=1e-7)
    x = logits.clone().requires_grad_(True)
    expected = F.cross_entropy(x, torch.where(valid, target, -100), reduction="none")
    (expected * upstream).sum().backward()
    torch.testing.assert_close(ce, expected.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, x.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("normalize", ["valid", "all"])
def test_unsup_loss_value_and_gradient_match_pytorch_and_f_cross_entropy(monkeypatch, generator, normalize):
    c = 6
    logits = torch.randn(2, c, 17, 21, generator=generator) * 3
    labels = torch.randint(-2, c + 2, (2, 17, 21), generator=generator)
    labels[:, ::5] = 255
    confidence = torch.rand(2, 17, 21, generator=generator)
    sample = (torch.rand(2, 17, 21, generator=generator) < 0.7).float()
    lse = logsumexp(logits)

    def run(given):
        x = logits.clone().requires_grad_(True)
        loss = unsup_loss(x, labels, confidence, conf_thresh=0.2, sample_mask=sample, normalize=normalize,
                          logsumexp=lse if given else None)
        loss.backward()
        return loss.detach(), x.grad

    x = logits.clone().requires_grad_(True)
    valid = (labels >= 0) & (labels < c) & (labels != 255) & (confidence >= 0.2)
    ce = F.cross_entropy(x, torch.where(valid, labels, -100), reduction="none")
    weight = confidence**2 * sample
    expected = (weight * ce).sum() / (weight * valid if normalize == "valid" else weight).sum()
    expected.backward()
    for given in (True, False):
        (loss, grad), (loss_ref, grad_ref) = both(monkeypatch, lambda given=given: run(given))
        torch.testing.assert_close(loss, loss_ref, rtol=2e-6, atol=0)
        torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(loss, expected.detach(), rtol=1e-5, atol=0)
        torch.testing.assert_close(grad, x.grad, rtol=1e-4, atol=1e-8)


# --------------------------------------------------------------------------------------------
# per-class histograms: the bank statistics and the CutMix bank
# --------------------------------------------------------------------------------------------


def _histogram_reference(labels, values, num_classes, ignore_index):
    valid = (labels >= 0) & (labels < num_classes) & (labels != ignore_index)
    counts = torch.bincount(labels[valid], minlength=num_classes)
    sums = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels[valid], values[valid].double())
    return counts, sums


def _strided(tensor):
    """The same values, every other element of a wider buffer: not contiguous."""
    return tensor.repeat_interleave(2, dim=-1)[..., ::2]


_HISTOGRAM_SHAPES = [(2, 37, 41), (3, 1, 1), (1, 1, 300), (1, 300, 1), (0, 5, 5), (2, 0, 7), (2, 7, 0)]


@pytest.mark.parametrize("ignore_index", [255, 0])
@pytest.mark.parametrize("shape", _HISTOGRAM_SHAPES)
def test_confidence_stats_from_gt_match_pytorch_and_float64(monkeypatch, generator, shape, ignore_index):
    c = 6
    labels = torch.randint(-2, c + 2, shape, generator=generator)
    labels.view(-1)[::17] = 255
    prob = (-torch.rand(shape, generator=generator) * 20).exp()  # arbitrary float32 values

    def run():
        return class_confidence_stats_from_gt(prob, labels, num_classes=c, ignore_index=ignore_index)

    (sums, counts), (sums_ref, counts_ref) = both(monkeypatch, run, "class_histogram")
    exact_counts, exact_sums = _histogram_reference(labels, prob, c, ignore_index)
    assert counts.dtype == torch.int64 and sums.dtype == torch.float32 and sums.shape == (c,)
    assert torch.equal(counts, exact_counts) and torch.equal(counts_ref, exact_counts)
    torch.testing.assert_close(sums.double(), exact_sums, rtol=1e-7, atol=0)  # float64 sums, rounded once
    torch.testing.assert_close(sums_ref.double(), exact_sums, rtol=1e-5, atol=0)


def test_class_histogram_counts_and_sums_each_image(generator):
    labels = torch.randint(-3, 8, (3, 20, 30), generator=generator)
    values = torch.rand(3, 20, 30, generator=generator)
    counts, sums = _native.class_histogram(labels, 5, ignore_index=2)
    assert sums is None and counts.shape == (3, 5) and counts.dtype == torch.int64
    counts, sums = _native.class_histogram(labels, 5, ignore_index=2, values=values)
    assert sums.dtype == torch.float64
    for b in range(3):
        exact_counts, exact_sums = _histogram_reference(labels[b], values[b], 5, 2)
        assert torch.equal(counts[b], exact_counts) and counts[b, 2] == 0
        assert torch.equal(sums[b], exact_sums)  # torch.rand values are multiples of 2^-24: exact sums


@pytest.mark.parametrize("shape", [(4, 23, 29), (1, 1, 1), (2, 1, 300), (0, 8, 8), (3, 0, 5), (3, 5, 0)])
def test_cutmix_bank_bits_match_pytorch(monkeypatch, generator, shape):
    c = 5
    # skewed: some classes cover a few pixels, some much of the map; -1, 5 and 255 are no class
    labels = (torch.rand(shape, generator=generator) ** 3 * (c + 2)).long() - 1
    labels.view(-1)[::13] = 255
    bank = torch.rand(c, 9, generator=generator) < 0.5
    indices = torch.randperm(9, generator=generator)[: shape[0]]
    thresholds = (0.0, 0.01, 0.1, 0.3, 1.0)

    def run():
        bits = [cutmix_bank_bits(labels, num_classes=c, area_thresh2=t, ignore_index=255) for t in thresholds]
        return bits, update_cutmix_bank(bank, indices, labels, area_thresh2=0.05)

    (bits, updated), (bits_ref, updated_ref) = both(monkeypatch, run, "class_histogram")
    assert torch.equal(updated, updated_ref)
    n, h, w = shape
    for t, got, expected in zip(thresholds, bits, bits_ref):
        assert got.shape == (c, n) and torch.equal(got, expected)
        for i in range(n):
            counts = torch.bincount(labels[i][(labels[i] >= 0) & (labels[i] < c)], minlength=c)
            assert got[:, i].tolist() == ((counts > 0) & (counts >= t * h * w)).tolist()


@pytest.mark.parametrize(
    "make",
    [
        lambda labels, values: (labels.int(), values),
        lambda labels, values: (labels.to(torch.uint8), values),
        lambda labels, values: (labels.transpose(1, 2), values.transpose(1, 2)),
        lambda labels, values: (_strided(labels), values),
        lambda labels, values: (labels, _strided(values)),
        lambda labels, values: (labels, values.double()),
    ],
    ids=["int32 labels", "uint8 labels", "transposed", "strided labels", "strided values", "float64 values"],
)
def test_other_label_layouts_fall_back_with_the_same_histograms(generator, make):
    base = torch.randint(0, 7, (2, 12, 20), generator=generator)
    base[:, 0] = 255
    labels, values = make(base, torch.rand(2, 12, 20, generator=generator))
    assert _native.class_histogram(labels, 5, ignore_index=255, values=values) is None
    dense, dense_values = labels.long().contiguous(), values.float().contiguous()
    assert _native.class_histogram(dense, 5, ignore_index=255, values=dense_values) is not None
    sums, counts = class_confidence_stats_from_gt(values, labels, num_classes=5, ignore_index=255)
    dense_sums, dense_counts = class_confidence_stats_from_gt(dense_values, dense, num_classes=5, ignore_index=255)
    assert torch.equal(counts, dense_counts)
    torch.testing.assert_close(sums, dense_sums, rtol=1e-6, atol=0)
    bits = cutmix_bank_bits(labels, num_classes=5, area_thresh2=0.1, ignore_index=255)
    assert torch.equal(bits, cutmix_bank_bits(dense, num_classes=5, area_thresh2=0.1, ignore_index=255))


def test_cutmix_bank_bits_of_a_transposed_map(generator):
    pred = torch.randint(0, 7, (2, 20, 12), generator=generator).transpose(1, 2)
    bits = cutmix_bank_bits(pred, num_classes=5, area_thresh2=0.1)
    assert torch.equal(bits, cutmix_bank_bits(pred.contiguous(), num_classes=5, area_thresh2=0.1))


# --------------------------------------------------------------------------------------------
# equalization sampling
# --------------------------------------------------------------------------------------------


def test_equalization_mask_is_bit_identical_to_pytorch(monkeypatch, generator):
    ratio = torch.tensor([0.0, 1.0, 0.5, 0.25, 1e-7, 1.0 - 2**-24])
    c = ratio.shape[0]
    pred = torch.randint(-3, c + 3, (2, 37, 41), generator=generator)  # outside [0, C): clamped
    pred[0, 0, :4] = torch.tensor([-(2**62), 2**62, -1, c])

    def run():
        return [equalization_mask(pred, ratio, generator=torch.Generator().manual_seed(s)) for s in range(4)]

    compiled, reference = both(monkeypatch, run, "keep_mask")
    for got, expected in zip(compiled, reference):
        assert got.dtype == torch.float32 and torch.equal(got, expected)
    clamped = pred.clamp(0, c - 1)
    for mask in compiled:
        assert not mask[clamped == 0].any() and mask[clamped == 1].all()  # rates 0 and 1
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
    words = random_words(2 * 37 * 41, generator=torch.Generator().manual_seed(0))
    u = uniforms_from_words(words, 2 * 37 * 41).view(2, 37, 41)
    assert torch.equal(compiled[0], (u > 1.0 - ratio[clamped]).float())


def words_of(uniform):
    """The random words from which ``uniforms_from_words`` gives exactly ``uniform`` (multiples of 2^-24)."""
    fields = (uniform.flatten().double() * 2**24).long()
    assert torch.equal(fields.double() / 2**24, uniform.flatten().double())
    fields = torch.cat([fields, fields.new_zeros(fields.numel() % 2)])
    words = fields[0::2] | (fields[1::2] << 24)
    assert torch.equal(uniforms_from_words(words, uniform.numel()), uniform.flatten())
    return words


def test_keep_mask_keeps_only_draws_strictly_above_one_minus_the_rate():
    rates = torch.tensor([0.0, 1.0, 0.5, 0.25, 2.0**-24, 1.0])  # 1 - 2^-24: the largest uniform draw
    pred = torch.tensor([[[0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, -5, 9]]])
    uniform = torch.tensor([[[0.0, 1.0 - 2**-24, 0.0, 2**-24, 0.5, 0.5 + 2**-24, 0.5 - 2**-24, 0.75,
                              0.75 + 2**-24, 1.0 - 2**-24, 1.0 - 2**-23, 0.99, 0.5]]])
    kept = _native.keep_mask(pred, rates, words_of(uniform))
    assert kept.tolist() == [[[0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]]]
    assert torch.equal(kept, (uniform > 1.0 - rates[pred.clamp(0, 5)]).float())


def test_equalization_mask_of_other_dtypes_and_shared_fields_comes_from_pytorch(monkeypatch, generator):
    ratio = torch.rand(5, generator=generator)
    pred = torch.randint(0, 5, (2, 11, 13), generator=generator)

    def mask(p, r=ratio, **kwargs):
        return equalization_mask(p, r, generator=torch.Generator().manual_seed(3), **kwargs)

    for other in (pred.int(), _strided(pred)):
        words = random_words(other.numel())
        assert _native.keep_mask(other, ratio, words) is None
        assert torch.equal(mask(other), mask(pred))
    assert torch.equal(mask(pred, ratio.double()), mask(pred))  # rates are taken as float32
    compiled = mask(pred, shared_field=True)

    def refuse(*args, **kwargs):
        raise AssertionError("shared fields must not go through the kernel")

    monkeypatch.setattr(_native, "keep_mask", refuse)
    assert torch.equal(mask(pred, shared_field=True), compiled)
    monkeypatch.setattr(_native, "enabled", False)
    assert torch.equal(mask(pred, shared_field=True), compiled)


# --------------------------------------------------------------------------------------------
# the box of a random large 8-connected component
# --------------------------------------------------------------------------------------------


def _draws(seed, count):
    """The uniforms :func:`component_boxes` draws from a generator seeded with ``seed``."""
    return torch.rand(count, generator=torch.Generator().manual_seed(seed))


def _large_components(mask, max_small_area):
    """Boxes of the 8-connected components of ``mask`` larger than ``max_small_area``, in raster
    order of their first pixel, by scipy."""
    if mask.size == 0:
        return []
    ids, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    found = []
    for i, where in enumerate(ndimage.find_objects(ids), start=1):
        area = int((ids[where] == i).sum())
        if area > max_small_area:
            first = int(np.flatnonzero(ids.ravel() == i)[0])
            found.append((first, (where[0].start, where[1].start, where[0].stop, where[1].stop)))
    return [box for _, box in sorted(found)]


def _expected_box(pred, cls, area_thresh, u):
    """``(box, found)`` of :func:`component_boxes` for one map and its uniform ``u``."""
    h, w = pred.shape
    large = _large_components((pred == cls).numpy(), math.floor(area_thresh * h * w))
    if not large:
        return (0, 0, 0, 0), False
    pick = int(np.floor(np.float32(u) * np.float32(len(large))))  # float32, as both implementations
    return large[min(pick, len(large) - 1)], True


def check_component_boxes(monkeypatch, pred, classes, *, thresholds=(0.0, 0.004, 0.05), seeds=range(6)):
    """Both implementations agree exactly, and with scipy, for every threshold and seed."""

    def run():
        return [component_boxes(pred, classes, area_thresh=t, generator=torch.Generator().manual_seed(s))
                for t in thresholds for s in seeds]

    compiled, reference = both(monkeypatch, run, "component_boxes")
    runs = [(t, s) for t in thresholds for s in seeds]
    for (t, seed), (boxes, found), (boxes_ref, found_ref) in zip(runs, compiled, reference):
        assert boxes.dtype == torch.int64 and found.dtype == torch.bool and boxes.shape == (pred.shape[0], 4)
        assert torch.equal(boxes, boxes_ref) and torch.equal(found, found_ref), (t, seed)
        for b, u in enumerate(_draws(seed, pred.shape[0]).tolist()):
            box, ok = _expected_box(pred[b], int(classes[b]), t, u)
            assert (tuple(boxes[b].tolist()), bool(found[b])) == (box, ok), (t, seed, b)
    return compiled


def test_component_boxes_match_pytorch_and_scipy_on_blobby_maps(monkeypatch, generator):
    low = torch.randn(6, 4, 5, 6, generator=generator)
    pred = F.interpolate(low, size=(40, 47), mode="bilinear", align_corners=False).argmax(1)
    classes = torch.randint(0, 4, (6,), generator=generator)
    results = check_component_boxes(monkeypatch, pred, classes, seeds=range(10))
    assert any(found.all() for _, found in results)


def _spiral(size):
    """A one-pixel-wide square spiral of 1 on 0, walls one pixel apart: one long 8-connected component."""
    grid = torch.zeros(size, size, dtype=torch.long)

    def free(y, x):
        return not (0 <= y < size and 0 <= x < size) or grid[y, x] == 0

    y, x, dy, dx, turns = 0, 0, 0, 1, 0
    grid[0, 0] = 1
    while turns < 2:  # go on while the next two pixels are free, else turn clockwise
        if 0 <= y + dy < size and 0 <= x + dx < size and free(y + dy, x + dx) and free(y + 2 * dy, x + 2 * dx):
            y, x, turns = y + dy, x + dx, 0
            grid[y, x] = 1
        else:
            dy, dx, turns = dx, -dy, turns + 1
    return grid


def _adversarial_maps():
    h, w = 24, 31
    maps = []
    spiral = F.pad(_spiral(21), (5, 5, 1, 2))
    spiral[18:, :3] = 1  # and a block on the border, after the spiral in raster order
    maps.append(spiral)
    chains = torch.zeros(h, w, dtype=torch.long)
    for i in range(h):
        for start in range(-h, w, 4):  # one-pixel diagonal chains 3 apart: separate components
            if 0 <= start + i < w:
                chains[i, start + i] = 1
        chains[i, w - 1 - i] = 2  # an anti-diagonal: each pixel joined to the previous row up-right
    maps.append(chains)
    maps.append((torch.arange(h).view(h, 1) + torch.arange(w)) % 2)  # checkerboard: one component each
    maps.append(torch.ones(h, w, dtype=torch.long))  # the whole image
    three = torch.zeros(h, w, dtype=torch.long)
    three[0:5, 0:6] = 1  # corner
    three[h - 6:, w - 4:] = 1  # opposite corner
    three[9:14, 10:20] = 1  # middle
    three[0, 20:25] = 1  # small, on the top border
    maps.append(three)
    comb = torch.zeros(h, w, dtype=torch.long)  # teeth opened apart, joined late at the bottom
    comb[2:20, 1:w:3] = 1
    comb[20, :] = 1
    comb[22:, ::5] = 1
    maps.append(comb)
    vee = torch.zeros(h, w, dtype=torch.long)  # a V whose right arm starts first in raster order
    for i in range(12):
        vee[i, 14 + i // 2] = vee[11 - i, 2 + i] = 1
    vee[0, 20:30] = 1
    maps.append(vee)
    maps.append(torch.full((h, w), 7))  # class absent
    pred = torch.stack(maps)
    classes = torch.tensor([1, 1, 1, 1, 1, 1, 1, 1])
    return pred, classes


def test_component_boxes_match_pytorch_and_scipy_on_adversarial_maps(monkeypatch):
    pred, classes = _adversarial_maps()
    check_component_boxes(monkeypatch, pred, classes, thresholds=(0.0, 0.001, 0.004, 0.05, 0.2, 1.0))
    for cls in (0, 2, 7, -1):  # the other classes of the same maps, and one that no map has
        check_component_boxes(monkeypatch, pred, torch.full((pred.shape[0],), cls), seeds=range(3))


def test_component_boxes_of_the_whole_image_and_of_one_pixel_wide_maps(monkeypatch):
    whole = torch.full((3, 9, 14), 4)
    results = check_component_boxes(monkeypatch, whole, torch.tensor([4, 4, 4]), seeds=range(2))
    assert all(boxes.tolist() == [[0, 0, 9, 14]] * 3 and found.all() for boxes, found in results)
    row = torch.tensor([[[1, 1, 0, 1, 1, 1, 0, 0, 1, 255, 1, 1, 1, 1]]])
    check_component_boxes(monkeypatch, row, torch.tensor([1]), thresholds=(0.0, 0.1, 0.2, 0.3), seeds=range(8))
    column = row.transpose(1, 2).contiguous()
    check_component_boxes(monkeypatch, column, torch.tensor([1]), thresholds=(0.0, 0.1, 0.2), seeds=range(8))
    single = torch.tensor([[[3]]])
    results = check_component_boxes(monkeypatch, single, torch.tensor([3]), thresholds=(0.0, 1.0))
    assert results[0][0].tolist() == [[0, 0, 1, 1]] and not results[-1][1].any()


@pytest.mark.parametrize("shape", [(2, 0, 5), (2, 5, 0), (0, 4, 4)])
def test_component_boxes_of_empty_maps_are_not_found(shape):
    pred = torch.zeros(shape, dtype=torch.long)
    boxes, found = component_boxes(pred, torch.zeros(shape[0], dtype=torch.long), area_thresh=0.0)
    assert boxes.shape == (shape[0], 4) and torch.equal(boxes, torch.zeros(shape[0], 4, dtype=torch.long))
    assert found.shape == (shape[0],) and not found.any()


@pytest.mark.parametrize("shape", [(2, 0, 5), (2, 5, 0)])
def test_component_boxes_of_maps_without_pixels_match_pytorch(monkeypatch, shape):
    pred = torch.zeros(shape, dtype=torch.long)
    check_component_boxes(monkeypatch, pred, torch.zeros(shape[0], dtype=torch.long), seeds=range(2))


def _three_components():
    """Three large components of class 1 whose raster order (by first pixel) is not their order
    by box corner, plus small ones; first pixels (0, 20), (2, 0) and (10, 25)."""
    pred = torch.zeros(20, 32, dtype=torch.long)
    for i in range(9):
        pred[i, 20 - i] = 1  # A: a diagonal chain, 9 px, box (0, 12, 9, 21)
    pred[2:6, 0:5] = 1  # B: 20 px, box (2, 0, 6, 5)
    pred[10:15, 25] = pred[14, 25:31] = pred[10:15, 30] = 1  # C: a U, 14 px, box (10, 25, 15, 31)
    pred[18, 3] = pred[0, 30] = 1  # small
    return pred, [(0, 12, 9, 21), (2, 0, 6, 5), (10, 25, 15, 31)]


def test_the_uniform_picks_the_large_components_in_raster_order():
    pred, expected = _three_components()
    assert _large_components((pred == 1).numpy(), 1) == expected
    draws = torch.tensor([0.0, 0.33, 0.3333333, 0.34, 0.66, 0.67, 0.999, 1.0 - 2**-24, 1.0])
    maps = pred.expand(len(draws), -1, -1).contiguous()
    classes = torch.ones(len(draws), dtype=torch.long)
    boxes, found = _native.component_boxes(maps, classes, draws, 1)
    assert found.all()
    picks = [0, 0, 0, 1, 1, 2, 2, 2, 2]  # floor(u * 3) in float32; u = 1 is held to the last
    assert [tuple(box) for box in boxes.tolist()] == [expected[k] for k in picks]
    boxes, found = _native.component_boxes(maps, classes, draws, 9)  # only B (20 px) and C (14 px)
    picks = [0, 0, 0, 0, 1, 1, 1, 1, 1]  # floor(u * 2)
    assert found.all() and [tuple(box) for box in boxes.tolist()] == [expected[1 + k] for k in picks]
    _, found = _native.component_boxes(maps, classes, draws, 20)
    assert not found.any()


def test_every_large_component_is_picked_about_equally_often(monkeypatch, generator):
    pred, expected = _three_components()
    maps = pred.expand(600, -1, -1).contiguous()
    classes = torch.ones(600, dtype=torch.long)
    seed = int(torch.randint(0, 2**31, (1,), generator=generator))

    def run():
        return component_boxes(maps, classes, area_thresh=1.5 / pred.numel(),
                               generator=torch.Generator().manual_seed(seed))

    (boxes, found), (boxes_ref, found_ref) = both(monkeypatch, run, "component_boxes")
    assert torch.equal(boxes, boxes_ref) and torch.equal(found, found_ref) and found.all()
    picked = [tuple(box) for box in boxes.tolist()]
    shares = [picked.count(box) / 600 for box in expected]
    assert sum(shares) == 1.0 and all(0.20 <= share <= 0.47 for share in shares), shares


def test_component_boxes_fall_back_for_other_dtypes_and_layouts(generator):
    low = torch.randn(3, 3, 4, 4, generator=generator)
    pred = F.interpolate(low, size=(20, 26), mode="bilinear", align_corners=False).argmax(1)
    classes = torch.tensor([0, 1, 2])
    expected = component_boxes(pred, classes, area_thresh=0.01, generator=torch.Generator().manual_seed(5))
    for other in (pred.int(), _strided(pred)):
        assert _native.component_boxes(other, classes, _draws(5, 3), 5) is None
        got = component_boxes(other, classes, area_thresh=0.01, generator=torch.Generator().manual_seed(5))
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert _native.component_boxes(pred, classes.int(), _draws(5, 3), 5) is None


# --------------------------------------------------------------------------------------------
# threads: the thread count and the OpenMP team never change a result
# --------------------------------------------------------------------------------------------


@pytest.fixture
def restore_threads():
    count = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(count)
        _native.use_openmp(True)


def test_the_kernels_run_on_the_openmp_team_or_on_posix_threads(restore_threads):
    assert _native.use_openmp(False) is False and _native.threads_kind == "posix"
    assert _native.use_openmp(True) is True and _native.threads_kind == "openmp"  # Linux, OpenMP PyTorch


def _every_kernel(generator):
    """A closure running every kernel on fixed inputs (several blocks per image and ragged ends)."""
    c = 7
    x = torch.randn(2, c, 50, 61, generator=generator) * 4
    target = torch.randint(-1, c + 1, (2, 50, 61), generator=generator)
    mask = torch.rand(2, 50, 61, generator=generator) < 0.8
    values = (-torch.rand(2, 50, 61, generator=generator) * 30).exp()  # sums that round: order matters
    rates = torch.rand(c, generator=generator)
    uniform = torch.rand(2, 50, 61, generator=generator)
    low = torch.randn(5, 3, 6, 6, generator=generator)
    maps = F.interpolate(low, size=(45, 52), mode="bilinear", align_corners=False).argmax(1)
    classes = torch.randint(0, 3, (5,), generator=generator)
    picks = torch.rand(5, generator=generator)

    def run():
        lse = channel_stats(x, argmax=False).logsumexp()
        out = [*channel_stats(x), lse]
        out.append(_native.pick_class(x, target, ignore_index=3, mask=mask, fill=-1.0))
        for mode in ("cross_entropy", "probability"):
            out.append(_native.pick_class(x, target, mode=mode, offset=lse, ignore_index=3, mask=mask, fill=0.5))
        out.extend(_native.class_histogram(target, c, ignore_index=3, values=values))
        out.append(_native.class_histogram(target[:, :3, :5].contiguous(), c, ignore_index=3, values=None)[0])
        out.append(_native.keep_mask(target, rates, words_of(uniform)))
        out.extend(_native.component_boxes(maps, classes, picks, 20))
        assert all(t is not None for t in out)
        return out

    return run


def test_results_do_not_depend_on_threads_or_their_kind(restore_threads, generator):
    run = _every_kernel(generator)
    results = {}
    for openmp in (True, False):
        assert _native.use_openmp(openmp) is openmp
        for count in (1, 3, 8):
            torch.set_num_threads(count)
            results[openmp, count] = run()
    first = results[True, 1]
    for key, other in results.items():
        for index, (a, b) in enumerate(zip(first, other)):
            assert a.dtype == b.dtype and torch.equal(a, b), (key, index)

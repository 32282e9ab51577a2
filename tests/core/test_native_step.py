"""The compiled kernels behind the loss and Copy-Paste of a step, against the PyTorch fallback.

``unsup_loss`` (one compiled pass for its per-pixel terms and sums, a custom backward) must give
the fallback's value and gradient, and F.cross_entropy's; ``adaptive_copy_paste`` must give the
fallback's result bit for bit. Skipped where the kernel is not built, except in CI
(AEL_REQUIRE_NATIVE=1).
"""

import os

import pytest
import torch
import torch.nn.functional as F

from ael.core import _native, adaptive_copy_paste
from ael.core.losses import unsup_loss

if not _native.available():
    if os.environ.get("AEL_REQUIRE_NATIVE") == "1":
        raise RuntimeError(f"AEL_REQUIRE_NATIVE=1 but {_native.status()}")
    pytest.skip(f"compiled kernel not available: {_native.status()}", allow_module_level=True)


def compiled_then_fallback(monkeypatch, name, fn):
    """``fn()`` with the kernel (asserting that ``_native.<name>`` ran), then with PyTorch."""
    ran = []
    original = getattr(_native, name)

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        ran.append(result is not None)
        return result

    monkeypatch.setattr(_native, name, spy)
    monkeypatch.setattr(_native, "enabled", True)
    compiled = fn()
    assert ran and all(ran), f"the compiled {name} did not run"
    monkeypatch.setattr(_native, "enabled", False)
    return compiled, fn()


def loss_inputs(generator, b=2, c=5, h=13, w=17):
    logits = torch.randn(b, c, h, w, generator=generator) * 3
    labels = torch.randint(-2, c + 2, (b, h, w), generator=generator)
    labels[0, 0, :4] = 255
    confidence = torch.rand(b, h, w, generator=generator)
    sample = (torch.rand(b, h, w, generator=generator) > 0.3).float()
    return logits, labels, confidence, sample


def reference_loss(logits, labels, confidence, sample, *, gamma, reweight, conf_thresh, normalize, c):
    valid = (labels >= 0) & (labels < c) & (labels != 255) & (confidence >= conf_thresh)
    ce = F.cross_entropy(logits, torch.where(valid, labels, 0), reduction="none") * valid
    weight = (confidence**gamma if reweight else torch.ones_like(confidence)) * sample
    denominator = (weight * valid).sum() if normalize == "valid" else weight.sum()
    return (weight * ce).sum() / denominator


@pytest.mark.parametrize("normalize", ["valid", "all"])
@pytest.mark.parametrize(
    "options",
    [{"gamma": 2.0}, {"gamma": 1.5}, {"gamma": 0.0}, {"reweight": False}, {"conf_thresh": 0.4}, {"sampled": False}],
)
def test_unsup_loss_value_and_gradient_match(monkeypatch, generator, normalize, options):
    logits, labels, confidence, sample = loss_inputs(generator)
    options = dict(options)
    if not options.pop("sampled", True):
        sample_mask = None
        sample = torch.ones_like(sample)
    else:
        sample_mask = sample
    kwargs = {"gamma": 2.0, "reweight": True, "conf_thresh": 0.0, **options}

    def run():
        x = logits.clone().requires_grad_()
        loss = unsup_loss(x, labels, confidence, sample_mask=sample_mask, normalize=normalize, **kwargs)
        loss.backward()
        return loss.detach(), x.grad

    (loss_c, grad_c), (loss_f, grad_f) = compiled_then_fallback(monkeypatch, "pseudo_label_loss", run)
    x = logits.clone().requires_grad_()
    reference = reference_loss(x, labels, confidence, sample, normalize=normalize, c=5, **kwargs)
    reference.backward()
    torch.testing.assert_close(loss_c, loss_f, rtol=1e-6, atol=0)
    torch.testing.assert_close(loss_c, reference.detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close(grad_c, grad_f, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(grad_c, x.grad, rtol=1e-5, atol=1e-8)


def test_unsup_loss_with_nothing_valid_is_zero_with_a_zero_gradient(monkeypatch, generator):
    logits, labels, confidence, sample = loss_inputs(generator)
    labels = torch.full_like(labels, 255)

    def run():
        x = logits.clone().requires_grad_()
        loss = unsup_loss(x, labels, confidence, sample_mask=sample)
        loss.backward()
        return loss.detach(), x.grad

    (loss_c, grad_c), (loss_f, grad_f) = compiled_then_fallback(monkeypatch, "pseudo_label_loss", run)
    assert loss_c == 0 and loss_f == 0
    assert torch.equal(grad_c, torch.zeros_like(grad_c)) and torch.equal(grad_f, grad_c)


def test_a_nan_logit_makes_the_loss_nan_on_both_paths(monkeypatch, generator):
    logits, labels, confidence, _ = loss_inputs(generator)
    labels = labels.clamp(0, 4)
    logits[1, :, 3, 3] = torch.nan
    compiled, fallback = compiled_then_fallback(monkeypatch, "pseudo_label_loss",
                                                lambda: unsup_loss(logits, labels, confidence))
    assert compiled.isnan() and fallback.isnan()


def test_the_loss_does_not_depend_on_the_thread_count(generator):
    logits, labels, confidence, sample = loss_inputs(generator, h=129, w=131)
    threads = torch.get_num_threads()
    try:
        losses = []
        for count in (1, 3):
            torch.set_num_threads(count)
            losses.append(unsup_loss(logits, labels, confidence, sample_mask=sample))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(losses[0], losses[1])


def test_other_inputs_fall_back_to_pytorch(generator):
    logits, labels, confidence, sample = loss_inputs(generator)
    assert _native.pseudo_label_loss(logits, logits[:, 0].contiguous(), labels.int(), confidence, sample,
                                      ignore_index=255, conf_thresh=0.0, gamma=2.0) is None
    expected = unsup_loss(logits, labels, confidence, sample_mask=sample)
    torch.testing.assert_close(unsup_loss(logits.double(), labels, confidence, sample_mask=sample).float(),
                               expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(unsup_loss(logits, labels.int(), confidence, sample_mask=sample), expected,
                               rtol=1e-6, atol=0)


def paste_inputs(generator, b=3, s=4, c=6, h=11, w=9):
    images = torch.rand(b, 3, h, w, generator=generator)
    labels = torch.randint(0, c, (b, h, w), generator=generator)
    source_images = torch.rand(s, 3, h, w, generator=generator)
    source_labels = torch.randint(-1, c + 1, (s, h, w), generator=generator)
    source_labels[:, 0] = 255
    probs = torch.rand(c, generator=generator)
    return images, labels, source_images, source_labels, probs / probs.sum()


@pytest.mark.parametrize("seed", range(6))
def test_copy_paste_matches_pytorch_bit_for_bit(monkeypatch, seed):
    images, labels, source_images, source_labels, probs = paste_inputs(torch.Generator().manual_seed(100 + seed))

    def run():
        return adaptive_copy_paste(
            images, labels, probs, source_images=source_images, source_labels=source_labels,
            source_ids=torch.arange(4), target_ids=torch.tensor([0, 2, 9]), num_categories=2, prob=0.7,
            generator=torch.Generator().manual_seed(seed),
        )

    compiled, fallback = compiled_then_fallback(monkeypatch, "copy_paste", run)
    for field in compiled._fields:
        assert torch.equal(getattr(compiled, field), getattr(fallback, field)), field


def test_copy_paste_pastes_exactly_the_chosen_valid_source_pixels(generator):
    images, labels, source_images, source_labels, probs = paste_inputs(generator)
    result = adaptive_copy_paste(images, labels, probs, source_images=source_images, source_labels=source_labels,
                                 num_categories=3, prob=1.0, generator=generator)
    assert result.applied.all()
    src_labels = source_labels[result.source]
    valid = (src_labels >= 0) & (src_labels < 6) & (src_labels != 255)
    paste = valid & result.chosen.gather(1, torch.where(valid, src_labels, 0).flatten(1)).view_as(valid)
    assert torch.equal(result.labels, torch.where(paste, src_labels, labels))
    assert torch.equal(result.images, torch.where(paste.unsqueeze(1), source_images[result.source], images))
    counts = torch.stack([torch.bincount(src_labels[i][paste[i]], minlength=6) for i in range(3)])
    assert torch.equal(result.pasted, counts > 0)


def test_loss_and_copy_paste_are_the_same_on_openmp_and_posix_threads(generator):
    logits, labels, confidence, sample = loss_inputs(generator, h=97, w=101)
    images, paste_labels, source_images, source_labels, probs = paste_inputs(generator, h=97, w=101)

    def run():
        loss = unsup_loss(logits, labels, confidence, sample_mask=sample)
        pasted = adaptive_copy_paste(images, paste_labels, probs, source_images=source_images,
                                     source_labels=source_labels, prob=1.0, generator=torch.Generator().manual_seed(3))
        return loss, pasted

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        results = []
        for openmp in (False, True):
            assert _native.use_openmp(openmp) == openmp
            results.append(run())
    finally:
        _native.use_openmp(True)
        torch.set_num_threads(threads)
    (loss_a, pasted_a), (loss_b, pasted_b) = results
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(getattr(pasted_a, f), getattr(pasted_b, f)) for f in pasted_a._fields)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.int32, torch.uint8, torch.bool,
                                   torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels", [None, 1, 3])
def test_mix_with_mask_is_bit_exact_for_every_element_size(monkeypatch, generator, dtype, channels):
    from ael.core import mix_with_mask

    shape = (2, 37, 29) if channels is None else (2, channels, 37, 29)
    if dtype.is_floating_point:
        outside, inside = torch.randn(shape, generator=generator).to(dtype), torch.randn(shape, generator=generator).to(dtype)
        outside.view(-1)[:4] = torch.tensor([float("nan"), -0.0, float("inf"), -float("inf")]).to(dtype)
        inside.view(-1)[:4] = torch.tensor([0.0, float("nan"), -0.0, 1.0]).to(dtype)
    else:
        outside = torch.randint(0, 2 if dtype == torch.bool else 100, shape, generator=generator).to(dtype)
        inside = torch.randint(0, 2 if dtype == torch.bool else 100, shape, generator=generator).to(dtype)
    mask = torch.rand(2, 37, 29, generator=generator) > 0.5
    compiled, fallback = compiled_then_fallback(monkeypatch, "mix", lambda: mix_with_mask(outside, inside, mask))
    expected = torch.where(mask if channels is None else mask.unsqueeze(1), inside, outside)
    assert compiled.dtype == dtype and compiled.shape == outside.shape
    for result in (compiled, fallback):
        assert torch.equal(result.view(torch.uint8) if dtype != torch.bool else result,
                           expected.view(torch.uint8) if dtype != torch.bool else expected)


def test_mix_of_strided_inputs_falls_back(generator):
    from ael.core import mix_with_mask

    outside = torch.randn(2, 3, 8, 8, generator=generator).transpose(2, 3)
    inside = torch.randn(2, 3, 8, 8, generator=generator)
    mask = torch.rand(2, 8, 8, generator=generator) > 0.5
    assert _native.mix(outside, inside, mask) is None
    assert torch.equal(mix_with_mask(outside, inside, mask), torch.where(mask.unsqueeze(1), inside, outside))


def test_the_loss_gradient_scales_with_the_upstream_gradient(monkeypatch, generator):
    logits, labels, confidence, sample = loss_inputs(generator)

    def run():
        x = logits.clone().requires_grad_()
        (unsup_loss(x, labels, confidence, sample_mask=sample) * -3.5).backward()
        return x.grad

    compiled, fallback = compiled_then_fallback(monkeypatch, "pseudo_label_loss", run)
    torch.testing.assert_close(compiled, fallback, rtol=1e-5, atol=1e-8)


def test_logsumexp_and_max_probability_match_float64(monkeypatch, generator):
    from ael.core import logit_stats, max_probability, pseudo_labels

    x = torch.randn(2, 19, 41, 53, generator=generator) * torch.tensor([0.01, 1.0, 8.0, 40.0]).repeat(11)[:41].view(1, 1, 41, 1)
    x[0, :, 0, 0] = 0.0  # exp-sum exactly C
    x[0, :, 0, 1] = torch.linspace(-200, 0, 19)  # exp-sum just above 1
    x[1, :, 0, 0] = torch.tensor([1e30] * 19)  # huge, equal
    reference_lse = torch.logsumexp(x.double(), dim=1)
    reference_max = torch.softmax(x.double(), dim=1).amax(dim=1)
    compiled, fallback = compiled_then_fallback(monkeypatch, "channel_stats",
                                                lambda: (logit_stats(x), pseudo_labels(x), max_probability(x)))
    for stats, (labels, confidence), probability in (compiled, fallback):
        torch.testing.assert_close(stats.logsumexp.double(), reference_lse, rtol=2e-7, atol=2e-6)
        torch.testing.assert_close(confidence.double(), reference_max, rtol=1e-6, atol=0)
        assert torch.equal(probability, confidence) and torch.equal(labels, stats.argmax)
        assert torch.equal(labels, x.argmax(dim=1))
    torch.testing.assert_close(compiled[0].logsumexp, fallback[0].logsumexp, rtol=2e-7, atol=1e-6)


def test_logsumexp_keeps_nan_and_infinity(monkeypatch):
    from ael.core import logit_stats

    x = torch.zeros(1, 3, 1, 4)
    x[0, :, 0, 0] = torch.tensor([0.0, torch.nan, 1.0])
    x[0, :, 0, 1] = torch.tensor([torch.inf, 0.0, 1.0])
    x[0, :, 0, 2] = -torch.inf
    x[0, :, 0, 3] = torch.tensor([-torch.inf, 2.0, -torch.inf])
    compiled, fallback = compiled_then_fallback(monkeypatch, "channel_stats", lambda: logit_stats(x).logsumexp)
    for lse in (compiled, fallback):
        assert lse[0, 0, 0].isnan() and lse[0, 0, 1].isnan() and lse[0, 0, 2].isnan()
        assert lse[0, 0, 3] == 2.0


def test_a_nan_weight_on_an_invalid_pixel_makes_loss_and_gradient_agree(monkeypatch):
    # a diverged teacher: NaN confidence makes the pixel invalid, but its weight is still NaN
    x = torch.randn(1, 3, 1, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[[0, 1]]])
    confidence = torch.tensor([[[0.9, float("nan")]]])

    def run():
        logits = x.clone().requires_grad_()
        loss = unsup_loss(logits, labels, confidence, normalize="valid")
        loss.backward()
        return loss.detach(), logits.grad

    (loss_c, grad_c), (loss_f, grad_f) = compiled_then_fallback(monkeypatch, "pseudo_label_loss", run)
    assert loss_c.isnan() and loss_f.isnan()
    assert torch.equal(grad_c.isnan(), grad_f.isnan()) and grad_c[..., 0].isnan().all()


def test_switching_openmp_while_kernels_run_in_another_thread_is_safe():
    import threading

    x = torch.randn(2, 5, 64, 64)
    stop = threading.Event()
    errors, calls = [], []

    def reduce_continuously():
        try:
            while not stop.is_set():
                _native.channel_stats(x, top=True, argmax=True, expsum=True)
                calls.append(1)
        except Exception as error:
            errors.append(error)

    worker = threading.Thread(target=reduce_continuously)
    worker.start()
    try:
        i = 0
        while len(calls) < 500 and worker.is_alive():  # a crash here used to kill the process
            _native.use_openmp(i % 2 == 0)
            i += 1
    finally:
        stop.set()
        worker.join()
        _native.use_openmp(True)
    assert not errors and _native.threads_kind == "openmp"


def test_a_nan_or_huge_pick_draw_is_clamped():
    pred = torch.zeros(3, 4, 4, dtype=torch.long)
    pred[:, 0, 0] = 1  # class 0: one component, every pixel but the corner
    draws = torch.tensor([float("nan"), float("inf"), -5.0])
    boxes, found = _native.component_boxes(pred, torch.zeros(3, dtype=torch.long), draws, 0)
    assert found.all() and (boxes == torch.tensor([0, 0, 4, 4])).all(dim=1).all()


def test_integer_arguments_beyond_int64_fall_back_and_raise_as_pytorch():
    from ael.core import cutmix_bank_bits

    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    assert _native.class_histogram(labels, 3, ignore_index=2**64) is None
    with pytest.raises((OverflowError, RuntimeError)):
        cutmix_bank_bits(labels, num_classes=3, area_thresh2=0.1, ignore_index=2**64)


def test_histograms_of_many_classes_stay_fast_and_exact():
    from ael.core import cutmix_bank_bits

    labels = torch.randint(0, 1 << 20, (4, 256, 256), generator=torch.Generator().manual_seed(0))
    bits = cutmix_bank_bits(labels, num_classes=1 << 20, area_thresh2=0.0)
    expected = torch.zeros(1 << 20, 4, dtype=torch.bool)
    for i in range(4):
        expected[labels[i].unique(), i] = True
    assert torch.equal(bits, expected)

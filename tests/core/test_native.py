"""The compiled CPU kernel (ael/core/_native.c) against the PyTorch implementation it replaces.

The maximum, the argmax and the picked logits must be identical; the exp-sum agrees to float32
rounding. Skipped where the kernel is not built (no C compiler at install), except in CI, which
sets AEL_REQUIRE_NATIVE=1 so that a build that silently fell back fails here.
"""

import os
import subprocess
import sys

import pytest
import torch

from ael.core import _native, max_probability
from ael.core._channel_ops import channel_stats, pick_class

if not _native.available():
    if os.environ.get("AEL_REQUIRE_NATIVE") == "1":
        raise RuntimeError(f"AEL_REQUIRE_NATIVE=1 but {_native.status()}")
    pytest.skip(f"compiled kernel not available: {_native.status()}", allow_module_level=True)


def both(monkeypatch, fn):
    """``fn()`` through the kernel (checking that it ran, not a silent fallback), then through PyTorch."""
    ran = []

    def spying_on(original):
        def spy(*args, **kwargs):
            result = original(*args, **kwargs)
            ran.append(result is not None)
            return result
        return spy

    for name in ("channel_stats", "pick_class"):
        monkeypatch.setattr(_native, name, spying_on(getattr(_native, name)))
    monkeypatch.setattr(_native, "enabled", True)
    compiled = fn()
    assert ran and all(ran), "the compiled kernel did not run"
    monkeypatch.setattr(_native, "enabled", False)
    return compiled, fn()


def assert_same_stats(compiled, reference):
    assert torch.equal(compiled.top.nan_to_num(nan=7.0), reference.top.nan_to_num(nan=7.0))
    assert torch.equal(compiled.argmax, reference.argmax)
    torch.testing.assert_close(compiled.expsum, reference.expsum, rtol=2e-6, atol=0, equal_nan=True)


@pytest.mark.parametrize(
    "shape", [(1, 1, 1, 1), (2, 19, 37, 41), (3, 2, 1, 300), (1, 21, 16, 8), (2, 5, 0, 7), (0, 3, 4, 4)]
)
def test_stats_match_pytorch_on_ragged_shapes(monkeypatch, generator, shape):
    x = torch.randn(*shape, generator=generator) * 5
    compiled, reference = both(monkeypatch, lambda: channel_stats(x))
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
    compiled, reference = both(monkeypatch, lambda: channel_stats(x))
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
    compiled, reference = both(monkeypatch, lambda: max_probability(outside, inside=inside, mask=mask))
    torch.testing.assert_close(compiled, reference, rtol=2e-6, atol=0, equal_nan=True)
    monkeypatch.setattr(_native, "enabled", True)
    assert torch.equal(compiled.nan_to_num(nan=7.0), max_probability(mixed).nan_to_num(nan=7.0))


def test_pick_class_matches_gather(monkeypatch, generator):
    x = torch.randn(3, 11, 17, 19, generator=generator)
    target = torch.randint(0, 11, (3, 17, 19), generator=generator)
    compiled, reference = both(monkeypatch, lambda: pick_class(x, target))
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

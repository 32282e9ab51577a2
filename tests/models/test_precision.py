"""The one ``amp`` name -> autocast dtype map, and autocast that is a no-op without a dtype."""

from __future__ import annotations

import contextlib

import pytest
import torch

from ael.models.precision import AMP_DTYPES, amp_dtype, autocast


def test_exact_mapping():
    assert dict(AMP_DTYPES) == {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    assert amp_dtype("none") is None
    assert amp_dtype("bf16") is torch.bfloat16
    assert amp_dtype("fp16") is torch.float16


@pytest.mark.parametrize("bad", ["fp8", "BF16", "", "float16", None, 16, ["bf16"]])
def test_bad_name_is_a_value_error_naming_it(bad):
    with pytest.raises(ValueError, match=r"amp=") as err:
        amp_dtype(bad)
    assert repr(bad) in str(err.value)
    assert "'none', 'bf16', 'fp16'" in str(err.value)


def test_the_map_is_read_only():
    with pytest.raises(TypeError):
        AMP_DTYPES["fp8"] = torch.float8_e4m3fn  # type: ignore[index]


def test_autocast_without_dtype_is_a_no_op():
    ctx = autocast("cpu", None)
    assert isinstance(ctx, contextlib.nullcontext)
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with ctx:
        assert not torch.is_autocast_enabled("cpu")
        assert (a @ b).dtype == torch.float32


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_autocast_runs_matmul_in_the_dtype(device):
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(device, torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
        assert (a @ b).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")
    assert (a @ b).dtype == torch.float32


def test_autocast_takes_the_device_type_of_an_indexed_device():
    ctx = autocast("cpu:0", torch.bfloat16)  # as "cuda:1" is "cuda"
    assert isinstance(ctx, torch.autocast) and ctx.device == "cpu"

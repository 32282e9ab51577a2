"""CUDA checks: the EMA update never synchronises with the host; channels_last + bf16 forward."""

import pytest
import torch

from ael.models import EmaTeacher, deeplabv3plus

pytestmark = pytest.mark.gpu


def test_ema_update_has_no_host_sync():
    student = deeplabv3plus(num_classes=4, backbone="resnet18").cuda()
    ema = EmaTeacher(student, decay=0.99)
    student(torch.randn(2, 3, 64, 64, device="cuda"))  # moves BN buffers away from the teacher's
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(3):
            ema.update(student, step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    ema.update(student, 0)
    for (key, a), b in zip(ema.state_dict().items(), student.state_dict().values()):
        assert torch.equal(a, b), key


def test_channels_last_bf16_forward_and_backward():
    model = deeplabv3plus(num_classes=4, backbone="resnet50").cuda().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 65, 65, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(x)
    assert out["out"].shape == (2, 4, 65, 65) and out["aux"].shape == (2, 4, 65, 65)
    (out["out"].float().mean() + out["aux"].float().mean()).backward()
    assert all(p.grad is not None for p in model.parameters())

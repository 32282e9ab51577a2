"""Poly schedule, parameter groups, scheduler resume and epoch counting."""

import io
import math

import pytest
import torch
from torch import nn

from ael.engine.optim import PolyLRScheduler, build_sgd, epochs_to_iterations, poly_lr


def test_poly_lr_exact_values_without_warmup():
    assert poly_lr(0.01, 0, 100, 0.9) == 0.01
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5**0.9, rel=0, abs=1e-15)
    assert poly_lr(0.01, 99, 100, 0.9) == pytest.approx(0.01 * 0.01**0.9, rel=0, abs=1e-15)
    assert poly_lr(0.01, 100, 100, 0.9) == 0.0
    assert poly_lr(0.01, 150, 100, 0.9) == 0.0
    assert poly_lr(0.2, 25, 100, 1.0) == pytest.approx(0.15, rel=0, abs=1e-15)
    assert poly_lr(0.2, 25, 100, 0.0) == 0.2


def test_poly_lr_exact_values_with_warmup():
    # Linear ramp (it + 1) / warmup on top of the poly curve, then the plain curve.
    assert poly_lr(0.01, 0, 100, 0.9, warmup_iters=10) == pytest.approx(0.001, rel=0, abs=1e-15)
    assert poly_lr(0.01, 4, 100, 0.9, warmup_iters=10) == pytest.approx(
        0.01 * 0.96**0.9 * 0.5, rel=0, abs=1e-15)
    assert poly_lr(0.01, 9, 100, 0.9, warmup_iters=10) == pytest.approx(0.01 * 0.91**0.9, rel=0, abs=1e-15)
    assert poly_lr(0.01, 10, 100, 0.9, warmup_iters=10) == poly_lr(0.01, 10, 100, 0.9)


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"max_it": 0}, "max_it"), ({"it": -1}, "it"), ({"power": -0.5}, "power"), ({"warmup_iters": -1}, "warmup"),
])
def test_poly_lr_rejects_bad_arguments(kwargs, word):
    args = {"base_lr": 0.01, "it": 0, "max_it": 10, "power": 0.9, "warmup_iters": 0, **kwargs}
    with pytest.raises(ValueError, match=word):
        poly_lr(**args)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.relu(self.backbone(x)))


def _sgd(net):
    return build_sgd(net.backbone.parameters(), net.head.parameters(), lr=0.01, head_lr_mult=10.0,
                     momentum=0.9, weight_decay=1e-4)


def test_build_sgd_groups():
    net = _Net()
    net.backbone.bias.requires_grad_(False)
    opt = _sgd(net)
    backbone, head = opt.param_groups
    assert (backbone["name"], head["name"]) == ("backbone", "head")
    assert backbone["lr"] == 0.01 and head["lr"] == pytest.approx(0.1)
    assert backbone["lr_mult"] == 1.0 and head["lr_mult"] == 10.0
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 1e-4 for g in opt.param_groups)
    assert [p is net.backbone.weight for p in backbone["params"]] == [True]  # frozen bias left out
    assert len(head["params"]) == 2


def test_build_sgd_errors():
    net = _Net()
    with pytest.raises(ValueError, match="both"):
        build_sgd(net.parameters(), net.head.parameters(), lr=0.01)
    with pytest.raises(ValueError, match="lr must be > 0"):
        build_sgd(net.backbone.parameters(), net.head.parameters(), lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        build_sgd(net.backbone.parameters(), net.head.parameters(), lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="no trainable"):
        build_sgd([], [], lr=0.1)


def test_scheduler_follows_poly_lr_per_group():
    opt = _sgd(_Net())
    sched = PolyLRScheduler(opt, max_iters=20, power=0.9, warmup_iters=3)
    for it in range(25):
        assert sched.get_last_lr() == [poly_lr(0.01, it, 20, 0.9, 3), poly_lr(0.1, it, 20, 0.9, 3)]
        opt.step()
        sched.step()


def _train(net, opt, sched, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    lrs = []
    for _ in range(steps):
        x = torch.randn(8, 4, generator=gen)
        loss = net(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr())
    return lrs


@pytest.mark.parametrize("scheduler_first", [True, False])
def test_scheduler_resume_equals_uninterrupted(scheduler_first):
    torch.manual_seed(0)
    ref = _Net()
    resumed = _Net()
    resumed.load_state_dict(ref.state_dict())

    ref_opt = _sgd(ref)
    ref_sched = PolyLRScheduler(ref_opt, max_iters=30, warmup_iters=2)
    ref_lrs = _train(ref, ref_opt, ref_sched, 10, seed=1) + _train(ref, ref_opt, ref_sched, 10, seed=2)

    opt = _sgd(resumed)
    sched = PolyLRScheduler(opt, max_iters=30, warmup_iters=2)
    first = _train(resumed, opt, sched, 10, seed=1)
    buf = io.BytesIO()
    torch.save({"model": resumed.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    fresh = _Net()
    fresh.load_state_dict(saved["model"])
    opt2 = _sgd(fresh)
    if scheduler_first:
        sched2 = PolyLRScheduler(opt2, max_iters=30, warmup_iters=2)
        opt2.load_state_dict(saved["opt"])
        sched2.load_state_dict(saved["sched"])
    else:
        opt2.load_state_dict(saved["opt"])
        sched2 = PolyLRScheduler(opt2, max_iters=30, warmup_iters=2)
        sched2.load_state_dict(saved["sched"])
    assert sched2.get_last_lr() == ref_lrs[9]
    second = _train(fresh, opt2, sched2, 10, seed=2)
    assert first + second == ref_lrs
    for a, b in zip(ref.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)


def test_scheduler_rejects_bad_schedule():
    opt = _sgd(_Net())
    with pytest.raises(ValueError, match="warmup_iters"):
        PolyLRScheduler(opt, max_iters=10, warmup_iters=10)
    with pytest.raises(KeyError, match="last_iter"):
        PolyLRScheduler(opt, max_iters=10).load_state_dict({})


def test_epochs_to_iterations_as_the_release_counts():
    # Cityscapes 1/2: 1488 unlabeled, 8 GPUs x 2: ceil(1488/8) = 186 -> 93 per epoch.
    assert epochs_to_iterations(200, 1488, 2, 8) == 18_600
    # VOC 1/4 (10582 - 2645 = 7937 unlabeled): ceil(7937/8) = 993 -> 496 per epoch (drop_last).
    assert epochs_to_iterations(80, 7937, 2, 8) == 39_680
    assert epochs_to_iterations(3, 10, 3, 1) == 9
    assert epochs_to_iterations(1, 10, 2, 3) == math.ceil(10 / 3) // 2


def test_epochs_to_iterations_errors():
    with pytest.raises(ValueError, match="epochs"):
        epochs_to_iterations(0, 100, 2, 1)
    with pytest.raises(ValueError, match="world_size"):
        epochs_to_iterations(1, 100, 2, 1.5)
    with pytest.raises(ValueError, match="no iteration"):
        epochs_to_iterations(1, 10, 4, 8)

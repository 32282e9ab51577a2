"""DeepLabV3+: output shapes, heads, channels_last, parameter groups, the config adapter."""

import pytest
import torch
from torch import nn

from ael.config import ModelConfig
from ael.models import build_model, deeplabv3plus, default_aspp_rates, parameter_groups
from ael.models.wrapping import maybe_sync_batchnorm, unwrap_model

CHANNELS = {  # (layer1, layer3, layer4)
    "resnet18": (64, 256, 512),
    "resnet34": (64, 256, 512),
    "resnet50": (256, 1024, 2048),
    "resnet101": (256, 1024, 2048),
}


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "resnet50", "resnet101"])
def test_feature_strides_and_output_shapes(backbone, output_stride):
    # A narrow head keeps the sweep fast; the backbone is the real one.
    model = deeplabv3plus(num_classes=5, backbone=backbone, output_stride=output_stride, aspp_channels=32)
    feats = []
    model.backbone.register_forward_hook(lambda _m, _i, out: feats.append(out))
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 64, 64))
    c1, c3, c4 = CHANNELS[backbone]
    side = 64 // output_stride
    assert feats[0].layer1.shape == (1, c1, 16, 16)  # stride 4
    assert feats[0].layer3.shape == (1, c3, side, side)
    assert feats[0].layer4.shape == (1, c4, side, side)
    assert set(out) == {"out", "aux"}
    assert out["out"].shape == (1, 5, 64, 64) and out["aux"].shape == (1, 5, 64, 64)
    assert torch.isfinite(out["out"]).all()
    rates = [b[0].dilation[0] for b in model.aspp.branches[1:]]
    assert rates == list(default_aspp_rates(output_stride))


def test_odd_input_size():
    model = deeplabv3plus(num_classes=3, backbone="resnet18").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 65, 65))
    assert out["out"].shape == (1, 3, 65, 65) and out["aux"].shape == (1, 3, 65, 65)


def test_aux_head_off_and_custom_rates():
    model = deeplabv3plus(num_classes=3, backbone="resnet18", aux_head=False, aspp_rates=(2, 3)).eval()
    assert model.aux is None
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 48))
    assert set(out) == {"out"} and out["out"].shape == (2, 3, 64, 48)
    assert [b[0].dilation[0] for b in model.aspp.branches] == [1, 2, 3]


@pytest.mark.parametrize("width", [48, 256])
def test_low_level_projection_width(width):
    model = deeplabv3plus(num_classes=4, backbone="resnet18", low_level_channels=width).eval()
    proj = model.decoder.project_low[0]
    assert (proj.in_channels, proj.out_channels) == (64, width)
    assert model.decoder.fuse[0].in_channels == 256 + width
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64))["out"].shape == (1, 4, 64, 64)


def test_deep_stem_model():
    model = deeplabv3plus(num_classes=2, backbone="resnet18", deep_stem=True).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 65, 65))["out"].shape == (1, 2, 65, 65)


def test_batch_of_one_trains():
    """Image pooling has no BatchNorm, so one image in train mode works forward and backward."""
    model = deeplabv3plus(num_classes=3, backbone="resnet18", output_stride=16).train()
    out = model(torch.randn(1, 3, 33, 33))
    (out["out"].mean() + out["aux"].mean()).backward()
    assert model.aspp.image_pool[1].weight.grad is not None


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = deeplabv3plus(num_classes=4, backbone="resnet18").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    for key in ("out", "aux"):
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("aux_head", [True, False])
def test_parameter_groups_cover_every_parameter_once(aux_head):
    model = deeplabv3plus(num_classes=3, backbone="resnet18", aux_head=aux_head)
    groups = parameter_groups(model)
    assert set(groups) == {"backbone", "head"}
    ids = [id(p) for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in model.backbone.parameters()} == {id(p) for p in groups["backbone"]}
    if aux_head:
        assert {id(p) for p in model.aux.parameters()} <= {id(p) for p in groups["head"]}
    with pytest.raises(TypeError, match="expected a DeepLabV3Plus"):
        parameter_groups(nn.Linear(2, 2))


def test_build_model_from_config():
    cfg = ModelConfig(backbone="resnet18", output_stride=16, low_level_channels=256, aux_head=False)
    model = build_model(cfg, num_classes=6)
    assert model.backbone.output_stride == 16 and model.aux is None
    assert model.decoder.project_low[0].out_channels == 256
    assert model.decoder.classifier.out_channels == 6


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes must be positive"):
        deeplabv3plus(num_classes=0, backbone="resnet18")


def test_sync_batchnorm_only_for_multi_process_cuda():
    model = deeplabv3plus(num_classes=2, backbone="resnet18")
    assert maybe_sync_batchnorm(model, world_size=1, device="cuda") is model
    assert maybe_sync_batchnorm(model, world_size=4, device="cpu") is model
    num_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    conv1_weight = model.backbone.conv1.weight
    # Conversion itself needs no GPU; SyncBatchNorm only needs one in its forward.
    converted = maybe_sync_batchnorm(model, world_size=2, device=torch.device("cuda", 0))
    assert not any(type(m) is nn.BatchNorm2d for m in converted.modules())
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in converted.modules()) == num_bn > 0
    assert converted.backbone.conv1.weight is conv1_weight


def test_unwrap_model_through_compile_wrapper():
    model = nn.Linear(2, 2)

    class Wrapped(nn.Module):  # the attribute torch.compile's OptimizedModule uses
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    assert unwrap_model(Wrapped(model)) is model
    assert unwrap_model(nn.DataParallel(model)) is model

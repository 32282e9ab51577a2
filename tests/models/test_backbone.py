"""Dilated ResNet backbones: feature strides, dilations of both block types, deep stem."""

import pytest
import torch
from torch import nn

from ael.models.backbone import ResNetBackbone, dilate_stage, stage_dilations


def test_stage_dilations_values():
    # ResNet-101 at output stride 8 with the release's multi-grid: layer4 dilations (4, 8, 16).
    d = stage_dilations([3, 4, 23, 3], 8, (1, 2, 4))
    assert d[0] == [1, 1, 1] and d[1] == [1, 1, 1, 1]
    assert d[2] == [1] + [2] * 22
    assert d[3] == [4, 8, 16]
    d16 = stage_dilations([3, 4, 6, 3], 16, (1, 2, 4))
    assert d16[2] == [1] * 6 and d16[3] == [2, 4, 8]
    # ResNet-18 has two blocks in layer4: the first two unit rates apply; one rate broadcasts.
    assert stage_dilations([2, 2, 2, 2], 8, (1, 2, 4))[3] == [4, 8]
    assert stage_dilations([2, 2, 2, 2], 8, (1,))[3] == [4, 4]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"output_stride": 32}, "output_stride must be 8 or 16"),
        ({"multi_grid": (1, 2)}, "multi_grid .* has 2 rates but layer4 has 3 blocks"),
        ({"multi_grid": (0, 1, 1)}, "multi_grid must be positive"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNetBackbone("resnet50", **kwargs)


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone 'resnet152'"):
        ResNetBackbone("resnet152")


def _convs_3x3(block):
    return [m for m in block.children() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]


def test_basic_block_dilation_conversion():
    net = ResNetBackbone("resnet18", output_stride=8, multi_grid=(1, 2, 4))
    # layer3: strides removed, first block keeps dilation 1, the second gets 2 on both 3x3 convs.
    first, second = net.layer3
    assert first.conv1.stride == (1, 1) and first.downsample[0].stride == (1, 1)
    assert [c.dilation for c in _convs_3x3(first)] == [(1, 1), (1, 1)]
    assert [(c.dilation, c.padding) for c in _convs_3x3(second)] == [((2, 2), (2, 2))] * 2
    # layer4 multi-grid: (1, 2) x 4.
    l4a, l4b = net.layer4
    assert l4a.conv1.stride == (1, 1) and l4a.downsample[0].stride == (1, 1)
    assert [(c.dilation, c.padding) for c in _convs_3x3(l4a)] == [((4, 4), (4, 4))] * 2
    assert [(c.dilation, c.padding) for c in _convs_3x3(l4b)] == [((8, 8), (8, 8))] * 2
    # layer2 untouched: still strided.
    assert net.layer2[0].conv1.stride == (2, 2) and net.layer2[0].downsample[0].stride == (2, 2)


def test_bottleneck_dilation_conversion_multi_grid():
    net = ResNetBackbone("resnet50", output_stride=8, multi_grid=(1, 2, 4))
    assert [b.conv2.dilation for b in net.layer4] == [(4, 4), (8, 8), (16, 16)]
    assert [b.conv2.padding for b in net.layer4] == [(4, 4), (8, 8), (16, 16)]
    assert net.layer4[0].conv2.stride == (1, 1) and net.layer4[0].downsample[0].stride == (1, 1)
    # The 1x1 convs keep dilation 1 and padding 0.
    assert all(b.conv1.dilation == (1, 1) and b.conv3.padding == (0, 0) for b in net.layer4)


def test_dilated_stage_keeps_spatial_size():
    stage = ResNetBackbone("resnet18", output_stride=16).layer2
    dilate_stage(stage, [1, 2])
    x = torch.randn(1, 64, 9, 9)
    with torch.no_grad():
        assert stage.eval()(x).shape == (1, 128, 9, 9)
    with pytest.raises(ValueError, match="3 dilations given for a stage of 2 blocks"):
        dilate_stage(stage, [1, 2, 2])


@pytest.mark.parametrize(("name", "c1"), [("resnet18", 64), ("resnet50", 256)])
def test_deep_stem(name, c1):
    net = ResNetBackbone(name, output_stride=8, deep_stem=True).eval()
    stem_convs = [m for m in net.conv1 if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in stem_convs] == [
        (3, 64, (3, 3)), (64, 64, (3, 3)), (64, 128, (3, 3))
    ]
    assert stem_convs[0].stride == (2, 2) and net.bn1.num_features == 128
    first = net.layer1[0]
    assert first.conv1.in_channels == 128 and first.downsample[0].in_channels == 128
    # Keys as the AEL release names them.
    keys = set(net.state_dict())
    assert {"conv1.0.weight", "conv1.1.running_mean", "conv1.3.weight", "conv1.4.weight",
            "conv1.6.weight", "bn1.weight"} <= keys
    with torch.no_grad():
        feats = net(torch.randn(1, 3, 64, 64))
    assert feats.layer1.shape == (1, c1, 16, 16) and feats.layer4.shape[-2:] == (8, 8)

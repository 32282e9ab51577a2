"""Dilated torchvision ResNets (18/34/50/101) as segmentation backbones.

torchvision refuses dilation in ``BasicBlock`` (ResNet-18/34), so the stride-to-dilation
conversion is done here, after construction, for both block types: the strided convs of a
dilated stage get stride 1 and every 3x3 conv of the stage gets the stage's dilation (padding
equal to the dilation keeps the spatial size). Layer 4 uses multi-grid: block ``i`` has dilation
``multi_grid[i] * d4``, so the release's (1, 2, 4) at output stride 8 gives (4, 8, 16).

Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ...), so torchvision
ImageNet state dicts load as they are; the optional deep stem (three 3x3 convs, 64/64/128
channels, as the AEL release) is a ``conv1`` Sequential whose keys are the release's
(``conv1.0``, ``conv1.1``, ``conv1.3``, ``conv1.4``, ``conv1.6``, then ``bn1``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

__all__ = [
    "BACKBONES",
    "BackboneFeatures",
    "ResNetBackbone",
    "dilate_stage",
    "stage_dilations",
]

logger = logging.getLogger(__name__)

# name -> torchvision constructor (called with weights=None: weights are loaded by ael.models.pretrained)
BACKBONES = {
    "resnet18": tv_resnet.resnet18,
    "resnet34": tv_resnet.resnet34,
    "resnet50": tv_resnet.resnet50,
    "resnet101": tv_resnet.resnet101,
}

DEEP_STEM_CHANNELS = 128


class BackboneFeatures(NamedTuple):
    """The feature maps the DeepLabV3+ heads read.

    Attributes:
        layer1: low-level features for the decoder, ``(B, C1, H/4, W/4)``.
        layer3: features for the auxiliary head, ``(B, C3, H/os, W/os)``.
        layer4: features for ASPP, ``(B, C4, H/os, W/os)`` (os: the output stride, 8 or 16).
    """

    layer1: torch.Tensor
    layer3: torch.Tensor
    layer4: torch.Tensor


def stage_dilations(
    num_blocks: Sequence[int], output_stride: int, multi_grid: Sequence[int]
) -> list[list[int]]:
    """Per-block dilation of layers 1..4 for an output stride.

    Dilated stages other than layer 4 follow torchvision's convention (the first block keeps
    the previous stage's dilation, the others take the new one); layer 4 uses multi-grid on
    every block.

    Args:
        num_blocks: blocks per stage, e.g. ``(3, 4, 23, 3)``.
        output_stride: 8 or 16.
        multi_grid: unit rates of layer 4; the first ``num_blocks[3]`` are used, and a single
            value applies to every block.

    Returns:
        Four lists of dilations, one per block. A stage whose dilations are all 1 is not dilated.
    """
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    grid = list(multi_grid)
    if not grid or min(grid) < 1:
        raise ValueError(f"multi_grid must be positive integers, got {tuple(multi_grid)}")
    if len(grid) == 1:
        grid = grid * num_blocks[3]
    if len(grid) < num_blocks[3]:
        raise ValueError(
            f"multi_grid {tuple(multi_grid)} has {len(grid)} rates but layer4 has {num_blocks[3]} blocks"
        )
    d3 = 2 if output_stride == 8 else 1
    d4 = 2 * d3
    return [
        [1] * num_blocks[0],
        [1] * num_blocks[1],
        [1] + [d3] * (num_blocks[2] - 1),
        [g * d4 for g in grid[: num_blocks[3]]],
    ]


def dilate_stage(stage: nn.Sequential, dilations: Sequence[int]) -> None:
    """Replace a stage's stride by dilation, in place, for BasicBlock and Bottleneck alike.

    Every conv of the stage (including the 1x1 of the shortcut) gets stride 1; the 3x3 convs of
    block ``i`` get dilation and padding ``dilations[i]``.

    Args:
        stage: a torchvision ``layerN`` (a Sequential of residual blocks).
        dilations: one dilation per block.
    """
    if len(dilations) != len(stage):
        raise ValueError(f"{len(dilations)} dilations given for a stage of {len(stage)} blocks")
    for block, rate in zip(stage, dilations):
        for conv in block.modules():
            if not isinstance(conv, nn.Conv2d):
                continue
            conv.stride = (1, 1)
            if conv.kernel_size == (3, 3):
                conv.dilation = (rate, rate)
                conv.padding = (rate, rate)
        block.stride = 1


def _init_conv_bn(module: nn.Module) -> None:
    """torchvision's ResNet initialisation, for the modules the deep stem adds."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _deep_stem() -> nn.Sequential:
    """Three 3x3 convs (64, 64, 128 channels), the first strided; ``bn1`` follows outside."""

    def conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)

    stem = nn.Sequential(
        conv(3, 64, stride=2),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        conv(64, 64),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        conv(64, DEEP_STEM_CHANNELS),
    )
    _init_conv_bn(stem)
    return stem


def _widen_first_block(block: nn.Module, in_channels: int) -> None:
    """Make a stage's first block accept ``in_channels`` (the deep stem's 128 instead of 64)."""
    old = block.conv1
    block.conv1 = nn.Conv2d(
        in_channels, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
        padding=old.padding, dilation=old.dilation, bias=False,
    )
    out_channels = block.bn3.num_features if hasattr(block, "bn3") else block.bn2.num_features
    # A BasicBlock of layer1 has no shortcut projection at 64 -> 64; with 128 inputs it needs one.
    block.downsample = nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )
    _init_conv_bn(block.conv1)
    _init_conv_bn(block.downsample)


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its classifier, dilated to output stride 8 or 16.

    Args:
        name: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` or ``"resnet101"``.
        output_stride: 8 (layers 3 and 4 dilated) or 16 (layer 4 dilated).
        multi_grid: unit rates of layer 4's blocks (see :func:`stage_dilations`).
        deep_stem: three 3x3 convs instead of the 7x7 conv (the AEL release's stem).

    Attributes:
        low_level_channels: channels of ``layer1`` (64 or 256).
        aux_channels: channels of ``layer3`` (256 or 1024).
        out_channels: channels of ``layer4`` (512 or 2048).
        dilations: the per-block dilations of layers 1..4.
    """

    def __init__(
        self,
        name: str = "resnet50",
        *,
        output_stride: int = 8,
        multi_grid: Sequence[int] = (1, 2, 4),
        deep_stem: bool = False,
    ) -> None:
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
        net = BACKBONES[name](weights=None)
        self.name = name
        self.output_stride = output_stride
        self.deep_stem = deep_stem

        self.conv1: nn.Module = _deep_stem() if deep_stem else net.conv1
        self.bn1 = nn.BatchNorm2d(DEEP_STEM_CHANNELS) if deep_stem else net.bn1
        if deep_stem:
            _init_conv_bn(self.bn1)
            _widen_first_block(net.layer1[0], DEEP_STEM_CHANNELS)
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        self.dilations = stage_dilations([len(s) for s in stages], output_stride, multi_grid)
        for stage, rates in zip(stages[2:], self.dilations[2:]):
            if max(rates) > 1:
                dilate_stage(stage, rates)

        last = self.layer4[-1]
        self.out_channels = (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features
        self.aux_channels = self.out_channels // 2
        self.low_level_channels = self.out_channels // 8
        logger.debug("%s backbone, output stride %d, dilations %s", name, output_stride, self.dilations)

    def forward(self, x: torch.Tensor) -> BackboneFeatures:
        """Features of a batch.

        Args:
            x: images, ``(B, 3, H, W)``.

        Returns:
            ``layer1`` ``(B, C1, H/4, W/4)``, ``layer3`` and ``layer4`` ``(B, C, H/os, W/os)``
            (sizes rounded up by the strided convs).
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        mid = self.layer3(self.layer2(low))
        return BackboneFeatures(low, mid, self.layer4(mid))

"""DeepLabV3+ (ASPP + decoder with low-level features) with an optional auxiliary FCN head.

The layout follows the AEL release (which the reported numbers come from): ASPP branches
(image pooling, 1x1, one 3x3 per rate) are concatenated and projected by a 3x3 conv; the
decoder projects ``layer1`` features (48 channels as the DeepLabV3+ paper, 256 as the release),
concatenates them with the upsampled ASPP output and fuses with two 3x3 convs; the auxiliary
head is a 3x3 conv + 1x1 classifier on ``layer3``. Dropout2d(0.1) follows each fused conv as in
the release.

Two deliberate departures from the release:

- The image-pooling branch has no BatchNorm (1x1 conv with bias, then ReLU). After global
  pooling BatchNorm sees one value per channel and image, so in train mode it fails for a batch
  of one and is very noisy for two; the release hides this behind SyncBN over 16 images.
- Convs followed by BatchNorm have no bias (a bias before BN is cancelled by the mean).

Upsampling is bilinear with ``align_corners=True`` (as the release), which maps the corners of
``8k + 1`` crops (513, 769) exactly onto feature-map corners.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ael.models.backbone import ResNetBackbone
from ael.models.pretrained import load_pretrained_backbone
from ael.models.wrapping import unwrap_model

__all__ = [
    "ASPP",
    "AuxHead",
    "Decoder",
    "DeepLabV3Plus",
    "deeplabv3plus",
    "default_aspp_rates",
    "parameter_groups",
]

ALIGN_CORNERS = True
HEAD_DROPOUT = 0.1


def default_aspp_rates(output_stride: int) -> tuple[int, ...]:
    """ASPP rates of DeepLabV3: (6, 12, 18) at output stride 16, doubled at 8."""
    if output_stride == 16:
        return (6, 12, 18)
    if output_stride == 8:
        return (12, 24, 36)
    raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> list[nn.Module]:
    padding = dilation * (kernel // 2)
    return [
        nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=ALIGN_CORNERS)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with image pooling, then a 3x3 projection.

    Args:
        in_channels: channels of the input (layer4).
        channels: channels of each branch and of the output.
        rates: dilation of each 3x3 branch.
    """

    def __init__(self, in_channels: int, channels: int = 256, rates: Sequence[int] = (12, 24, 36)) -> None:
        super().__init__()
        if not rates or min(rates) < 1:
            raise ValueError(f"ASPP rates must be positive integers, got {tuple(rates)}")
        # No BatchNorm after global pooling: see the module docstring.
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, channels, 1, bias=True), nn.ReLU(inplace=True)
        )
        self.branches = nn.ModuleList(
            [nn.Sequential(*_conv_bn_relu(in_channels, channels, 1))]
            + [nn.Sequential(*_conv_bn_relu(in_channels, channels, 3, rate)) for rate in rates]
        )
        self.project = nn.Sequential(
            *_conv_bn_relu((len(rates) + 2) * channels, channels, 3), nn.Dropout2d(HEAD_DROPOUT)
        )
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, h, w)`` -> ``(B, channels, h, w)``."""
        pooled = self.image_pool(x).expand(-1, -1, x.shape[-2], x.shape[-1])  # (B, channels, h, w)
        return self.project(torch.cat([pooled, *(branch(x) for branch in self.branches)], dim=1))


class Decoder(nn.Module):
    """DeepLabV3+ decoder: fuse upsampled ASPP features with projected low-level features.

    Args:
        in_channels: channels of the ASPP output.
        low_level_in: channels of the low-level (layer1) features.
        low_level_channels: width of their projection (48 paper, 256 release).
        num_classes: output classes.
        channels: width of the fusion convs.
    """

    def __init__(
        self, in_channels: int, low_level_in: int, low_level_channels: int, num_classes: int, channels: int = 256
    ) -> None:
        super().__init__()
        self.project_low = nn.Sequential(*_conv_bn_relu(low_level_in, low_level_channels, 1))
        self.fuse = nn.Sequential(
            *_conv_bn_relu(in_channels + low_level_channels, channels, 3),
            nn.Dropout2d(HEAD_DROPOUT),
            *_conv_bn_relu(channels, channels, 3),
            nn.Dropout2d(HEAD_DROPOUT),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` and ``(B, C1, H/4, W/4)`` -> logits ``(B, num_classes, H/4, W/4)``."""
        low = self.project_low(low_level)
        x = _resize(x, low.shape[-2:])
        return self.classifier(self.fuse(torch.cat([x, low], dim=1)))


class AuxHead(nn.Module):
    """Auxiliary FCN head on layer3 (3x3 conv, BN, ReLU, dropout, 1x1 classifier)."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256) -> None:
        super().__init__()
        self.head = nn.Sequential(
            *_conv_bn_relu(in_channels, channels, 3), nn.Dropout2d(HEAD_DROPOUT), nn.Conv2d(channels, num_classes, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C3, h, w)`` -> logits ``(B, num_classes, h, w)``."""
        return self.head(x)


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ on a dilated ResNet; build it with :func:`deeplabv3plus`.

    ``forward`` returns ``{"out": (B, C, H, W)}`` plus ``"aux"`` (same shape) when the auxiliary
    head is on, in train and eval mode alike; logits are upsampled to the input size.
    """

    def __init__(self, backbone: ResNetBackbone, aspp: ASPP, decoder: Decoder, aux: AuxHead | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.aspp = aspp
        self.decoder = decoder
        self.aux = aux

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits for a batch of images ``(B, 3, H, W)``."""
        size = x.shape[-2:]
        feats = self.backbone(x)
        out = {"out": _resize(self.decoder(self.aspp(feats.layer4), feats.layer1), size)}
        if self.aux is not None:
            out["aux"] = _resize(self.aux(feats.layer3), size)
        return out

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters split for the optimizer: ``backbone`` (base lr) and ``head`` (ASPP,
        decoder and aux head: the 10x lr group). Every parameter appears exactly once."""
        head = [*self.aspp.parameters(), *self.decoder.parameters()]
        if self.aux is not None:
            head += list(self.aux.parameters())
        return {"backbone": list(self.backbone.parameters()), "head": head}


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """:meth:`DeepLabV3Plus.parameter_groups` of a model, through DDP / compile wrappers."""
    inner = unwrap_model(model)
    if not isinstance(inner, DeepLabV3Plus):
        raise TypeError(f"expected a DeepLabV3Plus (possibly wrapped), got {type(inner).__name__}")
    return inner.parameter_groups()


def deeplabv3plus(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    output_stride: int = 8,
    multi_grid: Sequence[int] = (1, 2, 4),
    aspp_rates: Sequence[int] | None = None,
    aspp_channels: int = 256,
    low_level_channels: int = 48,
    aux_head: bool = True,
    deep_stem: bool = False,
    pretrained: str = "none",
) -> DeepLabV3Plus:
    """Build DeepLabV3+ on a dilated torchvision ResNet.

    Args:
        num_classes: output classes.
        backbone: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` or ``"resnet101"``.
        output_stride: 8 or 16.
        multi_grid: unit rates of layer4's blocks (x the layer's dilation).
        aspp_rates: 3x3 ASPP rates; None: (12, 24, 36) at output stride 8, (6, 12, 18) at 16.
        aspp_channels: width of ASPP, the decoder and the aux head.
        low_level_channels: width of the decoder's layer1 projection (48 paper, 256 release).
        aux_head: add the auxiliary FCN head on layer3.
        deep_stem: three 3x3 convs instead of the 7x7 stem (release).
        pretrained: backbone weights: ``"none"``, ``"imagenet"`` or a checkpoint path
            (:func:`ael.models.pretrained.load_pretrained_backbone`).

    Raises:
        ValueError: a bad argument.
        PretrainedWeightsError: weights asked for but not available or not matching.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    net = ResNetBackbone(backbone, output_stride=output_stride, multi_grid=multi_grid, deep_stem=deep_stem)
    load_pretrained_backbone(net, pretrained)
    rates = default_aspp_rates(output_stride) if aspp_rates is None else tuple(aspp_rates)
    aspp = ASPP(net.out_channels, aspp_channels, rates)
    decoder = Decoder(aspp_channels, net.low_level_channels, low_level_channels, num_classes, aspp_channels)
    aux = AuxHead(net.aux_channels, num_classes, aspp_channels) if aux_head else None
    return DeepLabV3Plus(net, aspp, decoder, aux)

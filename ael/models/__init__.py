"""Models: DeepLabV3+ on dilated torchvision ResNets, pretrained loading, and the EMA teacher.

The builders take explicit keyword arguments; :func:`build_model` and :func:`build_ema` are the
only functions that read config sections.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ael.config import EmaConfig, ModelConfig
from ael.models.backbone import BackboneFeatures, ResNetBackbone
from ael.models.deeplabv3plus import DeepLabV3Plus, deeplabv3plus, default_aspp_rates, parameter_groups
from ael.models.ema import EmaTeacher, build_independent_teacher, ema_decay
from ael.models.pretrained import PretrainedWeightsError, load_pretrained_backbone
from ael.models.wrapping import maybe_sync_batchnorm, unwrap_model

__all__ = [
    "BackboneFeatures",
    "DeepLabV3Plus",
    "EmaTeacher",
    "PretrainedWeightsError",
    "ResNetBackbone",
    "build_ema",
    "build_independent_teacher",
    "build_model",
    "deeplabv3plus",
    "default_aspp_rates",
    "ema_decay",
    "load_pretrained_backbone",
    "maybe_sync_batchnorm",
    "parameter_groups",
    "unwrap_model",
]


def build_model(model_cfg: ModelConfig, num_classes: int) -> DeepLabV3Plus:
    """DeepLabV3+ as the ``model`` config section describes it (``aux_weight`` is the loss's)."""
    return deeplabv3plus(
        num_classes=num_classes,
        backbone=model_cfg.backbone,
        output_stride=model_cfg.output_stride,
        multi_grid=model_cfg.multi_grid,
        aspp_rates=model_cfg.aspp_rates,
        aspp_channels=model_cfg.aspp_channels,
        low_level_channels=model_cfg.low_level_channels,
        aux_head=model_cfg.aux_head,
        deep_stem=model_cfg.deep_stem,
        pretrained=model_cfg.pretrained,
    )


def build_ema(
    ema_cfg: EmaConfig,
    student: nn.Module,
    *,
    teacher_builder: Callable[[], nn.Module] | None = None,
    seed: int = 0,
) -> EmaTeacher:
    """The EMA teacher as the ``train.ema`` config section describes it.

    Args:
        ema_cfg: the ``train.ema`` section.
        student: the student (possibly DDP-wrapped); build the teacher before wrapping or after,
            the module is unwrapped either way.
        teacher_builder: builds a fresh model of the student's architecture; required when
            ``ema_cfg.init == "independent"`` (the release's separately initialised teacher).
        seed: the independent teacher's seed (use one that differs from the student's).
    """
    teacher = None
    if ema_cfg.init == "independent":
        if teacher_builder is None:
            raise ValueError("train.ema.init=independent needs a teacher_builder (a function building the model)")
        teacher = build_independent_teacher(teacher_builder, seed=seed)
    return EmaTeacher(
        student,
        decay=ema_cfg.decay,
        average_buffers=ema_cfg.buffers,
        train_mode=ema_cfg.teacher_mode == "train",
        teacher=teacher,
    )

"""The config sections of everything but the method: model, data, training, run store.

Each section is a frozen dataclass that the component it configures takes as it is (a component
never sees the whole :class:`Config`). The method's section (``method:``) is in
:mod:`ael.config.methods`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ael.config.fields import ConfigError, bounded
from ael.config.methods import AELConfig, MethodConfig

__all__ = [
    "Config",
    "DataConfig",
    "EmaConfig",
    "EvalConfig",
    "ModelConfig",
    "RunConfig",
    "SplitConfig",
    "SyntheticConfig",
    "TrainConfig",
]




# --------------------------------------------------------------------------------------------
# model (ael/models)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """DeepLabV3+ on a torchvision ResNet."""

    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet101"] = "resnet18"
    output_stride: Literal[8, 16] = 8
    multi_grid: tuple[int, ...] = (1, 2, 4)
    # None: (12, 24, 36) at output stride 8, (6, 12, 18) at 16.
    aspp_rates: tuple[int, ...] | None = None
    aspp_channels: int = bounded(256, ge=1)
    # Low-level projection width in the decoder: 48 (DeepLabV3+ paper), 256 (AEL release).
    low_level_channels: int = bounded(48, ge=1)
    aux_head: bool = True
    aux_weight: float = bounded(0.4, ge=0.0)
    deep_stem: bool = False  # release: True (three 3x3 convs)
    # "none", "imagenet" (torchvision's weights: the torch hub cache, downloaded into it when missing
    # unless the environment sets AEL_OFFLINE=1), "imagenet:<VERSION>", or a checkpoint path.
    pretrained: str = "none"

    def check(self) -> None:
        if not self.multi_grid or min(self.multi_grid) < 1:
            raise ConfigError(f"multi_grid must be positive integers, got {self.multi_grid}")
        if self.aspp_rates is not None and (not self.aspp_rates or min(self.aspp_rates) < 1):
            raise ConfigError(f"aspp_rates must be positive integers, got {self.aspp_rates}")


# --------------------------------------------------------------------------------------------
# data (ael/data)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticConfig:
    """The built-in synthetic long-tailed dataset (generated from a seed, no files)."""

    num_classes: int = bounded(8, ge=2, le=64)
    image_size: int = bounded(96, ge=32)
    num_labeled: int = bounded(64, ge=1)
    num_unlabeled: int = bounded(512, ge=1)
    num_val: int = bounded(64, ge=1)
    # Pixel share of class c (after background) decays as (c + 1) ** -tail_power.
    tail_power: float = bounded(2.0, ge=0.0)
    seed: int = 0


@dataclass(frozen=True)
class SplitConfig:
    """Which images are labeled: a shipped standard list, a seeded draw, or list files (one of them).

    All null: the seeded draw ``labeled: "1/8"``, ``seed: 0``. ``ael splits --list`` prints every
    shipped list and seeded protocol with its counts.
    """

    # A shipped standard list: "u2pl/cityscapes/372", "u2pl/pascal/92", "unimatch/cityscapes/1_8", ...
    protocol: str | None = None
    # A draw at run time (as the AEL release does): a seeded protocol name ("1/8", "1464",
    # "blended-1/16", ...), a fraction in (0, 1], or a count; with its seed (default 0).
    labeled: str | float | int | None = None
    seed: int | None = None
    # Explicit lists (ours: one id per line; also the common "img_path mask_path" format).
    labeled_list: str | None = None
    unlabeled_list: str | None = None

    def check(self) -> None:
        given = [k for k in ("protocol", "labeled", "labeled_list") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ConfigError(
                f"{' and '.join(given)} are {'both' if len(given) == 2 else 'all'} set; a split comes from "
                f"exactly one of them "
                f"(set the other{'s' if len(given) > 2 else ''} to null)")
        if self.seed is not None and given and given[0] != "labeled":
            raise ConfigError(f"seed applies only to a seeded draw (labeled), not to {given[0]}; set seed to null")
        if self.unlabeled_list is not None and self.labeled_list is None:
            raise ConfigError("unlabeled_list needs labeled_list")
        if self.protocol is not None and self.protocol.count("/") != 2:
            raise ConfigError(f"protocol={self.protocol!r} is not a shipped list name like u2pl/cityscapes/372 "
                              "(`ael splits --list`); a seeded draw such as 1/8 is labeled=1/8")


@dataclass(frozen=True)
class DataConfig:
    """Dataset, split, transforms and loaders."""

    dataset: Literal["synthetic", "voc", "cityscapes", "ade20k", "camvid", "folder"] = "synthetic"
    root: str | None = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    crop_size: int = bounded(96, ge=8)
    scale_range: tuple[float, float] = (0.5, 2.0)
    # Release: "piecewise" (half the time uniform in [lo, 1), half in [1, hi]).
    scale_mode: Literal["uniform", "piecewise"] = "uniform"
    # Release: "zero" (crops pad the label with class 0 instead of the ignore label).
    label_pad: Literal["ignore", "zero"] = "ignore"
    flip: bool = True
    strong_view: bool = False  # photometric view for the student (off, as the release)
    # "auto": when every unlabeled image has a mask (the synthetic set; the benchmark datasets'
    # unlabeled pools), the teacher's pseudo-labels are measured against it (per-class precision,
    # recall, IoU): counted, never trained on. "off": unlabeled images are loaded without masks.
    unlabeled_gt: Literal["auto", "off"] = "auto"
    batch_size_labeled: int = bounded(2, ge=1)
    batch_size_unlabeled: int = bounded(2, ge=1)
    num_workers: int = bounded(2, ge=0)
    pin_memory: bool = True
    # Check every image/mask when the dataset is opened (results cached per file); False skips it.
    validate: bool = True
    # Where dataset statistics are cached when data.root is read-only (None: ~/.cache/ael/datasets).
    cache_dir: str | None = None
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def check(self) -> None:
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ConfigError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        if min(self.std) <= 0:
            raise ConfigError(f"std must be positive, got {self.std}")
        if self.dataset not in ("synthetic",) and self.root is None:
            raise ConfigError(f"dataset {self.dataset!r} needs data.root (its folder on disk)")


# --------------------------------------------------------------------------------------------
# train (ael/engine)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmaConfig:
    """The mean teacher."""

    decay: float = bounded(0.99, ge=0.0, lt=1.0)
    # Release: False (parameters only, BN buffers not averaged).
    buffers: bool = True
    # Release: "train" (batch statistics and dropout in the teacher).
    teacher_mode: Literal["eval", "train"] = "eval"
    # Release: "independent" (the teacher is initialised separately from the student).
    init: Literal["copy", "independent"] = "copy"


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation cadence and protocol (README "Evaluation protocols"; :mod:`ael.engine.evaluate`)."""

    every: int = bounded(500, ge=0)  # iterations; 0: only at the end
    # "whole": each full image in one pass (VOC in U2PL, UniMatch, AEL); "center_crop": only the
    # central crop_size square of image and label (UniMatch's center_crop); "sliding": crop_size
    # windows at stride stride_ratio x crop_size, logits averaged (Cityscapes in U2PL, UniMatch and
    # the AEL release: window = training crop, stride 2/3).
    mode: Literal["whole", "center_crop", "sliding"] = "whole"
    crop_size: int | None = bounded(None, ge=1)  # window / centre crop (default: data.crop_size)
    stride_ratio: float = bounded(2 / 3, gt=0.0, le=1.0)  # sliding only
    scales: tuple[float, ...] = (1.0,)  # multi-scale: probabilities averaged over these resizes
    flip: bool = False  # also the mirrored image, its probabilities averaged in
    model: Literal["teacher", "student", "both"] = "both"
    batch_size: int = bounded(1, ge=1)

    def check(self) -> None:
        if self.mode == "whole" and self.crop_size is not None:
            raise ConfigError(f"crop_size={self.crop_size} applies to mode sliding or center_crop, not whole")
        if not self.scales or min(self.scales) <= 0:
            raise ConfigError(f"scales must be positive resize factors, got {list(self.scales)}")
        if self.mode != "sliding" and self.stride_ratio != 2 / 3:
            # Saved configs carry the default; any other value would be accepted and ignored.
            raise ConfigError(f"stride_ratio={self.stride_ratio} applies to mode sliding only, not {self.mode}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, precision, distribution and cadences."""

    iterations: int = bounded(2000, ge=1)
    lr: float = bounded(0.01, gt=0.0)
    head_lr_mult: float = bounded(10.0, gt=0.0)
    momentum: float = bounded(0.9, ge=0.0, lt=1.0)
    weight_decay: float = bounded(1e-4, ge=0.0)
    poly_power: float = bounded(0.9, ge=0.0)
    warmup_iters: int = bounded(0, ge=0)
    grad_accum: int = bounded(1, ge=1)
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    # Release: True (every loss divided by world_size on top of DDP's gradient averaging).
    loss_div_world_size: bool = False
    ema: EmaConfig = field(default_factory=EmaConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log_every: int = bounded(1, ge=1)  # scalars: one record per log_every iterations, their mean
    classes_every: int = bounded(10, ge=1)  # per-class vectors
    media_every: int = bounded(100, ge=0)  # image samples; 0: none
    checkpoint_every: int = bounded(500, ge=0)  # 0: only at the end
    keep_checkpoints: int = bounded(1, ge=0)

    def check(self) -> None:
        if self.warmup_iters >= self.iterations:
            raise ConfigError(
                f"warmup_iters ({self.warmup_iters}) must be below iterations ({self.iterations})"
            )


# --------------------------------------------------------------------------------------------
# run (ael/runs)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """Where and how a run is stored."""

    runs_dir: str = "runs"
    name: str | None = None  # run id; default: timestamp + preset
    heartbeat_s: float = bounded(10.0, gt=0.0)
    stalled_after_s: float = bounded(120.0, gt=0.0)
    media_queue: int = bounded(32, ge=1)
    group: str | None = None  # comparison group recorded in the manifest (ael compare sets it)


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of a run."""

    # The method's own section; its class follows ``method.name`` (:mod:`ael.config.methods`).
    method: MethodConfig = field(default_factory=AELConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)

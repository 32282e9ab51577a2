"""Typed, frozen configuration for every part of ``ael``.

A config is a tree of frozen dataclasses. It is built once from YAML (plus dotted command-line
overrides such as ``core.cutmix.area_thresh=0.01``), validated once, and then only read through
attributes: nothing downstream touches a raw dict.

Validation is declarative: a field's ``metadata`` may carry ``ge``/``gt``/``le``/``lt`` bounds,
and a section may define ``check(self)`` for rules that involve several fields; the loader
turns every failure into a :class:`ConfigError` that names the dotted key and the file it came
from. Unknown keys, wrong types and duplicate YAML keys are errors too.

Which options reproduce the authors' release (``../shared/docs/method.md``, "How the release
differs") is written next to each field: the default is always the paper's behaviour.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

__all__ = [
    "BankConfig",
    "Config",
    "ConfigError",
    "CopyPasteConfig",
    "CoreConfig",
    "CutMixConfig",
    "DataConfig",
    "EmaConfig",
    "EvalConfig",
    "ModelConfig",
    "OhemConfig",
    "ReweightConfig",
    "RunConfig",
    "SamplingConfig",
    "SplitConfig",
    "SyntheticConfig",
    "TrainConfig",
    "UnsupConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
    "load_yaml",
]


class ConfigError(ValueError):
    """A configuration problem, with the dotted key and the source it came from in the message."""


def _bounds(*, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None) -> dict[str, float]:
    return {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}


def _field(default: Any, **bounds: float) -> Any:
    """A dataclass field with a default and optional numeric bounds checked at load."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults: configs are frozen")
    return field(default=default, metadata=_bounds(**bounds))


# --------------------------------------------------------------------------------------------
# core: the AEL method (ael/core)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BankConfig:
    """Confidence bank: per-class EMA of the GT-class probability on labeled pixels."""

    momentum: float = _field(0.999, ge=0.0, lt=1.0)
    # Release: "random" (uniform in [0, 1)); a constant makes every class start equal.
    init: Literal["constant", "random"] = "constant"
    init_value: float = _field(0.5, ge=0.0, le=1.0)
    # Release: "zero" (an absent class folds 0 into its EMA); paper: absent classes are skipped.
    absent_update: Literal["skip", "zero"] = "skip"
    # When the bank is updated. "end_of_step": every strategy of a step reads the same bank.
    # Release: "before_unsup_loss": updated after the forward passes, so the sampled loss of
    # the step reads the new bank while Copy-Paste and CutMix used the old one.
    update: Literal["end_of_step", "before_unsup_loss"] = "end_of_step"
    # Release: False (each GPU keeps its own bank).
    sync: bool = True


@dataclass(frozen=True)
class CopyPasteConfig:
    """Adaptive Copy-Paste on labeled images."""

    enabled: bool = True
    # False: classes drawn uniformly (the non-adaptive counterpart).
    adaptive: bool = True
    num_categories: int = _field(3, ge=1)  # k: 3 Cityscapes, 1 VOC
    prob: float = _field(0.5, ge=0.0, le=1.0)
    # Release: False (one set of categories per step per GPU, shared by the batch).
    per_image: bool = True
    # Classes never pasted, by index or name. Release: (0, 1, 2, 8, 10) on every dataset.
    excluded_classes: tuple[int | str, ...] = ()
    # Release: True (the source may be the target image itself).
    allow_self_source: bool = False
    source_scale: tuple[float, float] = (0.1, 2.0)

    def check(self) -> None:
        lo, hi = self.source_scale
        if not 0 < lo <= hi:
            raise ConfigError(f"source_scale must satisfy 0 < low <= high, got {self.source_scale}")


@dataclass(frozen=True)
class CutMixConfig:
    """Adaptive CutMix on unlabeled images, with its CutMix bank."""

    enabled: bool = True
    # False: plain CutMix with a random half-area box (CutMix-Seg).
    adaptive: bool = True
    area_thresh: float = _field(0.005, ge=0.0, le=1.0)  # component area (0.005 Cityscapes, 0.03 VOC)
    area_thresh2: float = _field(0.01, ge=0.0, le=1.0)  # CutMix-bank area (0.01 Cityscapes, 0.03 VOC)
    # Release: False (the CutMix bank is per GPU).
    bank_sync: bool = True
    # Release: True (2 unlabeled images per GPU, one discarded: one mixed image per GPU).
    one_mix_per_batch: bool = False
    # Height fraction of the random half-area box: the release draws 0.5 ** u ("log_uniform");
    # "uniform" draws it uniformly in [0.5, 1].
    fallback_height: Literal["log_uniform", "uniform"] = "log_uniform"


@dataclass(frozen=True)
class SamplingConfig:
    """Adaptive equalization sampling of the unsupervised loss."""

    enabled: bool = True
    gamma2: float = _field(1.0, gt=0.0)
    # Release: True (one uniform random field per class shared by the batch).
    shared_field: bool = False


@dataclass(frozen=True)
class ReweightConfig:
    """Dynamic re-weighting of the unsupervised loss by teacher confidence ** gamma."""

    enabled: bool = True
    gamma: float = _field(2.0, ge=0.0)
    # Release: "all" (the denominator counts ignored and below-threshold pixels too).
    normalize: Literal["valid", "all"] = "valid"


@dataclass(frozen=True)
class UnsupConfig:
    """The unsupervised (pseudo-label) loss of the mean teacher."""

    enabled: bool = True
    weight: float = _field(1.0, ge=0.0)  # lambda_u
    conf_thresh: float = _field(0.0, ge=0.0, le=1.0)  # 0.7 VOC, 0 Cityscapes
    on_labeled: bool = True  # also apply it to the labeled batch, as the method does
    # Ours (not in the paper or the release, both 0): lambda_u ramps up as exp(-5 (1 - t)^2) over
    # the first rampup_iters iterations; lets a model trained from scratch (no ImageNet weights)
    # learn something before it follows its own pseudo-labels.
    rampup_iters: int = _field(0, ge=0)


@dataclass(frozen=True)
class OhemConfig:
    """Online hard example mining cross-entropy for the supervised loss."""

    enabled: bool = True
    thresh: float = _field(0.7, gt=0.0, le=1.0)
    min_kept: int = _field(100_000, ge=0)
    # Release: True (every GPU keeps min_kept of its own batch). Ours: min_kept counts the
    # global batch, each rank keeping min_kept / world_size.
    min_kept_per_gpu: bool = False


@dataclass(frozen=True)
class CoreConfig:
    """Every AEL strategy; each one switchable on its own (the paper's ablations)."""

    bank: BankConfig = field(default_factory=BankConfig)
    copy_paste: CopyPasteConfig = field(default_factory=CopyPasteConfig)
    cutmix: CutMixConfig = field(default_factory=CutMixConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    reweight: ReweightConfig = field(default_factory=ReweightConfig)
    unsup: UnsupConfig = field(default_factory=UnsupConfig)
    ohem: OhemConfig = field(default_factory=OhemConfig)


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
    aspp_channels: int = _field(256, ge=1)
    # Low-level projection width in the decoder: 48 (DeepLabV3+ paper), 256 (AEL release).
    low_level_channels: int = _field(48, ge=1)
    aux_head: bool = True
    aux_weight: float = _field(0.4, ge=0.0)
    deep_stem: bool = False  # release: True (three 3x3 convs)
    # "none", "imagenet" (torchvision weights in the local torch cache), or a checkpoint path.
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

    num_classes: int = _field(8, ge=2, le=64)
    image_size: int = _field(96, ge=32)
    num_labeled: int = _field(64, ge=1)
    num_unlabeled: int = _field(512, ge=1)
    num_val: int = _field(64, ge=1)
    # Pixel share of class c (after background) decays as (c + 1) ** -tail_power.
    tail_power: float = _field(2.0, ge=0.0)
    seed: int = 0


@dataclass(frozen=True)
class SplitConfig:
    """Which images are labeled: a named protocol, a fraction, a count, or list files."""

    # A protocol name ("1/8", "1464", "blended-1/16", ...), a fraction in (0, 1], or a count.
    labeled: str | float | int = "1/8"
    seed: int = 0
    # Explicit lists (ours: one id per line; also the common "img_path mask_path" format).
    labeled_list: str | None = None
    unlabeled_list: str | None = None


@dataclass(frozen=True)
class DataConfig:
    """Dataset, split, transforms and loaders."""

    dataset: Literal["synthetic", "voc", "cityscapes", "ade20k", "camvid", "folder"] = "synthetic"
    root: str | None = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    crop_size: int = _field(96, ge=8)
    scale_range: tuple[float, float] = (0.5, 2.0)
    # Release: "piecewise" (half the time uniform in [lo, 1), half in [1, hi]).
    scale_mode: Literal["uniform", "piecewise"] = "uniform"
    # Release: "zero" (crops pad the label with class 0 instead of the ignore label).
    label_pad: Literal["ignore", "zero"] = "ignore"
    flip: bool = True
    strong_view: bool = False  # photometric view for the student (off, as the release)
    batch_size_labeled: int = _field(2, ge=1)
    batch_size_unlabeled: int = _field(2, ge=1)
    num_workers: int = _field(2, ge=0)
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

    decay: float = _field(0.99, ge=0.0, lt=1.0)
    # Release: False (parameters only, BN buffers not averaged).
    buffers: bool = True
    # Release: "train" (batch statistics and dropout in the teacher).
    teacher_mode: Literal["eval", "train"] = "eval"
    # Release: "independent" (the teacher is initialised separately from the student).
    init: Literal["copy", "independent"] = "copy"


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation cadence and inference mode."""

    every: int = _field(500, ge=0)  # iterations; 0: only at the end
    mode: Literal["whole", "sliding"] = "whole"
    crop_size: int | None = None  # sliding window size (default: data.crop_size)
    stride_ratio: float = _field(2 / 3, gt=0.0, le=1.0)
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    model: Literal["teacher", "student", "both"] = "both"
    batch_size: int = _field(1, ge=1)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, precision, distribution and cadences."""

    iterations: int = _field(2000, ge=1)
    lr: float = _field(0.01, gt=0.0)
    head_lr_mult: float = _field(10.0, gt=0.0)
    momentum: float = _field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = _field(1e-4, ge=0.0)
    poly_power: float = _field(0.9, ge=0.0)
    warmup_iters: int = _field(0, ge=0)
    grad_accum: int = _field(1, ge=1)
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    # Release: True (every loss divided by world_size on top of DDP's gradient averaging).
    loss_div_world_size: bool = False
    ema: EmaConfig = field(default_factory=EmaConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log_every: int = _field(1, ge=1)  # scalars
    classes_every: int = _field(10, ge=1)  # per-class vectors
    media_every: int = _field(100, ge=0)  # image samples; 0: none
    checkpoint_every: int = _field(500, ge=0)  # 0: only at the end
    keep_checkpoints: int = _field(1, ge=0)

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
    heartbeat_s: float = _field(10.0, gt=0.0)
    stalled_after_s: float = _field(120.0, gt=0.0)
    media_queue: int = _field(32, ge=1)


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of a run."""

    core: CoreConfig = field(default_factory=CoreConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)


# --------------------------------------------------------------------------------------------
# loading, validation, overrides, dumping
# --------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys in a mapping."""


def _construct_mapping_no_duplicates(loader: _StrictLoader, node: yaml.MappingNode,
                                     deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                f"(first at line {seen[key] + 1})"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_no_duplicates
)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, refusing duplicate keys; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror or err})") from err
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _describe(tp: Any) -> str:
    if _is_union(tp):
        return " | ".join(_describe(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


class _Mismatch(Exception):
    pass


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Convert a YAML value to the annotated type, or raise _Mismatch."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _Mismatch
        return _build(tp, value, key, source)
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        # Exact type matches first, so "8" stays a str and 8 stays an int in `int | str`.
        for arg in args:
            if arg in (int, float, str, bool) and type(value) is arg:
                return value
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        for choice in typing.get_args(tp):
            if value == choice and type(value) is type(choice):
                return choice
        raise _Mismatch
    if origin is tuple:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            raise _Mismatch
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key, source) for v in value)
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_coerce(v, a, key, source) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def _check_bounds(value: Any, bounds: Mapping[str, float], key: str, source: str) -> None:
    if value is None or not bounds:
        return
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if not isinstance(v, (int, float)):
            continue
        for op, limit in bounds.items():
            ok = {"ge": v >= limit, "gt": v > limit, "le": v <= limit, "lt": v < limit}[op]
            if not ok:
                sign = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[op]
                raise ConfigError(f"{source}: {key} = {value!r} is out of range (must be {sign} {limit})")


def _build(cls: type, data: Mapping[str, Any], prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in data:
        if name not in fields:
            where = f"{prefix}.{name}" if prefix else str(name)
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{source}: unknown key {where!r} (known keys here: {known})")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        key = f"{prefix}.{name}" if prefix else name
        try:
            value = _coerce(data[name], hints[name], key, source)
        except _Mismatch:
            raise ConfigError(
                f"{source}: {key} = {data[name]!r} has the wrong type (expected {_describe(hints[name])})"
            ) from None
        _check_bounds(value, f.metadata, key, source)
        kwargs[name] = value
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        try:
            check()
        except ConfigError as err:
            raise ConfigError(f"{source}: {prefix or 'config'}: {err}") from None
    return obj


def config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Build and validate a :class:`Config` from a nested mapping (missing keys take defaults)."""
    return _build(Config, data, "", source)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML-ready data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"command line: override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"command line: override {text!r} has an empty key")
    try:
        value = yaml.load(raw, Loader=_StrictLoader) if raw.strip() else ""
    except (yaml.YAMLError, ConfigError) as err:
        raise ConfigError(f"command line: cannot parse the value of {key}: {err}") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict, in place.

    Unknown keys are reported with the full dotted key; nothing is added to the dict
    unless it names a real field.
    """
    for text in overrides:
        parts, value = _parse_override(text)
        cls: Any = Config
        node = data
        for depth, part in enumerate(parts):
            names = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
            if part not in names:
                dotted = ".".join(parts[: depth + 1])
                raise ConfigError(f"command line: unknown key {dotted!r} in override {text!r}")
            if depth == len(parts) - 1:
                node[part] = value
                break
            cls = typing.get_type_hints(cls)[part]
            if not dataclasses.is_dataclass(cls):
                raise ConfigError(
                    f"command line: {'.'.join(parts[: depth + 1])} is a value, not a section ({text!r})"
                )
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"command line: {'.'.join(parts[: depth + 1])} is not a section")
            node = child
    return data


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a config file (or the defaults when ``path`` is None) and apply overrides.

    Errors name the file (or "command line") and the dotted key at fault.
    """
    data = load_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    if overrides:
        apply_overrides(data, overrides)
        source = f"{source} + command line"
    return config_from_dict(data, source)


def dump_config(cfg: Config, path: str | Path | None = None) -> str:
    """The resolved config as YAML; written to ``path`` when given. Reloads identically."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text

"""The ``method:`` section: which semi-supervised method trains, and its options.

Each method has its own frozen section class, registered by name; ``method.name`` picks the class
the rest of the section is validated against, so an option the chosen method does not read is an
error, never silently ignored. The built-in methods form a ladder, each adding to the one before:

- ``supervised``: labeled images only (OHEM cross-entropy on the main and auxiliary heads);
- ``mean_teacher``: + the EMA teacher's pseudo-labels on unlabeled (and labeled) images;
- ``cutmix_seg``: + plain CutMix of unlabeled images with a random half-area box (the paper's
  "basic framework");
- ``ael``: + the confidence bank and the four adaptive strategies, each switchable on its own and
  falling back to its non-adaptive counterpart (the paper's ablations).

A method defined outside ``ael`` registers its section with :func:`register_method_config`
(``ael.methods.register_method`` does it for you). Which options reproduce the authors' release
(``../shared/docs/method.md``, "How the release differs") is written next to each field; the
default is always the paper's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ael.config.fields import ConfigError, bounded

__all__ = [
    "AELConfig",
    "AdaptiveCutMixConfig",
    "BankConfig",
    "CopyPasteConfig",
    "CutMixConfig",
    "CutMixSegConfig",
    "MeanTeacherConfig",
    "MethodConfig",
    "OhemConfig",
    "ReweightConfig",
    "SamplingConfig",
    "SupervisedConfig",
    "UnsupConfig",
    "method_config_class",
    "register_method_config",
    "registered_method_names",
    "unregister_method_config",
]


@dataclass(frozen=True)
class MethodConfig:
    """The base of every method's section: just its name."""

    name: str = "ael"


# ------------------------------------------------------------------------------------------------
# sub-sections
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OhemConfig:
    """Online hard example mining cross-entropy for the supervised loss."""

    enabled: bool = True
    thresh: float = bounded(0.7, gt=0.0, le=1.0)
    min_kept: int = bounded(100_000, ge=0)
    # Release: True (every GPU keeps min_kept of its own batch). Ours: min_kept counts the
    # global batch, each rank keeping min_kept / world_size.
    min_kept_per_gpu: bool = False


@dataclass(frozen=True)
class UnsupConfig:
    """The unsupervised (pseudo-label) loss of the mean teacher."""

    weight: float = bounded(1.0, ge=0.0)  # lambda_u
    conf_thresh: float = bounded(0.0, ge=0.0, le=1.0)  # 0.7 VOC, 0 Cityscapes
    on_labeled: bool = True  # also apply it to the labeled batch, as AEL does
    # Ours (not in the paper or the release, both 0): lambda_u ramps up as exp(-5 (1 - t)^2) over
    # the first rampup_iters iterations; lets a model trained from scratch (no ImageNet weights)
    # learn something before it follows its own pseudo-labels.
    rampup_iters: int = bounded(0, ge=0)


@dataclass(frozen=True)
class CutMixConfig:
    """Plain CutMix of unlabeled images (CutMix-Seg): a random half-area box from a batch partner."""

    # Height fraction f of the random half-area box (width 0.5 / f): the release draws f = 0.5 ** u
    # ("log_uniform"); "uniform" draws f uniformly in [0.5, 1].
    fallback_height: Literal["log_uniform", "uniform"] = "log_uniform"
    # Release: True (2 unlabeled images per GPU, one discarded: one mixed image per GPU).
    one_mix_per_batch: bool = False


@dataclass(frozen=True)
class AdaptiveCutMixConfig(CutMixConfig):
    """AEL's CutMix: a partner holding a class drawn from the bank, and the box of its component."""

    # False: plain CutMix with a random half-area box (CutMix-Seg's).
    adaptive: bool = True
    area_thresh: float = bounded(0.005, ge=0.0, le=1.0)  # component area (0.005 Cityscapes, 0.03 VOC)
    area_thresh2: float = bounded(0.01, ge=0.0, le=1.0)  # CutMix-bank area (0.01 Cityscapes, 0.03 VOC)
    # Release: False (the CutMix bank is per GPU).
    bank_sync: bool = True


@dataclass(frozen=True)
class BankConfig:
    """Confidence bank: per-class EMA of the GT-class probability on labeled pixels."""

    momentum: float = bounded(0.999, ge=0.0, lt=1.0)
    # Release: "random" (uniform in [0, 1)); a constant makes every class start equal.
    init: Literal["constant", "random"] = "constant"
    init_value: float = bounded(0.5, ge=0.0, le=1.0)
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
    num_categories: int = bounded(3, ge=1)  # k: 3 Cityscapes, 1 VOC
    prob: float = bounded(0.5, ge=0.0, le=1.0)
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
class SamplingConfig:
    """Adaptive equalization sampling of the unsupervised loss."""

    enabled: bool = True
    gamma2: float = bounded(1.0, gt=0.0)
    # Release: True (one uniform random field per class shared by the batch).
    shared_field: bool = False


@dataclass(frozen=True)
class ReweightConfig:
    """Dynamic re-weighting of the unsupervised loss by teacher confidence ** gamma."""

    enabled: bool = True
    gamma: float = bounded(2.0, ge=0.0)
    # Release: "all" (the denominator counts ignored and below-threshold pixels too).
    normalize: Literal["valid", "all"] = "valid"


# ------------------------------------------------------------------------------------------------
# the built-in methods' sections
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SupervisedConfig(MethodConfig):
    """``supervised``: the labeled images alone."""

    name: str = "supervised"
    ohem: OhemConfig = field(default_factory=OhemConfig)


@dataclass(frozen=True)
class MeanTeacherConfig(SupervisedConfig):
    """``mean_teacher``: supervised + the EMA teacher's pseudo-labels."""

    name: str = "mean_teacher"
    unsup: UnsupConfig = field(default_factory=UnsupConfig)


@dataclass(frozen=True)
class CutMixSegConfig(MeanTeacherConfig):
    """``cutmix_seg``: the mean teacher on CutMix-ed unlabeled images."""

    name: str = "cutmix_seg"
    cutmix: CutMixConfig = field(default_factory=CutMixConfig)


@dataclass(frozen=True)
class AELConfig(CutMixSegConfig):
    """``ael``: CutMix-Seg + the confidence bank and its four adaptive strategies."""

    name: str = "ael"
    cutmix: AdaptiveCutMixConfig = field(default_factory=AdaptiveCutMixConfig)
    bank: BankConfig = field(default_factory=BankConfig)
    copy_paste: CopyPasteConfig = field(default_factory=CopyPasteConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    reweight: ReweightConfig = field(default_factory=ReweightConfig)


# ------------------------------------------------------------------------------------------------
# the registry of sections
# ------------------------------------------------------------------------------------------------

_SECTIONS: dict[str, type[MethodConfig]] = {}


def register_method_config(name: str, section: type[MethodConfig]) -> None:
    """Make ``method.name: <name>`` validate the section against ``section``.

    Raises:
        ValueError: the name is taken by another class, or ``section`` is no method section.
    """
    if not (isinstance(section, type) and issubclass(section, MethodConfig)):
        raise ValueError(f"method {name!r}: its config must subclass MethodConfig, got {section!r}")
    if section.name != name:
        raise ValueError(f"method {name!r}: its config's default name is {section.name!r}")
    known = _SECTIONS.get(name)
    if known is not None and known is not section:
        raise ValueError(f"method {name!r} is already registered with {known.__qualname__}")
    _SECTIONS[name] = section


def unregister_method_config(name: str) -> None:
    """Forget a registered section (tests that register a method of their own)."""
    _SECTIONS.pop(name, None)


def registered_method_names() -> list[str]:
    """Every method name a config may give, in registration order."""
    return list(_SECTIONS)


def method_config_class(name: str) -> type[MethodConfig]:
    """The section class of method ``name``.

    Raises:
        ConfigError: no method of that name (the message lists the known ones).
    """
    try:
        return _SECTIONS[name]
    except KeyError:
        known = ", ".join(registered_method_names())
        raise ConfigError(f"unknown method {name!r} (known methods: {known})") from None


for _section in (SupervisedConfig, MeanTeacherConfig, CutMixSegConfig, AELConfig):
    register_method_config(_section.name, _section)

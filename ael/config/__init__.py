"""Typed, frozen configuration for every part of ``ael``.

A config is a tree of frozen dataclasses (:mod:`.sections`, and the method's section in
:mod:`.methods`), built once from YAML presets and dotted overrides and validated once
(:mod:`.loader`, layered by :mod:`.layers`); nothing downstream touches a raw dict, and each component takes its own section.
"""

from ael.config.fields import ConfigError, bounded
from ael.config.layers import (
    apply_overrides,
    load_config,
    load_presets,
    merge_dicts,
    merge_layer,
    preset_name,
    resolve_preset,
)
from ael.config.loader import config_from_dict, config_to_dict, dump_config, load_yaml
from ael.config.methods import (
    AdaptiveCutMixConfig,
    AELConfig,
    BankConfig,
    CopyPasteConfig,
    CutMixConfig,
    CutMixSegConfig,
    MeanTeacherConfig,
    MethodConfig,
    OhemConfig,
    ReweightConfig,
    SamplingConfig,
    SupervisedConfig,
    UnsupConfig,
    method_config_class,
    register_method_config,
    registered_method_names,
    unregister_method_config,
)
from ael.config.sections import (
    Config,
    DataConfig,
    EmaConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    SplitConfig,
    SyntheticConfig,
    TrainConfig,
)

__all__ = [
    "AELConfig",
    "AdaptiveCutMixConfig",
    "BankConfig",
    "Config",
    "ConfigError",
    "CopyPasteConfig",
    "CutMixConfig",
    "CutMixSegConfig",
    "DataConfig",
    "EmaConfig",
    "EvalConfig",
    "MeanTeacherConfig",
    "MethodConfig",
    "ModelConfig",
    "OhemConfig",
    "ReweightConfig",
    "RunConfig",
    "SamplingConfig",
    "SplitConfig",
    "SupervisedConfig",
    "SyntheticConfig",
    "TrainConfig",
    "UnsupConfig",
    "apply_overrides",
    "bounded",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
    "load_presets",
    "load_yaml",
    "merge_dicts",
    "merge_layer",
    "method_config_class",
    "preset_name",
    "register_method_config",
    "registered_method_names",
    "resolve_preset",
    "unregister_method_config",
]

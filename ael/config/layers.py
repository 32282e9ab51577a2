"""Layering a config: presets merged in order, the method switched by an overlay, dotted overrides.

A config is built once from YAML files (a dataset preset, then overlays such as ``release.yaml``
or ``ablations/*.yaml``) plus ``key.sub=value`` command-line overrides, and validated once.

When an overlay switches the method (``ablations/supervised.yaml`` on top of a preset tuned for
AEL), the options earlier layers gave and the new method does not have are dropped, each named in
a log line; an option given in the same layer as the switch, or after it, must belong to the
method (an unknown key otherwise).
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ael.config.fields import ConfigError
from ael.config.loader import DEFAULT_METHOD, StrictLoader, config_from_dict, load_yaml, section_class
from ael.config.methods import method_config_class
from ael.config.sections import Config

__all__ = [
    "apply_overrides",
    "load_config",
    "load_presets",
    "merge_dicts",
    "merge_layer",
    "preset_name",
    "resolve_preset",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"command line: override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"command line: override {text!r} has an empty key")
    try:
        value = yaml.load(raw, Loader=StrictLoader) if raw.strip() else ""
    except (yaml.YAMLError, ConfigError) as err:
        raise ConfigError(f"command line: cannot parse the value of {key}: {err}") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict, in place.

    Unknown keys are reported with the full dotted key; nothing is added to the dict unless it
    names a real field (of the method ``data`` names, under ``method.``). ``method.name=...``
    switches the method as an overlay does (:func:`merge_layer`).
    """
    for text in overrides:
        parts, value = _parse_override(text)
        if parts == ["method", "name"]:
            data.update(_switch_method(data, {"method": {"name": value}}, "command line"))
        cls: Any = Config
        node = data
        for depth, part in enumerate(parts):
            names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
            if part not in names:
                dotted = ".".join(parts[: depth + 1])
                raise ConfigError(f"command line: unknown key {dotted!r} in override {text!r}")
            if depth == len(parts) - 1:
                node[part] = value
                break
            cls = typing.get_type_hints(cls)[part]
            if not dataclasses.is_dataclass(cls):
                raise ConfigError(f"command line: {'.'.join(parts[: depth + 1])} is a value, "
                                  f"not a section ({text!r})")
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"command line: {'.'.join(parts[: depth + 1])} is not a section")
            cls = section_class(cls, child, ".".join(parts[: depth + 1]), "command line")
            node = child
    return data


def merge_dicts(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """A deep merge of two nested mappings: ``overlay`` wins key by key, sections merge."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


def _prune(data: Mapping[str, Any], cls: type, prefix: str, dropped: list[str]) -> dict[str, Any]:
    """The keys of ``data`` that ``cls`` has (recursively); the others are listed in ``dropped``."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in data.items():
        if key not in hints:
            dropped.append(f"{prefix}.{key}")
        elif isinstance(value, Mapping) and dataclasses.is_dataclass(hints[key]):
            out[key] = _prune(value, hints[key], f"{prefix}.{key}", dropped)
        else:
            out[key] = value
    return out


def _switch_method(merged: dict[str, Any], layer: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``merged`` with the method options the layer's new method lacks dropped (and logged)."""
    section = layer.get("method")
    new = section.get("name") if isinstance(section, Mapping) else None
    old_section = merged.get("method")
    if new is None or not isinstance(old_section, Mapping) or old_section.get("name", DEFAULT_METHOD) == new:
        return merged
    dropped: list[str] = []
    kept = _prune(old_section, method_config_class(new), "method", dropped)
    kept.pop("name", None)
    if dropped:
        logger.info("%s switches the method to %r: earlier options it does not have are dropped: %s",
                    source, new, ", ".join(dropped))
    return {**merged, "method": kept}


def merge_layer(merged: Mapping[str, Any], layer: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``layer`` merged onto ``merged`` (a deep merge), switching the method if the layer names another.

    Args:
        merged: the layers so far (plain data).
        layer: the next layer.
        source: the layer's name for the log line listing dropped options.
    """
    return merge_dicts(_switch_method(dict(merged), layer, source), layer)


def resolve_preset(path: str | Path) -> Path:
    """A preset file: ``path`` itself when it is a file, else the shipped preset of that name.

    ``cityscapes`` and ``ablations/ael`` name ``configs/cityscapes.yaml`` and
    ``configs/ablations/ael.yaml`` of the checkout or of the installed copy
    (:func:`ael.resources.presets_dir`), so an installed ``ael`` needs no checkout.
    """
    from ael.resources import presets_dir

    given = Path(path)
    if given.is_file() or given.is_absolute():
        return given
    shipped = presets_dir() / (given if given.suffix else given.with_suffix(".yaml"))
    return shipped if shipped.is_file() else given


def load_presets(paths: Sequence[str | Path], overrides: Sequence[str] = ()) -> Config:
    """Load preset files (merged in order, later ones winning), then apply dotted overrides.

    Each file is validated on its own and merged onto the ones before it, so an error names the
    file it is in. A name that is not a file is looked up among the shipped presets
    (:func:`resolve_preset`).

    Raises:
        ConfigError: naming the file (or "command line") and the key at fault.
    """
    merged: dict[str, Any] = {}
    resolved = [resolve_preset(p) for p in paths]
    for path in resolved:
        layer = load_yaml(path)
        config_from_dict(layer, str(path))
        merged = merge_layer(merged, layer, str(path))
        config_from_dict(merged, str(path))
    source = " + ".join(str(p) for p in resolved) or "<defaults>"
    if overrides:
        apply_overrides(merged, overrides)
        source += " + command line"
    return config_from_dict(merged, source)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load one config file (or the defaults when ``path`` is None) and apply overrides."""
    return load_presets([path] if path is not None else [], overrides)


def preset_name(paths: Sequence[str | Path]) -> str:
    """A short run-id tag from the preset file names (``cityscapes-release``)."""
    if not paths:
        return "synthetic"
    return "-".join(Path(p).stem for p in paths)

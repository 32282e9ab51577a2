"""Reading and validating a config: strict YAML, typed building, and back to plain data.

Unknown keys, wrong types, out-of-range values and duplicate YAML keys are
:class:`~ael.config.fields.ConfigError` s naming the dotted key and the source. The ``method:``
section is validated against the section class of ``method.name`` (:mod:`ael.config.methods`).
Layering presets and overrides is :mod:`ael.config.layers`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from ael.config.fields import ConfigError
from ael.config.methods import MethodConfig, method_config_class
from ael.config.sections import Config

__all__ = [
    "DEFAULT_METHOD",
    "StrictLoader",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_yaml",
    "section_class",
]

#: The method of a config that names none.
DEFAULT_METHOD = Config().method.name


class StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys in a mapping."""


def _construct_mapping_no_duplicates(loader: StrictLoader, node: yaml.MappingNode,
                                     deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                              f"(first at line {seen[key] + 1})")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_no_duplicates)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, refusing duplicate keys; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror or err})") from err
    try:
        data = yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


# ------------------------------------------------------------------------------------------------
# typed building
# ------------------------------------------------------------------------------------------------


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


_SCALARS: dict[Any, Any] = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
    type(None): lambda v: v is None,
}


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Convert a YAML value to the annotated type, or raise _Mismatch."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _Mismatch
        return _build(section_class(tp, value, key, source), value, key, source)
    if _is_union(tp):
        args = typing.get_args(tp)
        # Exact type matches first, so "8" stays a str and 8 stays an int in `int | str`.
        for arg in args:
            if arg in _SCALARS and type(value) is arg:
                return value
        for arg in args:
            try:
                return _coerce(value, arg, key, source)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if isinstance(value, bool) and ("on" if value else "off") in typing.get_args(tp):
            return "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
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
    if tp in _SCALARS:
        if not _SCALARS[tp](value):
            raise _Mismatch
        return float(value) if tp is float else value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def section_class(tp: type, value: Mapping[str, Any], key: str, source: str) -> type:
    """The class a section is built as: the named method's for ``method:``, else ``tp`` itself.

    Raises:
        ConfigError: ``method.name`` is no string or names no registered method.
    """
    if not (isinstance(tp, type) and issubclass(tp, MethodConfig)):
        return tp
    name = value.get("name", DEFAULT_METHOD)
    if not isinstance(name, str):
        raise ConfigError(f"{source}: {key}.name = {name!r} has the wrong type (expected str)")
    try:
        return method_config_class(name)
    except ConfigError as err:
        raise ConfigError(f"{source}: {key}.name: {err}") from None


def _check_bounds(value: Any, bounds: Mapping[str, float], key: str, source: str) -> None:
    if value is None or not bounds:
        return
    for v in value if isinstance(value, tuple) else (value,):
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
            if issubclass(cls, MethodConfig):
                known = f"{known}; method {cls.name!r} has no such option"
            raise ConfigError(f"{source}: unknown key {where!r} (known keys here: {known})")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        key = f"{prefix}.{name}" if prefix else name
        try:
            value = _coerce(data[name], hints[name], key, source)
        except _Mismatch:
            raise ConfigError(f"{source}: {key} = {data[name]!r} has the wrong type "
                              f"(expected {_describe(hints[name])})") from None
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


def _refuse_legacy(data: Mapping[str, Any], source: str) -> None:
    if "core" in data:
        raise ConfigError(
            f"{source}: 'core:' is the method section of ael 0.1 (before the method layer); it is now "
            f"'method:' with a 'name:' (ael, supervised, mean_teacher, cutmix_seg): see configs/ablations/ "
            f"for each former core.*.enabled combination")


def config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Build and validate a :class:`Config` from a nested mapping (missing keys take defaults)."""
    _refuse_legacy(data, source)
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


def dump_config(cfg: Config, path: str | Path | None = None) -> str:
    """The resolved config as YAML; written to ``path`` when given. Reloads identically."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text

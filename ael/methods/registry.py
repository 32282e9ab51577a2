"""Methods by name: ``method.name`` in a config picks one of these."""

from __future__ import annotations

from ael.config.fields import ConfigError
from ael.config.methods import MethodConfig, register_method_config, unregister_method_config
from ael.methods.base import Method, MethodContext

__all__ = ["build_method", "method_class", "method_names", "register_method", "unregister_method"]

_METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Register a :class:`Method` subclass under ``cls.name`` (usable as a class decorator).

    Its ``config_class`` becomes what ``method:`` sections naming it are validated against.

    Raises:
        ValueError: another class already has that name.
    """
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise ValueError(f"register_method takes a Method subclass, got {cls!r}")
    known = _METHODS.get(cls.name)
    if known is not None and known is not cls:
        raise ValueError(f"method {cls.name!r} is already registered as {known.__qualname__}")
    register_method_config(cls.name, cls.config_class)
    _METHODS[cls.name] = cls
    return cls


def unregister_method(name: str) -> None:
    """Forget a method and its config section (for tests that register their own)."""
    _METHODS.pop(name, None)
    unregister_method_config(name)


def method_names() -> list[str]:
    """The registered methods' names, in registration order."""
    return list(_METHODS)


def method_class(name: str) -> type[Method]:
    """The method registered as ``name``.

    Raises:
        ConfigError: no such method (the message lists the registered ones).
    """
    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(f"method.name: unknown method {name!r} (known methods: "
                          f"{', '.join(method_names())})") from None


def build_method(cfg: MethodConfig, ctx: MethodContext) -> Method:
    """The method ``cfg.name`` built from its section and the trainer's context."""
    return method_class(cfg.name)(cfg, ctx)

"""Typed configs at the boundary: a trainable's config is a dataclass, and a sweep's dict (or a
``--set key=value``) is checked against its fields before any trial starts."""
from __future__ import annotations

import dataclasses
import typing

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import is_private


def field_types(cls) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _base(tp):
    # 'str | None' -> str: None is allowed through the default only
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def coerce(cls, key: str, value, where: str = "config"):
    """`value` as the type of field `key` of `cls`; strings are parsed (for --set)."""
    types = field_types(cls)
    if key not in types:
        raise UserError(f"unknown key '{key}' in {where}; {cls.__name__} has: {', '.join(sorted(types))}")
    tp = _base(types[key])
    if value is None:
        return None
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if tp is int and isinstance(value, str) and not value.lstrip("-").isdigit():
            raise ValueError(value)
        return tp(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: '{key}' must be {tp.__name__}, got {value!r}") from None


def from_dict(cls, config: dict, where: str = "config"):
    """An instance of `cls` from `config`, ignoring Ray's private keys; then its own checks."""
    values = {k: coerce(cls, k, v, where) for k, v in config.items() if not is_private(k)}
    instance = cls(**values)
    check = getattr(instance, "check", None)
    if check:
        check()
    return instance


def check_choices(instance, **known: tuple) -> None:
    """Each named field's value must be one of its known values."""
    for key, options in known.items():
        if getattr(instance, key) not in options:
            raise UserError(f"{key} '{getattr(instance, key)}' unknown; known: {', '.join(options)}")


def check_at_least_one(instance, *keys: str) -> None:
    for key in keys:
        if getattr(instance, key) < 1:
            raise UserError(f"'{key}' must be at least 1, got {getattr(instance, key)}")

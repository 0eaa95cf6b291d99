"""Typed configs: nested dataclasses <-> plain dicts (YAML recipes, ``--set key=value``, Flower run configs).

Every config section is a dataclass beside the thing it configures; this module only converts and validates, so the
same dataclasses feed the CLI, the recipe files and the Flower apps. Errors name the key, the bad value and the fix.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

import yaml

from ffmrec.errors import ConfigError


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check (and gently convert) ``value`` against the annotation ``tp``; raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} must be a list, e.g. {key}=[10,20].")
        (inner, *_rest) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}={value!r} is not a boolean: use true or false.")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.strip().lstrip("-").isdigit()):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}={value!r} is not an integer: give a whole number, e.g. {key}=10.")
        return int(value)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} is not a number: give e.g. {key}=0.001.")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={value!r} is not a number: give e.g. {key}=0.001.") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}={value!r} is not a finite number: give e.g. {key}=0.001.")
        return number
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}={value!r} must be a string.")
        return str(value)
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} is a section: set its fields, e.g. {key}.<field>=<value>.")
        return from_dict(tp, value, prefix=f"{key}.")
    return value


def from_dict(cls, data: dict[str, Any] | None, prefix: str = ""):
    """Build dataclass ``cls`` from a nested dict; unknown keys and wrong types raise ConfigError."""
    data = dict(data or {})
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}': valid keys here are {', '.join(prefix + n for n in names)}."
        )
    kwargs = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{prefix or 'config'}: {e}") from None


def to_dict(obj) -> dict[str, Any]:
    """Plain nested dict of a dataclass (tuples become lists, so that YAML stays readable)."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(obj)


def set_key(data: dict[str, Any], cls, key: str, raw: str) -> None:
    """Apply one ``key=value`` override to a nested dict, checking the key exists in ``cls``."""
    parts = key.split(".")
    node, tp = data, cls
    for i, part in enumerate(parts):
        if not _is_dataclass_type(tp):
            raise ConfigError(f"unknown config key '{key}': '{'.'.join(parts[:i])}' is not a section.")
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        if part not in fields:
            where = ".".join(parts[:i])
            raise ConfigError(
                f"unknown config key '{key}': valid keys{' in ' + where if where else ''} are "
                f"{', '.join(fields)}; run 'ffmrec recipes RECIPE' to list every key with its value and help."
            )
        tp = _hints(tp)[part]
        if i < len(parts) - 1:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key '{'.'.join(parts[:i + 1])}' is not a section.")
            tp = next((a for a in typing.get_args(tp) if _is_dataclass_type(a)), tp)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node[parts[-1]] = _coerce(value, tp, key)


def parse_overrides(overrides: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} is not key=value: write e.g. --set train.epochs=5.")
        key, value = item.split("=", 1)
        pairs.append((key.strip(), value))
    return pairs


def load_yaml(path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]}): fix the file's syntax.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping of config sections.")
    return data


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)

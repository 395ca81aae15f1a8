"""Dataclass configs: the schema of every option. JSON only stores them.

Precedence: dataclass defaults < preset < `--set key=value` overrides. Unknown keys are errors.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from facegan.errors import FaceganError

ConfigT = TypeVar("ConfigT")


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass (nested) as plain JSON-ready data."""
    return dataclasses.asdict(config)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check/convert one JSON value against a field's annotation; raise a clear error if it does not fit."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except FaceganError as error:
                errors.append(str(error))
        raise FaceganError(f"config key '{key}': {value!r} does not fit {annotation}")
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise FaceganError(f"config key '{key}': {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise FaceganError(f"config key '{key}': expected a list, got {value!r}")
        (item_type, *_rest) = typing.get_args(annotation) or (Any,)
        items = [_coerce(item, item_type, key) for item in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise FaceganError(f"config key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if _is_dataclass_type(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise FaceganError(f"config key '{key}': expected a mapping, got {value!r}")
        return from_dict(annotation, value, prefix=f"{key}.")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise FaceganError(f"config key '{key}': expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise FaceganError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FaceganError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise FaceganError(f"config key '{key}': expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[ConfigT], data: dict[str, Any], prefix: str = "") -> ConfigT:
    """Build a dataclass from a mapping; unknown keys are errors, missing keys take defaults."""
    hints = _field_types(cls)
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise FaceganError(
            f"unknown config key '{prefix}{unknown[0]}' (known keys: {', '.join(sorted(names))})"
        )
    values = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    try:
        return cls(**values)
    except TypeError as error:
        raise FaceganError(f"config {cls.__name__}: {error}") from None


def merge(config: ConfigT, updates: dict[str, Any]) -> ConfigT:
    """Return a copy of `config` with a (possibly nested, partial) mapping applied on top."""
    merged = _deep_update(to_dict(config), updates)
    return from_dict(type(config), merged)


def _deep_update(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _deep_update(result[key], value)
        else:
            result[key] = value
    return result


def parse_override(text: str) -> dict[str, Any]:
    """'a.b=1' -> {'a': {'b': 1}}. The value is JSON if it parses as JSON, else a plain string."""
    if "=" not in text:
        raise FaceganError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise FaceganError(f"--set expects key=value, got '{text}'")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def apply_overrides(config: ConfigT, overrides: list[str]) -> ConfigT:
    """Apply `--set key=value` strings in order."""
    for text in overrides:
        config = merge(config, parse_override(text))
    return config


def save_json(data: Any, path: str | Path) -> None:
    """Write JSON atomically, sorted and indented so runs diff cleanly."""
    from facegan.files import write_bytes_atomic

    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def load_json(path: str | Path, what: str = "file") -> Any:
    """Read JSON with one clear error line when missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise FaceganError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FaceganError(f"{what} {path} is not valid JSON ({error}); re-create it") from None

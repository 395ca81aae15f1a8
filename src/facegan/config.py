"""Dataclass configs: the schema of every option. JSON only stores them.

Precedence: dataclass defaults < preset < `--set key=value` overrides. Unknown keys are errors.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import math
import textwrap
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
        if len(errors) == 1:  # an optional value (X | None): the one type's own reason, e.g. "nan is not a finite number"
            raise FaceganError(errors[0])
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
        if isinstance(value, str) and value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
            raise FaceganError(f"config key '{key}': {value!r} is not a finite number; give a finite value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FaceganError(f"config key '{key}': expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range
            number = math.inf
        if not math.isfinite(number):
            # JSON `NaN`/`Infinity` parse in Python, and torch trains on a NaN silently: refuse it here, once.
            raise FaceganError(f"config key '{key}': {value!r} is not a finite number; give a finite value")
        return number
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


def check_range(
    key: str,
    value: float,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    min_open: bool = False,
    max_open: bool = False,
    hint: str = "",
) -> None:
    """Refuse a non-finite value or one outside [minimum, maximum] (open ends where asked), naming the key."""
    low = "(" if min_open else "["
    high = ")" if max_open else "]"
    interval = f"{low}{'-inf' if minimum is None else _number(minimum)}, {'inf' if maximum is None else _number(maximum)}{high}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problem = "must be a finite number"
    elif minimum is not None and (value <= minimum if min_open else value < minimum):
        problem = ("must be positive" if minimum == 0 else f"must be above {_number(minimum)}") if min_open else f"must be at least {_number(minimum)}"
    elif maximum is not None and (value >= maximum if max_open else value > maximum):
        problem = f"must be below {_number(maximum)}" if max_open else f"must be at most {_number(maximum)}"
    else:
        return
    raise FaceganError(f"{key} {problem} (range {interval}), got {show_value(value)}" + (f"; {hint}" if hint else ""))


def format_gib(num_bytes: int) -> str:
    """'~4,578 GiB' for an estimate; exact integer arithmetic, so an absurd size (1e308 channels) still prints."""
    gib = int(num_bytes) // 2**30
    return f"~{gib:,} GiB" if gib < 10**15 else f"~10^{len(str(gib)) - 1} GiB"


def show_value(value: Any) -> str:
    """A value for an error line: repr, but an absurdly long integer as its order of magnitude."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**21:
        return f"{'-' if value < 0 else ''}~10^{len(str(abs(value))) - 1}"
    return repr(value)


def _number(value: float) -> str:
    """A bound as people write it: 4294967296 rather than 4.29497e+09, 0.5 rather than 0.500000."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string literal under each field), by field name."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (frozen app, interactive class): no docs, not an error
        return {}
    tree = ast.parse(source)
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for statement, following in zip(body, body[1:]):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def describe_fields(cls: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Every leaf field of a (nested) dataclass as (dotted key, type name, default, docstring)."""
    hints = _field_types(cls)
    defaults = cls()
    rows: list[tuple[str, str, Any, str]] = []
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        annotation = hints[field.name]
        if _is_dataclass_type(annotation):
            rows.extend(describe_fields(annotation, f"{prefix}{field.name}."))
            continue
        if typing.get_origin(annotation) is typing.Literal:
            type_name = " | ".join(str(option) for option in typing.get_args(annotation))
        else:
            type_name = getattr(annotation, "__name__", str(annotation))
        rows.append((prefix + field.name, type_name, getattr(defaults, field.name), docs.get(field.name, "")))
    return rows


def save_json(data: Any, path: str | Path) -> None:
    """Write JSON atomically, sorted and indented so runs diff cleanly."""
    from facegan.files import write_bytes_atomic

    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


# JSON facegan reads is small; a larger file (or a device in its place) is refused, not read whole.
MAX_JSON_BYTES = 1 << 28


def load_json(path: str | Path, what: str = "file") -> Any:
    """Read JSON with one clear error line when missing or broken (a FIFO in its place never hangs us)."""
    from facegan.files import read_regular_file

    path = Path(path)
    if not path.is_file():
        raise FaceganError(f"{what} not found: {path}")
    try:
        return json.loads(read_regular_file(path, MAX_JSON_BYTES).decode())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:  # RecursionError: "[[[[..." nested too deep
        raise FaceganError(f"{what} {path} is not valid JSON ({str(error)[:200]}); re-create it") from None
    except OSError as error:
        raise FaceganError(f"cannot read {what} {path} ({error.strerror})") from None


def load_json_object(path: str | Path, what: str = "file") -> dict[str, Any]:
    """load_json, and the value must be a JSON object."""
    value = load_json(path, what)
    if not isinstance(value, dict):
        raise FaceganError(f"{what} {path} is not a JSON object; re-create it")
    return value


def load_json_optional(path: str | Path) -> dict[str, Any] | None:
    """A JSON object, or None when the file is missing or broken (results a report may lack)."""
    try:
        return load_json_object(path)
    except FaceganError:
        return None

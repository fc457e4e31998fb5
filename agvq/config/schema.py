"""Typed, validated views of plain dicts (the sections of params.yaml), built from annotated dataclasses.

A section is a ``@dataclass(frozen=True)`` whose fields carry their type annotation and default; optional bounds go
in the field metadata (``value(default, ge=0, lt=1)``). :func:`parse` turns a dict into the dataclass, one
:class:`ConfigError` line naming the dotted key path for an unknown key, a wrong type or a value out of bounds.

Supported annotations: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, ``tuple[X, ...]`` (a YAML list),
``tuple[X, Y]`` (fixed length), ``dict[str, X]``, ``X | None``, and nested section dataclasses. Numbers written as
YAML 1.1 strings (``3e-3`` without a dot reads as a string) are accepted wherever a number is expected.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, field, fields, is_dataclass
from typing import Any, Literal, Mapping, TypeVar, get_args, get_origin

from agvq.errors import ConfigError

T = TypeVar("T")


def value(default: Any = MISSING, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
          lt: float | None = None, doc: str = "") -> Any:
    """A field with a default and optional numeric bounds (checked by :func:`parse`, for numbers and their lists)."""
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    meta["doc"] = doc
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple, or section(...) for a nested dataclass, as a field default")
    if is_dataclass(default) and not isinstance(default, type):
        return field(default_factory=lambda d=default: d, metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type, doc: str = "") -> Any:
    """A nested section field whose default is the section's own defaults."""
    return field(default_factory=cls, metadata={"doc": doc})


def mapping(doc: str = "") -> Any:
    """A ``dict[str, X]`` field, empty by default."""
    return field(default_factory=dict, metadata={"doc": doc})


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} ({', '.join(_type_name(a) for a in args)})"
    if origin is dict:
        return f"a mapping of {_type_name(get_args(tp)[1])}"
    if is_dataclass(tp):
        return "a mapping"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _number(raw: Any, integer: bool, where: str) -> int | float:
    if isinstance(raw, bool):
        raise ConfigError(f"{where} must be {'an integer' if integer else 'a number'}, got {raw!r}")
    if isinstance(raw, (int, float)):
        number = raw
    elif isinstance(raw, str):
        try:
            number = float(raw)
        except ValueError:
            raise ConfigError(f"{where} must be {'an integer' if integer else 'a number'}, got {raw!r}") from None
    else:
        raise ConfigError(f"{where} must be {'an integer' if integer else 'a number'}, got {raw!r}")
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"{where} must be finite, got {raw!r}")
    if integer:
        if float(number) != int(number):
            raise ConfigError(f"{where} must be a whole number, got {raw!r}")
        return int(number)
    return float(number)


def _bounds(x: Any, meta: Mapping, where: str) -> None:
    if isinstance(x, tuple):
        for i, item in enumerate(x):
            _bounds(item, meta, f"{where}[{i}]")
        return
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return
    for key, ok, text in (("ge", lambda a, b: a >= b, ">="), ("gt", lambda a, b: a > b, ">"),
                          ("le", lambda a, b: a <= b, "<="), ("lt", lambda a, b: a < b, "<")):
        if key in meta and not ok(x, meta[key]):
            raise ConfigError(f"{where} must be {text} {meta[key]:g}, got {x!r}")


def convert(tp: Any, raw: Any, where: str, partial: bool = False) -> Any:
    """``raw`` (plain YAML data) as the annotated type ``tp``; ConfigError naming ``where`` when it does not fit."""
    origin = get_origin(tp)
    if tp is Any:
        return raw
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if raw is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(arg, raw, where, partial)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where} must be {_type_name(tp)}, got {raw!r}")
    if origin is Literal:
        choices = get_args(tp)
        if not any(raw == c and type(raw) is type(c) for c in choices):
            raise ConfigError(f"{where} must be one of {list(choices)}, got {raw!r}")
        return raw
    if tp is bool:
        if not isinstance(raw, bool):
            raise ConfigError(f"{where} must be true or false, got {raw!r}")
        return raw
    if tp is int or tp is float:
        return _number(raw, tp is int, where)
    if tp is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{where} must be a string, got {raw!r}")
        return raw
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(raw, (list, tuple)):
            raise ConfigError(f"{where} must be {_type_name(tp)}, got {raw!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(raw))
        if len(raw) != len(args):
            raise ConfigError(f"{where} must be {_type_name(tp)}, got {list(raw)!r}")
        return tuple(convert(a, item, f"{where}[{i}]") for i, (a, item) in enumerate(zip(args, raw)))
    if origin is dict:
        key_tp, value_tp = get_args(tp)
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be {_type_name(tp)}, got {raw!r}")
        return {convert(key_tp, k, f"{where} key"): convert(value_tp, v, f"{where}.{k}", partial)
                for k, v in raw.items()}
    if is_dataclass(tp):
        return parse(tp, raw, where, partial)
    raise TypeError(f"unsupported annotation {tp!r} at {where}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=False)


def parse(cls: type[T], data: Mapping | None, where: str, partial: bool = False) -> T:
    """Build the section dataclass ``cls`` from ``data``; ``where`` is its dotted path in params.yaml.

    With ``partial`` only the keys present are checked (unknown keys, types, bounds) and a plain dict of the
    converted values is returned: overrides are validated against the schema before they are merged.
    Missing keys take the dataclass default; a field without default is required. After building, a section's
    ``check(where)`` method (if it has one) validates relations between fields.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of settings, got {data!r}")
    hints = _hints(cls)
    known = {f.name: f for f in fields(cls) if f.init}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {'s' if len(unknown) > 1 else ''}{', '.join(unknown)} "
                          f"(known: {', '.join(sorted(known))})")
    out: dict[str, Any] = {}
    for name, f in known.items():
        key = f"{where}.{name}" if where else name
        if name in data:
            out[name] = convert(hints[name], data[name], key, partial)
            _bounds(out[name], f.metadata, key)
        elif not partial and f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"{key} is required")
    if partial:
        return out  # type: ignore[return-value]
    obj = cls(**out)
    check = getattr(obj, "check", None)
    if callable(check):
        check(where)
    return obj


def to_dict(obj: Any) -> Any:
    """A section as plain YAML-like data (tuples become lists), e.g. to store in a model file or fingerprint."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def replace(obj: T, **changes: Any) -> T:
    return dataclasses.replace(obj, **changes)


def merge_into(target: Any, override: Mapping | None, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Deep-merge ``override`` into the mapping ``target`` in place: mappings merge key by key, anything else
    (scalars, lists) replaces the old value whole. Returns (dotted key, old value or None, new value) per change.

    The one merge of the project: per-region and per-variant overrides, presets (on ruamel's round-trip maps, which
    keep comments) and the tests' tiny params all use it.
    """
    changes: list[tuple[str, Any, Any]] = []
    for key, new in (override or {}).items():
        path = f"{prefix}{key}"
        old = target.get(key, MISSING) if isinstance(target, Mapping) else MISSING
        if isinstance(new, Mapping) and isinstance(old, Mapping):
            changes += merge_into(old, new, f"{path}.")
        elif old is MISSING or _plain(old) != _plain(new):
            target[key] = new
            changes.append((path, None if old is MISSING else _plain(old), _plain(new)))
    return changes


def deep_merge(base: Mapping, override: Mapping | None) -> dict:
    """A deep copy of ``base`` with ``override`` merged in (see :func:`merge_into`)."""
    out = _copy(base)
    merge_into(out, _copy(override or {}))
    return out


def _copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_copy(v) for v in data]
    return data


def _plain(value_: Any) -> Any:
    if isinstance(value_, Mapping):
        return {str(k): _plain(v) for k, v in value_.items()}
    if isinstance(value_, (list, tuple)):
        return [_plain(v) for v in value_]
    return value_


def plain(data: Any) -> Any:
    """Plain dicts/lists of ruamel or other mapping types (for comparison and JSON)."""
    return _plain(data)

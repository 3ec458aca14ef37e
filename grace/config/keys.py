"""Dotted keys over nested frozen dataclasses: typed overrides, `key=value` parsing, TOML trees,
per-field docstrings, and the CLI flag derived from a key. Knows nothing of grace's sections."""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import math
import textwrap
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or value is wrong; one-line message."""


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def leaf_types(cls: type) -> dict[str, Any]:
    """Every settable dotted key of `cls` and its type (sections are walked, not listed)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if _is_section(tp):
            out |= {f"{f.name}.{k}": v for k, v in leaf_types(tp).items()}
        else:
            out[f.name] = tp
    return out


def _sections(cls: type) -> set[str]:
    names = set()
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if _is_section(tp):
            names.add(f.name)
            names |= {f"{f.name}.{s}" for s in _sections(tp)}
    return names


def flag_name(key: str) -> str:
    """The CLI flag of a dotted key: `llm.max_calls` -> `--llm-max-calls`."""
    return "--" + key.replace(".", "-").replace("_", "-")


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    bad = ConfigError(f"{key} must be {_type_name(tp)}, not {value!r}")
    if typing.get_origin(tp) is tuple:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise bad
        inner = typing.get_args(tp)[0]
        return tuple(_coerce(key, v, inner) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise bad


def _unknown(key: str, known: Any, hints: Mapping[str, str]) -> ConfigError:
    if key in hints:
        return ConfigError(f"unknown config key {key!r} (it is now {hints[key]})")
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return ConfigError(f"unknown config key {key!r}" + (f" (did you mean {close[0]}?)" if close else ""))


def _flatten(cls: type, changes: Mapping[str, Any], hints: Mapping[str, str]) -> dict[str, Any]:
    """Dotted keys; a section name with a mapping value contributes its keys; None = not given."""
    sections = _sections(cls)
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if value is None:
            continue
        if key in sections and isinstance(value, Mapping):
            out |= _flatten(cls, {f"{key}.{k}": v for k, v in value.items()}, hints)
        elif key in sections:
            raise ConfigError(f"{key} is a section: give it a table of keys, not {value!r}")
        else:
            out[key] = value
    return out


def apply(obj: T, changes: Mapping[str, Any], hints: Mapping[str, str] | None = None) -> T:
    """A copy of the dataclass `obj` with dotted-key `changes` applied (type-checked)."""
    types = leaf_types(type(obj))
    flat = _flatten(type(obj), changes, hints or {})
    for key in flat:
        if key not in types:
            raise _unknown(key, types, hints or {})
    return _replace(obj, {k: _coerce(k, v, types[k]) for k, v in flat.items()})


def _replace(obj: Any, flat: dict[str, Any]) -> Any:
    direct = {k: v for k, v in flat.items() if "." not in k}
    nested: dict[str, dict[str, Any]] = {}
    for k, v in flat.items():
        if "." in k:
            head, rest = k.split(".", 1)
            nested.setdefault(head, {})[rest] = v
    for head, sub in nested.items():
        direct[head] = _replace(getattr(obj, head), sub)
    return dataclasses.replace(obj, **direct) if direct else obj


def from_tree(cls: type[T], data: Mapping[str, Any], legacy: Mapping[str, str] | None = None) -> T:
    """An instance of `cls` from nested tables (TOML). Keys of `legacy` (an older flat layout)
    found at the top level with a non-table value are mapped to their dotted key."""
    legacy = legacy or {}
    flat = {(legacy[k] if k in legacy and not isinstance(v, Mapping) else k): v for k, v in data.items()}
    return apply(cls(), flat, legacy)


def to_tree(obj: Any) -> dict[str, Any]:
    """Nested dict of every field (tuples as lists): what TOML writes."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = to_tree(v) if dataclasses.is_dataclass(v) else list(v) if isinstance(v, tuple) else v
    return out


def check_values(obj: Any) -> None:
    """Every number must be finite and >= 0 (no setting of a grace run is meaningfully negative)."""
    for key in leaf_types(type(obj)):
        v = obj
        for part in key.split("."):
            v = getattr(v, part)
        if isinstance(v, int | float) and not isinstance(v, bool):
            if not math.isfinite(v):
                raise ConfigError(f"{key} must be a finite number, not {v}")
            if v < 0:
                raise ConfigError(f"{key} must be >= 0, not {v}")


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_text(key: str, text: str, tp: Any) -> Any:
    """A command-line string as a value of type `tp`."""
    try:
        if typing.get_origin(tp) is tuple:
            inner = typing.get_args(tp)[0]
            return tuple(parse_text(key, part.strip(), inner) for part in text.split(",") if part.strip())
        if tp is bool:
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise ValueError(text)
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        return text
    except ValueError:
        raise ConfigError(f"{key} must be {_type_name(tp)}, not {text!r}") from None


def parse_assignment(cls: type, text: str, hints: Mapping[str, str] | None = None) -> tuple[str, Any]:
    """`section.key=value` -> (key, typed value); ConfigError for an unknown key or a bad value."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. llm.timeout=300), not {text!r}")
    types = leaf_types(cls)
    if key not in types:
        raise _unknown(key, types, hints or {})
    return key, parse_text(key, value.strip(), types[key])


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Dotted key -> the docstring written below the field (first paragraph, one line)."""
    out: dict[str, str] = {}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # no source (frozen app): no help texts
        tree = None
    body = tree.body[0].body if tree is not None else []  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            out[node.target.id] = " ".join(nxt.value.value.split("\n\n")[0].split())
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if _is_section(tp):
            out |= {f"{f.name}.{k}": v for k, v in field_docs(tp).items()}
    return out

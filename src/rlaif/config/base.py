"""Config machinery shared by every section: the error type, building dataclasses from YAML data
with key and type checks, `--set a.b=c` overrides, hashing, and the field help of `--help`."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import re
import textwrap
import types
import typing
from functools import cache
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the field."""


# Model names that `rlaif.models` resolves without the Hub.
EMBEDDED_MODELS = ("smollm2-135m", "tiny-random")


# ----------------------------------------------------------------------------------------------
# Overrides and building dataclasses from YAML data


def apply_override(raw: dict, item: str) -> None:
    """Set `a.b.c=value` in a raw config dict; the value is parsed as YAML (`1e-4`, `true`, `[a, b]`)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key.sub=value")
    node: Any = raw
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[_list_index(node, part, key)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
    parsed = yaml.safe_load(value) if value != "" else ""
    if isinstance(node, list):
        node[_list_index(node, parts[-1], key)] = parsed
    else:
        node[parts[-1]] = parsed


def _list_index(node: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {key}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def from_dict(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass `cls` from plain YAML data, checking keys and types recursively."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        renamed = getattr(cls, "RENAMED", {})
        if unknown[0] in renamed:
            raise ConfigError(
                f"{prefix}{unknown[0]} is now {prefix}{renamed[unknown[0]]}: summarize_from_feedback's confidence "
                "is a 9-point preference scale (1-4: summaries[0] won, 6-9: summaries[1] won), so filters take "
                "the strength |confidence - 5| (1-4; 3 = confidence <= 2 or >= 8). The seed's one-sided "
                "`confidence >= 8` is human.one_sided_min_confidence"
            )
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (known keys here: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in raw.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(option, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, args))}, got {_show(value)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_show(value)}")
        return [_coerce(args[0], v, f"{where}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
        return {_coerce(args[0], k, where): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if tp is float:
        # YAML 1.1 reads `5e-5` (no dot) as a string; accept any numeric spelling.
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}")
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_show(value)}")
        return value
    raise ConfigError(f"{where}: unsupported config type {tp}")  # a bug in this file, not in the YAML


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


# ----------------------------------------------------------------------------------------------
# Serialisation, hashing and help


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def section_hash(section: Any) -> str:
    """Stable hash of one config section, for the manifest's freshness checks."""
    plain = to_dict(section) if dataclasses.is_dataclass(section) else section  # a dict: section + what it reads
    blob = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (the convention tyro and TRL use), parsed with ast;
    a field declared in a base class (TrainerSettings) has its docstring there, and a subclass that
    redeclares a field (a different default) may give it its own."""
    docs = {}
    for base in reversed(cls.__mro__[1:]):
        if dataclasses.is_dataclass(base):
            docs.update(field_docs(base))
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def describe(cls: type, prefix: str = "", instance: Any = None) -> list[str]:
    """Help lines `key (type, default): doc` for every field of a section, nested sections flattened."""
    instance = instance if instance is not None else cls()
    hints, docs, lines = typing.get_type_hints(cls), field_docs(cls), []
    for f in dataclasses.fields(cls):
        key, value = f"{prefix}{f.name}", getattr(instance, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            lines.append(f"  {key}: {docs.get(f.name, '')}")
            lines += describe(hints[f.name], f"{key}.", value)
        else:
            type_name = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
            # Name a section class by its public path (rlaif.config.X), not the module defining it.
            type_name = re.sub(r"\brlaif\.config\.\w+\.", "rlaif.config.", type_name)
            lines.append(f"  {key} ({type_name} = {value!r}): {docs.get(f.name, '')}")
    return lines

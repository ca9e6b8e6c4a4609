"""Typed configuration: dataclasses built from YAML mappings with strict key checking.

Unknown keys are errors (a typo in a config must not silently fall back to a default),
and nested dataclasses are built recursively, in the spirit of open_clip's typed configs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from flywheel.errors import UserError
from flywheel.store.fs import ObjectPath, storage_path

T = TypeVar("T")


class ConfigError(UserError):
    """A configuration value or key is invalid; the message names the key."""


def build(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from `data`, recursing into nested dataclass fields."""
    data = dict(data or {})
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {sorted(unknown)} in {where or cls.__name__}; known: {sorted(fields)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        key = f"{where}.{name}" if where else name
        nested = _dataclass_in(hint)
        if nested is not None and isinstance(value, dict):
            kwargs[name] = build(nested, value, key)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _dataclass_in(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint  # type: ignore[return-value]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg):
                return arg  # type: ignore[return-value]
    return None


def load_yaml(path: str | Path | ObjectPath) -> dict[str, Any]:
    path = storage_path(path)  # a local file, or one in an object-store workspace (index_config.yaml)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with path.open(encoding="utf-8") as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def builtin_names(folder: str | Path) -> list[str]:
    """Names of the built-in YAML files in `folder` (package data: recipes, trainer stages, prompt sets)."""
    return sorted(p.stem for p in Path(folder).glob("*.yaml"))


def named_yaml(name_or_path: str | Path, folder: str | Path, kind: str) -> Path:
    """The YAML a user named: a built-in `name` from `folder`, or a path (anything with a suffix).

    The one rule every "built-in name or YAML path" option follows (`--recipe`, `--stage`, prompt sets), so
    they accept and refuse the same things with the same message.
    """
    path = Path(name_or_path)
    if path.suffix:
        return path
    builtin = Path(folder) / f"{name_or_path}.yaml"
    if not builtin.is_file():
        known = builtin_names(folder)
        raise ConfigError(f"unknown {kind} {str(name_or_path)!r}; built-in: {known} (or pass a YAML path)")
    return builtin

"""``--set key=value`` overrides and YAML/JSON configuration files.

Keys are dotted paths into the configuration (``training.epochs``, ``model.hidden_size``). Values
are parsed as YAML scalars or flow lists (``1e-3``, ``true``, ``[0.001, 0.0001]``). An unknown key or
an out-of-range value raises :class:`rnnscope.errors.ConfigError` naming the key and listing the valid
ones.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rnnscope.config.presets import preset
from rnnscope.config.schema import RUN_CONFIG_TYPES, Strict
from rnnscope.errors import ConfigError


def valid_keys(config: BaseModel) -> list[str]:
    """Every dotted key of ``config`` that ``--set`` accepts, sorted."""
    keys: list[str] = []
    for name, value in config:
        if isinstance(value, BaseModel):
            keys.extend(f"{name}.{sub}" for sub in valid_keys(value))
        else:
            keys.append(name)
    return sorted(keys)


def parse_run_config(data: Mapping[str, Any]) -> Strict:
    """Validate a plain mapping into the run configuration its ``system`` key names."""
    system = data.get("system", "hmm")
    cls = RUN_CONFIG_TYPES.get(system)
    if cls is None:
        raise ConfigError(f"unknown system {system!r}; known systems: {', '.join(sorted(RUN_CONFIG_TYPES))}")
    try:
        return cls.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def apply_overrides(config: Strict, assignments: Iterable[str] | Mapping[str, Any]) -> Strict:
    """Return a new configuration with ``key=value`` assignments applied and validated.

    ``assignments`` is either strings ``"training.epochs=50"`` or a mapping ``{"training.epochs": 50}``.
    """
    pairs = _pairs(assignments)
    data = config.model_dump()
    keys = valid_keys(config)
    for key, value in pairs:
        if key not in keys:
            raise ConfigError(
                f"unknown configuration key {key!r}; valid keys are: {', '.join(keys)}"
            )
        _assign(data, key.split("."), value)
    return parse_run_config(data)


def load_config(source: str | os.PathLike, overrides: Iterable[str] = ()) -> Strict:
    """Load a preset name, or a YAML/JSON file, then apply ``overrides``.

    A file may be a whole configuration, or ``preset: NAME`` plus a nested mapping of the keys it
    changes.
    """
    path = Path(source)
    if path.suffix.lower() in {".yaml", ".yml", ".json"}:
        if not path.is_file():
            raise ConfigError(f"configuration file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of configuration keys")
        config = _from_mapping(data)
    else:
        config = preset(str(source))
    return apply_overrides(config, overrides)


def _from_mapping(data: dict[str, Any]) -> Strict:
    data = copy.deepcopy(data)
    base_name = data.pop("preset", None)
    if base_name is None:
        return parse_run_config(data)
    base = preset(base_name)
    return apply_overrides(base, dict(_flatten(data)))


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, dotted + ".")
        else:
            yield dotted, value


def _pairs(assignments: Iterable[str] | Mapping[str, Any]) -> list[tuple[str, Any]]:
    if isinstance(assignments, Mapping):
        return list(assignments.items())
    pairs = []
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. training.epochs=50)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        pairs.append((key.strip(), value))
    return pairs


def _assign(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "configuration"
        lines.append(f"{where}: {item['msg']} (got {item.get('input')!r})")
    return "invalid configuration: " + "; ".join(lines)

"""Typed dataclass configs <-> YAML <-> `key=value` overrides.

Every recipe is a YAML file whose keys are the fields of one dataclass (nested dataclasses are
nested mappings). Mistakes fail fast with the file, the dotted field and what was expected.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A user mistake in a config file or override; the message names where and what."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`, converting the few lossless cases (int -> float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        val_tp = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-5` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type[T], data: dict, where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        at = f"{where}: " if where else ""  # top level: the file name alone says where
        raise ConfigError(f"{at}unknown field(s) {unknown}; {cls.__name__} has: {', '.join(sorted(fields))}")
    kwargs = {name: _coerce(val, hints[name], f"{where}.{name}" if where else name) for name, val in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        message = str(err)
        if where and not message.startswith(where):  # checks in __post_init__ mostly name their field already
            message = f"{where}: {message}"
        raise ConfigError(message) from err


def from_dict(cls: type[T], data: dict, source: str = "") -> T:
    return _build(cls, data, source)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=3` -> (["a", "b"], 3); the value is read as YAML so `x=[1,2]` and `y=null` work."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value (e.g. rl.lr=1e-5)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {err}") from err
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = dict(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            child = node.get(k)
            node[k] = dict(child) if isinstance(child, dict) else {}
            node = node[k]
        node[keys[-1]] = value
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] = ()) -> T:
    """Defaults <- YAML file <- overrides, type-checked field by field."""
    data: dict = {}
    source = ""
    if path is not None:
        from r1lab.resources import recipe_names, recipe_path

        found = recipe_path(path)
        if found is None:
            names = ", ".join(name for name, _ in recipe_names())
            raise ConfigError(f"{path}: config file not found (and no bundled recipe of that name: {names})")
        path = found
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of {cls.__name__} fields at the top level")
        data = loaded
    data = apply_overrides(data, list(overrides))
    prefix = f"{source}: " if source else ""
    try:
        cfg = _build(cls, data, "")
    except ConfigError as err:
        raise ConfigError(prefix + str(err)) from None
    if path is not None:
        _mark_config_dir(cfg, path.resolve().parent)
    return cfg


def _mark_config_dir(cfg: Any, folder: Path) -> None:
    """Remember the recipe's folder on the config and every nested config (not a field: never saved)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        object.__setattr__(cfg, "_config_dir", folder)
        for f in dataclasses.fields(cfg):
            _mark_config_dir(getattr(cfg, f.name), folder)


def config_dir(cfg: Any) -> Path | None:
    """The folder of the recipe file `cfg` was loaded from: user files (`my_rewards.py:fn`) are found there first."""
    return getattr(cfg, "_config_dir", None)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)

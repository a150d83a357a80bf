"""Configs: dataclasses <- YAML <- dotted command-line overrides.

Every config in videogen is a (nested) dataclass. A run's config is built in three layers:

1. the dataclass defaults,
2. a YAML file (and, for sections that define ``PRESETS``, a named ``preset:`` expanded first),
3. dotted overrides from the command line, e.g. ``data.num_frames=9 model.preset=S``.

Values are type-checked against the dataclass annotations while loading, unknown keys are rejected
with the closest known name, and each dataclass may define ``validate()`` for range checks. The
resolved config is written into every run directory with :func:`save_config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from videogen.errors import UserError

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A config key or value is wrong; the message names the key, the value and what is allowed."""


# ----------------------------------------------------------------------------- conversion


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# a decimal number in scientific notation: 2e-4, 1e6, 1.0e6, -3E+2, .5e1 (what YAML 1.1 leaves a string)
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
_BOOL_WORDS = {"on": True, "off": False, "yes": True, "no": False, "y": True, "n": False}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp`` and convert where lossless (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
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
        raise ConfigError(f"config key '{key}' = {value!r} does not match {_type_name(tp)}")
    if origin is typing.Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"config key '{key}' = {value!r} is not one of {allowed}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"config key '{key}' needs {len(args)} items, got {value!r}")
            items = [_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            elem = args[0] if args else Any
            items = [_coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:  # an override such as log.tensorboard=off
            return _BOOL_WORDS[value.lower()]
        raise ConfigError(f"config key '{key}' = {value!r} must be true or false")
    if tp in (int, float) and isinstance(value, str) and _NUMBER.match(value.strip()):
        value = float(value)  # YAML 1.1 reads 2e-4 and 1e6 (no dot) as strings; they are numbers
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key '{key}' = {value!r} must be an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key '{key}' = {value!r} must be a number")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{key}' = {value!r} must be a string")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"config key '{key}' = {value!r} must be {_type_name(tp)}")


def _unknown_key(cls: type, key: str, prefix: str) -> ConfigError:
    known = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
    return ConfigError(f"unknown config key '{prefix}{key}'{hint}")


def _expand_preset(cls: type, data: dict, prefix: str) -> dict:
    """If ``cls`` has ``PRESETS`` and ``data`` names one, return the preset values overlaid by ``data``."""
    presets = getattr(cls, "PRESETS", None)
    name = data.get("preset")
    if presets is None or name is None:
        return data
    if name not in presets:
        raise ConfigError(
            f"config key '{prefix}preset' = {name!r} is not a known preset; choose from {', '.join(presets)}"
        )
    merged = deep_merge(dict(presets[name]), data)  # a preset's nested sections keep their other keys
    if "preset" not in {f.name for f in dataclasses.fields(cls)}:
        merged.pop("preset")  # the name is kept only where the dataclass records it
    return merged


def _field_default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def _over_default(default: Any, value: dict) -> dict:
    """``value`` (a section given as a mapping) as a delta over ``default`` (the field's default
    dataclass): nested dataclass sections merge key by key; other values, plain mappings (task
    weights, ...) included, replace the default's. A section that names a preset starts from it."""
    if "preset" in value:
        return value
    merged = {}
    for f in dataclasses.fields(default):
        if not f.init:
            continue
        given = value.get(f.name, dataclasses.MISSING)
        current = getattr(default, f.name)
        if given is dataclasses.MISSING:
            merged[f.name] = to_dict(current)
        elif isinstance(given, dict) and dataclasses.is_dataclass(current):
            merged[f.name] = _over_default(current, given)
        else:
            merged[f.name] = given
    return {**value, **merged}  # unknown keys stay, to be refused by name


def from_dict(cls: type[T], data: dict | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a plain mapping, checking every key and value.

    The dataclass defaults are the defaults and ``data`` is a delta: a section given as a mapping
    changes only the keys it names of the field's default (which may differ from the section class's
    own defaults), all the way down; a section that names a ``preset`` starts from that preset."""
    data = _expand_preset(cls, dict(data or {}), prefix)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key(cls, key, prefix)
        if isinstance(value, dict) and dataclasses.is_dataclass(hints[key]):
            default = _field_default(fields[key])
            if dataclasses.is_dataclass(default):
                value = _over_default(default, value)
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as e:  # name the key with its full dotted path
            msg = str(e)
            if prefix and msg.startswith("config key '") and not msg.startswith(f"config key '{prefix}"):
                msg = msg.replace("config key '", f"config key '{prefix}", 1)
            raise ConfigError(msg) from None
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) -> plain dicts/lists of YAML-safe values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ----------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'a.b=3'`` -> (['a', 'b'], 3). The value is parsed as YAML (so ``[1,2]``, ``true``, ``1e-4`` work)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
        value = raw.strip()  # YAML 1.1 reads on/off/yes/no as booleans; keep the word (eval.final=off)
    return key.split("."), value


def apply_overrides(data: dict, overrides: typing.Iterable[str]) -> dict:
    """Return a copy of ``data`` with each dotted override set (intermediate mappings are created)."""
    result = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return result


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


# ----------------------------------------------------------------------------- files


def deep_merge(base: dict, extra: dict) -> dict:
    """``base`` updated by ``extra``, nested dicts merged key by key (neither input is changed)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file '{path}' is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping at the top level")
    return data


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: typing.Iterable[str] = (),
    default_path: str | Path | None = None,
) -> T:
    """The one way a run's config is made: the dataclass defaults of ``cls`` <- a YAML file of deltas
    (``path``; ``default_path`` when ``path`` is None) <- dotted overrides, checked into ``cls``."""
    if path is None and default_path is not None:
        if not Path(default_path).is_file():
            raise ConfigError(f"default config '{default_path}' is missing; give one with --config FILE")
        path = default_path
    data = read_yaml(path) if path is not None else {}
    return from_dict(cls, apply_overrides(data, list(overrides)))


def save_config(obj: Any, path: str | Path) -> None:
    """Write a (resolved) dataclass config as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))


def check(condition: bool, key: str, value: Any, allowed: str) -> None:
    """Raise ``ConfigError`` naming ``key``, ``value`` and what is allowed unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"config key '{key}' = {value!r} is invalid; {allowed}")

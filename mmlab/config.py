"""Configs: one ``@dataclass`` per component, JSON/YAML load and save, dotted overrides.

Behaviour follows nanoGPT's configurator without the ``exec``: a file, then
``--section.key=value`` overrides, type-checked, unknown keys rejected with the list of
known ones::

    cfg = apply_overrides(ADMCConfig(), ["--diffusion.start_step=50", "--mf.layers=2"])
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, TypeVar, Union

import yaml

from mmlab.errors import ConfigError

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, JSON-able dict of a (nested) config dataclass."""
    if not dataclasses.is_dataclass(cfg):
        raise ConfigError(f"to_dict: expected a config dataclass, got {type(cfg).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=list))


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp`` (with the usual safe widenings)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if args and not (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
            if origin is tuple and len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            items = [_coerce(v, args[i] if origin is tuple else args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        elif args:
            items = [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        else:
            items = list(value)
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: dict[str, Any], where: str | None = None) -> T:
    """Build config ``cls`` from a mapping; unknown keys and wrong types raise `ConfigError`."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
    required = [n for n, f in fields.items() if f.init and f.default is f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing}")
    hints = _hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


MAX_YAML_DEPTH = 32  # nesting of lists / mappings in a config file or override
MAX_OVERRIDE_CHARS = 10_000
MAX_CONFIG_BYTES = 1_000_000


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without aliases (no "billion laughs" expansion) and with a depth limit
    (no RecursionError on ``[[[[...``)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            raise yaml.YAMLError("aliases (*name) are not allowed in mmlab configs")
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.YAMLError(f"nesting deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def safe_yaml(text: str) -> Any:
    """Parse YAML with `_StrictLoader` (raises ``yaml.YAMLError`` on aliases or deep nesting)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def load_config(cls: type[T], path: str | Path) -> T:
    """Read a JSON or YAML file into config ``cls``."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: config file larger than {MAX_CONFIG_BYTES} bytes")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config file ({getattr(err, 'strerror', None) or err})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else safe_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError, RecursionError) as err:
        raise ConfigError(f"{path}: malformed {'JSON' if path.suffix == '.json' else 'YAML'} ({err})") from None
    if data is None:
        data = {}
    return from_dict(cls, data, where=str(path))


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write a config as JSON (``.json``) or YAML (anything else)."""
    path = Path(path)
    data = to_dict(cfg)
    path.write_text(json.dumps(data, indent=2) + "\n" if path.suffix == ".json" else yaml.safe_dump(data, sort_keys=False))
    return path


def _parse_override(item: str) -> tuple[str, str]:
    text = item[2:] if item.startswith("--") else item
    if "=" not in text:
        raise ConfigError(f"override {item!r}: expected --section.key=value")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override {item!r}: empty key")
    return key, raw


def _numbers(value: Any) -> Any:
    """List items YAML 1.1 leaves as text although they are numbers (``1e-3``: no dot)."""
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str):
        for parse in (int, float):
            try:
                return parse(value)
            except ValueError:
                pass
    return value


DEVICE_NAME = re.compile(r"cpu|auto|cuda(:\d+)?")  # spelling only: whether the device exists is for the job


def check_device_name(device: Any, where: str = "device") -> str:
    """``device`` if it is spelled 'cpu', 'cuda', 'cuda:N' or 'auto'; `ConfigError` naming
    ``where`` otherwise. Checked when a command or sweep file is read, before any job runs (a
    sweep planned on a login node may run on GPU nodes, so CUDA need not be present here)."""
    if not isinstance(device, str) or not DEVICE_NAME.fullmatch(device):
        raise ConfigError(f"{where}: expected cpu, cuda, cuda:N or auto, got {device!r}")
    return device


def refuse_seed_override(overrides: Iterable[str], where: str = "override") -> None:
    """Settings are never silently ignored: a ``--x.seed=`` override would lose to the run seed."""
    seeded = [o for o in overrides if o.lstrip("-").split("=", 1)[0].split(".")[-1] == "seed"]
    if seeded:
        raise ConfigError(f"{where} {seeded[0]!r}: the run seed is --seed (train) / --seeds (compare) and reaches "
                          "every stage and generator; drop the override")


def _parse_scalar(raw: str) -> Any:
    """Parse an override's value: numbers (``1e-3`` included), booleans, null, lists, strings.
    YAML values are limited in size and nesting and may not use aliases."""
    text = raw.strip()
    if len(text) > MAX_OVERRIDE_CHARS:
        raise ConfigError(f"override value: longer than {MAX_OVERRIDE_CHARS} characters")
    if text in ("None", "null", "~"):
        return None
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    try:
        value = safe_yaml(text)
    except yaml.YAMLError as err:
        if "aliases" in str(err) or "nesting" in str(err):
            raise ConfigError(f"override value {text[:40]!r}...: {err}") from None
        return raw
    if value is None:
        return raw
    return _numbers(value) if isinstance(value, list) else value


def apply_overrides(cfg: T, overrides: Iterable[str] | dict[str, Any]) -> T:
    """Return a copy of ``cfg`` with dotted overrides applied.

    ``overrides`` is a list such as ``["--diffusion.start_step=50"]`` (values parsed as YAML
    scalars) or a dict ``{"diffusion.start_step": 50}``.
    """
    data = to_dict(cfg)
    items = overrides.items() if isinstance(overrides, dict) else (_parse_override(o) for o in overrides)
    for key, raw in items:
        value = _parse_scalar(raw) if isinstance(raw, str) else raw
        node, cls = data, type(cfg)
        parts = key.split(".")
        for i, part in enumerate(parts):
            names = {f.name for f in dataclasses.fields(cls)}
            if part not in names:
                prefix = ".".join(parts[:i]) or cls.__name__
                raise ConfigError(f"override {key!r}: unknown key {part!r} in {prefix}; known keys are {sorted(names)}")
            if i == len(parts) - 1:
                try:
                    node[part] = _coerce(value, _hints(cls)[part], f"override {key}")
                except ConfigError:
                    if not isinstance(raw, str) or value == raw:
                        raise
                    # "--name=123", "--tag=no": a string field keeps the text as written
                    node[part] = _coerce(raw, _hints(cls)[part], f"override {key}")
                if dataclasses.is_dataclass(node[part]):
                    node[part] = to_dict(node[part])
            else:
                sub = _hints(cls)[part]
                if not dataclasses.is_dataclass(sub):
                    raise ConfigError(f"override {key!r}: {part!r} is a value, not a section")
                node, cls = node[part], sub
    return from_dict(type(cfg), data)

"""The method registry: ``name -> (class, config overrides)``, imported lazily.

Ablations and variants are registered as names of their own (e.g. ``admc_wo_adn``) that
point at the same class with different config values, so `mmlab compare` treats every
row of a paper's table as one method.
"""

from __future__ import annotations

import importlib
from typing import Any, Iterable

from mmlab.errors import ConfigError

# name: ("module:Class", {dotted config overrides})
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "reference": ("mmlab.methods.reference:ZeroFillLateFusion", {}),
}


def register_method(name: str, target: str, overrides: dict[str, Any] | None = None) -> None:
    METHODS[name] = (target, dict(overrides or {}))


def _load_all() -> None:
    """Import the method modules so that their `register_method` calls run."""
    for mod in ("mmlab.methods.admc", "mmlab.methods.baselines"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name != mod:
                raise


def method_names() -> list[str]:
    _load_all()
    return sorted(METHODS)


def method_class(name: str):
    _load_all()
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}: expected one of {sorted(METHODS)}")
    target, _ = METHODS[name]
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def make_method(name: str, data, overrides: Iterable[str] | dict[str, Any] = (), preset: str | None = None,
                seed: int = 0):
    """Build method ``name`` for dataset ``data`` with its registered overrides, then the user's;
    ``seed`` is the run seed every generator of the method derives from (``method.seed``).

    Each method class exposes ``Config`` (its dataclass), optional ``PRESETS`` {name: overrides},
    and ``__init__(cfg, data)``.
    """
    from mmlab.config import apply_overrides

    cls = method_class(name)
    cfg = cls.Config()
    if preset is not None:
        presets = getattr(cls, "PRESETS", {})
        if preset not in presets:
            raise ConfigError(f"method {name!r}: unknown preset {preset!r}; expected one of {sorted(presets)}")
        cfg = apply_overrides(cfg, presets[preset])
    cfg = apply_overrides(cfg, METHODS[name][1])
    cfg = apply_overrides(cfg, overrides)
    method = cls(cfg, data)
    method.name, method.seed = name, int(seed)
    return method

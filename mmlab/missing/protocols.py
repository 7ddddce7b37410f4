"""Missingness generators by name: `make_protocol("rmfm", rate=0.3)`."""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any, Callable

from mmlab.errors import ConfigError
from mmlab.missing.frames import RMFM, SMM, STMFM, TMFM, TraditionalRMFM
from mmlab.missing.masks import Masks
from mmlab.missing.modality import CPMViewMissing, FixedPattern, Full, RandomPattern, RateModalityDrop, RMM


# ------------------------------------------------------------------------------------- registry
PROTOCOLS: dict[str, Callable[..., Callable[..., Masks]]] = {
    "full": Full,
    "fixed": FixedPattern,
    "random_pattern": RandomPattern,
    "rate_drop": RateModalityDrop,
    "rmm": RMM,
    "traditional_rmfm": TraditionalRMFM,
    "rmfm": RMFM,
    "tmfm": TMFM,
    "stmfm": STMFM,
    "smm": SMM,
    "cpm": CPMViewMissing,
}
_NAME_ALIASES = {"pattern": "fixed", "rate_modality_drop": "rate_drop", "cpm_view_missing": "cpm"}
_PARAM_ALIASES = {
    "fixed": {"pattern": "available", "keep": "available"},
    "smm": {"pattern": "keep", "available": "keep"},
    "cpm": {"rate": "eta"},
    "traditional_rmfm": {"rate": "rates"},
}


def make_protocol(name: str, **params: Any) -> Callable[..., Masks]:
    """A generator by name, e.g. ``make_protocol("rmfm", rate=0.3)``; ``None`` params are left at
    their defaults (so a CLI can forward every flag)."""
    key = str(name).strip().lower().replace("-", "_")
    key = _NAME_ALIASES.get(key, key)
    if key not in PROTOCOLS:
        raise ConfigError(f"protocol: unknown name {name!r}; known protocols: {', '.join(sorted(PROTOCOLS))}")
    cls = PROTOCOLS[key]
    alias = _PARAM_ALIASES.get(key, {})
    kwargs = {alias.get(k, k): v for k, v in params.items() if v is not None}
    accepted = [f.name for f in fields(cls)]
    for k in kwargs:
        if k not in accepted:
            raise ConfigError(f"protocol {key!r}: unknown parameter {k!r}; accepted: {accepted}")
    required = [p.name for p in inspect.signature(cls).parameters.values() if p.default is inspect.Parameter.empty]
    absent = [k for k in required if k not in kwargs]
    if absent:
        raise ConfigError(f"protocol {key!r}: missing required parameter(s) {absent}")
    return cls(**kwargs)

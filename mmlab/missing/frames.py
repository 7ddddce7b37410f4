"""Frame-level missingness generators: individual frames (words, video frames) go missing
(CIDer's RMFM, §III-A; its traditional per-modality RMFM, TMFM, STMFM and SMM, CIDer's appendix
"Definition of Various Modality Missing Scenarios"; what the paper leaves open follows CIDer's
code, https://github.com/gw-zhong/CIDer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping, Sequence

import numpy as np

from mmlab.errors import ConfigError
from mmlab.missing.masks import (
    Masks, Pad, _aligned, _check_choice, _check_pad, _check_rate, _droppable, _from_drop, _names,
    _resolve,
)


# ------------------------------------------------------------------------------------- frame-level
@dataclass
class TraditionalRMFM:
    """Traditional random modality-feature missing (CIDer appendix): every real frame of modality m
    is dropped independently with prob ``rates[m]`` (a float = the same rate everywhere; a
    dict by name; or a sequence in modality order)."""

    rates: float | Mapping[str, float] | Sequence[float]
    protect_edges: tuple[str, ...] = ()
    level: ClassVar[str] = "frame"

    def __post_init__(self) -> None:
        self.protect_edges = tuple(self.protect_edges)
        vals = self.rates.values() if isinstance(self.rates, Mapping) else (
            [self.rates] if isinstance(self.rates, (int, float, np.number)) else list(self.rates))
        for r in vals:
            _check_rate("rates", r)

    def _rates(self, mods: tuple[str, ...]) -> dict[str, float]:
        r = self.rates
        if isinstance(r, Mapping):
            missing = [m for m in mods if m not in r]
            if missing:
                raise ConfigError(f"rates: no rate for modalities {missing} (have {sorted(r)})")
            return {m: float(r[m]) for m in mods}
        if isinstance(r, (int, float, np.number)):
            return {m: float(r) for m in mods}
        if len(r) != len(mods):
            raise ConfigError(f"rates: expected {len(mods)} rates for {list(mods)}, got {list(r)}")
        return {m: float(x) for m, x in zip(mods, r)}

    def __call__(self, pad: Pad, modalities: Sequence[str], rng: np.random.Generator) -> Masks:
        mods, n = _check_pad(pad, modalities)
        rates, ok = self._rates(mods), _droppable(pad, mods, self.protect_edges)
        drop = {m: ok[m] & (rng.random(ok[m].shape) < rates[m]) for m in mods}
        return _from_drop(pad, mods, drop, self.protect_edges)


@dataclass
class SMM:
    """Specific modality missing (CIDer appendix): the frame-level twin of `FixedPattern`; ``keep``
    names the retained modalities, every real frame of the others is dropped (rates 0 / 1)."""

    keep: tuple[str, ...]
    protect_edges: tuple[str, ...] = ()
    level: ClassVar[str] = "frame"

    def __post_init__(self) -> None:
        self.keep = _names(self.keep, "keep")
        self.protect_edges = tuple(self.protect_edges)

    def __call__(self, pad: Pad, modalities: Sequence[str], rng: np.random.Generator) -> Masks:
        mods, _ = _check_pad(pad, modalities)
        keep = _resolve(self.keep, mods, "keep")
        return TraditionalRMFM({m: 0.0 if m in keep else 1.0 for m in mods}, self.protect_edges)(pad, mods, rng)


RMFM_MODES = ("bernoulli", "exact_count")
RMFM_TRAIN_SAMPLERS = ("per_sample_uniform", "per_position_uniform")


@dataclass
class RMFM:
    """Random modality-feature missing (CIDer §III-A), pooled per sample over the
    concatenation of all modalities' droppable frames (M_all over T_l + T_a + T_v).

    - ``mode="bernoulli"`` (code): every pooled frame dropped with prob r;
      ``"exact_count"`` (ours: the per-modality fractions vary while the pooled one is r, as RMFM
      intends): exactly round(r · n_valid) pooled frames dropped, uniformly without replacement
      (round half to even, like Python's ``round``).
    - ``rate=None`` is the training sampler: ``"per_sample_uniform"`` (paper, §III-A) draws
      r ~ U[0, 1) per sample; ``"per_position_uniform"`` (official code) draws a threshold per
      position, so every frame is dropped with prob 0.5 (Bernoulli only).
    """

    rate: float | None = None
    mode: str = "bernoulli"
    train_sampler: str = "per_sample_uniform"
    protect_edges: tuple[str, ...] = ()
    level: ClassVar[str] = "frame"

    def __post_init__(self) -> None:
        if self.rate is not None:
            _check_rate("rate", self.rate)
        _check_choice("mode", self.mode, RMFM_MODES)
        _check_choice("train_sampler", self.train_sampler, RMFM_TRAIN_SAMPLERS)
        if self.rate is None and self.train_sampler == "per_position_uniform" and self.mode == "exact_count":
            raise ConfigError("mode: 'exact_count' has no per-position rate; use train_sampler='per_sample_uniform'")
        self.protect_edges = tuple(self.protect_edges)

    def __call__(self, pad: Pad, modalities: Sequence[str], rng: np.random.Generator) -> Masks:
        mods, n = _check_pad(pad, modalities)
        ok = _droppable(pad, mods, self.protect_edges)
        pool = np.concatenate([ok[m] for m in mods], axis=1)  # (N, sum T_m)
        if self.rate is None and self.train_sampler == "per_position_uniform":
            drop = rng.random(pool.shape) < rng.random(pool.shape)
        else:
            r = np.full(n, self.rate) if self.rate is not None else rng.random(n)
            if self.mode == "bernoulli":
                drop = rng.random(pool.shape) < r[:, None]
            else:
                k = np.rint(r * pool.sum(1))
                keys = np.where(pool, rng.random(pool.shape), 2.0)  # invalid frames sort last
                rank = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
                drop = rank < k[:, None]
        drop &= pool
        cuts = np.cumsum([pad[m].shape[1] for m in mods])[:-1]
        return _from_drop(pad, mods, dict(zip(mods, np.split(drop, cuts, axis=1))), self.protect_edges)


@dataclass
class TMFM:
    """Temporal modality-feature missing (CIDer appendix, aligned only): one Bernoulli(rate) mask
    over time steps, shared by all modalities. Unequal pad masks raise `DataError`."""

    rate: float
    protect_edges: tuple[str, ...] = ()
    level: ClassVar[str] = "frame"

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)
        self.protect_edges = tuple(self.protect_edges)

    def __call__(self, pad: Pad, modalities: Sequence[str], rng: np.random.Generator) -> Masks:
        mods, _ = _check_pad(pad, modalities)
        ref = _aligned(pad, mods, "TMFM")
        ok = _droppable(pad, mods, self.protect_edges)
        shared = ref & (rng.random(ref.shape) < self.rate)
        return _from_drop(pad, mods, {m: shared & ok[m] for m in mods}, self.protect_edges)


@dataclass
class STMFM:
    """Structural temporal modality-feature missing (CIDer appendix; the block as in its code;
    aligned only): one contiguous block of block = round((len - 2) · rate) real frames, start
    uniform in [1, len - block), shared by all modalities. Edge handling: the first and last real frames
    are never dropped (so rate 1 keeps 2 frames); sequences with len <= 2 lose nothing;
    positions count real frames only. Unequal pad masks raise `DataError`."""

    rate: float
    protect_edges: tuple[str, ...] = ()
    level: ClassVar[str] = "frame"

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)
        self.protect_edges = tuple(self.protect_edges)

    def __call__(self, pad: Pad, modalities: Sequence[str], rng: np.random.Generator) -> Masks:
        mods, _ = _check_pad(pad, modalities)
        ref = _aligned(pad, mods, "STMFM")
        _droppable(pad, mods, self.protect_edges)  # validates the names
        length = ref.sum(1)
        block = np.maximum(np.rint((length - 2) * self.rate), 0).astype(int)
        start = rng.integers(1, np.maximum(length - block, 2))
        pos = np.cumsum(ref, axis=1) - 1  # index among real frames
        shared = ref & (pos >= start[:, None]) & (pos < (start + block)[:, None])
        return _from_drop(pad, mods, {m: shared for m in mods}, self.protect_edges)

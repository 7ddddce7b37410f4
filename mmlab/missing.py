"""Missingness generators and fill policies (papers/spec.md §1.5, §2.5, §3.4, §4.1 items 2-3, §4.4).

Missingness is applied *outside* the model, in two separate steps:

1. a **generator** draws `Masks` from padding masks only (never from features), with an explicit
   ``np.random.Generator``, so the same seeded test masks can be drawn once for a whole split
   and reused for every compared method;
2. a **fill policy** (`ZeroFill`, `MeanFill`, `NoiseFill`, `TokenFill`) writes placeholder values
   at the unobserved real frames. `mask_batch` does both halves on an `MMBatch` and keeps the
   complete features in ``batch.complete``.

Conventions: braces name the AVAILABLE modalities (``{T}`` = only text present, §4.4).
Modality-level protocols (FixedPattern, RandomPattern, RateModalityDrop, RMM, CPMViewMissing)
set ``obs[m] = pad[m] & avail[:, j]``; frame-level ones (TraditionalRMFM, RMFM, TMFM, STMFM, SMM)
set ``avail[:, j] = obs[m].any(1)``. ``protect_edges`` names modalities whose first and last
real frame (CIDer's [CLS]/[SEP], §3.4) are never dropped; those frames are left out of the pool
that rates and counts refer to, and ``avail`` then reports whether any *content* frame survived.
"""

from __future__ import annotations

import inspect
import itertools
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch

from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError

Pad = dict[str, np.ndarray]


# ------------------------------------------------------------------------------------- masks
@dataclass
class Masks:
    """Availability ``avail`` (N, M) bool and per-modality observation masks ``obs[m]`` (N, T_m) bool.

    Column j of ``avail`` is modality ``modalities[j]`` (the key order of ``obs``).
    Invariant: ``obs[m]`` is a subset of the padding mask it was drawn from.
    """

    avail: np.ndarray
    obs: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        if self.avail.ndim != 2 or self.avail.dtype != bool or self.avail.shape[1] != len(self.obs):
            raise DataError(
                f"Masks.avail: expected bool (N, M={len(self.obs)}), got {self.avail.dtype} {self.avail.shape}"
            )
        for m, o in self.obs.items():
            if o.ndim != 2 or o.dtype != bool or o.shape[0] != self.avail.shape[0]:
                raise DataError(f"Masks.obs[{m!r}]: expected bool (N={self.avail.shape[0]}, T), got {o.dtype} {o.shape}")

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.obs)

    def __len__(self) -> int:
        return int(self.avail.shape[0])

    def take(self, idx: np.ndarray | Sequence[int]) -> "Masks":
        """The masks of rows ``idx`` (integer or boolean index), e.g. one batch of a split."""
        idx = np.asarray(idx)
        return Masks(self.avail[idx], {m: o[idx] for m, o in self.obs.items()})

    def missing_rate(self, pad: Pad) -> float:
        """Fraction of real frames (pooled over modalities) that are not observed."""
        real = sum(int(pad[m].sum()) for m in self.obs)
        seen = sum(int((self.obs[m] & pad[m]).sum()) for m in self.obs)
        return 1.0 - seen / real if real else 0.0

    def modality_missing_rate(self) -> float:
        """Fraction of missing (sample, modality) entries: CPM-Nets' η."""
        return float(1.0 - self.avail.mean())

    def check(self, pad: Pad) -> "Masks":
        """Raise `DataError` if the masks do not fit ``pad`` or mark padding as observed."""
        for m, o in self.obs.items():
            if m not in pad or pad[m].shape != o.shape:
                got = None if m not in pad else pad[m].shape
                raise DataError(f"Masks.obs[{m!r}]: shape {o.shape} does not match the pad mask {got}")
            if (o & ~pad[m]).any():
                raise DataError(f"Masks.obs[{m!r}] marks padding frames as observed")
        return self


def make_rng(seed: int) -> np.random.Generator:
    """The one way to get a mask RNG: ``np.random.default_rng(seed)`` (never global numpy state)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    return np.random.default_rng(int(seed))


def draw_masks(generator: Callable[..., Masks], pad: Pad, modalities: Sequence[str], seed: int) -> Masks:
    """Draw masks once with a fixed seed (CIDer uses 1111 for test masks, §3.4)."""
    return generator(pad, modalities, make_rng(seed))


def pad_masks(dataset: MMDataset) -> Pad:
    """(N, T_max) padding masks of a dataset, True = real frame, from ``dataset.lengths``."""
    return {
        m: np.arange(dataset.feats[m].shape[1])[None, :] < np.asarray(dataset.lengths[m])[:, None]
        for m in dataset.modalities
    }


# ------------------------------------------------------------------------------------- helpers
def _check_pad(pad: Pad, modalities: Sequence[str]) -> tuple[tuple[str, ...], int]:
    mods = tuple(modalities)
    if not mods or len(set(mods)) != len(mods):
        raise DataError(f"modalities: expected a non-empty list of distinct names, got {list(mods)}")
    n = None
    for m in mods:
        if m not in pad:
            raise DataError(f"pad: no padding mask for modality {m!r} (have {sorted(pad)})")
        p = pad[m]
        if not isinstance(p, np.ndarray) or p.ndim != 2 or p.dtype != bool:
            raise DataError(f"pad[{m!r}]: expected a bool numpy array (N, T), got {getattr(p, 'dtype', type(p))} "
                            f"{getattr(p, 'shape', '')}")
        if n is None:
            n = p.shape[0]
        elif p.shape[0] != n:
            raise DataError(f"pad[{m!r}]: has {p.shape[0]} rows, expected {n} like {mods[0]!r}")
    return mods, int(n)


def _check_rate(name: str, r: float, lo: float = 0.0, hi: float = 1.0) -> float:
    if isinstance(r, bool) or not isinstance(r, (int, float, np.floating, np.integer)) or not (lo <= r <= hi):
        raise ConfigError(f"{name}: expected a number in [{lo}, {hi}], got {r!r}")
    return float(r)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {choices}, got {value!r}")


def _names(names: str | Sequence[str], param: str) -> tuple[str, ...]:
    """``("A", "V")``, ``"{A,V}"`` or ``"fou,fac"`` -> a tuple; ``"{AV}"`` -> ``("AV",)``, split by `_resolve`."""
    if isinstance(names, str):
        s = names.strip().strip("{}").replace(" ", "")
        names = [x for x in s.split(",") if x]
    out = tuple(str(x) for x in names)
    if not out:
        raise ConfigError(f"{param}: expected at least one modality, got none")
    return out


def _resolve(names: str | Sequence[str], modalities: Sequence[str], param: str) -> tuple[str, ...]:
    """Modality names of a pattern; ``"AV"`` means ("A", "V") when A and V are modalities."""
    names = _names(names, param)
    out: list[str] = []
    for x in names:
        if x in modalities:
            out.append(x)
        elif len(x) > 1 and all(c in modalities for c in x):  # "AV" with one-letter modalities
            out.extend(x)
        else:
            raise ConfigError(f"{param}: unknown modality {x!r}; expected names from {list(modalities)}")
    if not out or len(set(out)) != len(out):
        raise ConfigError(f"{param}: expected a non-empty set of distinct modalities, got {names!r}")
    return tuple(sorted(out, key=list(modalities).index))


def pattern_name(available: Sequence[str]) -> str:
    """``("A", "V") -> "{AV}"``; names longer than one letter are comma-joined: ``"{fou,fac}"``."""
    sep = "" if all(len(m) == 1 for m in available) else ","
    return "{" + sep.join(available) + "}"


def _edges(p: np.ndarray) -> np.ndarray:
    """(N, T) bool: the first and the last real frame of every row."""
    e = np.zeros_like(p)
    has = p.any(1)
    rows = np.flatnonzero(has)
    first = p.argmax(1)
    last = p.shape[1] - 1 - p[:, ::-1].argmax(1)
    e[rows, first[has]] = True
    e[rows, last[has]] = True
    return e


def _droppable(pad: Pad, mods: Sequence[str], protect: Sequence[str]) -> Pad:
    """The frames a frame-level protocol may drop: real frames minus protected edges."""
    for m in protect:
        if m not in mods:
            raise ConfigError(f"protect_edges: unknown modality {m!r}; expected names from {list(mods)}")
    return {m: pad[m] & ~_edges(pad[m]) if m in protect else pad[m] for m in mods}


def _from_drop(pad: Pad, mods: Sequence[str], drop: Pad, protect: Sequence[str]) -> Masks:
    """Frame-level masks: obs = pad minus dropped frames; avail = some content frame survives."""
    avail = np.zeros((pad[mods[0]].shape[0], len(mods)), bool)
    obs = {}
    for j, m in enumerate(mods):
        o = pad[m] & ~drop[m]
        if m in protect:
            e = _edges(pad[m])
            content = pad[m] & ~e
            avail[:, j] = np.where(content.any(1), (o & content).any(1), pad[m].any(1))
            o = o | e
        else:
            avail[:, j] = o.any(1)
        obs[m] = o
    return Masks(avail, obs)


def _from_avail(pad: Pad, mods: Sequence[str], avail: np.ndarray, protect: Sequence[str] = ()) -> Masks:
    """Modality-level masks: obs[m] = pad[m] & avail[:, j] (plus protected edges)."""
    obs = {}
    for j, m in enumerate(mods):
        o = pad[m] & avail[:, j, None]
        obs[m] = o | _edges(pad[m]) if m in protect else o
    return Masks(avail.astype(bool), obs)


def _pattern_rows(patterns: Sequence[tuple[str, ...]], mods: Sequence[str]) -> np.ndarray:
    """(P, M) bool availability rows of named patterns."""
    return np.array([[m in p for m in mods] for p in patterns], dtype=bool).reshape(len(patterns), len(mods))


def _aligned(pad: Pad, mods: Sequence[str], who: str) -> np.ndarray:
    ref = pad[mods[0]]
    for m in mods[1:]:
        if pad[m].shape != ref.shape or not np.array_equal(pad[m], ref):
            raise DataError(
                f"{who} needs aligned sequences (equal pad masks in every modality): "
                f"pad mask of {m!r} {pad[m].shape} differs from {mods[0]!r} {ref.shape}"
            )
    return ref


# ------------------------------------------------------------------------------------- modality-level
@dataclass
class Full:
    """Every modality available, every real frame observed ({AVT} / rate 0)."""

    level: ClassVar[str] = "modality"

    def __call__(self, pad: Pad, modalities: Sequence[str], rng: np.random.Generator) -> Masks:
        mods, n = _check_pad(pad, modalities)
        return _from_avail(pad, mods, np.ones((n, len(mods)), bool))


@dataclass
class FixedPattern:
    """One availability pattern for every sample (ADMC Tables 1-2 §1.5, CM-ARR Table 2 §2.5).

    ``available`` names the PRESENT modalities: ``FixedPattern(("T",))`` is the condition {T}.
    """

    available: tuple[str, ...]
    level: ClassVar[str] = "modality"

    def __post_init__(self) -> None:
        self.available = _names(self.available, "available")

    @property
    def name(self) -> str:
        return pattern_name(self.available)

    def __call__(self, pad: Pad, modalities: Sequence[str], rng: np.random.Generator) -> Masks:
        mods, n = _check_pad(pad, modalities)
        row = _pattern_rows([_resolve(self.available, mods, "available")], mods)
        return _from_avail(pad, mods, np.repeat(row, n, axis=0))


def all_patterns(modalities: Sequence[str]) -> list[FixedPattern]:
    """All non-empty proper subsets, by size then modality order: {A},{V},{T},{AV},{AT},{VT}."""
    mods = tuple(modalities)
    return [FixedPattern(c) for k in range(1, len(mods)) for c in itertools.combinations(mods, k)]


def _patterns(patterns: Sequence[Any] | None, mods: tuple[str, ...], who: str) -> np.ndarray:
    if patterns is None:
        pats = [p.available for p in all_patterns(mods)]
    else:
        pats = [p.available if isinstance(p, FixedPattern) else p for p in patterns]
    rows = _pattern_rows([_resolve(p, mods, "patterns") for p in pats], mods)
    if len(rows) == 0:
        raise DataError(f"{who}: no missing pattern to draw from with modalities {list(mods)} (need at least two)")
    return rows


@dataclass
class RandomPattern:
    """MMIN / CM-ARR training sampler (§2.9 C1): per sample, full with prob ``p_full``, else a
    pattern drawn uniformly from ``patterns`` (default: `all_patterns`)."""

    p_full: float = 1 / 7
    patterns: Sequence[Any] | None = None
    level: ClassVar[str] = "modality"

    def __post_init__(self) -> None:
        _check_rate("p_full", self.p_full)

    def __call__(self, pad: Pad, modalities: Sequence[str], rng: np.random.Generator) -> Masks:
        mods, n = _check_pad(pad, modalities)
        rows = _patterns(self.patterns, mods, "RandomPattern") if self.p_full < 1 else np.ones((1, len(mods)), bool)
        full = rng.random(n) < self.p_full
        pick = rng.integers(0, len(rows), size=n)
        avail = np.where(full[:, None], True, rows[pick])
        return _from_avail(pad, mods, avail)


@dataclass
class RateModalityDrop:
    """ADMC Table 3 rate protocol, spec §1.5 [rec]: with prob ``rate`` a sample loses a non-empty
    proper subset of modalities drawn uniformly among the patterns (one or two of A,V,T), else
    it stays full. ``patterns`` narrows the draw (e.g. the TATE-like one-modality drop)."""

    rate: float
    patterns: Sequence[Any] | None = None
    level: ClassVar[str] = "modality"

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)

    def __call__(self, pad: Pad, modalities: Sequence[str], rng: np.random.Generator) -> Masks:
        mods, n = _check_pad(pad, modalities)
        if self.rate == 0:
            return _from_avail(pad, mods, np.ones((n, len(mods)), bool))
        rows = _patterns(self.patterns, mods, "RateModalityDrop")
        hit = rng.random(n) < self.rate
        pick = rng.integers(0, len(rows), size=n)
        return _from_avail(pad, mods, np.where(hit[:, None], rows[pick], True))


@dataclass
class RMM:
    """Random modality missing (CIDer §3.4): each modality of each sample is dropped
    independently with prob ``rate``; all of them may be dropped."""

    rate: float
    protect_edges: tuple[str, ...] = ()
    level: ClassVar[str] = "modality"

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)
        self.protect_edges = tuple(self.protect_edges)

    def __call__(self, pad: Pad, modalities: Sequence[str], rng: np.random.Generator) -> Masks:
        mods, n = _check_pad(pad, modalities)
        _droppable(pad, mods, self.protect_edges)  # validates the names
        avail = rng.random((n, len(mods))) >= self.rate
        return _from_avail(pad, mods, avail, self.protect_edges)


@dataclass
class CPMViewMissing:
    """CPM-Nets / UIMC view missing (handwritten-anchors.md §1.1): ``eta`` is the fraction of
    missing (sample, view) entries. Every sample keeps one uniformly chosen view; the other
    entries are kept independently with the prob that makes the expected share of kept entries
    1 - eta; the whole mask is redrawn until |mean - (1 - eta)| < ``tol``. If 1 - eta <= 1/V
    every sample keeps exactly one view (so the realised eta is 1 - 1/V)."""

    eta: float
    tol: float = 0.005
    max_tries: int = 10_000
    level: ClassVar[str] = "modality"

    def __post_init__(self) -> None:
        _check_rate("eta", self.eta)
        if not (isinstance(self.tol, (int, float)) and self.tol > 0):
            raise ConfigError(f"tol: expected a positive number, got {self.tol!r}")
        if not (isinstance(self.max_tries, int) and self.max_tries >= 1):
            raise ConfigError(f"max_tries: expected a positive integer, got {self.max_tries!r}")

    def __call__(self, pad: Pad, modalities: Sequence[str], rng: np.random.Generator) -> Masks:
        mods, n = _check_pad(pad, modalities)
        v, keep = len(mods), 1.0 - self.eta
        if self.eta == 0:
            return _from_avail(pad, mods, np.ones((n, v), bool))
        if keep <= 1.0 / v:
            return _from_avail(pad, mods, np.eye(v, dtype=bool)[rng.integers(0, v, size=n)])
        p_other = (keep * v - 1.0) / (v - 1.0)  # E[mean] = (1 + (V-1) p) / V = 1 - eta
        reachable = abs(round(keep * n * v) / (n * v) - keep) < self.tol
        for _ in range(self.max_tries if reachable else 0):
            avail = np.eye(v, dtype=bool)[rng.integers(0, v, size=n)] | (rng.random((n, v)) < p_other)
            if abs(avail.mean() - keep) < self.tol:
                return _from_avail(pad, mods, avail)
        raise DataError(
            f"CPMViewMissing(eta={self.eta}): no mask within tol={self.tol} of 1-eta after {self.max_tries} "
            f"draws for N={n} samples x V={v} views; draw over the whole split or raise tol"
        )


# ------------------------------------------------------------------------------------- frame-level
@dataclass
class TraditionalRMFM:
    """Traditional random modality-feature missing (CIDer §3.4): every real frame of modality m
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
    """Specific modality missing (CIDer §3.4): the frame-level twin of `FixedPattern`; ``keep``
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
    """Random modality-feature missing (CIDer §3.4, B1, B2), pooled per sample over the
    concatenation of all modalities' droppable frames (M_all over T_l + T_a + T_v).

    - ``mode="bernoulli"`` (code): every pooled frame dropped with prob r;
      ``"exact_count"`` (B2): exactly round(r · n_valid) pooled frames dropped, uniformly
      without replacement (round half to even, like Python's ``round``).
    - ``rate=None`` is the training sampler (B1): ``"per_sample_uniform"`` (paper) draws
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
    """Temporal modality-feature missing (CIDer §3.4, aligned only): one Bernoulli(rate) mask
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
    """Structural temporal modality-feature missing (CIDer §3.4 [code], aligned only): one
    contiguous block of block = round((len - 2) · rate) real frames, start uniform in
    [1, len - block), shared by all modalities. Edge handling: the first and last real frames
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


# ------------------------------------------------------------------------------------- fill policies
def _real(pad: Mapping[str, torch.Tensor] | None, m: str, obs: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(obs) if pad is None else pad[m].to(obs.device)


def _need_float(x: torch.Tensor, m: str, who: str) -> None:
    if not torch.is_floating_point(x):
        raise DataError(f"{who}: modality {m!r} holds {x.dtype} (token ids?); use TokenFill for integer inputs")


def _check_fill_inputs(feats: Mapping[str, torch.Tensor], obs: Mapping[str, torch.Tensor]) -> None:
    for m, x in feats.items():
        if m not in obs:
            raise DataError(f"fill: no observation mask for modality {m!r} (have {sorted(obs)})")
        if tuple(obs[m].shape) != tuple(x.shape[:2]) or obs[m].dtype != torch.bool:
            raise DataError(f"fill: obs[{m!r}] expected bool {tuple(x.shape[:2])}, got {obs[m].dtype} {tuple(obs[m].shape)}")


@dataclass
class ZeroFill:
    """Unobserved frames become zeros (CM-ARR and most baselines; CIDer audio/vision, B3)."""

    def __call__(self, feats, obs, generator: torch.Generator | None = None, pad=None) -> dict[str, torch.Tensor]:
        _check_fill_inputs(feats, obs)
        out = {}
        for m, x in feats.items():
            _need_float(x, m, "ZeroFill")
            out[m] = torch.where(obs[m].to(x.device)[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        return out


@dataclass
class MeanFill:
    """Unobserved real frames become the train-split mean feature (mean padding, §4.3)."""

    means: dict[str, np.ndarray]

    @classmethod
    def from_dataset(cls, train: MMDataset) -> "MeanFill":
        """Per-modality mean over the valid frames of the dataset's train rows only."""
        rows = np.flatnonzero(train.split == "train")
        if len(rows) == 0:
            raise DataError(f"MeanFill.from_dataset: dataset {train.name!r} has no 'train' rows; pass the train split")
        pad = pad_masks(train)
        means = {}
        for m in train.modalities:
            x, p = train.feats[m][rows], pad[m][rows]
            means[m] = (x[p].astype(np.float64).sum(0) / max(int(p.sum()), 1)).astype(np.float32)
        return cls(means)

    def __call__(self, feats, obs, generator: torch.Generator | None = None, pad=None) -> dict[str, torch.Tensor]:
        _check_fill_inputs(feats, obs)
        out = {}
        for m, x in feats.items():
            _need_float(x, m, "MeanFill")
            if m not in self.means:
                raise DataError(f"MeanFill: no train mean for modality {m!r} (have {sorted(self.means)})")
            mu = torch.as_tensor(np.asarray(self.means[m]), dtype=x.dtype, device=x.device)
            if mu.shape != (x.shape[-1],):
                raise DataError(f"MeanFill.means[{m!r}]: expected shape ({x.shape[-1]},), got {tuple(mu.shape)}")
            o, real = obs[m].to(x.device), _real(pad, m, obs[m]).to(x.device)
            out[m] = torch.where(o[..., None], x, torch.where(real[..., None], mu, torch.zeros_like(x)))
        return out


@dataclass
class NoiseFill:
    """Unobserved real frames become N(mean, std²) noise (ADMC's start for ADN, §4.1 item 3).
    Needs an explicit ``torch.Generator``; noise is drawn on the generator's device."""

    std: float = 1.0
    mean: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.std, (int, float)) and self.std >= 0 and math.isfinite(self.std)):
            raise ConfigError(f"std: expected a non-negative number, got {self.std!r}")

    def __call__(self, feats, obs, generator: torch.Generator | None = None, pad=None) -> dict[str, torch.Tensor]:
        if generator is None:
            raise ConfigError("NoiseFill: pass an explicit torch.Generator (generator=...) for reproducible noise")
        _check_fill_inputs(feats, obs)
        out = {}
        for m, x in feats.items():
            _need_float(x, m, "NoiseFill")
            z = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
            z = z * self.std + self.mean
            o, real = obs[m].to(x.device), _real(pad, m, obs[m]).to(x.device)
            out[m] = torch.where(o[..., None], x, torch.where(real[..., None], z, torch.zeros_like(x)))
        return out


@dataclass
class TokenFill:
    """Token-id inputs (CIDer, B3): unobserved real tokens become ``unk_id`` ([UNK] = 100 in
    BERT); float modalities go to ``base`` (zero fill). Pair with ``protect_edges`` to keep
    [CLS]/[SEP]; the attention (pad) mask is unchanged."""

    unk_id: int = 100
    base: Any = field(default_factory=ZeroFill)

    def __call__(self, feats, obs, generator: torch.Generator | None = None, pad=None) -> dict[str, torch.Tensor]:
        _check_fill_inputs(feats, obs)
        floats = {m: x for m, x in feats.items() if torch.is_floating_point(x)}
        out = self.base(floats, {m: obs[m] for m in floats}, generator=generator, pad=pad) if floats else {}
        for m, x in feats.items():
            if m not in floats:
                o, real = obs[m].to(x.device), _real(pad, m, obs[m]).to(x.device)
                out[m] = torch.where(real & ~o, torch.full_like(x, self.unk_id), x)
        return {m: out[m] for m in feats}


FILLS = ("zero", "mean", "noise", "token")


def make_fill(name: str, train: MMDataset | None = None, **params: Any) -> Callable[..., dict[str, torch.Tensor]]:
    """A fill policy by name: "zero" | "mean" (needs the ``train`` dataset) | "noise" | "token"."""
    key = str(name).strip().lower()
    if key == "zero":
        return ZeroFill(**params)
    if key == "mean":
        if train is None:
            raise ConfigError("fill 'mean': needs the train dataset (make_fill('mean', train=...))")
        return MeanFill.from_dataset(train)
    if key == "noise":
        return NoiseFill(**params)
    if key == "token":
        return TokenFill(**params)
    raise ConfigError(f"fill: unknown name {name!r}; known fills: {', '.join(FILLS)}")


# ------------------------------------------------------------------------------------- batches
def _fit_time(o: np.ndarray, pad: torch.Tensor, m: str) -> np.ndarray:
    """Cut or extend a mask drawn on (N, T_max) to the batch's T (extra columns must be padding)."""
    t = pad.shape[1]
    if o.shape[1] > t:
        if o[:, t:].any():
            raise DataError(f"mask_batch: masks for {m!r} observe frames beyond the batch length {t}")
        return o[:, :t]
    if o.shape[1] < t:
        if pad[:, o.shape[1]:].any():
            raise DataError(f"mask_batch: masks for {m!r} have {o.shape[1]} frames, the batch has real frames up to {t}")
        return np.concatenate([o, np.zeros((o.shape[0], t - o.shape[1]), bool)], axis=1)
    return o


def mask_batch(batch: MMBatch, masks: Masks, fill: Callable[..., dict[str, torch.Tensor]],
               generator: torch.Generator | None = None) -> MMBatch:
    """Apply ``masks`` (rows = the batch's rows, e.g. ``masks.take(idx)``) and ``fill`` to a batch.

    Returns a new batch: ``feats`` filled, ``obs_mask`` / ``avail`` from the masks (intersected
    with the batch's own, so a natively missing modality stays missing), and ``complete`` = the
    original unmasked features (those of a batch that was already masked stay the originals).
    """
    if set(masks.modalities) != set(batch.modalities):
        raise DataError(f"mask_batch: masks are for {list(masks.modalities)}, the batch has {list(batch.modalities)}")
    if len(masks) != batch.size:
        raise DataError(f"mask_batch: masks have {len(masks)} rows, the batch has {batch.size} (use masks.take(idx))")
    dev, complete = batch.device, batch.complete_feats()
    obs = {}
    for m in batch.modalities:
        pad = batch.pad_mask[m]
        o = torch.from_numpy(np.ascontiguousarray(_fit_time(masks.obs[m], pad.cpu(), m))).to(dev)
        if (o & ~pad).any():
            raise DataError(f"mask_batch: masks for {m!r} mark padding frames of the batch as observed")
        obs[m] = o & batch.obs_mask[m]
    cols = [masks.modalities.index(m) for m in batch.modalities]
    avail = torch.from_numpy(masks.avail[:, cols].copy()).to(dev) & batch.avail
    feats = fill(complete, obs, generator=generator, pad=batch.pad_mask)
    return replace(batch, feats=feats, obs_mask=obs, avail=avail, complete=complete)

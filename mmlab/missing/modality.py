"""Modality-level missingness generators: a whole modality is present or absent (ADMC §5.2-5.3,
CM-ARR §4.3, CIDer's RMM; CPM-Nets' view-missing η for multi-view data)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from mmlab.errors import ConfigError, DataError
from mmlab.missing.masks import (
    Masks, Pad, pattern_name, _check_pad, _check_rate, _droppable, _from_avail, _names,
    _pattern_rows, _resolve,
)


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
    """One availability pattern for every sample (ADMC Tables 1-2, §5.2; CM-ARR Table 2, §4.3).

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
    """Training sampler in the style of MMIN (Zhao et al., ACL 2021), which trains under the six
    missing conditions (CM-ARR does not describe its training-time missingness): per sample, full
    with prob ``p_full``, else a pattern drawn uniformly from ``patterns`` (default: `all_patterns`)."""

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
    """ADMC Table 3 rate protocol (§5.3: "randomly drop one or two modalities"; the exact sampling
    is ours, the paper does not give it): with prob ``rate`` a sample loses a non-empty
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
    """Random modality missing (CIDer, appendix "Definition of Various Modality Missing Scenarios";
    sampling as in its code): each modality of each sample is dropped
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
    """CPM-Nets / UIMC view missing (Zhang et al., NeurIPS 2019; ``get_sn`` in its code,
    https://github.com/hanmenghan/CPM_Nets, reused by UIMC; `data_cards/handwritten.md`): ``eta``
    is the fraction of missing (sample, view) entries. Every sample keeps one uniformly chosen view; the other
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

"""Masks (availability + per-frame observation), mask RNGs, padding masks and the helpers the
generators share (mmlab.missing)."""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Callable, Sequence

import numpy as np

from mmlab.data.dataset import MMDataset
from mmlab.utils import numpy_rng
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
    """A mask RNG: `mmlab.utils.numpy_rng` of the seed, i.e. ``np.random.default_rng(seed)``
    (never global numpy state)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    return numpy_rng(int(seed))


def draw_masks(generator: Callable[..., Masks], pad: Pad, modalities: Sequence[str], seed: int,
               tokens: Sequence[str] = ()) -> Masks:
    """Draw masks once with a fixed seed (CIDer's code uses seed 1111 for its test masks).

    ``tokens`` names token modalities (``dataset.token_modalities``): a generator with
    ``protect_edges`` gets them added (so rates count content tokens only), and the result goes
    through `keep_token_edges` ([CLS]/[SEP] always observed).
    """
    tokens = tuple(tokens)
    has_protect = is_dataclass(generator) and "protect_edges" in {f.name for f in fields(generator)}
    if tokens and has_protect:
        extra = tuple(m for m in tokens if m not in generator.protect_edges)
        if extra:
            generator = replace(generator, protect_edges=(*generator.protect_edges, *extra))
    masks = generator(pad, modalities, make_rng(seed))
    return keep_token_edges(masks, pad, tokens) if tokens else masks


def keep_token_edges(masks: Masks, pad: Pad, tokens: Sequence[str]) -> Masks:
    """Masks where the [CLS] and [SEP] (first and last real position) of every token modality in
    ``tokens`` are observed, always: a dropped token modality reads ``[CLS] [UNK] ... [SEP]``
    after `TokenFill`, as CIDer's text input does (in its code).

    ``avail`` of a token modality then means "available and some content token (between [CLS]
    and [SEP]) is observed"; a row without content tokens keeps the availability it had. This
    is the rule frame-level generators with ``protect_edges`` already follow.
    """
    if not tokens:
        return masks
    avail, obs = masks.avail.copy(), dict(masks.obs)
    mods = masks.modalities
    for m in tokens:
        if m not in obs:
            raise DataError(f"tokens: unknown modality {m!r}; the masks are for {list(mods)}")
        if m not in pad or pad[m].shape != obs[m].shape:
            raise DataError(f"pad[{m!r}]: expected shape {obs[m].shape} like the masks, got {getattr(pad.get(m), 'shape', None)}")
        j, e = mods.index(m), _edges(pad[m])
        content = pad[m] & ~e
        o = obs[m] & pad[m]
        avail[:, j] = np.where(content.any(1), avail[:, j] & (o & content).any(1), avail[:, j])
        obs[m] = o | e
    return Masks(avail, obs)


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

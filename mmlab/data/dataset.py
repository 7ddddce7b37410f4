"""`MMDataset`: an in-memory multimodal dataset with named modalities and seeded splits.

Features are stored zero-padded, one array per modality, (N, T_m, D_m) float32, with the
valid lengths (N,) beside them. A *token modality* instead holds bert-base-uncased token ids
(N, T_m) int64 (`mmlab.data.tokens`: [CLS] first, [SEP] last, [PAD] = 0 after the length).
Batches are cut to the longest sequence they contain.

Splits: ``train``, ``valid``, ``test`` and any number of extra *test* splits named
``test_<name>`` (`EXTRA_SPLIT_RE`, e.g. ``test_ood``). Training and calibration read
`MMDataset.training_view` (train + valid rows); `MMDataset.test_splits` lists the test splits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from mmlab.data.batch import MMBatch
from mmlab.data.tokens import PAD_ID, VOCAB_SIZE, token_problems
from mmlab.errors import DataError

SPLITS = ("train", "valid", "test")  # the core splits; extra test splits match EXTRA_SPLIT_RE
EXTRA_SPLIT_RE = re.compile(r"^test_[A-Za-z0-9_]{1,40}$")  # e.g. test_ood, test_noisy_2
SPLIT_RULE = "train, valid, test or test_<name> (letters, digits, '_'; e.g. test_ood)"
MAX_UNNAMED_CLASSES = 10_000  # from_arrays without classes= names 0..max(y); a larger max needs names
# Methods key modules by modality name (torch.nn.ModuleDict): no '.', no attribute of a module.
MODALITY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
MODALITY_RULE = "a letter, then up to 31 letters, digits or '_' (regex ^[A-Za-z][A-Za-z0-9_]{0,31}$)"
_RESERVED = frozenset(n for n in (*dir(torch.nn.ModuleDict), "training") if MODALITY_RE.match(n))


def modality_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a modality name (None when it can): every method uses it as a
    torch module name, so it must match `MODALITY_RE` and not be an attribute of a module
    (``training``, ``forward``, ``to``, ...)."""
    if not isinstance(name, str) or not MODALITY_RE.match(name):
        return f"modality name {name!r} must be {MODALITY_RULE}; methods use it as a module name"
    if name in _RESERVED:
        return f"modality name {name!r} is reserved (an attribute of torch.nn.Module); rename it, e.g. {name + '_'!r}"
    return None


def duplicate_problem(ids: np.ndarray, what: str = "sample ids") -> str | None:
    """``"<what> are not unique: 'u' appears 3 times (4 duplicated values)"`` or None (the most
    repeated value is named)."""
    a = np.asarray(ids)
    values, counts = np.unique(a.astype(str) if a.dtype.hasobject else a, return_counts=True)
    dup = np.flatnonzero(counts > 1)
    if not len(dup):
        return None
    i = dup[np.argmax(counts[dup])]
    more = f" ({len(dup)} duplicated values)" if len(dup) > 1 else ""
    return f"{what} are not unique: {values[i].item()!r} appears {int(counts[i])} times{more}"


def is_split_name(name: str) -> bool:
    """True for ``train``, ``valid``, ``test`` and extra test splits ``test_<name>``."""
    return name in SPLITS or bool(EXTRA_SPLIT_RE.match(str(name)))


def is_test_split(name: str) -> bool:
    """True for ``test`` and every extra test split ``test_<name>``."""
    return name == "test" or bool(EXTRA_SPLIT_RE.match(str(name)))


def order_splits(names) -> list[str]:
    """Split names in the canonical order: train, valid, test, then extra test splits sorted."""
    names = set(str(x) for x in names)
    return [x for x in SPLITS if x in names] + sorted(x for x in names if x not in SPLITS)


def missing_required_splits(split: np.ndarray) -> list[str]:
    """What a split column lacks: train, valid, and at least one test split (``test`` or
    ``test_<name>``)."""
    have = set(np.unique(np.asarray(split).astype(str)).tolist())
    out = [x for x in ("train", "valid") if x not in have]
    if not any(is_test_split(x) for x in have):
        out.append("test (or another test split test_<name>)")
    return out


def stratified_split(
    y: np.ndarray, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 0
) -> np.ndarray:
    """Seeded stratified train/valid/test assignment; returns an (N,) array of split names.

    Within each class the samples are shuffled with ``np.random.default_rng(seed)`` and cut
    at the cumulative fractions, so every class appears in every split in proportion. In a tiny
    set, a split with a positive fraction that came out empty takes one sample from the largest
    split (so any N >= 3 gets non-empty train, valid and test at the default fractions).
    """
    y = np.asarray(y)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise DataError(f"split fractions: expected three non-negative numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    out = np.empty(len(y), dtype="<U5")
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n_train = int(round(fractions[0] * len(idx)))
        n_valid = int(round(fractions[1] * len(idx)))
        out[idx[:n_train]] = "train"
        out[idx[n_train : n_train + n_valid]] = "valid"
        out[idx[n_train + n_valid :]] = "test"
    # tiny sets: a split with a positive fraction that came out empty takes one sample from the
    # largest split that can spare one (its largest class first); nothing moves otherwise
    for name, frac in zip(SPLITS, fractions):
        if frac <= 0 or (out == name).any():
            continue
        sizes = {s: int((out == s).sum()) for s in SPLITS}
        donor = max((s for s in SPLITS if sizes[s] > 1), key=lambda s: sizes[s], default=None)
        if donor is None:
            break
        rows = np.flatnonzero(out == donor)
        classes, counts = np.unique(y[rows], return_counts=True)
        pick = rows[y[rows] == classes[np.argmax(counts)]]
        out[pick[rng.integers(len(pick))]] = name
    return out


@dataclass
class MMDataset:
    """A whole dataset (all splits) held in memory.

    ``feats[m]`` (N, T_m, D_m) float32 zero-padded, or for a token modality (N, T_m) int64
    token ids (see `token_modalities`); ``lengths[m]`` (N,) int valid frames (>= 1; for tokens
    counting [CLS] and [SEP]); ``y`` (N,) int labels in [0, n_classes); ``y_reg`` (N,) float32
    regression target or None; ``split`` (N,) in train / valid / test / test_<name>; ``ids``
    (N,) str. ``avail[m]`` (N,) bool marks the samples that *have* modality m (natural
    missingness: a failed recogniser, no face in view); a modality without an entry is present
    everywhere, and every sample has at least one. A natively missing modality is never observed
    (``batch().avail`` / ``obs_mask`` are False; its stored frames are filler) and stays missing
    under every mask. ``info`` holds dataset-specific extras (e.g. the synthetic oracle).
    """

    name: str
    modalities: tuple[str, ...]
    feats: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray]
    y: np.ndarray
    split: np.ndarray
    ids: np.ndarray
    classes: list[str]
    y_reg: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    avail: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        self.avail = {m: np.asarray(a) for m, a in (self.avail or {}).items()}
        if self.y_reg is not None:
            r = np.asarray(self.y_reg)
            if r.dtype.kind not in "fiu":
                raise DataError(f"dataset {self.name!r}: y_reg must hold real numbers, got dtype {r.dtype}")
            self.y_reg = r.astype(np.float32, copy=False)
        self.validate()

    # ----------------------------------------------------------------- checks
    def validate(self) -> "MMDataset":
        """Check the data contract; raise `DataError` naming the key and what was expected."""
        where = f"dataset {self.name!r}"
        n = len(self.y)
        if n == 0:
            raise DataError(f"{where}: has no samples")
        if not self.modalities:
            raise DataError(f"{where}: has no modalities")
        if self.y.ndim != 1 or not np.issubdtype(self.y.dtype, np.integer):
            raise DataError(f"{where}: labels y must be a 1-d integer array, got {self.y.dtype} {self.y.shape}")
        if self.y.min() < 0 or self.y.max() >= len(self.classes):
            raise DataError(
                f"{where}: labels must lie in [0, {len(self.classes)}), got range [{self.y.min()}, {self.y.max()}]"
            )
        for key, arr in (("split", self.split), ("ids", self.ids)):
            if arr.shape != (n,):
                raise DataError(f"{where}: {key} must have shape ({n},), got {arr.shape}")
        dup = duplicate_problem(self.ids)
        if dup:
            raise DataError(f"{where}: {dup}")
        for m in self.modalities:
            bad_name = modality_name_problem(m)
            if bad_name:
                raise DataError(f"{where}: {bad_name}")
        bad = sorted(x for x in np.unique(self.split).tolist() if not is_split_name(x))
        if bad:
            raise DataError(f"{where}: split values must be in {SPLIT_RULE}, got {bad[:5]}")
        if self.y_reg is not None:
            if self.y_reg.shape != (n,):
                raise DataError(f"{where}: y_reg must have shape ({n},), got {self.y_reg.shape}")
            if not np.isfinite(self.y_reg).all():
                raise DataError(f"{where}: y_reg contains NaN or inf")
        self._validate_avail(where, n)
        for m in self.modalities:
            x, ln = self.feats.get(m), self.lengths.get(m)
            if x is None or ln is None:
                raise DataError(f"{where}: modality {m!r} has no features or lengths")
            if x.ndim == 2 and x.shape[0] == n and x.dtype.kind in "iu":
                self._validate_tokens(m, x, ln, where)
                continue
            if x.ndim != 3 or x.shape[0] != n:
                raise DataError(f"{where}: features of {m!r} must be (N={n}, T, D) float32 or token ids (N, T) int64, "
                                f"got {x.shape}")
            if x.dtype != np.float32:
                raise DataError(f"{where}: features of {m!r} must be float32, got {x.dtype}")
            self._validate_lengths(m, x, ln, where)
            if not np.isfinite(x).all():
                raise DataError(f"{where}: features of {m!r} contain NaN or inf")
        return self

    def _validate_avail(self, where: str, n: int) -> None:
        unknown = sorted(set(self.avail) - set(self.modalities))
        if unknown:
            raise DataError(f"{where}: availability given for {unknown}, which are not modalities {list(self.modalities)}")
        for m, a in self.avail.items():
            if a.shape != (n,) or a.dtype != bool:
                raise DataError(f"{where}: avail[{m!r}] must be (N={n},) bool, got {a.dtype} {a.shape}")
        if self.avail:
            present = np.ones((n, len(self.modalities)), bool)
            for j, m in enumerate(self.modalities):
                present[:, j] = self.avail.get(m, True)
            none = np.flatnonzero(~present.any(1))
            if len(none):
                raise DataError(f"{where}: {len(none)} sample(s) have no modality at all (first id "
                                f"{self.ids[none[0]]!r}); drop them or give them one")

    @staticmethod
    def _validate_lengths(m: str, x: np.ndarray, ln: np.ndarray, where: str) -> None:
        if ln.shape != (x.shape[0],) or ln.min() < 1 or ln.max() > x.shape[1]:
            raise DataError(
                f"{where}: lengths of {m!r} must be (N,) integers in [1, {x.shape[1]}], "
                f"got shape {ln.shape} range [{ln.min()}, {ln.max()}]"
            )

    def _validate_tokens(self, m: str, x: np.ndarray, ln: np.ndarray, where: str) -> None:
        if x.dtype != np.int64:
            raise DataError(f"{where}: token ids of {m!r} must be int64 (N, T), got {x.dtype}")
        self._validate_lengths(m, x, ln, where)
        problems = token_problems(x, ln, f"token ids of {m!r}", f"lengths of {m!r}")
        if problems:
            raise DataError(f"{where}: " + "; ".join(problems))
        if (x[np.arange(x.shape[1])[None, :] >= ln[:, None]] != PAD_ID).any():
            raise DataError(f"{where}: token ids of {m!r} past the length must be [PAD] = {PAD_ID}")

    # ----------------------------------------------------------------- views
    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def token_modalities(self) -> tuple[str, ...]:
        """The modalities holding token ids (N, T) int64 rather than features (N, T, D)."""
        return tuple(m for m in self.modalities if self.feats[m].ndim == 2)

    @property
    def dims(self) -> dict[str, int]:
        """Feature size D_m per modality; for a token modality the vocabulary size (30522), the
        number of rows an embedding table over its ids needs."""
        return {m: VOCAB_SIZE if self.feats[m].ndim == 2 else int(self.feats[m].shape[2]) for m in self.modalities}

    @property
    def max_len(self) -> dict[str, int]:
        return {m: int(self.feats[m].shape[1]) for m in self.modalities}

    @property
    def splits(self) -> list[str]:
        """The split names present, in order train, valid, test, test_<name>..."""
        return order_splits(np.unique(self.split).tolist())

    @property
    def test_splits(self) -> list[str]:
        """The test splits present: ``test`` first (when present), then ``test_<name>`` sorted."""
        return [x for x in self.splits if is_test_split(x)]

    def split_indices(self, split: str) -> np.ndarray:
        if not is_split_name(split):
            raise DataError(f"split: expected {SPLIT_RULE}, got {split!r}")
        return np.flatnonzero(self.split == split)

    def training_view(self) -> "MMDataset":
        """The train and valid rows only: what training, early stopping and calibration may
        read (no test split of any name)."""
        idx = np.flatnonzero(np.isin(self.split, ("train", "valid")))
        if len(idx) == 0:
            raise DataError(f"dataset {self.name!r}: has no train or valid rows")
        return self.take(idx)

    def has_all(self, modalities: Sequence[str]) -> np.ndarray:
        """(N,) bool: the samples that natively have every one of ``modalities`` (``avail``; all
        True without natural missingness)."""
        have = np.ones(len(self), dtype=bool)
        for m in modalities:
            if m in self.avail:
                have &= self.avail[m].astype(bool)
        return have

    def subset(self, split: str) -> "MMDataset":
        """The samples of one split, as a dataset of its own."""
        idx = self.split_indices(split)
        if len(idx) == 0:
            raise DataError(f"dataset {self.name!r}: split {split!r} is empty")
        return self.take(idx)

    def take(self, idx: np.ndarray) -> "MMDataset":
        return MMDataset(
            name=self.name,
            modalities=self.modalities,
            feats={m: self.feats[m][idx] for m in self.modalities},
            lengths={m: self.lengths[m][idx] for m in self.modalities},
            y=self.y[idx],
            split=self.split[idx],
            ids=self.ids[idx],
            classes=self.classes,
            y_reg=None if self.y_reg is None else self.y_reg[idx],
            info=self.info,
            avail={m: a[idx] for m, a in self.avail.items()},
        )

    # ----------------------------------------------------------------- batches
    def batch(self, idx: Sequence[int] | np.ndarray | None = None, device: str | torch.device = "cpu") -> MMBatch:
        """An `MMBatch` of rows ``idx`` (all rows when None): every modality available except
        where ``avail`` says a sample lacks it (then none of its frames is observed)."""
        idx = np.arange(len(self)) if idx is None else np.asarray(idx)
        feats, pad, obs = {}, {}, {}
        avail = torch.ones(len(idx), len(self.modalities), dtype=torch.bool)
        for j, m in enumerate(self.modalities):
            ln = self.lengths[m][idx]
            t = int(ln.max())
            x = torch.from_numpy(np.ascontiguousarray(self.feats[m][idx, :t]))
            mask = torch.arange(t)[None, :] < torch.from_numpy(ln)[:, None]
            if m in self.avail:
                avail[:, j] = torch.from_numpy(self.avail[m][idx])
            feats[m], pad[m], obs[m] = x.to(device), mask.to(device), (mask & avail[:, j, None]).to(device)
        avail = avail.to(device)
        y = torch.from_numpy(self.y[idx].astype(np.int64)).to(device)
        y_reg = None if self.y_reg is None else torch.from_numpy(self.y_reg[idx].astype(np.float32)).to(device)
        return MMBatch(self.modalities, feats, pad, obs, avail, y, [str(i) for i in self.ids[idx]], y_reg)

    def iter_batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        rng: np.random.Generator | None = None,
        device: str | torch.device = "cpu",
    ) -> Iterator[MMBatch]:
        """Batches over the whole dataset; ``shuffle`` needs an explicit ``rng``."""
        if batch_size < 1:
            raise DataError(f"batch_size: expected a positive integer, got {batch_size}")
        order = np.arange(len(self))
        if shuffle:
            if rng is None:
                raise DataError("iter_batches(shuffle=True) needs an explicit numpy Generator `rng`")
            order = rng.permutation(len(self))
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start : start + batch_size], device=device)

    def describe(self) -> str:
        """A short human-readable summary (modalities, shapes, classes, split sizes)."""
        lines = [f"{self.name}: {len(self)} samples, {self.n_classes} classes"]
        for m in self.modalities:
            ln = self.lengths[m]
            kind = f"token ids (vocabulary {VOCAB_SIZE})" if m in self.token_modalities else f"D={self.dims[m]}"
            lines.append(f"  {m}: {kind}, T in [{ln.min()}, {ln.max()}]")
        counts = np.bincount(self.y, minlength=self.n_classes)
        lines.append("  classes: " + ", ".join(f"{c}={k}" for c, k in zip(self.classes, counts)))
        names = order_splits([*SPLITS, *self.splits])
        lines.append("  splits: " + ", ".join(f"{s}={int((self.split == s).sum())}" for s in names))
        if self.y_reg is not None:
            lines.append(f"  y_reg: range [{self.y_reg.min():.3g}, {self.y_reg.max():.3g}]")
        return "\n".join(lines)


def from_arrays(
    name: str,
    feats: dict[str, np.ndarray],
    y: np.ndarray,
    lengths: dict[str, np.ndarray] | None = None,
    split: np.ndarray | None = None,
    ids: np.ndarray | None = None,
    classes: list[str] | None = None,
    split_seed: int = 0,
    y_reg: np.ndarray | None = None,
    info: dict | None = None,
    tokens: Sequence[str] = (),
) -> MMDataset:
    """Build an `MMDataset` from plain arrays; (N, D) features become (N, 1, D).

    ``tokens`` names the token modalities: their arrays are (N, T) integer token ids (stored
    int64, ids past the length set to [PAD] = 0). Missing ``lengths`` mean full length; a
    missing ``split`` gets a seeded stratified split.
    """
    y = np.asarray(y)
    n = len(y)
    unknown = [m for m in tokens if m not in feats]
    if unknown:
        raise DataError(f"{name}: tokens names {unknown}, which are not modalities (have {list(feats)})")
    f32, lens = {}, {}
    for m, x in feats.items():
        x = np.asarray(x)
        if m in tokens:
            if x.ndim != 2 or x.dtype.kind not in "iu":
                raise DataError(f"{name}: token ids of {m!r} must be an integer array (N, T), got {x.dtype} {x.shape}")
            ln = np.full(n, x.shape[1], np.int64) if lengths is None or m not in lengths else np.asarray(lengths[m])
            x = np.array(x, dtype=np.int64)
            ln = ln.astype(np.int64)
            if ln.shape == (len(x),):
                x[np.arange(x.shape[1])[None, :] >= ln[:, None]] = PAD_ID
            f32[m], lens[m] = x, ln
            continue
        if x.ndim == 2:
            x = x[:, None, :]
        if x.ndim != 3:
            raise DataError(f"{name}: features of {m!r} must be (N, T, D) or (N, D), got {x.shape}")
        f32[m] = np.ascontiguousarray(x, dtype=np.float32)
        lens[m] = (
            np.full(n, x.shape[1], np.int64) if lengths is None or m not in lengths else np.asarray(lengths[m]).astype(np.int64)
        )
    if classes is None:
        top = int(y.max()) + 1 if n and y.dtype.kind in "fiub" and np.isfinite(y).all() else 0
        if top > max(n, MAX_UNNAMED_CLASSES):
            raise DataError(f"{name}: label {top - 1} needs {top} classes; pass classes= or re-index labels to 0..C-1")
        classes = [str(c) for c in range(top)]
    if split is None:
        split = stratified_split(y, seed=split_seed)
    if ids is None:
        ids = np.array([f"{name}-{i}" for i in range(n)])
    return MMDataset(
        name=name,
        modalities=tuple(feats),
        feats=f32,
        lengths=lens,
        y=y.astype(np.int64),
        split=np.asarray(split).astype(str),
        ids=np.asarray(ids).astype(str),
        classes=list(classes),
        y_reg=y_reg,
        info=info or {},
    )

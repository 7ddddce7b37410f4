"""What the licensed-dataset loaders share: finding a dataset's folder under the data root, and
the checks every per-sample array goes through (frames, labels, names, ids, budgeted padding).

The loaders themselves live in one module per released layout: `mmlab.data.mmin` (IEMOCAP,
MSP-IMPROV), `mmlab.data.mintrec`, `mmlab.data.mmsa` (MOSI, MOSEI); `mmlab.data.licensed`
registers them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mmlab.data.budget import Budget, nbytes_of
from mmlab.data.dataset import duplicate_problem
from mmlab.data.registry import data_root
from mmlab.errors import DataError

PathLike = str | os.PathLike

IEMOCAP_DIRS = ("IEMOCAP", "iemocap", "IEMOCAP_features", "IEMOCAP_features_2021")
MSP_DIRS = ("MSP-IMPROV", "MSP_IMPROV", "msp_improv", "msp-improv", "MSP")
MINTREC_DIRS = ("MIntRec", "mintrec", "MIA-datasets/MIntRec")
MOSI_DIRS = ("MOSI", "CMU-MOSI", "mosi", "cmu-mosi")
MOSEI_DIRS = ("MOSEI", "CMU-MOSEI", "mosei", "cmu-mosei")
MMIN_FEATS = ("A/comparE.h5", "V/denseface.h5", "L/bert_large.h5")


# ---------------------------------------------------------------------------- locating files
def locate(root: PathLike | None, names: Sequence[str], check: Callable[[Path], bool], any_name: bool) -> Path | None:
    """The dataset folder: ``root`` itself (if it matches; with ``any_name`` whatever its name)
    or ``root/<one of names>``."""
    base = data_root(root)
    lowered = {n.lower() for n in names}
    cands = [base] if (any_name or base.name.lower() in lowered) else []
    cands += [base / n for n in names]
    for c in cands:
        try:
            if c.is_dir() and check(c):
                return c
        except OSError:
            continue
    return None


def require(root: PathLike | None, names: Sequence[str], check: Callable[[Path], bool], what: str, card: str) -> Path:
    found = locate(root, names, check, any_name=True)
    if found is None:
        base = data_root(root)
        raise DataError(
            f"{what}: no files in the expected layout under {base} (looked in {base} and "
            f"{', '.join(str(base / n) for n in names)}); see data_cards/{card}"
        )
    return found


def mmin_check(feat_files: Sequence[str]) -> Callable[[Path], bool]:
    return lambda d: (d / "target").is_dir() and any((d / f).is_file() for f in feat_files)


def mintrec_check(d: Path) -> bool:
    return (d / "train.tsv").is_file()


def mmsa_check(d: Path) -> bool:
    return any((d / sub / f"{k}_50.pkl").is_file() for sub in ("Processed", ".") for k in ("aligned", "unaligned"))


def find_iemocap(root: PathLike) -> Path | None:
    return locate(root, IEMOCAP_DIRS, mmin_check(MMIN_FEATS), any_name=False)


def find_msp_improv(root: PathLike) -> Path | None:
    return locate(root, MSP_DIRS, mmin_check(MMIN_FEATS + ("A/comparE_raw.h5",)), any_name=False)


def find_mintrec(root: PathLike) -> Path | None:
    return locate(root, MINTREC_DIRS, mintrec_check, any_name=False)


def find_mosi(root: PathLike) -> Path | None:
    return locate(root, MOSI_DIRS, mmsa_check, any_name=False)


def find_mosei(root: PathLike) -> Path | None:
    return locate(root, MOSEI_DIRS, mmsa_check, any_name=False)


# ---------------------------------------------------------------------------- array checks
def frames(a: np.ndarray, where: str, dim: int | None = None) -> np.ndarray:
    """Check one utterance's (T, D) features: (D,) -> (1, D), (T, 1, D) -> (T, D); float32
    (no copy when it already is)."""
    a = frame_shape(a, where, dim)
    if a.dtype.kind not in "fiu":
        raise DataError(f"{where}: expected real numbers, got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise DataError(f"{where}: contains NaN or inf")
    return a


def frame_shape(a: Any, where: str, dim: int | None = None) -> Any:
    """``a`` (an array, or anything with ``shape`` and ``reshape``) as (T, D), from its shape alone."""
    shape = tuple(a.shape)
    if len(shape) == 1:
        a = a.reshape(1, shape[0])
    elif len(shape) == 3 and shape[1] == 1:
        a = a.reshape(shape[0], shape[2])
    if len(a.shape) != 2:
        raise DataError(f"{where}: expected (T, D) frames, got shape {shape}")
    if 0 in a.shape:
        raise DataError(f"{where}: empty features, shape {shape}")
    if dim is not None and a.shape[1] != dim:
        raise DataError(f"{where}: feature size {a.shape[1]} differs from the other samples' {dim}")
    return a


def check_max_len(lengths: np.ndarray, ids: Sequence[str], where: str, max_len: int | None) -> None:
    """Refuse a sample longer than ``max_len`` frames, naming it and its length."""
    if max_len is None:
        return
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise DataError(f"max_len: expected a positive integer number of frames or None, got {max_len!r}")
    over = np.flatnonzero(lengths > max_len)
    if len(over):
        i = over[np.argmax(lengths[over])]
        raise DataError(f"{where} [{ids[i]}]: {int(lengths[i])} frames, more than max_len={max_len} "
                        f"({len(over)} sample(s) longer; median length {int(np.median(lengths))})")


def charge_padding(budget: Budget, lengths: np.ndarray, ids: Sequence[str], dim: int, what: str) -> None:
    """Charge the zero-padded (N, T_max, D) float32 array before it is built; the refusal names
    the longest sample, its length and the median length."""
    i = int(np.argmax(lengths))
    shape = (len(lengths), int(lengths[i]), int(dim))
    budget.charge(nbytes_of(shape, np.float32), f"zero-padded {what} {shape} float32",
                  hint=f"the longest sample {ids[i]!r} has {int(lengths[i])} frames (median "
                       f"{int(np.median(lengths))}); fix or drop it, or pass max_len= to bound lengths")


def pad(arrs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad (T_i, D) arrays to (N, T_max, D); return it and the lengths (charge the budget
    with `charge_padding` first)."""
    lengths = np.array([a.shape[0] for a in arrs], np.int64)
    out = np.zeros((len(arrs), int(lengths.max()), arrs[0].shape[1]), np.float32)
    for i, a in enumerate(arrs):
        out[i, : a.shape[0]] = a
    return out, lengths


def strings(a: np.ndarray, where: str) -> list[str]:
    """(N,) or (N, 1) names as str (MMIN stores IEMOCAP ids as (N, 1) bytes)."""
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise DataError(f"{where}: expected (N,) or (N, 1) names, got shape {a.shape}")
    out = []
    for x in a.tolist():
        if isinstance(x, bytes):
            try:
                x = x.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{where}: a name is not valid UTF-8: {x[:40]!r}") from None
        if not isinstance(x, str) or not x:
            raise DataError(f"{where}: expected non-empty string names, got {x!r}")
        out.append(x)
    return out


def unique_ids(ids: np.ndarray, where: str) -> np.ndarray:
    """``ids`` as str, refused (naming a duplicated id and its count) unless unique."""
    ids = np.asarray(ids).astype(str)
    dup = duplicate_problem(ids)
    if dup:
        raise DataError(f"{where}: {dup}")
    return ids


def int_labels(a: np.ndarray, where: str, n_classes: int) -> np.ndarray:
    """(N, C) one-hot -> argmax, or (N,) integers; all in [0, n_classes)."""
    if a.dtype.kind not in "fiub":
        raise DataError(f"{where}: expected numeric labels, got dtype {a.dtype}")
    if a.ndim == 2:
        if a.shape[1] != n_classes:
            raise DataError(f"{where}: one-hot labels must have {n_classes} columns, got shape {a.shape}")
        ok = np.isin(a, (0, 1)).all() and (a.sum(1) == 1).all() if a.size else True
        if not ok:
            raise DataError(f"{where}: rows must be one-hot (exactly one 1, the rest 0)")
        return a.argmax(1).astype(np.int64)
    if a.ndim != 1:
        raise DataError(f"{where}: expected (N,) labels or (N, {n_classes}) one-hot, got shape {a.shape}")
    if a.dtype.kind == "f" and not (np.isfinite(a).all() and (a == np.round(a)).all()):
        raise DataError(f"{where}: labels must be integers")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= n_classes):
        raise DataError(f"{where}: labels must lie in [0, {n_classes}), got range [{a.min()}, {a.max()}]")
    return a

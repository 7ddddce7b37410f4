"""Bring your own features: the documented ``.npz`` layout, a validator, a loader, an exporter.

One ``.npz`` file (``np.savez`` or ``np.savez_compressed``; no pickled objects) with keys
(at least two modalities: every method trains and is scored under missing modalities):

=============== ==================== =======================================================
key             shape                meaning
=============== ==================== =======================================================
``X_<name>``    (N, T, D) or (N, D)  features of modality ``<name>`` (a letter, then letters,
                                     digits, ``_``; at most 32; `MODALITY_RE`); real numbers,
                                     stored as float32 on load; (N, D) = one vector
``X_<name>``    (N, T) integer       a *token modality*: bert-base-uncased token ids, each in
                                     [0, 30522); every row is [CLS]=101 ... [SEP]=102 (then
                                     [PAD]=0); stored int64 on load (`mmlab.data.tokens`)
``len_<name>``  (N,) integer         optional valid frames of each sample, in [1, T] (absent:
                                     all T frames are real); frames past it are zeroed on load;
                                     for tokens it counts [CLS] and [SEP] (so it is >= 2)
``avail_<name>`` (N,) bool            optional: which samples *have* modality ``<name>``
                                     (False = natively missing: no recording, no face; its
                                     ``X_`` row is filler and is never read as data); every
                                     sample needs at least one available modality
``y``           (N,) integer         class labels 0..C-1 (floats are accepted if integral)
``y_reg``       (N,) float           optional regression target (e.g. MOSI sentiment in
                                     [-3, 3]); finite, within float32; stored as float32
``split``       (N,) str             optional: train, valid, test, or an extra test split
                                     ``test_<name>`` (e.g. test_ood; `EXTRA_SPLIT_RE`); train,
                                     valid and at least one test split must be non-empty;
                                     absent: a seeded stratified 70/10/20 split
                                     (`stratified_split`; needs N >= 3)
``ids``         (N,) str or integer  optional unique sample ids (absent: ``<file stem>-<i>``)
``classes``     (C,) str             optional class names (absent: "0".."C-1"; then every label
                                     0..max(y) must occur, a gap means labels were not re-indexed)
=============== ==================== =======================================================

An integer (N, T) ``X_`` key is always read as token ids: store integer-valued *features*
(counts, pixels) as floats. `validate_npz` reports every problem it finds; `load_npz` raises
one `DataError` listing them all (a file one accepts, the other loads). Array shapes and dtypes
are read from the ``.npy`` headers before any data is read: object, void and structured dtypes
are refused, and the bytes the whole file would take (arrays after decompression plus what the
loader builds from them) must fit the memory budget (`mmlab.data.budget`: ``max_bytes``, else
``MMLAB_MAX_BYTES``, else 4 GiB). The file is opened with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmlab.data.budget import OVERRIDE, fmt_bytes, nbytes_of
from mmlab.data.budget import max_bytes as budget_bytes
from mmlab.data.dataset import (
    SPLIT_RULE, SPLITS, MMDataset, duplicate_problem, is_split_name, missing_required_splits, modality_name_problem,
    order_splits, stratified_split,
)
from mmlab.data.safe_pickle import read_npy_header
from mmlab.data.tokens import PAD_ID, token_problems
from mmlab.errors import DataError

_F32_MAX = float(np.finfo(np.float32).max)
PER_SAMPLE_BYTES = 256  # what loading adds per sample besides the arrays: ids, split names, lengths


@dataclass
class _Scan:
    path: str
    limit: int  # the memory budget in bytes
    problems: list[str] = field(default_factory=list)
    members: set[str] = field(default_factory=set)  # every key in the archive, readable or not
    shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def bad(self, key: str, msg: str) -> None:
        self.problems.append(f"{key}: {msg}")


def _kind(key: str) -> str:
    if key.startswith("X_"):
        return "X"
    if key.startswith("len_"):
        return "len"
    if key.startswith("avail_"):
        return "avail"
    return key if key in ("y", "y_reg", "split", "ids", "classes") else "unknown"


def _read_members(s: _Scan, zf: zipfile.ZipFile) -> None:
    """Read every header, refuse object / void / structured dtypes and truncated members, check
    the bytes of the whole file against the budget, and only then read the data."""
    seen: set[str] = set()
    todo: list[tuple[str, zipfile.ZipInfo]] = []
    for info in zf.infolist():
        name = info.filename
        if info.is_dir():
            continue
        if not name.endswith(".npy"):
            s.bad(name, "archive member is not a .npy array")
            continue
        key = name[:-4]
        if key in seen:
            s.bad(key, "appears twice in the archive")
            continue
        seen.add(key)
        s.members.add(key)
        if _kind(key) == "unknown":
            s.bad(key, "unknown key (expected X_<name>, len_<name>, avail_<name>, y, y_reg, split, ids, classes)")
            continue
        try:
            with zf.open(info) as fh:
                shape, _, dtype = read_npy_header(fh, key)
                offset = fh.tell()
        except DataError as err:
            s.bad(key, f"cannot read the array header ({str(err).split(': ', 1)[-1]})")
            continue
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError, ValueError) as err:
            s.bad(key, f"cannot read archive member ({err})")
            continue
        s.shapes[key] = (shape, dtype)
        if dtype.hasobject:
            s.bad(key, f"object array (pickled Python objects, dtype {dtype}) is not allowed; store numbers or fixed-width strings")
            continue
        if dtype.kind == "V" or dtype.fields is not None or dtype.subdtype is not None:
            s.bad(key, f"void or structured dtype {dtype} is not allowed; store plain numbers or fixed-width strings; "
                       "refused before reading")
            continue
        if nbytes_of(shape, dtype) > s.limit:
            s.bad(key, f"shape {shape} {dtype} is {fmt_bytes(nbytes_of(shape, dtype))} after decompression, over the "
                       f"memory budget of {fmt_bytes(s.limit)} per file; refused before reading ({OVERRIDE} to allow it)")
            continue
        if info.file_size < offset + nbytes_of(shape, dtype):
            s.bad(key, f"truncated: header says {shape} {dtype} but the member holds only {info.file_size - offset} data bytes")
            continue
        todo.append((key, info))
    if not _fits_budget(s, [key for key, _ in todo]):
        return
    for key, info in todo:
        try:
            with zf.open(info) as fh:
                s.arrays[key] = np.lib.format.read_array(fh, allow_pickle=False)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, ValueError, MemoryError) as err:
            s.bad(key, f"cannot read array data ({err})")


def _planned_bytes(s: _Scan, keys: list[str]) -> dict[str, int]:
    """Bytes per key that validating and loading the file take: the array after decompression
    plus what is built from it (float32 / int64 copies, padding masks, decoded strings), and the
    per-sample extras under ``"file"``."""
    out: dict[str, int] = {}
    n = 0
    for key in keys:
        shape, dtype = s.shapes[key]
        raw = nbytes_of(shape, dtype)
        if key.startswith("X_") and len(shape) in (2, 3):
            frames = nbytes_of(shape[:2], "u1") if len(shape) == 3 or dtype.kind in "iu" else shape[0]
            values = nbytes_of(shape, "u1")
            built = 8 * values if len(shape) == 2 and dtype.kind in "iu" else 4 * values  # int64 ids / float32
            raw += built + 2 * values + frames  # + NaN / inf masks, the padding mask
        elif dtype.kind in "US":
            raw += nbytes_of(shape, "u1") * 4 * (dtype.itemsize if dtype.kind == "S" else dtype.itemsize // 4)
        elif len(shape) >= 1:
            raw += 2 * nbytes_of(shape, "u1") * 8  # int64 / float64 copies
        out[key] = raw
        if shape and key != "classes":
            n = max(n, shape[0])
    out["file"] = n * PER_SAMPLE_BYTES * (1 + sum(k.startswith("X_") for k in keys))
    return out


def _fits_budget(s: _Scan, keys: list[str]) -> bool:
    """Add a problem (naming the largest array) when reading ``keys`` and loading the file would
    take more than the budget."""
    planned = _planned_bytes(s, keys)
    total = sum(planned.values())
    if total <= s.limit:
        return True
    key = max((k for k in planned if k != "file"), key=lambda k: planned[k], default="file")
    if key == "file":
        s.bad("file", f"{len(keys)} arrays would take {fmt_bytes(total)} in memory, over the memory budget of "
                      f"{fmt_bytes(s.limit)} per file; refused before reading ({OVERRIDE} to allow it)")
        return False
    shape, dtype = s.shapes[key]
    s.bad(key, f"shape {shape} {dtype} is {fmt_bytes(nbytes_of(shape, dtype))} after decompression and "
               f"{fmt_bytes(planned[key])} with what loading builds from it; the whole file would take "
               f"{fmt_bytes(total)} in memory, over the memory budget of {fmt_bytes(s.limit)} per file; "
               f"refused before reading ({OVERRIDE} to allow it)")
    return False


def _as_str(s: _Scan, key: str, a: np.ndarray) -> np.ndarray | None:
    if a.dtype.kind == "U":
        return a
    if a.dtype.kind == "S":
        try:
            return np.char.decode(a, "utf-8")
        except UnicodeDecodeError:
            s.bad(key, "bytes are not valid UTF-8")
            return None
    s.bad(key, f"expected strings, got dtype {a.dtype}")
    return None


def _as_int(s: _Scan, key: str, a: np.ndarray) -> np.ndarray | None:
    if a.dtype.kind in "iu":
        if a.dtype.kind == "u" and a.size and int(a.max()) >= 2**63:
            s.bad(key, f"values up to {int(a.max())} are beyond the int64 range")
            return None
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            s.bad(key, "contains NaN or inf")
            return None
        if not np.all(a == np.round(a)):
            s.bad(key, f"float values that are not integral (e.g. {float(a[a != np.round(a)].flat[0])}); expected integers")
            return None
        if a.size and max(-float(a.min()), float(a.max())) >= 2.0**63:
            s.bad(key, f"values up to {max(-float(a.min()), float(a.max())):.3g} in magnitude are beyond the int64 range")
            return None
        return a.astype(np.int64)
    s.bad(key, f"expected integers, got dtype {a.dtype}")
    return None


def _usable_lengths(a: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """``len_<name>`` as int64 when it fits ``shape`` (N, T, ...); None otherwise (reported elsewhere)."""
    if a is None or a.ndim != 1 or a.dtype.kind not in "fiu" or len(a) != shape[0] or not len(a):
        return None
    if not np.isfinite(a).all() or np.any(a != np.round(a)) or a.min() < 1 or a.max() > shape[1]:
        return None
    return a.astype(np.int64)


def _check(s: _Scan) -> None:
    """Semantic checks over whatever could be read."""
    keys = list(s.shapes)
    xs = [k for k in keys if k.startswith("X_")]
    n_mods = sum(k.startswith("X_") for k in s.members)
    if not n_mods:
        s.problems.append("file: no modality arrays (expected at least two keys X_<name>)")
    elif n_mods == 1:
        s.problems.append(f"file: only one modality ({[k for k in s.members if k.startswith('X_')][0]}); methods train "
                          "and are scored under missing modalities, which needs at least two keys X_<name>")
    if "y" not in s.members:
        s.problems.append("file: missing required key 'y' (labels, shape (N,))")
    # N: from y when it is 1-d, else from the first modality
    ref_key = "y" if "y" in s.shapes and len(s.shapes["y"][0]) == 1 else (xs[0] if xs else None)
    n = s.shapes[ref_key][0][0] if ref_key and s.shapes[ref_key][0] else None
    for k in keys:
        shape = s.shapes[k][0]
        if k == "classes" or not shape or n is None or k == ref_key:
            continue
        if shape[0] != n:
            s.bad(k, f"has {shape[0]} rows but {ref_key!r} has {n} (every per-sample array needs the same N)")
    if n == 0:
        s.bad(ref_key or "y", "has no samples (N = 0)")

    t_of: dict[str, int] = {}
    tokens: list[str] = []  # modality names stored as (N, T) integer token ids
    for k in xs:
        name, (shape, dtype) = k[2:], s.shapes[k]
        bad_name = modality_name_problem(name)
        if bad_name:
            s.bad(k, bad_name)
        if len(shape) not in (2, 3):
            s.bad(k, f"has {len(shape)} dimensions {shape}; expected features (N, T, D) or (N, D), or token ids (N, T) integer")
        elif 0 in shape:
            s.bad(k, f"has a zero-sized dimension {shape} (N, T and D must be >= 1)")
        else:
            t_of[name] = shape[1] if len(shape) == 3 or dtype.kind in "iu" else 1
        if len(shape) == 2 and dtype.kind in "iu":
            tokens.append(name)
        if dtype.hasobject:
            continue  # already reported when reading
        if dtype.kind not in "fiu":
            what = {"U": "strings", "S": "bytes strings", "c": "complex numbers", "b": "booleans"}.get(dtype.kind, f"dtype {dtype}")
            s.bad(k, f"holds {what}; expected real numbers (float32)")
            continue
        a = s.arrays.get(k)
        if a is not None and a.dtype.kind == "f":
            n_nan, n_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
            if n_nan or n_inf:
                what = " and ".join(f"{c} {w}" for c, w in ((n_nan, "NaN"), (n_inf, "inf")) if c)
                s.bad(k, f"contains {what} values")
            elif a.size and max(-float(a.min()), float(a.max())) > _F32_MAX:
                s.bad(k, "values exceed the float32 range")

    for k in (k for k in keys if k.startswith("len_")):
        name = k[4:]
        if f"X_{name}" not in s.members:
            s.bad(k, f"has no matching modality key X_{name}")
        a = s.arrays.get(k)
        if a is None:
            continue
        if a.ndim != 1:
            s.bad(k, f"must be 1-d (N,), got shape {a.shape}")
            continue
        a = _as_int(s, k, a)
        if a is not None and name in t_of and a.size and (a.min() < 1 or a.max() > t_of[name]):
            s.bad(k, f"lengths must lie in [1, T={t_of[name]}], got range [{a.min()}, {a.max()}]")

    _check_avail(s, keys, n)

    for name in tokens:
        ids = s.arrays.get(f"X_{name}")
        ln = _usable_lengths(s.arrays.get(f"len_{name}"), ids.shape) if ids is not None else None
        if ids is not None and (ln is not None or f"len_{name}" not in s.members):
            s.problems.extend(token_problems(ids, ln, f"X_{name}", f"len_{name}"))

    classes = None
    if "classes" in s.arrays:
        c = s.arrays["classes"]
        if c.ndim != 1 or c.size == 0:
            s.bad("classes", f"must be a non-empty 1-d array of names, got shape {c.shape}")
        else:
            classes = _as_str(s, "classes", c)
            dup = duplicate_problem(classes, "class names") if classes is not None else None
            if dup:
                s.bad("classes", dup)

    y = s.arrays.get("y")
    if y is not None:
        if y.ndim != 1:
            hint = " (one-hot? store the argmax)" if y.ndim == 2 else ""
            s.bad("y", f"must be 1-d (N,), got shape {y.shape}{hint}")
        elif y.dtype.kind not in "fiu":
            s.bad("y", f"expected integer labels, got dtype {y.dtype}")
        else:
            yi = _as_int(s, "y", y)
            if yi is not None and yi.size:
                if yi.min() < 0:
                    s.bad("y", f"negative labels (min {yi.min()}); expected 0..C-1")
                elif classes is not None and yi.max() >= len(classes):
                    s.bad("y", f"label {yi.max()} is out of range for {len(classes)} classes")
                elif classes is None:
                    gaps = _first_gaps(np.unique(yi))
                    if gaps:
                        s.bad("y", f"labels skip {gaps} (no 'classes' key; largest label {yi.max()}): re-index labels "
                                   "to 0..C-1 or store 'classes'")

    if "y_reg" in s.arrays:
        r = s.arrays["y_reg"]
        if r.ndim != 1 or r.dtype.kind not in "fiu":
            s.bad("y_reg", f"expected a 1-d float array (N,) of regression targets, got {r.dtype} {r.shape}")
        elif not np.isfinite(r.astype(np.float64)).all():
            s.bad("y_reg", "contains NaN or inf; expected finite regression targets")
        elif r.size and float(np.abs(r.astype(np.float64)).max()) > _F32_MAX:
            s.bad("y_reg", "values exceed the float32 range")

    if "split" in s.arrays:
        sp = s.arrays["split"]
        if sp.ndim != 1:
            s.bad("split", f"must be 1-d (N,), got shape {sp.shape}")
        else:
            sp = _as_str(s, "split", sp)
            if sp is not None:
                bad = [x for x in np.unique(sp).tolist() if not is_split_name(x)]
                if bad:
                    hint = " ('dev'/'val' is spelled 'valid')" if {"dev", "val", "validation"} & set(bad) else ""
                    s.bad("split", f"values must be in {SPLIT_RULE}, got {bad[:5]}{hint}")
                else:
                    empty = missing_required_splits(sp)
                    if empty:
                        s.bad("split", f"no samples in split(s) {empty}")
    elif "split" not in s.members and y is not None and y.ndim == 1 and 0 < len(y) < 3:
        s.bad("split", f"no 'split' key and only N={len(y)} samples: the default stratified split needs at least 3 "
                       "(one each for train, valid and test); store a 'split' key")

    if "ids" in s.arrays:
        ids = s.arrays["ids"]
        if ids.ndim != 1:
            s.bad("ids", f"must be 1-d (N,), got shape {ids.shape}")
        elif ids.dtype.kind in "USiu":
            ids = _as_str(s, "ids", ids) if ids.dtype.kind in "US" else ids
            dup = duplicate_problem(ids) if ids is not None else None
            if dup:
                s.bad("ids", dup)
        else:
            s.bad("ids", f"expected strings or integers, got dtype {ids.dtype}")


def _check_avail(s: _Scan, keys: list[str], n: int | None) -> None:
    """``avail_<name>``: (N,) bool (or integers 0/1), with a modality ``X_<name>``; no sample
    left without any modality."""
    present = []
    for k in (k for k in keys if k.startswith("avail_")):
        if f"X_{k[6:]}" not in s.members:
            s.bad(k, f"has no matching modality key X_{k[6:]}")
        a = s.arrays.get(k)
        if a is None:
            continue
        if a.ndim != 1 or (a.dtype != bool and not (a.dtype.kind in "iu" and np.isin(a, (0, 1)).all())):
            s.bad(k, f"must be (N,) bool (True = the sample has this modality), got {a.dtype} {a.shape}")
            continue
        present.append(a.astype(bool))
    n_mods = sum(k.startswith("X_") for k in s.members)
    if present and n is not None and all(len(a) == n for a in present) and len(present) == n_mods:
        none = np.flatnonzero(~np.any(present, axis=0))
        if len(none):
            s.bad("avail_*", f"{len(none)} sample(s) have no available modality (first row {int(none[0])}); "
                             "drop them or mark one modality available")


def _first_gaps(labels: np.ndarray, k: int = 5) -> list[int]:
    """The first ``k`` integers in [0, max] missing from the sorted unique ``labels`` (no range(max))."""
    gaps: list[int] = []
    expect = 0
    for v in labels.tolist():
        while expect < v and len(gaps) < k:
            gaps.append(expect)
            expect += 1
        if len(gaps) >= k:
            break
        expect = v + 1
    return gaps


def _scan(path: str | os.PathLike, limit: int | str | None = None) -> _Scan:
    s = _Scan(str(path), budget_bytes(limit))
    p = Path(path)
    if not p.exists():
        s.problems.append("file: not found")
        return s
    if not p.is_file():
        s.problems.append("file: not a regular file")
        return s
    if p.stat().st_size == 0:
        s.problems.append("file: is empty (0 bytes)")
        return s
    try:
        with zipfile.ZipFile(p) as zf:
            if not [i for i in zf.infolist() if not i.is_dir()]:
                s.problems.append("file: archive holds no arrays")
                return s
            _read_members(s, zf)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
        s.problems.append(f"file: not a readable .npz (zip) archive, truncated or corrupt? ({err})")
        return s
    _check(s)
    return s


def _summary(s: _Scan) -> str:
    if not s.shapes:
        return f"{s.path}: unreadable" + (f", {len(s.problems)} problem(s)" if s.problems else "")
    y = s.arrays.get("y")
    parts = [f"{s.path}: N={len(y) if y is not None and y.ndim == 1 else '?'}"]
    if "classes" in s.arrays:
        parts.append(f"{s.arrays['classes'].size} classes")
    elif y is not None and y.ndim == 1 and y.dtype.kind in "iu" and y.size:
        parts.append(f"{int(y.max()) + 1} classes")
    mods = [
        f"{k[2:]} {s.shapes[k][0]} " + ("token ids" if len(s.shapes[k][0]) == 2 and s.shapes[k][1].kind in "iu" else str(s.shapes[k][1]))
        for k in s.shapes if k.startswith("X_")
    ]
    parts.append("modalities: " + (", ".join(mods) if mods else "none"))
    sp = s.arrays.get("split")
    if sp is not None and sp.ndim == 1 and sp.dtype.kind in "US":
        sp = sp.astype(str)
        names = order_splits([*SPLITS, *(x for x in np.unique(sp).tolist() if is_split_name(x))])
        parts.append("split from file (" + ", ".join(f"{x}={int((sp == x).sum())}" for x in names) + ")")
    else:
        parts.append("no split key: seeded stratified 70/10/20 split at load")
    parts.append("OK" if not s.problems else f"{len(s.problems)} problem(s)")
    return "; ".join(parts)


def validate_npz(path: str | os.PathLike, max_bytes: int | str | None = None) -> tuple[list[str], str]:
    """Check a bring-your-own ``.npz`` file; return (every problem found, a one-line summary).

    Never raises on a bad file (an invalid ``max_bytes`` / ``MMLAB_MAX_BYTES`` raises
    `DataError`): an empty problem list means `load_npz` will accept it, and a non-empty one
    means `load_npz` raises a `DataError` listing the same problems.
    """
    s = _scan(path, max_bytes)
    return list(s.problems), _summary(s)


def load_npz(path: str | os.PathLike, split_seed: int = 0, max_bytes: int | str | None = None) -> MMDataset:
    """Load a bring-your-own ``.npz`` file (layout in the module docstring) as an `MMDataset`;
    ``max_bytes``: the memory budget (default ``MMLAB_MAX_BYTES``, else 4 GiB)."""
    s = _scan(path, max_bytes)
    if s.problems:
        raise DataError(f"{s.path}: {len(s.problems)} problem(s) in bring-your-own .npz:\n  - " + "\n  - ".join(s.problems))
    a = s.arrays
    y = a["y"].astype(np.int64)
    n = len(y)
    mods = [k[2:] for k in s.shapes if k.startswith("X_")]
    feats, lengths = {}, {}
    for m in mods:
        x = a[f"X_{m}"]
        if x.ndim == 2 and x.dtype.kind in "iu":  # token ids (N, T)
            x = np.array(x, dtype=np.int64)
        else:
            x = np.ascontiguousarray((x[:, None, :] if x.ndim == 2 else x), dtype=np.float32)
        ln = a[f"len_{m}"].astype(np.int64) if f"len_{m}" in a else np.full(n, x.shape[1], np.int64)
        pad = np.arange(x.shape[1])[None, :] >= ln[:, None]
        if pad.any():
            x[pad] = PAD_ID if x.dtype == np.int64 else 0.0
        feats[m], lengths[m] = x, ln
    classes = [str(c) for c in a["classes"].astype(str)] if "classes" in a else [str(c) for c in range(int(y.max()) + 1)]
    if "split" in a:
        split, split_source = a["split"].astype(str), "file"
    else:
        split, split_source = stratified_split(y, seed=split_seed), f"stratified 70/10/20, seed {split_seed}"
        empty = [x for x in SPLITS if not (split == x).any()]
        if empty:
            raise DataError(
                f"{s.path}: no 'split' key and the seeded stratified split left {empty} empty "
                f"(N={n}); store a 'split' key"
            )
    stem = Path(s.path).stem
    ids = a["ids"].astype(str) if "ids" in a else np.array([f"{stem}-{i}" for i in range(n)])
    y_reg = a["y_reg"].astype(np.float32) if "y_reg" in a else None
    avail = {m: a[f"avail_{m}"].astype(bool) for m in mods if f"avail_{m}" in a}
    try:
        return MMDataset(
            name=stem, modalities=tuple(mods), feats=feats, lengths=lengths, y=y, split=split, ids=ids,
            classes=classes, y_reg=y_reg, info={"source": s.path, "split_source": split_source}, avail=avail,
        )
    except DataError as err:
        raise DataError(f"{s.path}: {err}") from None


def write_npz(dataset: MMDataset, path: str | os.PathLike, compress: bool = True) -> Path:
    """Export a dataset in the bring-your-own layout (atomically: temp file + rename)."""
    out = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for m in dataset.modalities:
        bad_name = modality_name_problem(m)
        if bad_name:
            raise DataError(f"write_npz: {bad_name}")
        x = dataset.feats[m]  # token ids (N, T) int64 stay integers: that is what marks them
        arrays[f"X_{m}"] = np.ascontiguousarray(x, dtype=np.int64 if x.ndim == 2 else np.float32)
        arrays[f"len_{m}"] = np.asarray(dataset.lengths[m], dtype=np.int64)
        if m in dataset.avail:
            arrays[f"avail_{m}"] = np.asarray(dataset.avail[m], dtype=bool)
    arrays["y"] = np.asarray(dataset.y, dtype=np.int64)
    if dataset.y_reg is not None:
        arrays["y_reg"] = np.asarray(dataset.y_reg, dtype=np.float32)
    arrays["split"] = np.asarray(dataset.split).astype(str)
    arrays["ids"] = np.asarray(dataset.ids).astype(str)
    arrays["classes"] = np.asarray([str(c) for c in dataset.classes])
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            (np.savez_compressed if compress else np.savez)(fh, **arrays)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out

"""IEMOCAP and MSP-IMPROV in the MMIN layout: ``A/comparE.h5``, ``V/denseface.h5``,
``L/bert_large.h5`` (one dataset per utterance id), ``A/comparE_mean_std.h5`` (per-fold train
statistics) and ``target/{fold}/{trn,val,tst}_{label,int2name}.npy``.

HDF5 is read defensively: every utterance is resolved link by link inside its file (external
links, soft links that lead out of the file, external raw storage and virtual datasets are
refused), its declared shape and dtype are checked, and the bytes the whole file would take
(each utterance as stored, its float32 copy, the zero-padded (N, T_max, D) array) are charged to
the file's memory budget (`mmlab.data.budget`) before any data is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmlab.data.budget import Budget, nbytes_of
from mmlab.data.dataset import MMDataset
from mmlab.data.layout import (
    IEMOCAP_DIRS, MSP_DIRS, PathLike, charge_padding, check_max_len, frame_shape, frames, int_labels, mmin_check, pad,
    require, strings,
)
from mmlab.data.safe_pickle import safe_load_npy
from mmlab.errors import DataError

EMOTIONS_4 = ["ang", "hap", "neu", "sad"]  # hap includes exc (IEMOCAP); order as MMIN's one-hot (inferred)
MAX_LINK_HOPS = 8


def open_h5(path: Path):  # -> h5py.File
    import h5py

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except Exception as err:  # h5py raises OSError, but also others on corrupt files
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None


def h5_object(f: Any, key: str, path: Path, hops: int = 0) -> Any:
    """The object at ``key``, resolved one link at a time without leaving the file."""
    import h5py

    where = f"{path} [{key}]"
    parts = [p for p in key.split("/") if p]
    if not parts:
        raise DataError(f"{path}: no dataset for {key!r}")
    obj = f  # relative soft-link targets were made absolute by the caller
    for i, part in enumerate(parts):
        if not isinstance(obj, h5py.Group):
            raise DataError(f"{path}: no dataset for {key!r} ({'/'.join(parts[:i])} is not a group)")
        try:
            link = obj.get(part, getlink=True)
        except Exception as err:
            raise DataError(f"{where}: cannot be opened ({err})") from None
        if link is None:
            raise DataError(f"{path}: no dataset for {key!r}")
        if isinstance(link, h5py.ExternalLink):
            raise DataError(f"{where}: is an external link to {link.filename}:{link.path}; the loader reads only "
                            f"{path.name} (links to other files are refused)")
        if isinstance(link, h5py.SoftLink):
            if hops >= MAX_LINK_HOPS:
                raise DataError(f"{where}: more than {MAX_LINK_HOPS} soft links in a row (a link loop?)")
            target = link.path if link.path.startswith("/") else f"{obj.name.rstrip('/')}/{link.path}"
            obj = h5_object(f, target, path, hops + 1)
            continue
        try:
            obj = obj[part]
        except Exception as err:
            raise DataError(f"{where}: cannot be opened ({err})") from None
    return obj


def h5_dataset(f: Any, key: str, path: Path) -> Any:
    """The h5py Dataset at ``key``: real numbers stored in this file, with a shape."""
    import h5py

    where = f"{path} [{key}]"
    obj = h5_object(f, key, path)
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{where}: is a group, expected a dataset")
    if obj.is_virtual:
        raise DataError(f"{where}: is a virtual dataset (its data comes from other files); refused")
    if obj.external:
        raise DataError(f"{where}: stores its data in external files {[e[0] for e in obj.external][:3]}; refused")
    if obj.dtype.kind not in "fiu":
        raise DataError(f"{where}: expected real numbers, got dtype {obj.dtype}")
    if obj.shape is None:
        raise DataError(f"{where}: has no shape (a null dataspace)")
    return obj


def h5_array(f: Any, key: str, path: Path, budget: Budget) -> np.ndarray:
    """Read one dataset after charging its bytes to ``budget``."""
    ds = h5_dataset(f, key, path)
    budget.charge(nbytes_of(ds.shape, ds.dtype), f"[{key}] {ds.shape} {ds.dtype}")
    try:
        return np.asarray(ds[()])
    except Exception as err:
        raise DataError(f"{path} [{key}]: cannot read data ({err})") from None


def _read_modality(path: Path, ids: Sequence[str], max_len: int | None, max_bytes: int | str | None) -> list[np.ndarray]:
    """Every utterance of one feature file as float32 (T, D): planned and charged from the
    declared shapes (read, float32 copy, padding) before anything is read."""
    budget = Budget(str(path), max_bytes)
    with open_h5(path) as f:
        dsets, lengths, dim = [], [], None
        for uid in ids:
            ds = h5_dataset(f, uid, path)
            t, dim = frame_shape(_Shape(ds.shape), f"{path} [{uid}]", dim).shape
            copy = 0 if ds.dtype == np.float32 else nbytes_of((t, dim), np.float32)
            budget.charge(nbytes_of(ds.shape, ds.dtype) + copy, f"[{uid}] {ds.shape} {ds.dtype}")
            dsets.append(ds)
            lengths.append(t)
        lengths_arr = np.array(lengths, np.int64)
        check_max_len(lengths_arr, ids, str(path), max_len)
        charge_padding(budget, lengths_arr, ids, dim, "utterances")
        out = []
        for uid, ds in zip(ids, dsets):
            try:
                raw = np.asarray(ds[()])
            except Exception as err:
                raise DataError(f"{path} [{uid}]: cannot read data ({err})") from None
            out.append(frames(raw, f"{path} [{uid}]", dim))
    return out


class _Shape:
    """A shape that `frame_shape` can reshape without data."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(int(s) for s in shape)

    def reshape(self, *shape: int) -> "_Shape":
        return _Shape(shape)


def _load_mmin(
    root: PathLike | None, *, name: str, dirs: Sequence[str], card: str, fold: int, n_folds: int, norm: str,
    modalities: Sequence[str], feats: dict[str, str], max_len: int | None, max_bytes: int | str | None,
) -> MMDataset:
    if norm not in ("trn", "train", "utt", "none"):
        raise DataError(f"{name} norm: expected 'trn', 'train', 'utt' or 'none', got {norm!r}")
    if not isinstance(fold, (int, np.integer)) or not 1 <= fold <= n_folds:
        raise DataError(f"{name} fold: expected an integer in 1..{n_folds}, got {fold!r}")
    bad = [m for m in modalities if m not in ("A", "V", "T")]
    if bad or not modalities:
        raise DataError(f"{name} modalities: expected a non-empty subset of ('A', 'V', 'T'), got {list(modalities)}")
    files = {m: f"{'L' if m == 'T' else m}/{feats[m]}.h5" for m in modalities}
    base = require(root, dirs, mmin_check(list(files.values())), name, card)
    tgt = base / "target" / str(fold)
    ids: list[str] = []
    ys, splits, seen, names = [], [], {}, {}
    for part, split in (("trn", "train"), ("val", "valid"), ("tst", "test")):
        lab_path, name_path = tgt / f"{part}_label.npy", tgt / f"{part}_int2name.npy"
        y = int_labels(safe_load_npy(lab_path, max_bytes), str(lab_path), len(EMOTIONS_4))
        nm = strings(safe_load_npy(name_path, max_bytes), str(name_path))
        if len(y) != len(nm):
            raise DataError(f"{lab_path}: {len(y)} labels but {name_path.name} has {len(nm)} names")
        if not len(y):
            raise DataError(f"{lab_path}: split {split!r} of fold {fold} has no samples")
        for uid in nm:
            seen.setdefault(uid, []).append(name_path.name)
            if len(seen[uid]) > 1:
                count = sum(other.count(uid) for other in names.values()) + nm.count(uid)
                raise DataError(f"{name_path}: utterance {uid!r} appears {count} times (in {sorted(set(seen[uid]))}); "
                                "utterance ids must be unique")
        names[part] = nm
        ids += nm
        ys.append(y)
        splits += [split] * len(y)
    y = np.concatenate(ys)
    split = np.array(splits)
    out_feats, out_lens = {}, {}
    for m in modalities:
        arrs = _read_modality(base / files[m], ids, max_len, max_bytes)
        if m == "A":
            _normalise_audio(arrs, norm, base, fold, split, feats["A"], max_bytes)
        out_feats[m], out_lens[m] = pad(arrs)
        del arrs
    return MMDataset(
        name=name, modalities=tuple(modalities), feats=out_feats, lengths=out_lens, y=y, split=split,
        ids=np.array(ids), classes=list(EMOTIONS_4),
        info={"root": str(base), "fold": fold, "n_folds": n_folds, "norm": norm, "files": files,
              "protocol": f"MMIN {n_folds}-fold CV, fold {fold}: target/{fold}/trn|val|tst"},
    )


def _normalise_audio(arrs: list[np.ndarray], norm: str, base: Path, fold: int, split: np.ndarray, a_feat: str,
                     max_bytes: int | str | None) -> None:
    """MMIN's options, in place: per-fold train statistics from a file ('trn'), computed here
    from this fold's train split ('train'), per utterance ('utt'), or none."""
    if norm == "none":
        return
    if norm == "utt":
        for a in arrs:
            sd = a.std(0, ddof=1) if len(a) > 1 else np.zeros(a.shape[1], np.float32)
            sd[sd == 0] = 1.0
            a -= a.mean(0)
            a /= sd
        return
    d = arrs[0].shape[1]
    if norm == "train":  # two passes over the train utterances, without concatenating them
        train = [a for a, s in zip(arrs, split) if s == "train"]
        count = sum(len(a) for a in train)
        mean = sum(a.sum(0, dtype=np.float64) for a in train) / count
        std = np.sqrt(sum(((a - mean) ** 2).sum(0) for a in train) / count)
    else:
        path = base / "A" / f"{a_feat}_mean_std.h5"
        budget = Budget(str(path), max_bytes)
        with open_h5(path) as f:
            if str(fold) not in f:
                raise DataError(f"{path}: no group {str(fold)!r} (per-fold train mean/std) for fold {fold}")
            mean = h5_array(f, f"{fold}/mean", path, budget).astype(np.float32).reshape(-1)
            std = h5_array(f, f"{fold}/std", path, budget).astype(np.float32).reshape(-1)
        for k, v in (("mean", mean), ("std", std)):
            if v.shape != (d,) or not np.isfinite(v).all():
                raise DataError(f"{path} [{fold}/{k}]: expected {d} finite values, got shape {v.shape}")
        if (std < 0).any():
            raise DataError(f"{path} [{fold}/std]: negative standard deviations")
    mean = np.asarray(mean, np.float32)
    std = np.where(std == 0, 1.0, std).astype(np.float32)
    for a in arrs:
        a -= mean
        a /= std


def load_iemocap(
    root: PathLike | None = None, fold: int = 1, norm: str = "trn", modalities: Sequence[str] = ("A", "V", "T"),
    a_feat: str = "comparE", v_feat: str = "denseface", l_feat: str = "bert_large", max_len: int | None = None,
    max_bytes: int | str | None = None,
) -> MMDataset:
    """IEMOCAP 4-class (ang, hap+exc, neu, sad) in the MMIN layout, one of its 10 CV folds.

    Modalities A (ComParE LLD 130), V (DenseFace 342), T (BERT-large 1024, MMIN's ``L``).
    ``norm``: 'trn' = MMIN's per-fold train mean/std from ``A/comparE_mean_std.h5``; 'train' =
    the same computed here; 'utt' = per utterance; 'none'. Only audio is normalised (as MMIN).
    ``max_len``: refuse utterances longer than this many frames; ``max_bytes``: the memory
    budget per file (default ``MMLAB_MAX_BYTES``, else 4 GiB).
    """
    return _load_mmin(root, name="iemocap", dirs=IEMOCAP_DIRS, card="iemocap.md", fold=fold, n_folds=10,
                      norm=norm, modalities=modalities, feats={"A": a_feat, "V": v_feat, "T": l_feat},
                      max_len=max_len, max_bytes=max_bytes)


def load_msp_improv(
    root: PathLike | None = None, fold: int = 1, norm: str = "train", modalities: Sequence[str] = ("A", "V", "T"),
    a_feat: str = "comparE", v_feat: str = "denseface", l_feat: str = "bert_large", max_len: int | None = None,
    max_bytes: int | str | None = None,
) -> MMDataset:
    """MSP-IMPROV 4-class in the MMIN layout, one of its 12 CV folds (integer labels, str ids).

    Default ``norm='train'``: audio z-scored with this fold's train statistics (MMIN used all
    utterances, test included); 'trn' reads ``A/<a_feat>_mean_std.h5`` like IEMOCAP.
    ``max_len`` and ``max_bytes`` as `load_iemocap`.
    """
    return _load_mmin(root, name="msp_improv", dirs=MSP_DIRS, card="msp_improv.md", fold=fold, n_folds=12,
                      norm=norm, modalities=modalities, feats={"A": a_feat, "V": v_feat, "T": l_feat},
                      max_len=max_len, max_bytes=max_bytes)

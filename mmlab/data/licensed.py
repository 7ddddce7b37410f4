"""Loaders for the licensed benchmarks, reading the layouts their public releases use.

None of this data ships with mmlab: each loader looks under a data root (``MMLAB_DATA_ROOT`` or
``--data-root``) for a folder of the dataset's name, or takes that folder directly. The data
cards in ``data_cards/`` say how to obtain each set and which protocol each paper used.

============ ======================================================= ==========================
name         layout                                                   splits
============ ======================================================= ==========================
iemocap      MMIN: A/comparE.h5, V/denseface.h5, L/bert_large.h5,     MMIN 10-fold CV
             A/comparE_mean_std.h5, target/{fold}/{trn,val,tst}_*.npy (fold = 1..10)
msp_improv   the same MMIN layout                                     MMIN 12-fold CV
mintrec      {train,dev,test}.tsv, video_data/video_feats.pkl,        official train/dev/test
             audio_data/audio_feats.pkl [, text_data/text_feats.pkl]
mosi, mosei  MMSA: Processed/{aligned,unaligned}_50.pkl               official train/valid/test
============ ======================================================= ==========================

Pickles are read with the restricted unpickler (`mmlab.data.safe_pickle`), ``.npy`` files
without pickle (object arrays through the same restricted unpickler), HDF5 with h5py. Every
malformed input becomes a `DataError` that names the file and the key.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mmlab.data.dataset import MMDataset
from mmlab.data.registry import DatasetEntry, data_root, register_dataset
from mmlab.data.safe_pickle import safe_load, safe_load_npy
from mmlab.errors import DataError

MAX_ELEMENTS = 10**9
EMOTIONS_4 = ["ang", "hap", "neu", "sad"]  # hap includes exc (IEMOCAP); order as MMIN's one-hot (inferred)
MINTREC_LABELS = [
    "Complain", "Praise", "Apologise", "Thank", "Criticize", "Agree", "Taunt", "Flaunt", "Joke", "Oppose",
    "Comfort", "Care", "Inform", "Advise", "Arrange", "Introduce", "Leave", "Prevent", "Greet", "Ask for help",
]
MINTREC_EMOTION = {"Complain", "Praise", "Apologise", "Thank", "Criticize", "Care", "Agree", "Taunt", "Flaunt", "Joke", "Oppose"}
MMSA_TASKS = ("binary", "seven", "2", "3", "7")

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------- locating files
def _locate(root: PathLike | None, names: Sequence[str], check: Callable[[Path], bool], any_name: bool) -> Path | None:
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


def _require(root: PathLike | None, names: Sequence[str], check: Callable[[Path], bool], what: str, card: str) -> Path:
    found = _locate(root, names, check, any_name=True)
    if found is None:
        base = data_root(root)
        raise DataError(
            f"{what}: no files in the expected layout under {base} (looked in {base} and "
            f"{', '.join(str(base / n) for n in names)}); see data_cards/{card}"
        )
    return found


def _mmin_check(feat_files: Sequence[str]) -> Callable[[Path], bool]:
    return lambda d: (d / "target").is_dir() and any((d / f).is_file() for f in feat_files)


def _mintrec_check(d: Path) -> bool:
    return (d / "train.tsv").is_file()


def _mmsa_check(d: Path) -> bool:
    return any((d / sub / f"{k}_50.pkl").is_file() for sub in ("Processed", ".") for k in ("aligned", "unaligned"))


IEMOCAP_DIRS = ("IEMOCAP", "iemocap", "IEMOCAP_features", "IEMOCAP_features_2021")
MSP_DIRS = ("MSP-IMPROV", "MSP_IMPROV", "msp_improv", "msp-improv", "MSP")
MINTREC_DIRS = ("MIntRec", "mintrec", "MIA-datasets/MIntRec")
MOSI_DIRS = ("MOSI", "CMU-MOSI", "mosi", "cmu-mosi")
MOSEI_DIRS = ("MOSEI", "CMU-MOSEI", "mosei", "cmu-mosei")
_MMIN_FEATS = ("A/comparE.h5", "V/denseface.h5", "L/bert_large.h5")


def find_iemocap(root: PathLike) -> Path | None:
    return _locate(root, IEMOCAP_DIRS, _mmin_check(_MMIN_FEATS), any_name=False)


def find_msp_improv(root: PathLike) -> Path | None:
    return _locate(root, MSP_DIRS, _mmin_check(_MMIN_FEATS + ("A/comparE_raw.h5",)), any_name=False)


def find_mintrec(root: PathLike) -> Path | None:
    return _locate(root, MINTREC_DIRS, _mintrec_check, any_name=False)


def find_mosi(root: PathLike) -> Path | None:
    return _locate(root, MOSI_DIRS, _mmsa_check, any_name=False)


def find_mosei(root: PathLike) -> Path | None:
    return _locate(root, MOSEI_DIRS, _mmsa_check, any_name=False)


# ---------------------------------------------------------------------------- array helpers
def _to_numpy(v: Any, where: str) -> np.ndarray:
    """A numpy array from an array, a torch tensor or a list of either."""
    if type(v).__module__.startswith("torch"):
        v = v.detach().cpu().numpy()
    elif isinstance(v, (list, tuple)):
        if not v:
            raise DataError(f"{where}: empty list, expected at least one frame")
        v = [x.detach().cpu().numpy() if type(x).__module__.startswith("torch") else x for x in v]
    try:
        a = np.asarray(v)
    except (ValueError, TypeError) as err:
        raise DataError(f"{where}: cannot be read as an array ({err})") from None
    if a.dtype.kind not in "fiu":
        raise DataError(f"{where}: expected real numbers, got dtype {a.dtype}")
    return a


def _frames(a: np.ndarray, where: str, dim: int | None = None) -> np.ndarray:
    """Check one utterance's (T, D) features: (D,) -> (1, D), (T, 1, D) -> (T, D)."""
    if a.ndim == 1:
        a = a[None, :]
    elif a.ndim == 3 and a.shape[1] == 1:
        a = a[:, 0, :]
    if a.ndim != 2:
        raise DataError(f"{where}: expected (T, D) frames, got shape {a.shape}")
    if 0 in a.shape:
        raise DataError(f"{where}: empty features, shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise DataError(f"{where}: feature size {a.shape[1]} differs from the other samples' {dim}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise DataError(f"{where}: contains NaN or inf")
    return a


def _pad(arrs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad (T_i, D) arrays to (N, T_max, D); return it and the lengths."""
    lengths = np.array([a.shape[0] for a in arrs], np.int64)
    out = np.zeros((len(arrs), int(lengths.max()), arrs[0].shape[1]), np.float32)
    for i, a in enumerate(arrs):
        out[i, : a.shape[0]] = a
    return out, lengths


def _strings(a: np.ndarray, where: str) -> list[str]:
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


def _int_labels(a: np.ndarray, where: str, n_classes: int) -> np.ndarray:
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


# ---------------------------------------------------------------------------- MMIN (IEMOCAP, MSP-IMPROV)
def _open_h5(path: Path):  # -> h5py.File
    import h5py

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except Exception as err:  # h5py raises OSError, but also others on corrupt files
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None


def _h5_array(f: Any, key: str, path: Path, max_elements: int = MAX_ELEMENTS) -> np.ndarray:
    import h5py

    where = f"{path} [{key}]"
    try:
        obj = f[key]
    except KeyError:
        raise DataError(f"{path}: no dataset for {key!r}") from None
    except Exception as err:
        raise DataError(f"{where}: cannot be opened ({err})") from None
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{where}: is a group, expected a dataset")
    if obj.dtype.kind not in "fiu":
        raise DataError(f"{where}: expected real numbers, got dtype {obj.dtype}")
    if obj.shape is None or int(np.prod(obj.shape, dtype=np.float64)) > max_elements:
        raise DataError(f"{where}: shape {obj.shape} is empty or too large")
    try:
        return np.asarray(obj[()])
    except Exception as err:
        raise DataError(f"{where}: cannot read data ({err})") from None


def _load_mmin(
    root: PathLike | None, *, name: str, dirs: Sequence[str], card: str, fold: int, n_folds: int, norm: str,
    modalities: Sequence[str], feats: dict[str, str],
) -> MMDataset:
    if norm not in ("trn", "train", "utt", "none"):
        raise DataError(f"{name} norm: expected 'trn', 'train', 'utt' or 'none', got {norm!r}")
    if not isinstance(fold, (int, np.integer)) or not 1 <= fold <= n_folds:
        raise DataError(f"{name} fold: expected an integer in 1..{n_folds}, got {fold!r}")
    bad = [m for m in modalities if m not in ("A", "V", "T")]
    if bad or not modalities:
        raise DataError(f"{name} modalities: expected a non-empty subset of ('A', 'V', 'T'), got {list(modalities)}")
    files = {m: f"{'L' if m == 'T' else m}/{feats[m]}.h5" for m in modalities}
    base = _require(root, dirs, _mmin_check(list(files.values())), name, card)
    tgt = base / "target" / str(fold)
    ids: list[str] = []
    ys, splits, seen = [], [], {}
    for part, split in (("trn", "train"), ("val", "valid"), ("tst", "test")):
        lab_path, name_path = tgt / f"{part}_label.npy", tgt / f"{part}_int2name.npy"
        y = _int_labels(safe_load_npy(lab_path), str(lab_path), len(EMOTIONS_4))
        nm = _strings(safe_load_npy(name_path), str(name_path))
        if len(y) != len(nm):
            raise DataError(f"{lab_path}: {len(y)} labels but {name_path.name} has {len(nm)} names")
        if not len(y):
            raise DataError(f"{lab_path}: split {split!r} of fold {fold} has no samples")
        for uid in nm:
            if uid in seen:
                raise DataError(f"{name_path}: utterance {uid!r} is listed again (already in {seen[uid]})")
            seen[uid] = name_path.name
        ids += nm
        ys.append(y)
        splits += [split] * len(y)
    y = np.concatenate(ys)
    split = np.array(splits)
    out_feats, out_lens = {}, {}
    for m in modalities:
        path = base / files[m]
        with _open_h5(path) as f:
            arrs, dim = [], None
            for uid in ids:
                a = _frames(_h5_array(f, uid, path), f"{path} [{uid}]", dim)
                dim = a.shape[1]
                arrs.append(a)
        if m == "A":
            arrs = _normalise_audio(arrs, norm, base, fold, split, feats["A"])
        out_feats[m], out_lens[m] = _pad(arrs)
    return MMDataset(
        name=name, modalities=tuple(modalities), feats=out_feats, lengths=out_lens, y=y, split=split,
        ids=np.array(ids), classes=list(EMOTIONS_4),
        info={"root": str(base), "fold": fold, "n_folds": n_folds, "norm": norm, "files": files,
              "protocol": f"MMIN {n_folds}-fold CV, fold {fold}: target/{fold}/trn|val|tst"},
    )


def _normalise_audio(arrs: list[np.ndarray], norm: str, base: Path, fold: int, split: np.ndarray, a_feat: str) -> list[np.ndarray]:
    """MMIN's options: per-fold train statistics from a file ('trn'), computed here from this
    fold's train split ('train'), per utterance ('utt'), or none."""
    if norm == "none":
        return arrs
    if norm == "utt":
        out = []
        for a in arrs:
            sd = a.std(0, ddof=1) if len(a) > 1 else np.zeros(a.shape[1], np.float32)
            sd[sd == 0] = 1.0
            out.append((a - a.mean(0)) / sd)
        return out
    d = arrs[0].shape[1]
    if norm == "train":
        frames = np.concatenate([a for a, s in zip(arrs, split) if s == "train"])
        mean, std = frames.mean(0), frames.std(0)
    else:
        path = base / "A" / f"{a_feat}_mean_std.h5"
        with _open_h5(path) as f:
            if str(fold) not in f:
                raise DataError(f"{path}: no group {str(fold)!r} (per-fold train mean/std) for fold {fold}")
            mean = _h5_array(f, f"{fold}/mean", path).astype(np.float32).reshape(-1)
            std = _h5_array(f, f"{fold}/std", path).astype(np.float32).reshape(-1)
        for k, v in (("mean", mean), ("std", std)):
            if v.shape != (d,) or not np.isfinite(v).all():
                raise DataError(f"{path} [{fold}/{k}]: expected {d} finite values, got shape {v.shape}")
        if (std < 0).any():
            raise DataError(f"{path} [{fold}/std]: negative standard deviations")
    std = np.where(std == 0, 1.0, std).astype(np.float32)
    return [((a - mean) / std).astype(np.float32) for a in arrs]


def load_iemocap(
    root: PathLike | None = None, fold: int = 1, norm: str = "trn", modalities: Sequence[str] = ("A", "V", "T"),
    a_feat: str = "comparE", v_feat: str = "denseface", l_feat: str = "bert_large",
) -> MMDataset:
    """IEMOCAP 4-class (ang, hap+exc, neu, sad) in the MMIN layout, one of its 10 CV folds.

    Modalities A (ComParE LLD 130), V (DenseFace 342), T (BERT-large 1024, MMIN's ``L``).
    ``norm``: 'trn' = MMIN's per-fold train mean/std from ``A/comparE_mean_std.h5``; 'train' =
    the same computed here; 'utt' = per utterance; 'none'. Only audio is normalised (as MMIN).
    """
    return _load_mmin(root, name="iemocap", dirs=IEMOCAP_DIRS, card="iemocap.md", fold=fold, n_folds=10,
                      norm=norm, modalities=modalities, feats={"A": a_feat, "V": v_feat, "T": l_feat})


def load_msp_improv(
    root: PathLike | None = None, fold: int = 1, norm: str = "train", modalities: Sequence[str] = ("A", "V", "T"),
    a_feat: str = "comparE", v_feat: str = "denseface", l_feat: str = "bert_large",
) -> MMDataset:
    """MSP-IMPROV 4-class in the MMIN layout, one of its 12 CV folds (integer labels, str ids).

    Default ``norm='train'``: audio z-scored with this fold's train statistics (MMIN used all
    utterances, test included); 'trn' reads ``A/<a_feat>_mean_std.h5`` like IEMOCAP.
    """
    return _load_mmin(root, name="msp_improv", dirs=MSP_DIRS, card="msp_improv.md", fold=fold, n_folds=12,
                      norm=norm, modalities=modalities, feats={"A": a_feat, "V": v_feat, "T": l_feat})


# ---------------------------------------------------------------------------- MIntRec
def _read_tsv(path: Path) -> list[tuple[str, str, str]]:
    """(key, text, label) rows of a MIntRec split file."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from None
    except (OSError, csv.Error) as err:
        raise DataError(f"{path}: cannot read tab-separated rows ({err})") from None
    if not rows:
        raise DataError(f"{path}: empty file (expected a header row season, episode, clip, text, label)")
    if len(rows[0]) < 5:
        raise DataError(f"{path}: header has {len(rows[0])} columns, expected season, episode, clip, text, label")
    out = []
    for i, r in enumerate(rows[1:], start=2):
        if not r or (len(r) == 1 and not r[0].strip()):
            continue
        if len(r) < 5:
            raise DataError(f"{path}: line {i} has {len(r)} columns, expected 5 (season, episode, clip, text, label)")
        label = r[4].strip()
        if label not in MINTREC_LABELS:
            raise DataError(f"{path}: line {i}: unknown label {label!r}; expected one of the 20 MIntRec intents")
        out.append((f"{r[0].strip()}_{r[1].strip()}_{r[2].strip()}", r[3], label))
    if not out:
        raise DataError(f"{path}: no samples after the header row")
    return out


def _feature_dict(path: Path, keys: Sequence[str]) -> list[np.ndarray]:
    obj = safe_load(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict (sample key -> features), got {type(obj).__name__}")
    out, dim = [], None
    for k in keys:
        if k not in obj:
            raise DataError(f"{path}: no features for sample key {k!r}")
        a = _frames(_to_numpy(obj[k], f"{path} [{k}]"), f"{path} [{k}]", dim)
        dim = a.shape[1]
        out.append(a)
    return out


def load_mintrec(root: PathLike | None = None, task: str = "intent", text: bool | str = "auto") -> MMDataset:
    """MIntRec (20 intents; ``task='binary'``: Emotion vs Goal) with the official train/dev/test.

    A: wav2vec2 (T, 768) from ``audio_data/audio_feats.pkl`` (numpy or torch tensors);
    V: Faster R-CNN ROI (T, 256) from ``video_data/video_feats.pkl`` (lists of (1, 256)).
    Text features need BERT, which mmlab does not run: T is loaded only from an optional
    ``text_data/text_feats.pkl`` (key -> (T, D)). ``text='auto'`` loads it when present and
    otherwise warns and returns A and V only; raw utterances are in ``info['texts']``.
    """
    if task not in ("intent", "binary"):
        raise DataError(f"mintrec task: expected 'intent' or 'binary', got {task!r}")
    if text not in ("auto", True, False):
        raise DataError(f"mintrec text: expected 'auto', True or False, got {text!r}")
    base = _require(root, MINTREC_DIRS, _mintrec_check, "mintrec", "mintrec.md")
    rows, splits, seen = [], [], {}
    for fname, split in (("train.tsv", "train"), ("dev.tsv", "valid"), ("test.tsv", "test")):
        r = _read_tsv(base / fname)
        for key, _, _ in r:
            if key in seen:
                raise DataError(f"{base / fname}: sample {key!r} appears more than once (also in {seen[key]})")
            seen[key] = fname
        rows += r
        splits += [split] * len(r)
    keys = [k for k, _, _ in rows]
    labels = [lab for _, _, lab in rows]
    if task == "binary":
        classes = ["Emotion", "Goal"]
        y = np.array([0 if lab in MINTREC_EMOTION else 1 for lab in labels], np.int64)
    else:
        classes = list(MINTREC_LABELS)
        y = np.array([MINTREC_LABELS.index(lab) for lab in labels], np.int64)
    feats, lens = {}, {}
    feats["A"], lens["A"] = _pad(_feature_dict(base / "audio_data" / "audio_feats.pkl", keys))
    feats["V"], lens["V"] = _pad(_feature_dict(base / "video_data" / "video_feats.pkl", keys))
    text_path = base / "text_data" / "text_feats.pkl"
    if text is True or (text == "auto" and text_path.is_file()):
        feats["T"], lens["T"] = _pad(_feature_dict(text_path, keys))
        text_note = f"features from {text_path}"
    else:
        text_note = "not available: no text_data/text_feats.pkl (BERT features are not computed offline)"
        if text == "auto":
            warnings.warn(f"mintrec: {text_note}; loading A and V only", stacklevel=2)
    return MMDataset(
        name="mintrec", modalities=tuple(feats), feats=feats, lengths=lens, y=y, split=np.array(splits),
        ids=np.array(keys), classes=classes,
        info={"root": str(base), "task": task, "text": text_note, "texts": [t for _, t, _ in rows]},
    )


# ---------------------------------------------------------------------------- MMSA (MOSI, MOSEI)
def _mmsa_split(d: Any, where: str) -> dict[str, np.ndarray]:
    if not isinstance(d, dict):
        raise DataError(f"{where}: expected a dict of arrays, got {type(d).__name__}")
    out = {}
    for k, v in d.items():
        try:
            out[k] = np.asarray(v)
        except (ValueError, TypeError) as err:
            raise DataError(f"{where} [{k}]: cannot be read as an array ({err})") from None
    if "regression_labels" not in out:
        raise DataError(f"{where}: missing key 'regression_labels'")
    if not any(k in out for k in ("text", "audio", "vision")):
        raise DataError(f"{where}: none of the feature keys 'text', 'audio', 'vision'")
    reg = out["regression_labels"]
    if reg.dtype.kind not in "fiu":
        raise DataError(f"{where} [regression_labels]: expected numbers, got dtype {reg.dtype}")
    out["regression_labels"] = reg = reg.reshape(-1).astype(np.float32) if reg.ndim == 2 and reg.shape[1] == 1 else reg
    if reg.ndim != 1 or not len(reg):
        raise DataError(f"{where} [regression_labels]: expected a non-empty (N,) array, got shape {reg.shape}")
    if not np.isfinite(reg).all():
        raise DataError(f"{where} [regression_labels]: contains NaN or inf")
    n = len(reg)
    for k in ("text", "audio", "vision", "text_bert"):
        if k not in out:
            continue
        a = out[k]
        if a.dtype.kind not in "fiu":
            raise DataError(f"{where} [{k}]: expected real numbers, got dtype {a.dtype}")
        if a.ndim != 3 or 0 in a.shape[1:]:
            raise DataError(f"{where} [{k}]: expected (N, T, D), got shape {a.shape}")
        if k == "text_bert" and a.shape[1] != 3:
            raise DataError(f"{where} [text_bert]: expected (N, 3, L) [ids, mask, segments], got shape {a.shape}")
    for k in ("text", "audio", "vision", "text_bert", "audio_lengths", "vision_lengths", "classification_labels", "id", "raw_text"):
        if k in out and (out[k].ndim == 0 or len(out[k]) != n):
            raise DataError(f"{where} [{k}]: has {len(out[k]) if out[k].ndim else 0} rows, regression_labels has {n}")
    return out


def _mmsa_lengths(s: dict[str, np.ndarray], key: str, t: int, where: str) -> np.ndarray:
    ln = s[key]
    if ln.dtype.kind not in "fiu" or ln.ndim != 1 or not np.isfinite(ln).all():
        raise DataError(f"{where} [{key}]: expected (N,) integer lengths")
    ln = ln.astype(np.int64)
    if (ln < 0).any():
        raise DataError(f"{where} [{key}]: negative lengths (min {ln.min()})")
    return np.clip(ln, 1, t)


def _load_mmsa(root: PathLike | None, name: str, dirs: Sequence[str], aligned: bool, task: str) -> MMDataset:
    if task not in MMSA_TASKS:
        raise DataError(f"{name} task: expected one of {MMSA_TASKS}, got {task!r}")
    base = _require(root, dirs, _mmsa_check, name, f"{name}.md")
    fname = f"{'aligned' if aligned else 'unaligned'}_50.pkl"
    path = base / "Processed" / fname if (base / "Processed" / fname).is_file() else base / fname
    if not path.is_file():
        raise DataError(f"{base}: no Processed/{fname} (aligned={aligned}); see data_cards/{name}.md")
    data = safe_load(path, allow_torch=False)
    if not isinstance(data, dict) or not all(k in data for k in ("train", "valid", "test")):
        got = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path}: expected a dict with keys 'train', 'valid', 'test', got {got}")
    parts = {sp: _mmsa_split(data[sp], f"{path} [{sp}]") for sp in ("train", "valid", "test")}
    mods = [m for m, k in (("T", "text"), ("A", "audio"), ("V", "vision")) if all(k in p for p in parts.values())]
    if not mods:
        raise DataError(f"{path}: no feature key present in all three splits")
    if "T" not in mods:
        warnings.warn(f"{path}: no 'text' features; loading {mods} only", stacklevel=3)
    feats: dict[str, list[np.ndarray]] = {m: [] for m in mods}
    lens: dict[str, list[np.ndarray]] = {m: [] for m in mods}
    reg, cls, ids, split, bert, raw = [], [], [], [], [], []
    n_clipped = 0
    for sp, s in parts.items():
        where = f"{path} [{sp}]"
        n = len(s["regression_labels"])
        t_text = s["text"].shape[1] if "text" in s else None
        if "text_bert" in s:
            text_len = np.clip(s["text_bert"][:, 1, :].sum(1).astype(np.int64), 1, s["text_bert"].shape[2])
        else:
            text_len = np.full(n, t_text or 1, np.int64)
        for m, k in (("T", "text"), ("A", "audio"), ("V", "vision")):
            if m not in mods:
                continue
            x = s[k].astype(np.float32)
            if k == "audio":
                x[np.isneginf(x)] = 0.0  # COVAREP -inf (as MMSA / CIDer)
            bad = int((~np.isfinite(x)).sum())
            if bad:
                raise DataError(f"{where} [{k}]: {bad} NaN or inf values")
            t = x.shape[1]
            if m != "T" and not aligned and f"{k}_lengths" in s:
                raw_len = s[f"{k}_lengths"]
                ln = _mmsa_lengths(s, f"{k}_lengths", t, where)
                n_clipped += int((raw_len.astype(np.int64) != ln).sum())
            else:
                ln = np.clip(text_len, 1, t)
            x[np.arange(t)[None, :] >= ln[:, None]] = 0.0
            feats[m].append(x)
            lens[m].append(ln)
        r = s["regression_labels"].astype(np.float32)
        if "classification_labels" in s:
            c = s["classification_labels"].reshape(-1)
            if c.dtype.kind not in "fiu" or not np.isin(c, (0, 1, 2)).all():
                raise DataError(f"{where} [classification_labels]: expected 0 (neg) / 1 (neu) / 2 (pos)")
            c = c.astype(np.int64)
        else:
            c = (np.sign(r) + 1).astype(np.int64)
        reg.append(r)
        cls.append(c)
        ids.append(s["id"].astype(str) if "id" in s else np.array([f"{name}-{sp}-{i}" for i in range(n)]))
        split.append(np.full(n, sp))
        if "text_bert" in s:
            bert.append(s["text_bert"].astype(np.int64))
        if "raw_text" in s:
            raw.append(s["raw_text"].astype(str))
    if n_clipped:
        warnings.warn(f"{path}: {n_clipped} audio/vision lengths were outside [1, T] and were clipped", stacklevel=3)
    y_reg = np.concatenate(reg)
    y_cls = np.concatenate(cls)
    if task == "binary":
        y, classes = y_cls, ["negative", "neutral", "positive"]
    elif task == "3":
        y, classes = (np.sign(y_reg) + 1).astype(np.int64), ["negative", "neutral", "positive"]
    elif task in ("seven", "7"):
        y, classes = (np.round(np.clip(y_reg, -3, 3)) + 3).astype(np.int64), [str(v) for v in range(-3, 4)]
    else:  # "2": MMSA non-0 binary, neutral (score 0) dropped
        y, classes = (y_reg > 0).astype(np.int64), ["negative", "positive"]
    keep = y_reg != 0 if task == "2" else np.ones(len(y), bool)
    out_feats, out_lens = {}, {}
    for m in mods:
        t_max = max(x.shape[1] for x in feats[m])
        dims = {x.shape[2] for x in feats[m]}
        if len(dims) != 1:
            raise DataError(f"{path}: modality {m} has different feature sizes across splits {sorted(dims)}")
        padded = [np.pad(x, ((0, 0), (0, t_max - x.shape[1]), (0, 0))) for x in feats[m]]
        out_feats[m] = np.concatenate(padded)[keep]
        out_lens[m] = np.concatenate(lens[m])[keep]
    info = {"root": str(base), "file": str(path), "aligned": aligned, "task": task}
    if len(bert) == 3 and len({b.shape[1:] for b in bert}) == 1:
        info["text_bert"] = np.concatenate(bert)[keep]  # (N, 3, L): input ids, attention mask, segment ids
    if len(raw) == 3:
        info["raw_text"] = np.concatenate(raw)[keep]
    split_arr = np.concatenate(split)[keep]
    if any(not (split_arr == sp).any() for sp in ("train", "valid", "test")):
        raise DataError(f"{path}: a split has no samples for task {task!r}")
    return MMDataset(
        name=name, modalities=tuple(mods), feats=out_feats, lengths=out_lens, y=y[keep], split=split_arr,
        ids=np.concatenate(ids)[keep], classes=classes, y_reg=y_reg[keep], info=info,
    )


def load_mosi(root: PathLike | None = None, aligned: bool = False, task: str = "binary") -> MMDataset:
    """CMU-MOSI from the MMSA pickle. Tasks: 'binary' (CIDer: 3-class neg/neu/pos training target
    from ``classification_labels``; Acc2 on non-neutral), 'seven'/'7' (round(clip(y, -3, 3)) + 3),
    '2' (MMSA non-0 binary, neutral dropped), '3' (sign of the score). ``y_reg`` keeps the score."""
    return _load_mmsa(root, "mosi", MOSI_DIRS, aligned, task)


def load_mosei(root: PathLike | None = None, aligned: bool = False, task: str = "binary") -> MMDataset:
    """CMU-MOSEI from the MMSA pickle; tasks as `load_mosi`."""
    return _load_mmsa(root, "mosei", MOSEI_DIRS, aligned, task)


# ---------------------------------------------------------------------------- registry
for _entry in (
    DatasetEntry("iemocap", load_iemocap, "IEMOCAP 4-class, MMIN features (ComParE/DenseFace/BERT-large), 10 folds",
                 "iemocap.md", find=find_iemocap),
    DatasetEntry("msp_improv", load_msp_improv, "MSP-IMPROV 4-class, MMIN layout, 12 folds", "msp_improv.md",
                 find=find_msp_improv, aliases=("msp-improv", "msp")),
    DatasetEntry("mintrec", load_mintrec, "MIntRec 20 intents: wav2vec2 audio, ROI video (text only if precomputed)",
                 "mintrec.md", find=find_mintrec),
    DatasetEntry("mosi", load_mosi, "CMU-MOSI sentiment, MMSA pickle (BERT/COVAREP/Facet)", "mosi.md", find=find_mosi,
                 aliases=("cmu-mosi",)),
    DatasetEntry("mosei", load_mosei, "CMU-MOSEI sentiment, MMSA pickle (BERT/COVAREP/Facet)", "mosei.md",
                 find=find_mosei, aliases=("cmu-mosei",)),
):
    register_dataset(_entry)

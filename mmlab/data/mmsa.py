"""CMU-MOSI and CMU-MOSEI in the MMSA pickle layout (thuiar/MMSA): ``Processed/{aligned,
unaligned}_50.pkl``, a dict ``train`` / ``valid`` / ``test`` of per-sample arrays (``text``,
``audio``, ``vision`` (N, T, D), ``text_bert`` (N, 3, L), ``{audio,vision}_lengths``,
``regression_labels``, ``classification_labels``, ``id``, ``raw_text``).

The pickle is read with the restricted unpickler under one memory budget (`mmlab.data.budget`):
its contents (shared references expanded, lists measured before they become arrays) and every
array built from them (the float32 (N, T_max, D) features of all splits, the token ids) are
charged before they are built. Sample ids must be unique across the three splits.

``ood=`` adds CIDer's OOD re-partition (`mmlab.data.mmsa_ood`): the dataset is then assembled
(`assemble`) from named parts, train / valid / test / ``test_ood``, drawn from two files.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmlab.data.budget import Budget, checked_asarray, nbytes_of
from mmlab.data.dataset import MMDataset
from mmlab.data.layout import MOSEI_DIRS, MOSI_DIRS, PathLike, mmsa_check, require, unique_ids
from mmlab.data.safe_joblib import safe_load_joblib
from mmlab.data.safe_pickle import safe_load
from mmlab.errors import DataError

MMSA_TASKS = ("binary", "seven", "2", "3", "7")
SPLIT_NAMES = ("train", "valid", "test")
FEATURE_KEYS = (("T", "text"), ("A", "audio"), ("V", "vision"))


def _mmsa_split(d: Any, sp: str, budget: Budget) -> dict[str, np.ndarray]:
    where = f"{budget.where} [{sp}]"
    if not isinstance(d, dict):
        raise DataError(f"{where}: expected a dict of arrays, got {type(d).__name__}")
    out = {k: checked_asarray(v, budget, f"[{sp}] [{k}]") for k, v in d.items()}
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


def _targets(reg: np.ndarray, cls: np.ndarray, task: str) -> tuple[np.ndarray, list[str]]:
    """The class labels and names of ``task`` from the scores and MMSA's 3-class labels."""
    if task == "binary":
        return cls, ["negative", "neutral", "positive"]
    if task == "3":
        return (np.sign(reg) + 1).astype(np.int64), ["negative", "neutral", "positive"]
    if task in ("seven", "7"):
        return (np.round(np.clip(reg, -3, 3)) + 3).astype(np.int64), [str(v) for v in range(-3, 4)]
    return (reg > 0).astype(np.int64), ["negative", "positive"]  # "2": MMSA non-0 binary, neutral dropped


@dataclass
class Part:
    """One output split of the dataset: a source split's arrays (after `_mmsa_split`), where
    they came from (``"file [split]"``, for messages), which rows to keep, and a suffix that
    keeps its ids unique beside another file's copy of the same clip."""

    arrays: dict[str, np.ndarray]
    where: str
    keep: np.ndarray
    id_suffix: str = ""


def read_mmsa_file(path: Path, budget: Budget, joblib: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """The three checked splits of an MMSA-layout pickle (``joblib``: written by ``joblib.dump``,
    read by `safe_load_joblib`), charged to ``budget`` (whose ``where`` names ``path``)."""
    data = safe_load_joblib(path, budget=budget) if joblib else safe_load(path, allow_torch=False, budget=budget)
    if not isinstance(data, dict) or not all(k in data for k in SPLIT_NAMES):
        got = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path}: expected a dict with keys 'train', 'valid', 'test', got {got}")
    return {sp: _mmsa_split(data[sp], sp, budget) for sp in SPLIT_NAMES}


def _features(parts: dict[str, Part], m: str, k: str, keep: dict[str, np.ndarray],
              text_len: dict[str, np.ndarray], aligned: bool, budget: Budget,
              max_len: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """One modality of all splits as one zero-padded float32 (N_kept, T_max, D) array, built in
    place (charged first); its lengths; how many lengths were clipped to [1, T]."""
    path = budget.where
    dims = {p.arrays[k].shape[2] for p in parts.values()}
    if len(dims) != 1:
        raise DataError(f"{path}: modality {m} has different feature sizes across splits {sorted(dims)}")
    ts = {sp: p.arrays[k].shape[1] for sp, p in parts.items()}
    longest = max(ts, key=lambda sp: ts[sp])
    if max_len is not None and ts[longest] > max_len:
        raise DataError(f"{parts[longest].where} [{k}]: T={ts[longest]} frames, more than max_len={max_len}")
    shape = (sum(int(v.sum()) for v in keep.values()), ts[longest], dims.pop())
    budget.charge(nbytes_of(shape, np.float32), f"[{k}]: features of all splits {shape} float32",
                  hint=f"split {longest!r} stores T={ts[longest]} frames (the splits: {ts})")
    out = np.zeros(shape, np.float32)
    lens, row, n_clipped = [], 0, 0
    for sp, part in parts.items():
        s, where = part.arrays, part.where
        x, t, kept = s[k], ts[sp], np.flatnonzero(keep[sp])
        block = out[row : row + len(kept), :t]
        if len(kept) == len(x):
            block[...] = x
        else:
            for j, i in enumerate(kept):
                block[j] = x[i]
        if k == "audio":
            block[np.isneginf(block)] = 0.0  # COVAREP -inf (as MMSA / CIDer)
        bad = int(np.count_nonzero(~np.isfinite(block)))
        if bad:
            raise DataError(f"{where} [{k}]: {bad} NaN or inf values")
        if m != "T" and not aligned and f"{k}_lengths" in s:
            ln = _mmsa_lengths(s, f"{k}_lengths", t, where)
            n_clipped += int((s[f"{k}_lengths"].astype(np.int64) != ln).sum())
        else:
            ln = np.clip(text_len[sp], 1, t)
        ln = ln[kept]
        block[np.arange(t)[None, :] >= ln[:, None]] = 0.0
        lens.append(ln)
        row += len(kept)
    return out, np.concatenate(lens), n_clipped


def iid_file(root: PathLike | None, name: str, dirs: Sequence[str], aligned: bool) -> tuple[Path, Path]:
    """(dataset folder, ``Processed/{aligned,unaligned}_50.pkl``) of the IID MMSA pickle."""
    base = require(root, dirs, mmsa_check, name, f"{name}.md")
    fname = f"{'aligned' if aligned else 'unaligned'}_50.pkl"
    path = base / "Processed" / fname if (base / "Processed" / fname).is_file() else base / fname
    if not path.is_file():
        raise DataError(f"{base}: no Processed/{fname} (aligned={aligned}); see data_cards/{name}.md")
    return base, path


def _load_mmsa(root: PathLike | None, name: str, dirs: Sequence[str], aligned: bool, task: str,
               max_len: int | None, max_bytes: int | str | None, ood: bool | str | None = None,
               ood_root: PathLike | None = None) -> MMDataset:
    if task not in MMSA_TASKS:
        raise DataError(f"{name} task: expected one of {MMSA_TASKS}, got {task!r}")
    if ood not in (None, False):
        from mmlab.data.mmsa_ood import load_ood

        return load_ood(root, name, dirs, aligned, task, ood, max_len, max_bytes, ood_root)
    base, path = iid_file(root, name, dirs, aligned)
    budget = Budget(str(path), max_bytes)
    splits = read_mmsa_file(path, budget)
    parts = {sp: Part(s, f"{path} [{sp}]", np.ones(len(s["regression_labels"]), bool)) for sp, s in splits.items()}
    info = {"root": str(base), "file": str(path), "aligned": aligned, "task": task}
    return assemble(name, parts, aligned, task, budget, max_len, info)


def assemble(name: str, parts: dict[str, Part], aligned: bool, task: str, budget: Budget,
             max_len: int | None, info: dict[str, Any]) -> MMDataset:
    """One `MMDataset` from named output splits (``train``, ``valid``, ``test``, ``test_ood``):
    modalities present in every part, labels for ``task``, ids unique across all of them."""
    path = budget.where
    mods = [(m, k) for m, k in FEATURE_KEYS if all(k in p.arrays for p in parts.values())]
    if not mods:
        raise DataError(f"{path}: no feature key present in every split ({', '.join(p.where for p in parts.values())})")
    if "T" not in dict(mods):
        lacking = [p.where for p in parts.values() if "text" not in p.arrays]
        warnings.warn(f"{path}: no 'text' features in {lacking}; loading {[m for m, _ in mods]} only", stacklevel=4)
    reg, cls, ids, keep, text_len, bert, raw = [], [], [], {}, {}, [], []
    for sp, part in parts.items():
        s, where = part.arrays, part.where
        n = len(s["regression_labels"])
        if "text_bert" in s:
            text_len[sp] = np.clip(s["text_bert"][:, 1, :].sum(1).astype(np.int64), 1, s["text_bert"].shape[2])
        else:
            text_len[sp] = np.full(n, s["text"].shape[1] if "text" in s else 1, np.int64)
        r = s["regression_labels"].astype(np.float32)
        if "classification_labels" in s:
            c = s["classification_labels"].reshape(-1)
            if c.dtype.kind not in "fiu" or not np.isin(c, (0, 1, 2)).all():
                raise DataError(f"{where} [classification_labels]: expected 0 (neg) / 1 (neu) / 2 (pos)")
            c = c.astype(np.int64)
        else:
            c = (np.sign(r) + 1).astype(np.int64)
        keep[sp] = part.keep & (r != 0) if task == "2" else part.keep.copy()
        reg.append(r)
        cls.append(c)
        sid = s["id"].astype(str) if "id" in s else np.array([f"{name}-{sp}-{i}" for i in range(n)])
        ids.append(np.char.add(sid, part.id_suffix) if part.id_suffix else sid)
        if "text_bert" in s:
            bert.append(s["text_bert"])
        if "raw_text" in s:
            raw.append(s["raw_text"].astype(str))
    all_ids = unique_ids(np.concatenate(ids), f"{path} [id]")
    y_reg = np.concatenate(reg)
    y, classes = _targets(y_reg, np.concatenate(cls), task)
    kept = np.concatenate(list(keep.values()))
    out_feats, out_lens, n_clipped = {}, {}, 0
    for m, k in mods:
        out_feats[m], out_lens[m], clipped = _features(parts, m, k, keep, text_len, aligned, budget, max_len)
        n_clipped += clipped
    if n_clipped:
        warnings.warn(f"{path}: {n_clipped} audio/vision lengths were outside [1, T] and were clipped", stacklevel=4)
    if len(bert) == len(parts) and len({b.shape[1:] for b in bert}) == 1:
        shape = (int(kept.sum()), *bert[0].shape[1:])
        budget.charge(nbytes_of(shape, np.int64), f"[text_bert]: token ids of all splits {shape} int64")
        info["text_bert"] = np.concatenate([b.astype(np.int64) for b in bert])[kept]  # (N, 3, L): ids, mask, segments
    if len(raw) == len(parts):
        info["raw_text"] = np.concatenate(raw)[kept]
    split_arr = np.concatenate([np.full(len(keep[sp]), sp) for sp in parts])[kept]
    empty = [sp for sp in parts if not (split_arr == sp).any()]
    if empty:
        raise DataError(f"{path}: split(s) {empty} have no samples for task {task!r}")
    return MMDataset(
        name=name, modalities=tuple(m for m, _ in mods), feats=out_feats, lengths=out_lens, y=y[kept],
        split=split_arr, ids=all_ids[kept], classes=classes, y_reg=y_reg[kept], info=info,
    )


def load_mosi(root: PathLike | None = None, aligned: bool = False, task: str = "binary",
              max_len: int | None = None, max_bytes: int | str | None = None, ood: bool | str | None = None,
              ood_root: PathLike | None = None) -> MMDataset:
    """CMU-MOSI from the MMSA pickle. Tasks: 'binary' (CIDer: 3-class neg/neu/pos training target
    from ``classification_labels``; Acc2 on non-neutral), 'seven'/'7' (round(clip(y, -3, 3)) + 3),
    '2' (MMSA non-0 binary, neutral dropped), '3' (sign of the score). ``y_reg`` keeps the score.
    ``max_len``: refuse a split whose arrays hold more frames than this; ``max_bytes``: the
    memory budget for the pickle (default ``MMLAB_MAX_BYTES``, else 4 GiB).

    ``ood``: also read CIDer's OOD re-partition ``OOD_MOSI/{binary,seven}/MOSI_{aligned,unaligned}_50.pkl``
    (a joblib file, read without ``joblib.load``; found under the data root, beside the MOSI
    folder, or in ``ood_root``). ``True`` / ``"test"``: train / valid / test are the IID pickle's
    and ``test_ood`` is the OOD partition's test split less every clip of the IID train or valid
    split (ids ``<id>@ood``), so ``--test-split test,test_ood`` scores one IID-trained model on
    both. ``"partition"``: CIDer's OOD protocol: train / valid / ``test_ood`` are the OOD
    partition's own splits (no ``test``). See `mmlab.data.mmsa_ood` and data_cards/mosi.md."""
    return _load_mmsa(root, "mosi", MOSI_DIRS, aligned, task, max_len, max_bytes, ood, ood_root)


def load_mosei(root: PathLike | None = None, aligned: bool = False, task: str = "binary",
               max_len: int | None = None, max_bytes: int | str | None = None, ood: bool | str | None = None,
               ood_root: PathLike | None = None) -> MMDataset:
    """CMU-MOSEI from the MMSA pickle; tasks and options (``ood`` reads
    ``OOD_MOSEI/{binary,seven}/MOSEI_{aligned,unaligned}_50.pkl``) as `load_mosi`. The full MOSEI
    pickle needs a budget above the 4 GiB default (see data_cards/mosei.md)."""
    return _load_mmsa(root, "mosei", MOSEI_DIRS, aligned, task, max_len, max_bytes, ood, ood_root)

"""MIntRec (Zhang et al., "MIntRec: A New Dataset for Multimodal Intent Recognition", ACM MM
2022) in its released layout: ``{train,dev,test}.tsv``, ``video_data/video_feats.pkl`` (key ->
list of (1, 256) ROI features), ``audio_data/audio_feats.pkl`` (key -> (T, 768) wav2vec2,
numpy or torch) and optionally ``text_data/text_feats.pkl``.

Each pickle is read with the restricted unpickler under its own memory budget
(`mmlab.data.budget`): the pickle's contents (shared references expanded), the arrays built
from its lists and the zero-padded (N, T_max, D) array are charged before they are built.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from mmlab.data.budget import Budget, checked_asarray, nbytes_of
from mmlab.data.dataset import MMDataset
from mmlab.data.layout import (
    MINTREC_DIRS, PathLike, charge_padding, check_max_len, frame_shape, frames, mintrec_check, pad, require,
)
from mmlab.data.safe_pickle import safe_load
from mmlab.errors import DataError

MINTREC_LABELS = [
    "Complain", "Praise", "Apologise", "Thank", "Criticize", "Agree", "Taunt", "Flaunt", "Joke", "Oppose",
    "Comfort", "Care", "Inform", "Advise", "Arrange", "Introduce", "Leave", "Prevent", "Greet", "Ask for help",
]
MINTREC_EMOTION = {"Complain", "Praise", "Apologise", "Thank", "Criticize", "Care", "Agree", "Taunt", "Flaunt", "Joke", "Oppose"}


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


def _feature_dict(path: Path, keys: Sequence[str], max_len: int | None,
                  max_bytes: int | str | None) -> tuple[np.ndarray, np.ndarray]:
    """The (N, T_max, D) padded features and (N,) lengths of ``keys`` from one pickle."""
    budget = Budget(str(path), max_bytes)
    obj = safe_load(path, budget=budget)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict (sample key -> features), got {type(obj).__name__}")
    out, dim = [], None
    for k in keys:
        if k not in obj:
            raise DataError(f"{path}: no features for sample key {k!r}")
        where, v = f"{path} [{k}]", obj[k]
        if isinstance(v, (list, tuple)) and not v:
            raise DataError(f"{where}: empty list, expected at least one frame")
        a = checked_asarray(v, budget, f"[{k}]")
        if a.dtype.kind not in "fiu":
            raise DataError(f"{where}: expected real numbers, got dtype {a.dtype}")
        a = frame_shape(a, where, dim)
        if a.dtype != np.float32:
            budget.charge(nbytes_of(a.shape, np.float32), f"[{k}] float32 copy {a.shape}")
        a = frames(a, where, dim)
        dim = a.shape[1]
        out.append(a)
    lengths = np.array([a.shape[0] for a in out], np.int64)
    check_max_len(lengths, keys, str(path), max_len)
    charge_padding(budget, lengths, keys, dim, "samples")
    return pad(out)


def load_mintrec(root: PathLike | None = None, task: str = "intent", text: bool | str = "auto",
                 max_len: int | None = None, max_bytes: int | str | None = None) -> MMDataset:
    """MIntRec (20 intents; ``task='binary'``: Emotion vs Goal) with the official train/dev/test.

    A: wav2vec2 (T, 768) from ``audio_data/audio_feats.pkl`` (numpy or torch tensors);
    V: Faster R-CNN ROI (T, 256) from ``video_data/video_feats.pkl`` (lists of (1, 256)).
    Text features need BERT, which mmlab does not run: T is loaded only from an optional
    ``text_data/text_feats.pkl`` (key -> (T, D)). ``text='auto'`` loads it when present and
    otherwise warns and returns A and V only; raw utterances are in ``info['texts']``.
    ``max_len``: refuse samples longer than this many frames; ``max_bytes``: the memory budget
    per pickle (default ``MMLAB_MAX_BYTES``, else 4 GiB).
    """
    if task not in ("intent", "binary"):
        raise DataError(f"mintrec task: expected 'intent' or 'binary', got {task!r}")
    if text not in ("auto", True, False):
        raise DataError(f"mintrec text: expected 'auto', True or False, got {text!r}")
    base = require(root, MINTREC_DIRS, mintrec_check, "mintrec", "mintrec.md")
    rows, splits, seen = [], [], {}
    for fname, split in (("train.tsv", "train"), ("dev.tsv", "valid"), ("test.tsv", "test")):
        r = _read_tsv(base / fname)
        for key, _, _ in r:
            seen.setdefault(key, []).append(fname)
        rows += r
        splits += [split] * len(r)
        dup = next((k for k, _, _ in r if len(seen[k]) > 1), None)
        if dup is not None:
            raise DataError(f"{base / fname}: sample {dup!r} appears more than once ({len(seen[dup])} times, in "
                            f"{sorted(set(seen[dup]))}); sample ids must be unique")
    keys = [k for k, _, _ in rows]
    labels = [lab for _, _, lab in rows]
    if task == "binary":
        classes = ["Emotion", "Goal"]
        y = np.array([0 if lab in MINTREC_EMOTION else 1 for lab in labels], np.int64)
    else:
        classes = list(MINTREC_LABELS)
        y = np.array([MINTREC_LABELS.index(lab) for lab in labels], np.int64)
    feats, lens = {}, {}
    for m, rel in (("A", "audio_data/audio_feats.pkl"), ("V", "video_data/video_feats.pkl")):
        feats[m], lens[m] = _feature_dict(base / rel, keys, max_len, max_bytes)
    text_path = base / "text_data" / "text_feats.pkl"
    if text is True or (text == "auto" and text_path.is_file()):
        feats["T"], lens["T"] = _feature_dict(text_path, keys, max_len, max_bytes)
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

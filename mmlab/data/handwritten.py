"""The bundled UCI Multiple Features ("Handwritten") set: 2000 digits, 10 classes, six views.

Each view is a vector modality (N, 1, D). Splits (stratified by class, seeded):

- ``protocol="default"``: 70/10/20 train/valid/test (1400/200/400);
- ``protocol="cpm"``: the CPM-Nets 80/20 split (160 train + 40 test per class, 1600/400), with
  10% of each class's training part carved out as validation (1440/160/400). CPM-Nets shuffled
  unseeded and had no validation set; ours is seeded.

``normalize="standard"`` z-scores every feature with the mean and std of the *training* split
only (std 0 -> 1). Data: ``mmlab/data/bundled/handwritten.npz`` (CC BY 4.0, see its README).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mmlab.data.dataset import MMDataset, stratified_split
from mmlab.data.registry import DatasetEntry, register_dataset
from mmlab.errors import DataError

BUNDLED = Path(__file__).parent / "bundled" / "handwritten.npz"
VIEWS = ("fou", "fac", "kar", "pix", "zer", "mor")
VIEW_DIMS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
VIEW_NAMES = {
    "fou": "Fourier coefficients of the character shapes",
    "fac": "profile correlations",
    "kar": "Karhunen-Loeve coefficients",
    "pix": "pixel averages in 2x3 windows",
    "zer": "Zernike moments",
    "mor": "morphological features",
}
PROTOCOLS = {"default": (0.7, 0.1, 0.2), "cpm": (0.72, 0.08, 0.2)}  # cpm: 0.8 train of which 10% valid


def _read_bundled(path: Path = BUNDLED) -> tuple[dict[str, np.ndarray], np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: bundled Handwritten data is missing (reinstall mmlab)")
    try:
        with np.load(path, allow_pickle=False) as z:
            views = {v: z[v] for v in VIEWS}
            y = z["y"].astype(np.int64)
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"{path}: bundled Handwritten data is unreadable ({err})") from None
    for v in VIEWS:
        if views[v].shape != (2000, VIEW_DIMS[v]):
            raise DataError(f"{path}: view {v!r} has shape {views[v].shape}, expected (2000, {VIEW_DIMS[v]})")
    return views, y


def load_handwritten(
    views: Sequence[str] | None = None,
    split_seed: int = 0,
    normalize: str | None = "standard",
    protocol: str = "default",
) -> MMDataset:
    """UCI Multiple Features as an `MMDataset` with one vector modality per view.

    ``views``: subset and order of ("fou", "fac", "kar", "pix", "zer", "mor"), default all six.
    ``normalize``: "standard" (train-split z-score) or "none"/None (raw values).
    ``protocol``: "default" (70/10/20) or "cpm" (CPM-Nets 80/20 with validation carved from train).
    """
    views = list(VIEWS if views is None else views)
    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views or len(set(views)) != len(views):
        raise DataError(f"handwritten views: expected distinct names from {VIEWS}, got {views}")
    if protocol not in PROTOCOLS:
        raise DataError(f"handwritten protocol: expected one of {sorted(PROTOCOLS)}, got {protocol!r}")
    if normalize not in ("standard", "none", None):
        raise DataError(f"handwritten normalize: expected 'standard' or 'none', got {normalize!r}")
    raw, y = _read_bundled()
    if protocol == "cpm":  # 80/20 first (as CPM-Nets), then 10% of each class's train -> valid
        split = stratified_split(y, (0.8, 0.0, 0.2), seed=split_seed)
        train = np.flatnonzero(split == "train")
        sub = stratified_split(y[train], (0.9, 0.1, 0.0), seed=split_seed + 1)
        split[train[sub == "valid"]] = "valid"
    else:
        split = stratified_split(y, PROTOCOLS[protocol], seed=split_seed)
    feats, stats = {}, {}
    is_train = split == "train"
    for v in views:
        x = raw[v].astype(np.float32)
        if normalize == "standard":
            mu = x[is_train].mean(0)
            sd = x[is_train].std(0)
            sd[sd < 1e-8] = 1.0
            x = (x - mu) / sd
            stats[v] = (mu, sd)
        feats[v] = np.ascontiguousarray(x[:, None, :], dtype=np.float32)
    n = len(y)
    return MMDataset(
        name="handwritten",
        modalities=tuple(views),
        feats=feats,
        lengths={v: np.ones(n, np.int64) for v in views},
        y=y,
        split=split,
        ids=np.array([f"hw-{i:04d}" for i in range(n)]),
        classes=[str(c) for c in range(10)],
        info={
            "source": "UCI Multiple Features (Duin), CC BY 4.0",
            "protocol": protocol,
            "split_seed": split_seed,
            "normalize": normalize or "none",
            "norm_stats": stats,
            "view_names": {v: VIEW_NAMES[v] for v in views},
        },
    )


register_dataset(
    DatasetEntry(
        name="handwritten",
        loader=load_handwritten,
        description="UCI Multiple Features: 2000 handwritten digits, 10 classes, 6 feature views (bundled)",
        card="handwritten.md",
        bundled=True,
        aliases=("hw", "mfeat"),
    )
)

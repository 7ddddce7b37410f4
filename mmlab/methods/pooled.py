"""What the pooled reference methods share (`pooled_linear`, `kernel_experts`): per-modality
frame statistics over the observed frames, standardised with train-split statistics, a model fitted
in closed form when the method declares its stages, and choices made on the valid split only.

For each modality m the observed frames of an utterance (``obs_mask``: padding and dropped
frames left out) are pooled into its first ``moments`` moments: the mean, then (optionally) the
second and third central moments, each of size D_m. A modality counts as present when it is
available (``avail``) *and* has at least one observed frame.

Fitting is the method's training. It is deterministic given the run seed, so it runs when the
method declares its stages (as `FillFusion.stages` computes its train means), on the train and
valid rows the Trainer hands it; the one parameter-free stage ("fit") then validates the fitted
model once on valid and the Trainer checkpoints it. Every fitted number is a float64 torch
buffer, so ``state_dict`` round-trips through ``torch.load(weights_only=True)`` and no
scikit-learn object is pickled. The test split is never read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmlab import metrics
from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.methods.base import Method, Stage, TrainConfig, Validation

SELECT = ("accuracy", "macro_recall", "loss")
ABSENT_CLASS_LOGIT = -50.0  # a class with no train row gets this intercept and zero weights


def check_config(cfg: Any, grids: tuple[str, ...], integers: tuple[str, ...]) -> None:
    """Validate the fields the pooled configs share: ``moments`` in 1..3, each of ``grids`` a
    non-empty list of positive numbers (made floats), ``select_metric`` in `SELECT`, each of
    ``integers`` a positive integer. Raises `ConfigError` naming the field."""
    kind = type(cfg).__name__

    def need(name: str, ok: bool, what: str) -> None:
        if not ok:
            raise ConfigError(f"{kind}.{name}: expected {what}, got {getattr(cfg, name)!r}")

    def pos_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    need("moments", pos_int(cfg.moments) and cfg.moments <= 3, "1, 2 or 3")
    for name in grids:
        grid = getattr(cfg, name)
        need(name, isinstance(grid, (list, tuple)) and len(grid) > 0
             and all(isinstance(c, (int, float)) and not isinstance(c, bool) and np.isfinite(c) and c > 0
                     for c in grid), "a non-empty list of positive numbers")
        setattr(cfg, name, [float(c) for c in grid])
    need("select_metric", cfg.select_metric in SELECT, f"one of {list(SELECT)}")
    for name in integers:
        need(name, pos_int(getattr(cfg, name)), "a positive integer")


class PooledStatistics(Method):
    """Base of the pooled reference methods. Subclasses set ``Config`` (with ``moments``,
    ``select_metric`` and ``batch_size``), fill their buffers in ``fit(data)`` and report what
    they chose on valid in ``choices()``."""

    fill = "zero"  # irrelevant: only observed frames are pooled

    def __init__(self, cfg: Any, data: MMDataset):
        super().__init__()
        self.cfg = cfg
        if data.token_modalities:
            raise DataError(f"{self.name}: modalities {list(data.token_modalities)} of dataset {data.name!r} hold "
                            "token ids; expected features (train through mmlab.experiments, which featurizes them)")
        self.modalities = tuple(data.modalities)
        self.n_classes = data.n_classes
        # column blocks: for each modality, its moments one after another (D_m columns each)
        self.blocks: dict[str, list[int]] = {}
        start = 0
        for m in self.modalities:
            width = data.dims[m] * cfg.moments
            self.blocks[m] = list(range(start, start + width))
            start += width
        f64 = torch.float64
        self.register_buffer("feat_mean", torch.zeros(start, dtype=f64))
        self.register_buffer("feat_scale", torch.ones(start, dtype=f64))
        self.register_buffer("log_prior", torch.full((self.n_classes,), -float(np.log(self.n_classes)), dtype=f64))

    # ------------------------------------------------------------------ statistics
    def pooled(self, batch: MMBatch) -> torch.Tensor:
        """(B, F) float64: per modality the mean and central moments 2..``moments`` over the
        observed frames (``obs_mask``); zeros for a modality with no observed frame."""
        out = []
        for m in self.modalities:
            x = batch.feats[m].to(torch.float64)
            w = batch.obs_mask[m].to(torch.float64)[..., None]
            n = w.sum(1).clamp_min(1.0)
            mu = (x * w).sum(1) / n
            out.append(mu)
            for k in range(2, self.cfg.moments + 1):
                out.append((((x - mu[:, None]) ** k) * w).sum(1) / n)
        return torch.cat(out, 1)

    def standardised(self, batch: MMBatch) -> torch.Tensor:
        """(B, F) float64: `pooled` minus the train mean, over the train standard deviation."""
        return (self.pooled(batch) - self.feat_mean) / self.feat_scale

    def present(self, batch: MMBatch) -> torch.Tensor:
        """(B, M) bool: modality available and with at least one observed frame."""
        return torch.stack([batch.avail_of(m) & batch.obs_mask[m].any(1) for m in self.modalities], 1)

    def _pooled_split(self, data: MMDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pooled statistics, labels, `present`) of every row of ``data``."""
        dev = self.feat_mean.device
        batches = list(data.iter_batches(self.cfg.batch_size, device=dev))
        x = np.concatenate([self.pooled(b).cpu().numpy() for b in batches])
        present = np.concatenate([self.present(b).cpu().numpy() for b in batches])
        return x, data.y.astype(np.int64), present

    def standardise_splits(self, data: MMDataset) -> tuple[np.ndarray, ...]:
        """Pool the train and valid rows of ``data``, set ``feat_mean`` / ``feat_scale`` /
        ``log_prior`` from train and return the standardised ``(z_train, y_train, z_valid, y_valid,
        present_train, present_valid)``; a modality's columns are standardised with the train rows
        that have it (`present`, natural missingness)."""
        x_tr, y_tr, has_tr = self._pooled_split(data.subset("train"))
        x_va, y_va, has_va = self._pooled_split(data.subset("valid"))
        if len(np.unique(y_tr)) < 2:
            raise DataError(f"{self.name}: the train rows of dataset {data.name!r} hold one class "
                            f"({data.classes[y_tr[0]]!r}); a classifier needs at least two")
        mean, scale = np.zeros(x_tr.shape[1]), np.ones(x_tr.shape[1])
        for j, m in enumerate(self.modalities):
            rows, cols = has_tr[:, j], self.blocks[m]
            if rows.any():
                mean[cols], scale[cols] = x_tr[rows][:, cols].mean(0), x_tr[rows][:, cols].std(0)
        scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(mean)), scale, 1.0)  # constant columns -> 0
        prior = np.bincount(y_tr, minlength=self.n_classes) / len(y_tr)
        for name, value in (("feat_mean", mean), ("feat_scale", scale), ("log_prior", np.log(np.maximum(prior, 1e-12)))):
            buf = getattr(self, name)
            buf.copy_(torch.as_tensor(value, dtype=buf.dtype))
        return (x_tr - mean) / scale, y_tr, (x_va - mean) / scale, y_va, has_tr, has_va

    # ------------------------------------------------------------------ fitting helpers
    def score(self, log_proba: np.ndarray, y: np.ndarray) -> float:
        """The selection score on valid (higher is better; "loss" = the mean log-likelihood)."""
        if self.cfg.select_metric == "loss":
            return float(log_proba[np.arange(len(y)), y].mean())
        pred = log_proba.argmax(1)
        if self.cfg.select_metric == "accuracy":
            return metrics.accuracy(y, pred)
        return metrics.macro_recall(y, pred, self.n_classes)

    def full_weights(self, clf: Any, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
        """(C, n_cols) weights and (C,) intercepts over all classes from a fitted scikit-learn
        ``LogisticRegression`` (binary models have one row: class 0 gets zeros; absent classes a
        very low intercept)."""
        coef, icpt = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2 and coef.shape[0] == 1:
            coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], icpt])
        w = np.zeros((self.n_classes, n_cols))
        b = np.full(self.n_classes, ABSENT_CLASS_LOGIT)
        w[clf.classes_], b[clf.classes_] = coef, icpt
        return w, b

    def fit(self, data: MMDataset) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def choices(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_fitted(self) -> None:
        if not bool(self.fitted.all()):
            raise DataError(f"{self.name}: not fitted; train it first (Trainer(method, data, out).fit())")

    # ------------------------------------------------------------------ the contract
    def stages(self, data: MMDataset) -> list[Stage]:
        self.fit(data)
        once = TrainConfig(epochs=1, patience=0, select_metric="macro_recall")
        return [Stage("fit", [], validate=Validation(patterns="seven"), config=once)]

    def calibrate(self, valid: MMDataset) -> dict[str, Any] | None:
        """Nothing is left to choose (everything was chosen on valid while fitting): returns
        those choices so that the run folder's ``calibration.json`` records them."""
        return self.choices()

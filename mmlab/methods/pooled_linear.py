"""``pooled_linear``: one (multinomial) logistic regression per availability pattern on pooled
per-modality frame statistics, the simple reference every neural method should beat.

For each modality m the observed frames of an utterance (``obs_mask``: padding and dropped
frames left out) are pooled into its first ``moments`` moments: the mean, then (optionally) the
second and third central moments, each of size D_m. The statistics of all modalities are
standardised with train-split means and standard deviations, and for every non-empty subset a
of the modalities (2^M - 1 availability patterns: the six patterns + full for three modalities,
63 for the six views of `handwritten`) a logistic regression (scikit-learn ``LogisticRegression``,
lbfgs, L2) is fitted on the complete train rows' statistics of the modalities in a. Its inverse
regularisation C is chosen per pattern on the valid split (complete valid rows, same subset)
among ``c_grid``; a tie keeps the first (strongest) value. The test split is never read.

At prediction a sample is routed to the model of the modalities it really has: available
(``avail``) *and* with at least one observed frame. A sample with none gets the train class
prior. ``predict_logits`` returns log-probabilities.

Vector modalities (T = 1): their central moments over a single frame are zero, so with
``moments`` > 1 those columns are constant; standardisation maps them to zero (scale 1 for a
feature with no spread) and the model is the same as with ``moments = 1``. A sequence sample
that keeps a single observed frame likewise has zero higher moments.

Fitting is this method's training. It is closed-form-like and deterministic, so it runs when
the method declares its stages (as `FillFusion.stages` computes its train means), on the
train and valid rows the Trainer hands it; the one parameter-free stage ("fit") then validates
the fitted model once on valid and the Trainer checkpoints it. Every fitted number (statistics,
coefficients, chosen C, valid scores) is a float64 torch buffer, so ``state_dict`` round-trips
through ``torch.load(weights_only=True)`` and no scikit-learn object is pickled.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from mmlab import metrics
from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.methods.base import Method, Stage, TrainConfig, Validation
from mmlab.missing import pattern_name

SELECT = ("accuracy", "macro_recall", "loss")
ABSENT_CLASS_LOGIT = -50.0  # a class with no train row gets this intercept and zero weights


@dataclass
class PooledLinearConfig:
    """``moments``: 1 (means), 2 (+ variances) or 3 (+ third central moments) per modality.
    ``c_grid``: inverse L2 strengths tried per pattern, chosen on valid by ``select_metric``
    ("accuracy", "macro_recall" or "loss" = mean negative log-likelihood). ``max_iter``: lbfgs
    iterations. ``max_patterns``: refuse datasets with more than this many availability patterns
    (2^M - 1; 127 = seven modalities), since one model per pattern is fitted up front.
    ``batch_size``: rows per batch while pooling."""

    moments: int = 1
    c_grid: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    select_metric: str = "accuracy"
    max_iter: int = 1000
    max_patterns: int = 127
    batch_size: int = 512

    def __post_init__(self) -> None:
        def need(name: str, ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(f"PooledLinearConfig.{name}: expected {what}, got {getattr(self, name)!r}")

        def pos_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= 1

        need("moments", pos_int(self.moments) and self.moments <= 3, "1, 2 or 3")
        grid = self.c_grid
        need("c_grid", isinstance(grid, (list, tuple)) and len(grid) > 0
             and all(isinstance(c, (int, float)) and not isinstance(c, bool) and np.isfinite(c) and c > 0 for c in grid),
             "a non-empty list of positive numbers")
        self.c_grid = [float(c) for c in grid]
        need("select_metric", self.select_metric in SELECT, f"one of {list(SELECT)}")
        for name in ("max_iter", "max_patterns", "batch_size"):
            need(name, pos_int(getattr(self, name)), "a positive integer")


def pattern_subsets(modalities: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``modalities``; subset k (0-based) holds modality j iff bit j of
    k + 1 is set, the index `PooledLinear.pattern_index` computes."""
    return [tuple(m for j, m in enumerate(modalities) if (k >> j) & 1) for k in range(1, 2 ** len(modalities))]


class PooledLinear(Method):
    """Per-pattern logistic regression on standardised pooled frame statistics (see module doc)."""

    Config = PooledLinearConfig
    name = "pooled_linear"
    fill = "zero"  # irrelevant: only observed frames are pooled

    def __init__(self, cfg: PooledLinearConfig | None, data: MMDataset):
        super().__init__()
        self.cfg = cfg = cfg or PooledLinearConfig()
        if data.token_modalities:
            raise DataError(f"pooled_linear: modalities {list(data.token_modalities)} of dataset {data.name!r} hold "
                            "token ids; expected features (train through mmlab.experiments, which featurizes them)")
        self.modalities = tuple(data.modalities)
        self.patterns = pattern_subsets(self.modalities)
        if len(self.patterns) > cfg.max_patterns:
            raise ConfigError(f"PooledLinearConfig.max_patterns: dataset {data.name!r} has {len(self.modalities)} "
                              f"modalities, so {len(self.patterns)} availability patterns to fit; expected at most "
                              f"max_patterns={cfg.max_patterns} (raise it with --max_patterns=N)")
        self.n_classes = data.n_classes
        widths = [data.dims[m] for m in self.modalities]
        # column blocks: for each modality, its moments one after another (D_m columns each)
        self.blocks: dict[str, list[int]] = {}
        start = 0
        for m, d in zip(self.modalities, widths):
            self.blocks[m] = list(range(start, start + d * cfg.moments))
            start += d * cfg.moments
        n_feat, n_pat, c = start, len(self.patterns), self.n_classes
        f64 = torch.float64
        self.register_buffer("feat_mean", torch.zeros(n_feat, dtype=f64))
        self.register_buffer("feat_scale", torch.ones(n_feat, dtype=f64))
        self.register_buffer("coef", torch.zeros(n_pat, c, n_feat, dtype=f64))
        self.register_buffer("intercept", torch.zeros(n_pat, c, dtype=f64))
        self.register_buffer("log_prior", torch.full((c,), -float(np.log(c)), dtype=f64))
        self.register_buffer("chosen_c", torch.zeros(n_pat, dtype=f64))
        self.register_buffer("valid_scores", torch.zeros(n_pat, len(cfg.c_grid), dtype=f64))
        self.register_buffer("fitted", torch.zeros(n_pat, dtype=torch.bool))

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

    def present(self, batch: MMBatch) -> torch.Tensor:
        """(B, M) bool: modality available and with at least one observed frame."""
        return torch.stack([batch.avail_of(m) & batch.obs_mask[m].any(1) for m in self.modalities], 1)

    def pattern_index(self, batch: MMBatch) -> torch.Tensor:
        """(B,) long: the index into `patterns` of each sample's present modalities, -1 for none."""
        bits = 2 ** torch.arange(len(self.modalities), device=batch.avail.device)
        return (self.present(batch).long() * bits).sum(1) - 1

    def _pooled_split(self, data: MMDataset) -> tuple[np.ndarray, np.ndarray]:
        dev = self.feat_mean.device
        chunks = [self.pooled(b).cpu().numpy() for b in data.iter_batches(self.cfg.batch_size, device=dev)]
        return np.concatenate(chunks), data.y.astype(np.int64)

    # ------------------------------------------------------------------ fitting
    def _score(self, log_proba: np.ndarray, y: np.ndarray) -> float:
        """The selection score on valid (higher is better)."""
        if self.cfg.select_metric == "loss":  # mean log-likelihood = minus the mean CE loss
            return float(log_proba[np.arange(len(y)), y].mean())
        pred = log_proba.argmax(1)
        if self.cfg.select_metric == "accuracy":
            return metrics.accuracy(y, pred)
        return metrics.macro_recall(y, pred, self.n_classes)

    def _full_weights(self, clf: Any, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
        """(C, n_cols) weights and (C,) intercepts over all classes from a fitted sklearn model
        (binary models have one row: class 0 gets zeros; absent classes a very low intercept)."""
        coef, icpt = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2 and coef.shape[0] == 1:
            coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], icpt])
        w = np.zeros((self.n_classes, n_cols))
        b = np.full(self.n_classes, ABSENT_CLASS_LOGIT)
        w[clf.classes_], b[clf.classes_] = coef, icpt
        return w, b

    def fit(self, data: MMDataset) -> dict[str, Any]:
        """Fit every pattern's model on the train rows and choose its C on the valid rows of
        ``data`` (a test split, if any, is never read). Returns `choices`."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        x_tr, y_tr = self._pooled_split(data.subset("train"))
        x_va, y_va = self._pooled_split(data.subset("valid"))
        mean, scale = x_tr.mean(0), x_tr.std(0)
        scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(mean)), scale, 1.0)  # constant columns -> 0
        z_tr, z_va = (x_tr - mean) / scale, (x_va - mean) / scale
        prior = np.bincount(y_tr, minlength=self.n_classes) / len(y_tr)
        coef = np.zeros(tuple(self.coef.shape))
        icpt = np.zeros(tuple(self.intercept.shape))
        chosen, scores = np.zeros(len(self.patterns)), np.zeros(tuple(self.valid_scores.shape))
        for p, mods in enumerate(self.patterns):
            cols = np.array([c for m in mods for c in self.blocks[m]])
            best = None
            for j, c in enumerate(self.cfg.c_grid):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf = LogisticRegression(C=c, max_iter=self.cfg.max_iter).fit(z_tr[:, cols], y_tr)
                w, b = self._full_weights(clf, len(cols))
                logits = z_va[:, cols] @ w.T + b
                log_proba = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
                scores[p, j] = self._score(log_proba, y_va)
                if best is None or scores[p, j] > best[0]:  # strict: a tie keeps the earlier C
                    best = (scores[p, j], c, w, b)
            _, chosen[p], w, b = best
            coef[p][:, cols], icpt[p] = w, b
        for name, value in (("feat_mean", mean), ("feat_scale", scale), ("coef", coef), ("intercept", icpt),
                            ("log_prior", np.log(np.maximum(prior, 1e-12))), ("chosen_c", chosen),
                            ("valid_scores", scores)):
            buf = getattr(self, name)
            buf.copy_(torch.as_tensor(value, dtype=buf.dtype))
        self.fitted.fill_(True)
        return self.choices()

    def choices(self) -> dict[str, Any]:
        """What was chosen on valid: ``{"C": {pattern: C}, "valid_<metric>": {pattern: [score per C]}}``
        (patterns named as in the results tables, e.g. "{AV}"; all modalities = "full")."""
        names = ["full" if len(p) == len(self.modalities) else pattern_name(p) for p in self.patterns]
        return {"C": dict(zip(names, self.chosen_c.tolist())),
                f"valid_{self.cfg.select_metric}": dict(zip(names, self.valid_scores.tolist()))}

    # ------------------------------------------------------------------ the contract
    def stages(self, data: MMDataset) -> list[Stage]:
        self.fit(data)
        once = TrainConfig(epochs=1, patience=0, select_metric="macro_recall")
        return [Stage("fit", [], validate=Validation(patterns="seven"), config=once)]

    def calibrate(self, valid: MMDataset) -> dict[str, Any] | None:
        """Nothing is left to choose (C was chosen per pattern on valid while fitting): returns
        those choices so that the run folder's ``calibration.json`` records them."""
        return self.choices()

    def predict_logits(self, batch: MMBatch) -> torch.Tensor:
        """(B, C) float32 log-probabilities from the model of each sample's present modalities
        (the train class prior for a sample with no observed modality)."""
        if not bool(self.fitted.all()):
            raise DataError("pooled_linear: not fitted; train it first (Trainer(method, data, out).fit())")
        z = (self.pooled(batch) - self.feat_mean) / self.feat_scale
        idx = self.pattern_index(batch)
        out = self.log_prior.expand(batch.size, -1).clone()
        for p in idx.unique().tolist():
            if p < 0:
                continue
            rows = idx == p
            out[rows] = F.log_softmax(z[rows] @ self.coef[p].T + self.intercept[p], dim=1)
        return out.float()

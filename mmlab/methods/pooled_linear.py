"""``pooled_linear``: one (multinomial) logistic regression per availability pattern on pooled
per-modality frame statistics, the simple reference every neural method should beat.

The pooled statistics (per modality the mean and optionally the second and third central
moments over the observed frames, `mmlab.methods.pooled`) of all modalities are standardised
with train-split means and standard deviations, and for every non-empty subset a of the
modalities (2^M - 1 availability patterns: the six patterns + full for three modalities, 63 for
the six views of `handwritten`) a logistic regression (scikit-learn ``LogisticRegression``,
lbfgs, L2) is fitted on the statistics of the modalities in a, over the train rows that have
all of them (every row, unless the dataset has natural missingness: ``MMDataset.avail``). Its
inverse regularisation C is chosen per pattern on the valid rows that have them (same subset)
among ``c_grid``; a tie keeps the first (strongest) value. A modality's columns are standardised
with the train rows that have it. The test split is never read.

At prediction a sample is routed to the model of the modalities it really has: available
(``avail``) *and* with at least one observed frame. A sample with none gets the train class
prior. ``predict_logits`` returns log-probabilities.

Vector modalities (T = 1): their central moments over a single frame are zero, so with
``moments`` > 1 those columns are constant; standardisation maps them to zero (scale 1 for a
feature with no spread) and the model is the same as with ``moments = 1``. A sequence sample
that keeps a single observed frame likewise has zero higher moments.

Fitting is this method's training, run when it declares its stages; every fitted number
(statistics, coefficients, chosen C, valid scores) is a float64 torch buffer
(`mmlab.methods.pooled`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.methods.pooled import PooledStatistics, check_config
from mmlab.missing import pattern_name


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
        check_config(self, grids=("c_grid",), integers=("max_iter", "max_patterns", "batch_size"))


def pattern_subsets(modalities: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``modalities``; subset k (0-based) holds modality j iff bit j of
    k + 1 is set, the index `PooledLinear.pattern_index` computes."""
    return [tuple(m for j, m in enumerate(modalities) if (k >> j) & 1) for k in range(1, 2 ** len(modalities))]


class PooledLinear(PooledStatistics):
    """Per-pattern logistic regression on standardised pooled frame statistics (see module doc)."""

    Config = PooledLinearConfig
    name = "pooled_linear"
    uses_seed = False  # lbfgs from zeros on fixed rows: the run seed changes nothing

    def __init__(self, cfg: PooledLinearConfig | None, data: MMDataset):
        super().__init__(cfg or PooledLinearConfig(), data)
        cfg = self.cfg
        self.patterns = pattern_subsets(self.modalities)
        if len(self.patterns) > cfg.max_patterns:
            raise ConfigError(f"PooledLinearConfig.max_patterns: dataset {data.name!r} has {len(self.modalities)} "
                              f"modalities, so {len(self.patterns)} availability patterns to fit; expected at most "
                              f"max_patterns={cfg.max_patterns} (raise it with --max_patterns=N)")
        n_feat, n_pat, c = len(self.feat_mean), len(self.patterns), self.n_classes
        f64 = torch.float64
        self.register_buffer("coef", torch.zeros(n_pat, c, n_feat, dtype=f64))
        self.register_buffer("intercept", torch.zeros(n_pat, c, dtype=f64))
        self.register_buffer("chosen_c", torch.zeros(n_pat, dtype=f64))
        self.register_buffer("valid_scores", torch.zeros(n_pat, len(cfg.c_grid), dtype=f64))
        self.register_buffer("fitted", torch.zeros(n_pat, dtype=torch.bool))

    def pattern_index(self, batch: MMBatch) -> torch.Tensor:
        """(B,) long: the index into `patterns` of each sample's present modalities, -1 for none."""
        bits = 2 ** torch.arange(len(self.modalities), device=batch.avail.device)
        return (self.present(batch).long() * bits).sum(1) - 1

    def fit(self, data: MMDataset) -> dict[str, Any]:
        """Fit every pattern's model on the train rows and choose its C on the valid rows of
        ``data`` (a test split, if any, is never read). Returns `choices`."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        z_tr, y_tr, z_va, y_va, has_tr, has_va = self.standardise_splits(data)
        coef = np.zeros(tuple(self.coef.shape))
        icpt = np.zeros(tuple(self.intercept.shape))
        chosen, scores = np.zeros(len(self.patterns)), np.zeros(tuple(self.valid_scores.shape))
        for p, mods in enumerate(self.patterns):
            cols = np.array([c for m in mods for c in self.blocks[m]])
            need = [self.modalities.index(m) for m in mods]  # rows that have the pattern's modalities
            tr, va = has_tr[:, need].all(1), has_va[:, need].all(1)
            if len(np.unique(y_tr[tr])) < 2:
                raise DataError(f"{self.name}: dataset {data.name!r} has train rows of fewer than two classes with "
                                f"all of {list(mods)}; that pattern's model cannot be fitted")
            best = None
            for j, c in enumerate(self.cfg.c_grid):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf = LogisticRegression(C=c, max_iter=self.cfg.max_iter).fit(z_tr[tr][:, cols], y_tr[tr])
                w, b = self.full_weights(clf, len(cols))
                logits = z_va[va][:, cols] @ w.T + b
                log_proba = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
                scores[p, j] = self.score(log_proba, y_va[va]) if va.any() else -np.inf  # no valid row: the first C
                if best is None or scores[p, j] > best[0]:  # strict: a tie keeps the earlier C
                    best = (scores[p, j], c, w, b)
            _, chosen[p], w, b = best
            coef[p][:, cols], icpt[p] = w, b
        for name, value in (("coef", coef), ("intercept", icpt), ("chosen_c", chosen), ("valid_scores", scores)):
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

    def predict_logits(self, batch: MMBatch) -> torch.Tensor:
        """(B, C) float32 log-probabilities from the model of each sample's present modalities
        (the train class prior for a sample with no observed modality)."""
        self.check_fitted()
        z = self.standardised(batch)
        idx = self.pattern_index(batch)
        out = self.log_prior.expand(batch.size, -1).clone()
        for p in idx.unique().tolist():
            if p < 0:
                continue
            rows = idx == p
            out[rows] = F.log_softmax(z[rows] @ self.coef[p].T + self.intercept[p], dim=1)
        return out.float()

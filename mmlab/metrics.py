"""Metrics, numpy only, named after what the papers call them (ADMC §4.3, CM-ARR §4.2, CIDer §IV-C;
titles in README.md, "Papers").

All scores are fractions in [0, 1] (tables multiply by 100).

| here | papers |
|---|---|
| `accuracy` | ADMC WA, CM-ARR WAR, ADMC Table 3 ACC |
| `macro_recall` | ADMC UA, CM-ARR UAR (balanced accuracy) |
| `f1_weighted` | ADMC Table 3 F1 (TATE / MMSA practice) |
| `acc2_non0`, `f1_non0`, `acc7` | CIDer Acc2, F1, Acc7 (CIDer §IV-C; non-0 subset as in its code) |
| `mae`, `pearson_corr`, `acc7_from_regression`, `acc2_from_regression` | MMSA regression metrics |
| `regression_report` | MMSA / CIDer MAE, Corr, Has0/Non0 Acc2 and F1, Acc7 in one dict |
| `auilc` | CIDer Eq. 31 |
| `admc_literal_wa` | ADMC Eq. 7 as printed, documentation only |
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mmlab.errors import DataError

ArrayLike = np.ndarray | Sequence


# ----------------------------------------------------------------- input checks
def _labels(y: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise DataError(f"{name}: expected a 1-d array of class labels, got shape {a.shape}")
    if a.size == 0:
        raise DataError(f"{name}: expected at least one label, got an empty array")
    if not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{name}: expected integer class labels, got dtype {a.dtype}")
    if a.min() < 0:
        raise DataError(f"{name}: expected non-negative class labels, got {a.min()}")
    return a.astype(np.int64)


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if len(t) != len(p):
        raise DataError(f"y_pred: expected {len(t)} predictions to match y_true, got {len(p)}")
    return t, p


def _n_classes(t: np.ndarray, p: np.ndarray, n_classes: int | None) -> int:
    top = int(max(t.max(), p.max())) + 1
    if n_classes is None:
        return top
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise DataError(f"n_classes: expected a positive integer, got {n_classes!r}")
    if top > n_classes:
        raise DataError(f"labels: expected values in [0, {n_classes}), got a label {top - 1}")
    return int(n_classes)


def _reals(y: ArrayLike, name: str) -> np.ndarray:
    try:
        a = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{name}: expected a 1-d array of numbers") from None
    if a.ndim != 1:
        raise DataError(f"{name}: expected a 1-d array of numbers, got shape {a.shape}")
    if a.size == 0:
        raise DataError(f"{name}: expected at least one value, got an empty array")
    if not np.isfinite(a).all():
        raise DataError(f"{name}: contains NaN or inf")
    return a


def _real_pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = _reals(y_true, "y_true"), _reals(y_pred, "y_pred")
    if len(t) != len(p):
        raise DataError(f"y_pred: expected {len(t)} predictions to match y_true, got {len(p)}")
    return t, p


def _scores(scores: ArrayLike, n_cols: int, name: str) -> np.ndarray:
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{name}: expected numeric class scores of shape (N, {n_cols})") from None
    if s.ndim != 2 or s.shape[1] != n_cols:
        raise DataError(f"{name}: expected class scores of shape (N, {n_cols}), got {s.shape}")
    return s


# ----------------------------------------------------------------- classification
def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> np.ndarray:
    """(C, C) int counts; row = true class, column = predicted class."""
    t, p = _pair(y_true, y_pred)
    c = _n_classes(t, p, n_classes)
    return np.bincount(t * c + p, minlength=c * c).reshape(c, c)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Overall accuracy Σ_i TP_i / N = ADMC's WA (§4.3), CM-ARR's WAR (§4.2).

    ADMC's Eq. 7 as printed, WA = Σ_i w_i (TP_i + TN_i) / Σ_i w_i N_i, is not used: with
    one-vs-rest counts and w_i = 1, Σ_i (TP_i + TN_i) = 2·#correct + (C − 2)·N and Σ_i N_i = N,
    so it equals 2·acc + C − 2, which exceeds 1 for C = 4. The weighting it describes ("higher
    weights to less frequent classes") is also backwards: weighting each class's recall by its
    frequency, the standard WA, is exactly overall accuracy, which is what the reported numbers
    are. See `admc_literal_wa`.
    """
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def per_class_recall(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int | None = None) -> np.ndarray:
    """(C,) recall TP_c / (TP_c + FN_c); NaN for classes absent from ``y_true``."""
    t, p = _pair(y_true, y_pred)
    cm = confusion_matrix(t, p, _n_classes(t, p, n_classes)).astype(np.float64)
    support = cm.sum(1)
    out = np.full(len(cm), np.nan)
    np.divide(np.diag(cm), support, out=out, where=support > 0)
    return out


def macro_recall(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int | None = None) -> float:
    """Mean per-class recall = ADMC's UA (§4.3, Eq. 7), CM-ARR's UAR (§4.2), balanced accuracy.

    Classes absent from ``y_true`` have no recall and are excluded from the mean (as
    scikit-learn's ``balanced_accuracy_score``), so a test split missing a class is not
    penalised for it.
    """
    return float(np.nanmean(per_class_recall(y_true, y_pred, n_classes)))


def f1_weighted(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int | None = None) -> float:
    """Per-class F1 averaged with weights = true support (scikit-learn ``average="weighted"``).

    A class with no predictions has precision 0 and F1 0; classes absent from ``y_true``
    have weight 0.
    """
    t, p = _pair(y_true, y_pred)
    cm = confusion_matrix(t, p, _n_classes(t, p, n_classes)).astype(np.float64)
    tp, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    denom = support + predicted  # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (support + predicted)
    f1 = np.zeros(len(cm))
    np.divide(2 * tp, denom, out=f1, where=denom > 0)
    return float(np.sum(f1 * support) / support.sum())


def classification_report(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int | None = None) -> dict[str, float]:
    """The three metrics every evaluation row carries: accuracy, macro_recall, f1_weighted."""
    t, p = _pair(y_true, y_pred)
    c = _n_classes(t, p, n_classes)
    return {"accuracy": accuracy(t, p), "macro_recall": macro_recall(t, p, c), "f1_weighted": f1_weighted(t, p, c)}


def admc_literal_wa(
    y_true: ArrayLike, y_pred: ArrayLike, n_classes: int, weights: ArrayLike | None = None
) -> float:
    """ADMC Eq. 7 as printed, Σ_i w_i (TP_i + TN_i) / Σ_i w_i N_i with one-vs-rest counts.

    Documentation only: with w_i = 1 it equals 2·acc + C − 2 (> 1 for C = 4). Use `accuracy`.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes).astype(np.float64)
    n = cm.sum()
    tp = np.diag(cm)
    tn = n - cm.sum(0) - cm.sum(1) + tp
    w = np.ones(len(cm)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(cm),):
        raise DataError(f"weights: expected {len(cm)} class weights, got shape {w.shape}")
    return float(np.sum(w * (tp + tn)) / np.sum(w * cm.sum(1)))


# ----------------------------------------------------------------- CIDer (§IV-C)
NEG, NEU, POS = 0, 1, 2


def _non0(scores3: ArrayLike, y3: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = _scores(scores3, 3, "scores3")
    y = _labels(y3, "y3")
    if len(y) != len(s):
        raise DataError(f"scores3: expected {len(y)} rows to match y3, got {len(s)}")
    if y.max() > 2:
        raise DataError(f"y3: expected labels 0 (neg), 1 (neu), 2 (pos), got {y.max()}")
    keep = y != NEU
    if not keep.any():
        raise DataError("y3: every sample is neutral; Acc2 (non-0) needs negative or positive samples")
    return y[keep], s[keep].argmax(1)


def acc2_non0(scores3: ArrayLike, y3: ArrayLike) -> float:
    """CIDer Acc2 ("Non0_acc_2"): accuracy on non-neutral samples of a 3-class model.

    Labels 0 = negative, 1 = neutral, 2 = positive. The prediction is the argmax over all
    three class scores, so predicting neutral for a non-neutral sample counts as an error
    (as the MMSA/CIDer ``Non0`` code does).
    """
    t, p = _non0(scores3, y3)
    return float(np.mean(t == p))


def f1_non0(scores3: ArrayLike, y3: ArrayLike) -> float:
    """CIDer F1 ("Non0_F1_score"): weighted F1 on the same non-neutral subset as `acc2_non0`."""
    t, p = _non0(scores3, y3)
    return f1_weighted(t, p, 3)


def acc7(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """CIDer Acc7: 7-class accuracy; ``y_pred`` is labels (N,) or class scores (N, 7)."""
    p = np.asarray(y_pred)
    if p.ndim == 2:
        p = _scores(p, 7, "y_pred").argmax(1)
    t, p = _pair(y_true, p)
    _n_classes(t, p, 7)
    return accuracy(t, p)


# ----------------------------------------------------------------- regression (MMSA)
def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error."""
    t, p = _real_pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def pearson_corr(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Pearson correlation; NaN when either side is constant (undefined, as ``np.corrcoef``)."""
    t, p = _real_pair(y_true, y_pred)
    t, p = t - t.mean(), p - p.mean()
    denom = np.sqrt(np.sum(t * t) * np.sum(p * p))
    return float(np.sum(t * p) / denom) if denom > 0 else float("nan")


def acc7_from_regression(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """MMSA ``Mult_acc_7``: round(clip(·, −3, 3)) on both sides, then accuracy.

    ``np.round`` rounds halves to even, as MMSA does.
    """
    t, p = _real_pair(y_true, y_pred)
    return float(np.mean(np.round(np.clip(t, -3, 3)) == np.round(np.clip(p, -3, 3))))


def acc2_from_regression(y_true: ArrayLike, y_pred: ArrayLike, exclude_zero: bool = True) -> float:
    """MMSA binary accuracy of sentiment scores.

    ``exclude_zero=True`` ("Non0_acc_2"): samples with y_true == 0 dropped, positive = > 0.
    ``exclude_zero=False`` ("Has0_acc_2"): all samples, positive = >= 0 (zero counts positive).
    """
    t, p = _real_pair(y_true, y_pred)
    if exclude_zero:
        keep = t != 0
        if not keep.any():
            raise DataError("y_true: every score is 0; Acc2 (non-0) needs non-zero scores")
        return float(np.mean((t[keep] > 0) == (p[keep] > 0)))
    return float(np.mean((t >= 0) == (p >= 0)))


def regression_report(y_reg_true: ArrayLike, y_reg_pred: ArrayLike) -> dict[str, float]:
    """The MMSA ``eval_mosi_regression`` metrics for MOSI / MOSEI, as computed by CIDer's code
    (https://github.com/gw-zhong/CIDer; the CIDer paper reports Acc2, F1 and Acc7, §IV-C).

    ``mae``, ``corr`` (Pearson); ``acc2_has0`` / ``f1_has0`` ("Has0_acc_2", "Has0_F1_score":
    all samples, non-negative vs negative); ``acc2_non0`` / ``f1_non0`` ("Non0_acc_2",
    "Non0_F1_score": samples with y_true != 0, positive vs negative; NaN when every y_true is 0);
    ``acc7`` ("Mult_acc_7": round(clip(·, −3, 3))). F1 is the support-weighted binary F1.
    """
    t, p = _real_pair(y_reg_true, y_reg_pred)
    keep = t != 0
    out = {
        "mae": mae(t, p),
        "corr": pearson_corr(t, p),
        "acc2_has0": acc2_from_regression(t, p, exclude_zero=False),
        "f1_has0": f1_weighted((t >= 0).astype(np.int64), (p >= 0).astype(np.int64), 2),
        "acc2_non0": acc2_from_regression(t, p, exclude_zero=True) if keep.any() else float("nan"),
        "f1_non0": f1_weighted((t[keep] > 0).astype(np.int64), (p[keep] > 0).astype(np.int64), 2)
        if keep.any() else float("nan"),
        "acc7": acc7_from_regression(t, p),
    }
    return out


# ----------------------------------------------------------------- AUILC (CIDer Eq. 31)
def auilc(values: ArrayLike, rates: ArrayLike) -> float:
    """Area under the indicator-missing-rate curve, CIDer Eq. 31 (trapezoid rule).

    v♦ = Σ_{i=0}^{t−1} ½ (v_i + v_{i+1}) (p_{i+1} − p_i). The grid includes its endpoints:
    CIDer uses p = 0.0, 0.1, ..., 1.0, where p = 0 is the complete-input score. The area is
    not divided by the grid's span, so over [0, 1] it is on the metric's scale and over
    [0, 0.5] it is half that.
    """
    v, p = _reals(values, "values"), _reals(rates, "rates")
    if len(v) != len(p):
        raise DataError(f"values: expected one value per rate ({len(p)}), got {len(v)}")
    if len(p) < 2:
        raise DataError(f"rates: expected at least two missing rates, got {len(p)}")
    if np.any(np.diff(p) <= 0):
        raise DataError(f"rates: expected strictly increasing missing rates, got {p.tolist()}")
    if p[0] < 0 or p[-1] > 1:
        raise DataError(f"rates: expected missing rates in [0, 1], got {p.tolist()}")
    return float(np.sum(0.5 * (v[1:] + v[:-1]) * np.diff(p)))

"""mmlab.metrics pinned on small hand-computed cases (the hand computation is in the comments)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from mmlab import metrics as M
from mmlab.errors import DataError

# A 3-class example used throughout.
#   y_true = 0 0 0 1 1 2
#   y_pred = 0 0 1 1 2 2
# confusion (row true, col pred):
#   [[2, 1, 0],
#    [0, 1, 1],
#    [0, 0, 1]]
Y = np.array([0, 0, 0, 1, 1, 2])
P = np.array([0, 0, 1, 1, 2, 2])


def test_confusion_matrix():
    assert M.confusion_matrix(Y, P, 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # a class never seen still gets a row and a column
    assert M.confusion_matrix([0, 1], [0, 1], 4).shape == (4, 4)


def test_accuracy():
    # correct: positions 0, 1, 3, 5 -> 4 / 6
    assert M.accuracy(Y, P) == pytest.approx(4 / 6)


def test_per_class_and_macro_recall():
    # recall_0 = 2/3, recall_1 = 1/2, recall_2 = 1/1 ; mean = (2/3 + 1/2 + 1) / 3 = 13/18
    np.testing.assert_allclose(M.per_class_recall(Y, P), [2 / 3, 1 / 2, 1.0])
    assert M.macro_recall(Y, P) == pytest.approx(13 / 18)
    assert M.macro_recall(Y, P) == pytest.approx(skm.balanced_accuracy_score(Y, P))


def test_macro_recall_excludes_classes_absent_from_y_true():
    # y_true has only classes 0 and 2 (of 4): recall_0 = 1/2, recall_2 = 1 -> 3/4; classes 1, 3 are NaN
    y, p = [0, 0, 2], [0, 1, 2]
    r = M.per_class_recall(y, p, n_classes=4)
    assert np.isnan(r[1]) and np.isnan(r[3])
    assert M.macro_recall(y, p, n_classes=4) == pytest.approx(0.75)


def test_f1_weighted():
    # class 0: P = 2/2, R = 2/3, F1 = 2*2/(3+2) = 4/5, support 3
    # class 1: P = 1/2, R = 1/2, F1 = 2*1/(2+2) = 1/2, support 2
    # class 2: P = 1/2, R = 1/1, F1 = 2*1/(1+2) = 2/3, support 1
    # weighted = (3*4/5 + 2*1/2 + 1*2/3) / 6 = (2.4 + 1 + 0.6667) / 6 = 0.677778
    assert M.f1_weighted(Y, P) == pytest.approx((3 * 0.8 + 1 + 2 / 3) / 6)
    assert M.f1_weighted(Y, P) == pytest.approx(skm.f1_score(Y, P, average="weighted"))


def test_f1_weighted_never_predicted_class_scores_zero():
    # y_true 0 0 1 1, y_pred 0 0 0 0: class 0 P=1/2 R=1 F1=2/3; class 1 never predicted F1=0
    # weighted = (2*2/3 + 2*0)/4 = 1/3
    assert M.f1_weighted([0, 0, 1, 1], [0, 0, 0, 0]) == pytest.approx(1 / 3)


def test_classification_report():
    rep = M.classification_report(Y, P, 3)
    assert set(rep) == {"accuracy", "macro_recall", "f1_weighted"}
    assert rep["accuracy"] == pytest.approx(4 / 6)
    assert rep["macro_recall"] == pytest.approx(13 / 18)


def test_metrics_agree_with_sklearn_on_random_labels():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y, p = rng.integers(0, 5, 50), rng.integers(0, 5, 50)
        assert M.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
        assert M.macro_recall(y, p) == pytest.approx(skm.balanced_accuracy_score(y, p))
        assert M.f1_weighted(y, p) == pytest.approx(skm.f1_score(y, p, average="weighted"))


def test_admc_literal_wa_exceeds_one():
    # one-vs-rest with w = 1: Σ(TP+TN)/Σ N_i = 2·acc + C − 2.
    # C = 4, y = 0 1 2 3, pred = 0 1 2 0 -> acc = 3/4 -> 2*0.75 + 2 = 3.5
    y, p = [0, 1, 2, 3], [0, 1, 2, 0]
    assert M.admc_literal_wa(y, p, 4) == pytest.approx(3.5)
    assert M.admc_literal_wa(Y, P, 3) == pytest.approx(2 * 4 / 6 + 1)


def test_acc2_non0_counts_neutral_prediction_as_error():
    # labels 0 neg, 1 neu, 2 pos. Non-neutral samples: rows 0, 1, 3, 4.
    # row 0 y=0 argmax=0 ok ; row 1 y=0 argmax=1 (neutral) -> error ; row 3 y=2 argmax=2 ok ;
    # row 4 y=2 argmax=0 error. Row 2 (neutral) is ignored. -> 2/4
    # (argmax over [neg, pos] only would have scored row 1 correct: 0.4 > 0.1.)
    scores = np.array(
        [[0.9, 0.05, 0.05], [0.4, 0.5, 0.1], [0.1, 0.1, 0.8], [0.1, 0.2, 0.7], [0.6, 0.1, 0.3]]
    )
    y3 = np.array([0, 0, 1, 2, 2])
    assert M.acc2_non0(scores, y3) == pytest.approx(0.5)
    # F1 on the subset: true 0 0 2 2, pred 0 1 2 0
    # class 0: P=1/2 R=1/2 F1=1/2 ; class 2: P=1 R=1/2 F1=2/3 ; weighted = (2*1/2 + 2*2/3)/4 = 7/12
    assert M.f1_non0(scores, y3) == pytest.approx(7 / 12)
    assert M.f1_non0(scores, y3) == pytest.approx(
        skm.f1_score([0, 0, 2, 2], [0, 1, 2, 0], average="weighted", zero_division=0)
    )


def test_acc2_non0_errors():
    with pytest.raises(DataError, match="neutral"):
        M.acc2_non0(np.ones((2, 3)), [1, 1])
    with pytest.raises(DataError, match=r"\(N, 3\)"):
        M.acc2_non0(np.ones((2, 2)), [0, 2])
    with pytest.raises(DataError, match="y3"):
        M.acc2_non0(np.ones((2, 3)), [0, 5])


def test_acc7_labels_and_scores():
    # 3 of 4 right
    assert M.acc7([0, 3, 6, 2], [0, 3, 6, 1]) == pytest.approx(0.75)
    scores = np.eye(7)[[0, 3, 6, 1]]
    assert M.acc7([0, 3, 6, 2], scores) == pytest.approx(0.75)
    with pytest.raises(DataError, match="7"):
        M.acc7([0, 7], [0, 1])


def test_regression_metrics():
    t = np.array([-2.6, -0.4, 0.0, 0.5, 1.5, 3.4])
    p = np.array([-3.2, 0.3, 0.2, 2.6, 1.2, 2.4])
    # |diff| = 0.6 0.7 0.2 2.1 0.3 1.0 -> sum 4.9 -> 4.9/6
    assert M.mae(t, p) == pytest.approx(4.9 / 6)
    assert M.pearson_corr(t, p) == pytest.approx(np.corrcoef(t, p)[0, 1])
    # clip+round (half to even): t -> -3 -0 0 0 2 3 ; p -> -3 0 0 3 1 2 -> equal at 0,1,2 -> 3/6
    assert M.acc7_from_regression(t, p) == pytest.approx(0.5)
    # non-0: drop t=0 -> signs t: - - + + + ; p: - + + + + -> 4/5
    assert M.acc2_from_regression(t, p) == pytest.approx(0.8)
    # has-0: t>=0: F F T T T T ; p>=0: F T T T T T -> 5/6
    assert M.acc2_from_regression(t, p, exclude_zero=False) == pytest.approx(5 / 6)
    assert np.isnan(M.pearson_corr([1.0, 1.0, 1.0], [0.0, 1.0, 2.0]))


def test_regression_report_hand_computed():
    t = np.array([-2.6, -0.4, 0.0, 0.5, 1.5, 3.4])
    p = np.array([-3.2, 0.3, 0.2, 2.6, 1.2, 2.4])
    r = M.regression_report(t, p)
    assert set(r) == {"mae", "corr", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7"}
    assert r["mae"] == pytest.approx(4.9 / 6) and r["corr"] == pytest.approx(np.corrcoef(t, p)[0, 1])
    assert r["acc7"] == pytest.approx(0.5)
    # has-0: truth 0 0 1 1 1 1, pred 0 1 1 1 1 1 -> F1(class 0) = 2/3 (support 2), F1(1) = 8/9 (support 4)
    assert r["acc2_has0"] == pytest.approx(5 / 6) and r["f1_has0"] == pytest.approx((2 * 2 / 3 + 4 * 8 / 9) / 6)
    # non-0: truth 0 0 1 1 1, pred 0 1 1 1 1 -> F1(0) = 2/3 (support 2), F1(1) = 6/7 (support 3)
    assert r["acc2_non0"] == pytest.approx(0.8) and r["f1_non0"] == pytest.approx((2 * 2 / 3 + 3 * 6 / 7) / 5)
    zero = M.regression_report([0.0, 0.0], [0.5, -0.5])
    assert np.isnan(zero["acc2_non0"]) and np.isnan(zero["f1_non0"]) and zero["acc2_has0"] == 0.5
    perfect = M.regression_report([-1.0, 2.0, 0.0], [-1.0, 2.0, 0.0])
    assert perfect["mae"] == 0 and perfect["acc7"] == 1 and perfect["f1_non0"] == 1 and perfect["corr"] == pytest.approx(1)
    with pytest.raises(DataError, match="NaN"):
        M.regression_report([0.0, 1.0], [np.inf, 1.0])


def test_auilc_trapezoid():
    # rates 0, .5, 1 ; values 1, .5, 0 -> .5*(1+.5)*.5 + .5*(.5+0)*.5 = .375 + .125 = .5
    assert M.auilc([1.0, 0.5, 0.0], [0.0, 0.5, 1.0]) == pytest.approx(0.5)
    # constant v over the CIDer grid 0..1 (11 points) -> v
    assert M.auilc([0.7] * 11, np.linspace(0, 1, 11)) == pytest.approx(0.7)
    # uneven grid: 0, .1, .5 with values .8 .6 .4 -> .05*1.4... = .1*.7 + .4*.5 = .07 + .2 = .27
    assert M.auilc([0.8, 0.6, 0.4], [0.0, 0.1, 0.5]) == pytest.approx(0.27)


def test_auilc_validates_rates():
    with pytest.raises(DataError, match="increasing"):
        M.auilc([1, 2, 3], [0.0, 0.5, 0.2])
    with pytest.raises(DataError, match="increasing"):
        M.auilc([1, 2], [0.5, 0.5])
    with pytest.raises(DataError, match="one value per rate"):
        M.auilc([1, 2], [0.0, 0.5, 1.0])
    with pytest.raises(DataError, match="at least two"):
        M.auilc([1], [0.0])
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        M.auilc([1, 2], [0.0, 1.5])


@pytest.mark.parametrize(
    "y_true, y_pred, match",
    [
        ([0, 1], [0], "expected 2 predictions"),
        ([], [], "empty"),
        ([0.0, 1.0], [0, 1], "integer"),
        ([0, 1], [0.5, 1], "integer"),
        ([[0, 1]], [[0, 1]], "1-d"),
        ([0, -1], [0, 1], "non-negative"),
    ],
)
def test_label_validation(y_true, y_pred, match):
    for fn in (M.accuracy, M.macro_recall, M.f1_weighted, M.classification_report):
        with pytest.raises(DataError, match=match):
            fn(y_true, y_pred)


def test_n_classes_validation():
    with pytest.raises(DataError, match=r"\[0, 2\)"):
        M.confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(DataError, match="n_classes"):
        M.classification_report([0], [0], 0)


def test_regression_validation():
    with pytest.raises(DataError, match="NaN"):
        M.mae([0.0, np.nan], [0.0, 1.0])
    with pytest.raises(DataError, match="expected 2 predictions"):
        M.mae([0.0, 1.0], [0.0])
    with pytest.raises(DataError, match="numbers"):
        M.mae(["a", "b"], [0.0, 1.0])
    with pytest.raises(DataError, match="non-zero"):
        M.acc2_from_regression([0.0, 0.0], [1.0, -1.0])

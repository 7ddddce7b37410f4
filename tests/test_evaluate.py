"""mmlab.evaluate: seeded masks shared by every method, summary rows, aggregation, result files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlab import metrics
from mmlab.data import from_arrays
from mmlab.errors import ConfigError, DataError
from mmlab.evaluate import (
    Condition,
    aggregate,
    eta_conditions,
    evaluate,
    pattern_conditions,
    predict,
    rate_conditions,
    read_results,
    write_results,
)
from mmlab.methods.base import Method
from mmlab.missing import FixedPattern, Full, draw_masks, pad_masks

DIMS = {"A": 4, "V": 3, "T": 5}
MAXLEN = {"A": 6, "V": 4, "T": 3}
C = 3


def tiny_dataset(n: int = 90, seed: int = 0):
    """3 classes; each modality's first 3 dims carry a noisy one-hot of the class; variable lengths."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % C
    feats, lengths = {}, {}
    for m, d in DIMS.items():
        ln = rng.integers(1, MAXLEN[m] + 1, n)
        x = rng.normal(0, 1.5, (n, MAXLEN[m], d)).astype(np.float32)
        x[:, :, :C] += 1.0 * np.eye(C, dtype=np.float32)[y][:, None, :]
        x[np.arange(MAXLEN[m])[None, :] >= ln[:, None]] = 0.0
        feats[m], lengths[m] = x, ln
    return from_arrays("tiny", feats, y, lengths=lengths)


class FrameMean(Method):
    """A fixed linear model on the mean of observed frames of each modality (no training)."""

    name = "framemean"
    fill = "zero"

    def __init__(self, scale: float = 1.0, name: str | None = None):
        super().__init__()
        self.lin = torch.nn.ModuleDict()
        for m, d in DIMS.items():
            lin = torch.nn.Linear(d, C, bias=False)
            with torch.no_grad():
                lin.weight.zero_()
                lin.weight[:, :C] = scale * torch.eye(C)
            self.lin[m] = lin
        if name:
            self.name = name

    def predict_logits(self, batch):
        out = 0
        for m in batch.modalities:
            o = batch.obs_mask[m].float()[..., None]
            mean = (batch.feats[m] * o).sum(1) / o.sum(1).clamp(min=1)
            out = out + self.lin[m](mean)
        return out


class Spy(FrameMean):
    """Records what the evaluator hands the model."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[dict] = []

    def predict_logits(self, batch):
        self.seen.append(
            {
                "avail": batch.avail.clone(),
                "complete": batch.complete,
                "training": self.training,
                "feats": {m: x.clone() for m, x in batch.feats.items()},
                "obs": {m: x.clone() for m, x in batch.obs_mask.items()},
                "pad": {m: x.clone() for m, x in batch.pad_mask.items()},
            }
        )
        return super().predict_logits(batch)

    def avail(self) -> np.ndarray:
        return torch.cat([s["avail"] for s in self.seen]).numpy()


@pytest.fixture(scope="module")
def data():
    return tiny_dataset()


# ----------------------------------------------------------------- rows
def test_pattern_rows_and_average(data):
    rows = evaluate(FrameMean(), data, seed=1111, batch_size=5)
    assert [r["condition"] for r in rows] == ["full", "{A}", "{V}", "{T}", "{AV}", "{AT}", "{VT}", "Average"]
    n_test = int((data.split == "test").sum())
    for r in rows:
        assert r["dataset"] == "tiny" and r["method"] == "framemean" and r["protocol"] == "pattern"
        assert r["seed"] == 1111 and r["n"] == n_test
        assert {"accuracy", "macro_recall", "f1_weighted"} <= set(r)
    six = rows[1:7]
    for k in ("accuracy", "macro_recall", "f1_weighted"):
        assert rows[-1][k] == pytest.approx(np.mean([r[k] for r in six]))
    # the data make full input better than any single modality
    assert rows[0]["accuracy"] >= max(r["accuracy"] for r in rows[1:4])


def test_rows_match_metrics_on_predicted_logits(data):
    test = data.subset("test")
    masks = draw_masks(FixedPattern(("A", "T")), pad_masks(test), test.modalities, 7)
    logits = predict(FrameMean(), test, masks, batch_size=4)
    (row, _avg) = evaluate(FrameMean(), data, conditions=[Condition("pattern", "{AT}", FixedPattern(("A", "T")))], seed=7)
    assert row["accuracy"] == pytest.approx(metrics.accuracy(test.y, logits.argmax(1)))
    assert row["macro_recall"] == pytest.approx(metrics.macro_recall(test.y, logits.argmax(1)))


def test_rate_rows_and_auilc(data):
    conds = rate_conditions((0.0, 0.25, 0.5, 1.0))
    rows = evaluate(FrameMean(), data, conditions=conds, seed=3)
    assert [r["condition"] for r in rows] == ["rate=0", "rate=0.25", "rate=0.5", "rate=1", "AUILC"]
    assert all(r["protocol"] == "rate_drop" for r in rows)
    for k in ("accuracy", "macro_recall", "f1_weighted"):
        assert rows[-1][k] == pytest.approx(metrics.auilc([r[k] for r in rows[:4]], [0, 0.25, 0.5, 1.0]))
    # rate 0 is the complete input
    full = evaluate(FrameMean(), data, conditions=[Condition("pattern", "full", Full())], seed=3)[0]
    assert rows[0]["accuracy"] == full["accuracy"]


def test_eta_conditions_and_mixed_protocols(data):
    conds = pattern_conditions(data.modalities, include_full=False) + eta_conditions((0.0, 0.3))
    rows = evaluate(FrameMean(), data, conditions=conds, seed=5)
    assert [(r["protocol"], r["condition"]) for r in rows][-4:] == [
        ("cpm", "eta=0"), ("cpm", "eta=0.3"), ("pattern", "Average"), ("cpm", "AUILC")
    ]


def test_extra_metrics_column(data):
    rows = evaluate(FrameMean(), data, conditions=rate_conditions((0.0, 0.5)), seed=1,
                    extra_metrics={"acc_again": lambda s, y: metrics.accuracy(y, s.argmax(1))})
    for r in rows:
        assert r["acc_again"] == pytest.approx(r["accuracy"])


# ----------------------------------------------------------------- masks shared by methods
def test_same_seed_same_masks_for_every_method(data):
    conds = rate_conditions((0.0, 0.3, 0.5))
    a, b = Spy(name="a"), Spy(scale=-2.0, name="b")
    evaluate(a, data, conditions=conds, seed=1111, batch_size=7)
    evaluate(b, data, conditions=conds, seed=1111, batch_size=16)  # batching must not matter
    assert np.array_equal(a.avail(), b.avail())
    assert not a.avail().all()  # something was dropped
    other = Spy(name="c")
    evaluate(other, data, conditions=conds, seed=2222, batch_size=7)
    assert not np.array_equal(a.avail(), other.avail())
    # and masks do not depend on the training seed when mask_seed is fixed
    d = Spy(name="d")
    rows = evaluate(d, data, conditions=conds, seed=1, mask_seed=1111, batch_size=7)
    assert np.array_equal(a.avail(), d.avail()) and rows[0]["seed"] == 1 and rows[0]["mask_seed"] == 1111


def test_same_seed_same_numbers(data):
    r1 = evaluate(FrameMean(), data, conditions=rate_conditions(), seed=9)
    r2 = evaluate(FrameMean(), data, conditions=rate_conditions(), seed=9)
    assert r1 == r2


def test_predict_independent_of_batch_size(data):
    test = data.subset("test")
    masks = draw_masks(rate_conditions((0.5,))[0].generator, pad_masks(test), test.modalities, 0)
    np.testing.assert_allclose(predict(FrameMean(), test, masks, batch_size=3),
                               predict(FrameMean(), test, masks, batch_size=100), rtol=1e-6)
    # masks=None is the complete input, like Full()
    full = draw_masks(Full(), pad_masks(test), test.modalities, 0)
    np.testing.assert_allclose(predict(FrameMean(), test, None), predict(FrameMean(), test, full))


# ----------------------------------------------------------------- what the model sees
def test_eval_never_passes_complete_and_applies_fill(data):
    spy = Spy()
    evaluate(spy, data, conditions=[Condition("pattern", "{T}", FixedPattern(("T",)))], seed=0, batch_size=6)
    assert spy.seen
    for s in spy.seen:
        assert s["complete"] is None
        assert s["avail"].tolist() == [[False, False, True]] * len(s["avail"])
        for m in ("A", "V"):
            assert not s["obs"][m].any() and (s["feats"][m] == 0).all()
        assert torch.equal(s["obs"]["T"], s["pad"]["T"])


def test_mean_fill_uses_train_rows(data):
    class MeanSpy(Spy):
        fill = "mean"

    spy = MeanSpy()
    evaluate(spy, data, conditions=[Condition("pattern", "{V}", FixedPattern(("V",)))], seed=0)
    train = data.subset("train")
    x, ln = train.feats["A"], train.lengths["A"]
    real = np.arange(x.shape[1])[None, :] < ln[:, None]
    mu = x[real].mean(0)
    s = spy.seen[0]
    got = s["feats"]["A"][s["pad"]["A"]]  # real frames of the missing modality
    np.testing.assert_allclose(got.numpy(), np.broadcast_to(mu, got.shape), rtol=1e-5, atol=1e-6)
    # padding stays zero
    assert (s["feats"]["A"][~s["pad"]["A"]] == 0).all()


def test_noise_fill_is_seeded(data):
    class NoiseSpy(Spy):
        fill = "noise"

    a, b = NoiseSpy(), NoiseSpy()
    cond = [Condition("pattern", "{A}", FixedPattern(("A",)))]
    evaluate(a, data, conditions=cond, seed=4)
    evaluate(b, data, conditions=cond, seed=4)
    assert torch.equal(a.seen[0]["feats"]["T"], b.seen[0]["feats"]["T"])
    assert a.seen[0]["feats"]["T"][a.seen[0]["pad"]["T"]].abs().sum() > 0


def test_predict_restores_training_mode(data):
    spy = Spy()
    spy.train()
    predict(spy, data.subset("test"), None)
    assert spy.training and all(not s["training"] for s in spy.seen)
    spy.eval()
    predict(spy, data.subset("test"), None)
    assert not spy.training

    class Boom(Spy):
        def predict_logits(self, batch):
            raise RuntimeError("boom")

    boom = Boom()
    boom.train()
    with pytest.raises(RuntimeError):
        predict(boom, data.subset("test"), None)
    assert boom.training


def test_any_object_with_name_fill_predict_logits(data):
    class Oracle:
        name, fill = "oracle", "zero"

        def predict_logits(self, batch):
            return torch.nn.functional.one_hot(batch.y, C).float()  # cheats: it is an oracle

    rows = evaluate(Oracle(), data, seed=0)
    assert rows[0]["method"] == "oracle" and all(r["accuracy"] == 1.0 for r in rows)


def test_predict_errors(data):
    test = data.subset("test")

    class Bad(FrameMean):
        def predict_logits(self, batch):
            return torch.zeros(len(batch))

    with pytest.raises(DataError, match=r"predict_logits: expected a \(\d+, C\) tensor"):
        predict(Bad(), test, None)
    masks = draw_masks(Full(), pad_masks(data), data.modalities, 0)
    with pytest.raises(DataError, match="masks: expected"):
        predict(FrameMean(), test, masks)
    with pytest.raises(ConfigError, match="batch_size"):
        predict(FrameMean(), test, None, batch_size=0)
    with pytest.raises(ConfigError, match="rates"):
        rate_conditions((0.3, 0.1))
    with pytest.raises(ConfigError, match="duplicate"):
        evaluate(FrameMean(), data, conditions=pattern_conditions(data.modalities) * 2)


# ----------------------------------------------------------------- aggregation and files
def _rows():
    base = {"dataset": "d", "protocol": "pattern", "n": 10}
    return [
        {**base, "method": "m", "condition": "{A}", "seed": 1, "accuracy": 0.5, "macro_recall": 0.4},
        {**base, "method": "m", "condition": "{A}", "seed": 2, "accuracy": 0.7, "macro_recall": 0.6},
        {**base, "method": "m", "condition": "{V}", "seed": 1, "accuracy": 0.9, "macro_recall": 0.9},
        {**base, "method": "k", "condition": "{A}", "seed": 1, "accuracy": 0.1, "macro_recall": 0.2},
    ]


def test_aggregate_mean_std():
    agg = aggregate(_rows())
    assert [(a["method"], a["condition"]) for a in agg] == [("m", "{A}"), ("m", "{V}"), ("k", "{A}")]
    a = agg[0]
    # mean (0.5 + 0.7)/2 = 0.6 ; population std sqrt(((0.1)^2 + (0.1)^2)/2) = 0.1
    assert a["accuracy_mean"] == pytest.approx(0.6) and a["accuracy_std"] == pytest.approx(0.1)
    assert a["macro_recall_mean"] == pytest.approx(0.5) and a["n_seeds"] == 2
    assert agg[1]["accuracy_std"] == 0.0 and agg[1]["n_seeds"] == 1
    assert "seed_mean" not in a and "n_mean" not in a
    with pytest.raises(DataError, match="no rows"):
        aggregate([])
    with pytest.raises(DataError, match="condition"):
        aggregate([{"dataset": "d", "method": "m", "protocol": "p", "accuracy": 1.0}])


def test_aggregate_over_evaluate_seeds(data):
    rows = []
    for s in (1111, 1112, 1113):
        rows += evaluate(FrameMean(), data, conditions=rate_conditions((0.0, 0.5)), seed=s)
    agg = aggregate(rows)
    assert [a["condition"] for a in agg] == ["rate=0", "rate=0.5", "AUILC"]
    assert all(a["n_seeds"] == 3 for a in agg)
    assert agg[0]["accuracy_std"] == 0.0  # no missingness at rate 0: identical across mask seeds
    acc = [r["accuracy"] for r in rows if r["condition"] == "rate=0.5"]
    assert agg[1]["accuracy_mean"] == pytest.approx(np.mean(acc))
    assert agg[1]["accuracy_std"] == pytest.approx(np.std(acc))


def test_write_results_refuses_to_overwrite_and_appends(tmp_path):
    rows = _rows()
    paths = write_results(rows[:2], tmp_path / "out")
    assert paths["csv"].name == "results.csv" and paths["md"].name == "results.md"
    back = read_results(paths["csv"])
    assert back == [dict(r) for r in rows[:2]]
    header = paths["csv"].read_text().splitlines()[0].split(",")
    assert header[:7] == ["dataset", "method", "protocol", "condition", "seed", "n", "accuracy"]
    md = paths["md"].read_text()
    assert "| dataset | method | protocol | condition | accuracy | macro_recall | n_seeds |" in md
    assert "| d | m | pattern | {A} | 60.00 ± 10.00 | 50.00 ± 10.00 | 2 |" in md

    with pytest.raises(DataError, match="results.csv"):
        write_results(rows[2:], tmp_path / "out")
    assert read_results(paths["csv"]) == back  # untouched

    write_results(rows[2:], tmp_path / "out", append=True)
    assert read_results(paths["csv"]) == [dict(r) for r in rows]
    assert "| d | k | pattern | {A} | 10.00 (1 seed) | 20.00 (1 seed) | 1 |" in paths["md"].read_text()


def test_write_results_refuses_existing_markdown(tmp_path):
    (tmp_path / "results.md").write_text("mine\n")
    with pytest.raises(DataError, match="results.md"):
        write_results(_rows(), tmp_path)
    assert (tmp_path / "results.md").read_text() == "mine\n"


def test_write_results_of_evaluate_rows(tmp_path, data):
    rows = evaluate(FrameMean(), data, seed=1111)
    paths = write_results(rows, tmp_path)
    back = read_results(paths["csv"])
    assert len(back) == len(rows)
    assert back[0]["accuracy"] == rows[0]["accuracy"] and back[-1]["condition"] == "Average"


def test_results_markdown_scales_fractions_only(tmp_path):
    """Accuracy-like fractions print x100; a feature-space error or a variance ratio prints as is."""
    rows = [{"dataset": "d", "method": "m", "protocol": "generation", "condition": "VT->A", "seed": s,
             "accuracy": a, "mean_error": e, "variance_ratio": v} for s, a, e, v in ((1, 0.5, 0.25, 1.5), (2, 0.7, 0.75, 0.5))]
    md = write_results(rows, tmp_path)["md"].read_text()
    assert "| 60.00 ± 10.00 | 0.50 ± 0.25 | 1.00 ± 0.50 | 2 |" in md

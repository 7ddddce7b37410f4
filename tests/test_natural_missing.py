"""Natural missingness: a sample that lacks a modality (no recording, no face) says so through
``avail`` in the dataset and ``avail_<name>`` in the bring-your-own ``.npz``; it is never read as
data, stays missing under every mask, and methods train and are scored on such data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mmlab.data.byo import load_npz, validate_npz, write_npz
from mmlab.data.synthetic import make_synthetic
from mmlab.errors import DataError
from mmlab.evaluate import evaluate
from mmlab.methods import make_method
from mmlab.methods.base import TrainConfig
from mmlab.missing import Full, make_fill, mask_batch
from mmlab.train import Trainer


@pytest.fixture(scope="module")
def data():
    d = make_synthetic(preset="tiny")
    rng = np.random.default_rng(0)
    lacks_a = rng.random(len(d)) < 0.3
    return dataclasses.replace(d, avail={"A": ~lacks_a}, info={})


def test_batch_marks_natively_missing_modalities_unobserved(data):
    b = data.batch(np.arange(40))
    lacks = ~data.avail["A"][:40]
    assert lacks.any() and (~lacks).any()
    j = data.modalities.index("A")
    assert torch.equal(b.avail[:, j], torch.from_numpy(~lacks))
    assert not b.obs_mask["A"][torch.from_numpy(lacks)].any()
    assert b.obs_mask["V"].any(1).all() and b.avail[:, [data.modalities.index("V"), data.modalities.index("T")]].all()
    # a mask that keeps A everywhere does not bring it back
    pad = {m: b.pad_mask[m].cpu().numpy() for m in b.modalities}
    full = Full()(pad, b.modalities, np.random.default_rng(0))
    masked = mask_batch(b, full, make_fill("zero"))
    assert torch.equal(masked.avail, b.avail) and not masked.obs_mask["A"][torch.from_numpy(lacks)].any()


def test_bad_availability_is_a_clear_error(data):
    with pytest.raises(DataError, match=r"avail\['A'\] must be \(N=\d+,\) bool"):
        dataclasses.replace(data, avail={"A": np.ones(3, bool)})
    with pytest.raises(DataError, match="not modalities"):
        dataclasses.replace(data, avail={"Z": np.ones(len(data), bool)})
    none = {m: np.r_[False, np.ones(len(data) - 1, bool)] for m in data.modalities}
    with pytest.raises(DataError, match="1 sample\\(s\\) have no modality at all"):
        dataclasses.replace(data, avail=none)


def test_npz_round_trip_and_validation(data, tmp_path):
    path = write_npz(data, tmp_path / "d.npz")
    problems, _ = validate_npz(path)
    assert problems == []
    back = load_npz(path)
    assert set(back.avail) == {"A"} and np.array_equal(back.avail["A"], data.avail["A"])
    with np.load(path) as z:
        arrays = dict(z)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{**arrays, "avail_A": np.full(len(data), 2), "avail_Q": np.ones(len(data), bool)})
    problems, _ = validate_npz(bad)
    assert any(p.startswith("avail_A: must be (N,) bool") for p in problems)
    assert any(p.startswith("avail_Q: has no matching modality key X_Q") for p in problems)
    empty = {m: np.r_[False, np.ones(len(data) - 1, bool)] for m in data.modalities}
    np.savez(bad, **{**arrays, **{f"avail_{m}": a for m, a in empty.items()}})
    problems, _ = validate_npz(bad)
    assert any("1 sample(s) have no available modality (first row 0)" in p for p in problems)
    with pytest.raises(DataError, match="no available modality"):
        load_npz(bad)


def test_a_method_trains_and_is_scored_on_naturally_missing_data(data, tmp_path):
    torch.manual_seed(0)  # the model's initialisation draws from the global generator
    method = make_method("zero_fill", data, ["--train.epochs=10"], seed=1)
    Trainer(method, data, tmp_path / "run", TrainConfig(progress=False)).fit()
    by = {r["condition"]: r for r in evaluate(method, data, seed=3)}
    assert by["full"]["accuracy"] > 0.4
    test = data.subset("test")
    seen = []
    spy = method.predict_logits

    def record(batch):
        seen.append((batch.avail.clone(), [bool(o.any()) for o in batch.obs_mask["A"]]))
        return spy(batch)

    method.predict_logits = record
    evaluate(method, test, split=None, conditions=[c for c in _conditions(data) if c.label == "{A}"], seed=3)
    avail = torch.cat([a for a, _ in seen])
    lacks = torch.from_numpy(~test.avail["A"])
    j = data.modalities.index("A")
    assert lacks.any() and not avail[lacks, j].any() and avail[~lacks, j].all()  # {A} never brings A back


def _conditions(data):
    from mmlab.evaluate import pattern_conditions

    return pattern_conditions(data.modalities, include_full=True)


def test_masking_keeps_what_was_native_through_a_second_mask():
    """mask_batch records the availability before the first mask (MMBatch.present), and a
    second mask of an already-masked batch keeps that record; for_eval drops it."""
    from mmlab.data.batch import collate
    from mmlab.missing import FixedPattern, draw_masks, mask_batch, resolve_fill

    rng = np.random.default_rng(0)
    samples = [{"feats": {"A": rng.normal(size=(3, 2)), "V": rng.normal(size=(2,))}, "y": i % 2,
                "avail": {"A": i != 0}} for i in range(4)]
    batch = collate(samples, ("A", "V"))
    pad = {m: batch.pad_mask[m].numpy() for m in batch.modalities}
    once = mask_batch(batch, draw_masks(FixedPattern(("V",)), pad, batch.modalities, 0), resolve_fill("zero"))
    assert once.avail[:, 0].tolist() == [False] * 4
    assert once.present()[:, 0].tolist() == [False, True, True, True]
    assert once.observed()["A"][0].sum() == 0 and bool(once.observed()["A"][1].all())
    twice = mask_batch(once, draw_masks(FixedPattern(("A",)), pad, batch.modalities, 0), resolve_fill("zero"))
    assert twice.present().tolist() == once.present().tolist()
    assert twice.index([1, 2]).present()[:, 0].tolist() == [True, True]
    assert once.for_eval().native_avail is None and once.for_eval().present()[:, 0].sum() == 0


@pytest.mark.parametrize("name, stage", [("ae", "impute"), ("mmin", "mmin")])
def test_imputation_targets_skip_natively_missing_modalities(data, name, stage):
    """The reconstruction target of a modality a row lacks natively is filler: changing it does
    not change the imputation baselines' loss (it did before MMBatch.present existed)."""
    torch.manual_seed(0)
    method = make_method(name, data, seed=1)
    train = data.subset("train")
    loss = next(s for s in method.stages(data) if s.name == stage).loss
    batch = train.batch(np.arange(64))
    lacks = ~batch.avail[:, 0]
    assert lacks.any()
    junk = dataclasses.replace(batch, feats={**batch.feats, "A": batch.feats["A"].clone()})
    junk.feats["A"][lacks] = 50.0
    torch.manual_seed(1)  # the same dropout draws
    base, _ = loss(batch, np.random.default_rng(3))
    torch.manual_seed(1)
    moved, _ = loss(junk, np.random.default_rng(3))
    assert float(moved) == pytest.approx(float(base), rel=1e-5)

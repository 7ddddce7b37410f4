"""MMBatch, collate, MMDataset, seeded splits, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlab.data import collate, from_arrays, load_dataset, stratified_split
from mmlab.errors import DataError, UnknownDatasetError


def _toy(n=30, seed=0, modalities=("A", "V", "T", "X")):
    rng = np.random.default_rng(seed)
    feats = {m: rng.standard_normal((n, 5 + j, 2 + j)).astype(np.float32) for j, m in enumerate(modalities)}
    lengths = {m: rng.integers(1, 5 + j + 1, n) for j, m in enumerate(modalities)}
    for m in modalities:
        t = feats[m].shape[1]
        feats[m][np.arange(t)[None] >= lengths[m][:, None]] = 0
    y = np.arange(n) % 3
    return from_arrays("toy", feats, y, lengths=lengths)


def test_any_number_of_named_modalities_and_batch_masks():
    d = _toy()
    b = d.batch(np.arange(7))
    assert b.modalities == ("A", "V", "T", "X") and b.avail.shape == (7, 4)
    for m in b.modalities:
        assert b.feats[m].shape[:2] == b.pad_mask[m].shape
        assert torch.equal(b.pad_mask[m].sum(1), torch.from_numpy(d.lengths[m][:7]))
        assert torch.equal(b.obs_mask[m], b.pad_mask[m])
    b.validate()
    assert b.for_eval().complete is None
    sub = b.index([0, 2])
    assert sub.size == 2 and sub.ids == [b.ids[0], b.ids[2]]


def test_collate_pads_variable_lengths():
    samples = [
        {"feats": {"A": np.ones((3, 2)), "T": np.ones(4)}, "y": 1, "id": "a"},
        {"feats": {"A": np.ones((5, 2)), "T": np.ones(4)}, "y": 0, "id": "b", "avail": {"T": False}},
    ]
    b = collate(samples, ["A", "T"])
    assert b.feats["A"].shape == (2, 5, 2) and b.feats["T"].shape == (2, 1, 4)
    assert b.pad_mask["A"].sum(1).tolist() == [3, 5]
    assert b.avail.tolist() == [[True, True], [True, False]]
    assert not b.obs_mask["T"][1].any()
    assert b.feats["A"][0, 3:].abs().sum() == 0


def test_collate_errors_name_the_problem():
    with pytest.raises(DataError, match="inconsistent feature sizes"):
        collate([{"feats": {"A": np.ones((2, 3))}, "y": 0}, {"feats": {"A": np.ones((2, 4))}, "y": 0}], ["A"])
    with pytest.raises(DataError, match="has no modality 'V'"):
        collate([{"feats": {"A": np.ones((2, 3))}, "y": 0}], ["A", "V"])
    with pytest.raises(DataError, match="empty"):
        collate([], ["A"])


def test_seeded_stratified_split():
    y = np.repeat(np.arange(4), 50)
    a, b, c = stratified_split(y, seed=1), stratified_split(y, seed=1), stratified_split(y, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    for k in range(4):
        assert (a[y == k] == "train").sum() == 35 and (a[y == k] == "test").sum() == 10
    with pytest.raises(DataError, match="fractions"):
        stratified_split(y, fractions=(0.5, 0.5, 0.5))


def test_bad_input_gives_clear_errors():
    d = _toy()
    bad = dict(d.feats)
    bad["A"] = bad["A"].copy()
    bad["A"][0, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"features of 'A' contain NaN or inf"):
        from_arrays("toy", bad, d.y, lengths=d.lengths)
    bad["A"][0, 0, 0] = np.inf
    with pytest.raises(DataError, match=r"NaN or inf"):
        from_arrays("toy", bad, d.y, lengths=d.lengths)
    with pytest.raises(DataError, match=r"must be \(N=30, T, D\)"):
        from_arrays("toy", {"A": d.feats["A"][:10]}, d.y)
    with pytest.raises(DataError, match=r"\(N, T, D\) or \(N, D\)"):
        from_arrays("toy", {"A": np.zeros((30, 2, 2, 2), np.float32)}, d.y)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 2\)"):
        from_arrays("toy", {"A": d.feats["A"]}, d.y, classes=["a", "b"])
    with pytest.raises(DataError, match=r"lengths of 'A' must be"):
        from_arrays("toy", {"A": d.feats["A"]}, d.y, lengths={"A": np.zeros(30, int)})
    batch = d.batch(np.arange(4))
    batch.feats["A"] = batch.feats["A"][:, :, :1].repeat(1, 1, 1)[:, :1]
    with pytest.raises(DataError, match=r"pad_mask\['A'\]: expected bool"):
        batch.validate()
    with pytest.raises(UnknownDatasetError, match="unknown dataset 'nope'.*synthetic"):
        load_dataset("nope")
    with pytest.raises(DataError, match="split"):
        d.subset("training")


def test_obs_mask_on_padding_is_rejected():
    b = _toy().batch(np.arange(4))
    b.obs_mask["A"] = torch.ones_like(b.obs_mask["A"])
    if b.pad_mask["A"].all():
        pytest.skip("no padding drawn")
    with pytest.raises(DataError, match="marks padding frames as observed"):
        b.validate()

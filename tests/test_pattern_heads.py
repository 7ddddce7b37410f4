"""A classifier head per availability pattern (`mmlab.nn.pattern_heads`, `zero_fill_heads`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlab.data import load_dataset
from mmlab.errors import ConfigError
from mmlab.evaluate import evaluate, pattern_conditions
from mmlab.methods import make_method
from mmlab.methods.base import TrainConfig
from mmlab.nn.pattern_heads import PatternHeads, pattern_index
from mmlab.train import Trainer
from mmlab.utils import seed_everything


def test_pattern_index_counts_the_modalities_in_binary():
    avail = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    assert pattern_index(avail).tolist() == [0, 1, 2, 3, 6, 6]  # no modality: the full head


def test_each_row_gets_its_own_patterns_head_and_only_it_learns_from_it():
    heads = PatternHeads(3, d_in=4, n_classes=2, hidden=8, dropout=0.0)
    with torch.no_grad():
        for i, head in enumerate(heads.heads):
            head.net[-1].weight.zero_()
            head.net[-1].bias.fill_(float(i))
    avail = torch.tensor([[1, 0, 1], [1, 1, 1], [0, 1, 0]], dtype=torch.bool)
    out = heads(torch.randn(3, 4), avail)
    assert out[:, 0].tolist() == [4.0, 6.0, 1.0]
    heads.zero_grad()
    heads(torch.randn(5, 4), torch.tensor([[1, 0, 0]] * 5, dtype=torch.bool)).sum().backward()
    grads = [h.net[-1].bias.grad for h in heads.heads]
    assert grads[0] is not None and grads[0].abs().sum() > 0
    assert all(g is None or g.abs().sum() == 0 for g in grads[1:])


def test_too_many_modalities_are_refused():
    with pytest.raises(ConfigError, match="1 to 6"):
        PatternHeads(7, 4, 2, 8, 0.0)


def test_zero_fill_heads_trains_and_beats_chance_on_every_pattern(tmp_path):
    tiny = load_dataset("synthetic", preset="tiny")
    seed_everything(0)
    method = make_method("zero_fill_heads", tiny, ["--train.epochs=4", "--train.patience=0"])
    assert len(method.head.heads) == 7
    Trainer(method, tiny, tmp_path, TrainConfig(seed=0, progress=False)).fit()
    rows = {r["condition"]: r["accuracy"] for r in evaluate(method, tiny, conditions=pattern_conditions(tiny.modalities),
                                                            seed=1111)}
    majority = np.bincount(tiny.y[tiny.split == "test"]).max() / (tiny.split == "test").sum()
    assert rows["full"] > majority + 0.1
    assert all(np.isfinite(v) and 0 <= v <= 1 for v in rows.values())


@pytest.mark.parametrize("method, overrides", [("full_zero", ["--heads=pattern"]),
                                               ("zero_fill", ["--heads=pattern", "--p_full=1"])])
def test_heads_that_would_never_train_are_refused(method, overrides):
    tiny = load_dataset("synthetic", preset="tiny")
    with pytest.raises(ConfigError, match="heads of the missing patterns would never be trained"):
        make_method(method, tiny, overrides)


def test_maci_adapters_replace_the_pattern_heads():
    tiny = load_dataset("synthetic", preset="tiny")
    method = make_method("zero_fill_maci", tiny, ["--heads=pattern"]).eval()
    with torch.no_grad():
        out = method.predict_logits(tiny.subset("valid").batch(np.arange(8)))
    assert out.shape == (8, tiny.n_classes) and torch.isfinite(out).all()

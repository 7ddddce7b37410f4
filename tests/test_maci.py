"""MACI as a plug-in (mmlab/methods/maci.py): MCM (CIDer Eqs. 21-24) replaces the classifier
heads of zero_fill, CM-ARR and ADMC; train prototypes and prior while a stage trains, uniform
prior and mean prototypes at evaluation (B7); a short training learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlab.data import load_dataset
from mmlab.evaluate import evaluate
from mmlab.methods import make_method
from mmlab.methods.maci import MCM_WIDTH, MCMAdapter, class_prototypes
from mmlab.nn.encoders import MLPHead
from mmlab.train import TrainConfig, Trainer


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("synthetic", preset="tiny")


@pytest.mark.parametrize("name", ["zero_fill_maci", "cmarr_maci", "admc_maci"])
def test_every_joint_classifier_head_becomes_mcm(tiny, name):
    method = make_method(name, tiny)
    base = make_method(name.removesuffix("_maci"), tiny)
    joint = [n for n, m in base.named_modules() if isinstance(m, MLPHead) and not n.startswith("itfn_heads")]
    adapters = [n for n, m in method.named_modules() if isinstance(m, MCMAdapter)]
    assert adapters == joint and len(joint) >= 1
    # ADMC's unimodal ITFN heads read one modality, not a joint representation: they stay
    assert [n for n, m in method.named_modules() if isinstance(m, MLPHead)] == [
        n for n, m in base.named_modules() if isinstance(m, MLPHead) and n.startswith("itfn_heads")]


def test_prototypes_are_train_class_means_and_eval_ignores_the_prior(tiny):
    train = tiny.subset("train")
    protos, prior = class_prototypes(train, torch.device("cpu"))
    y = train.y
    a_rows = np.stack([train.feats["A"][i, : train.lengths["A"][i]].mean(0) for i in range(len(train))])
    assert torch.allclose(protos[1, : tiny.dims["A"]], torch.as_tensor(a_rows[y == 1].mean(0), dtype=torch.float32),
                          atol=1e-5)
    assert torch.allclose(prior, torch.as_tensor(np.bincount(y, minlength=tiny.n_classes) / len(y), dtype=torch.float32))
    method = make_method("zero_fill_maci", tiny)
    method.stages(tiny)  # fits the prototypes
    head = next(m for m in method.modules() if isinstance(m, MCMAdapter))
    assert torch.allclose(head.mcm.prototypes, protos)
    h = torch.randn(5, head.mcm.classifiers[0].in_features - MCM_WIDTH * len(tiny.modalities))
    head.eval()
    before = head(h)
    head.mcm.prior.copy_(torch.tensor([0.97] + [0.01] * (tiny.n_classes - 1)))
    assert torch.allclose(head(h), before)  # evaluation: uniform prior (B7)
    head.train()
    assert not torch.allclose(head(h), before)  # training: the train prior (Eq. 24)
    assert torch.allclose(head(h).exp().sum(1), torch.ones(5), atol=1e-5)  # log-probabilities


def test_zero_fill_maci_learns(tiny, tmp_path):
    torch.manual_seed(0)
    method = make_method("zero_fill_maci", tiny, ["--train.epochs=8"], seed=1)
    Trainer(method, tiny, tmp_path / "run", TrainConfig(progress=False, seed=1)).fit()
    rows = {r["condition"]: r for r in evaluate(method, tiny, seed=3)}
    majority = np.bincount(tiny.subset("test").y).max() / len(tiny.subset("test"))
    assert rows["full"]["accuracy"] > majority + 0.1

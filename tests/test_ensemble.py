"""Deep ensembles (mmlab/methods/ensemble.py): N copies of a registered method trained on the one
Trainer, each selected on valid on its own, their probabilities averaged. A size-1 ensemble is
the single run; members differ; the prediction is the members' mean probability; the test
split does not change training; a finished run resumes to the same model; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlab.data import load_dataset
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError
from mmlab.evaluate import evaluate, pattern_conditions
from mmlab.experiments import COMPARISON_METHODS, OUTSIDE_FULL_SUITE
from mmlab.methods import make_method, method_names
from mmlab.train import TrainConfig, Trainer
from mmlab.utils import seed_everything

FAST = ["train.epochs=4", "train.patience=0", "pretrain.epochs=3", "pretrain.patience=0"]
SEED = 1112


@pytest.fixture(scope="module")
def tiny() -> MMDataset:
    return load_dataset("synthetic", preset="tiny")


def train(name: str, data: MMDataset, out, overrides=(), seed: int = SEED):
    seed_everything(seed)
    method = make_method(name, data, overrides, seed=seed)
    Trainer(method, data, out, TrainConfig(seed=seed, progress=False)).fit()
    return method


@pytest.fixture(scope="module")
def trio(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("ae_x3")
    return train("ae_x3", tiny, out, {"overrides": FAST}), out


def test_registered_outside_the_full_suite():
    for name in ("zero_fill_x3", "ae_x3", "cra_x3"):
        assert name in method_names() and name in OUTSIDE_FULL_SUITE and name not in COMPARISON_METHODS


def test_a_size_one_ensemble_is_the_single_run(tiny, tmp_path):
    single = train("ae", tiny, tmp_path / "single", ["--" + o for o in FAST])
    one = train("ae_x3", tiny, tmp_path / "one", {"size": 1, "overrides": FAST})
    batch = tiny.subset("test").batch(np.arange(48))
    assert torch.allclose(torch.log_softmax(single.predict_logits(batch), -1), one.predict_logits(batch), atol=1e-6)


def test_members_differ_and_the_prediction_is_their_mean_probability(trio, tiny):
    method, out = trio
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        f"member{i}-{s}" for i in range(3) for s in ("encoders", "impute")]
    assert len({m.seed for m in method.members}) == 3
    assert method.members[0].seed == SEED == method.seed
    built = make_method("ae_x3", tiny, seed=SEED)  # seeds reach the members without a Trainer
    assert [m.seed for m in built.members] == [m.seed for m in method.members]
    first = [dict(m.named_parameters()) for m in method.members]
    name = next(iter(first[0]))
    assert not torch.equal(first[0][name], first[1][name]) and not torch.equal(first[1][name], first[2][name])
    batch = tiny.subset("valid").batch(np.arange(40))
    probs = torch.stack([torch.softmax(m.predict_logits(batch), -1) for m in method.members])
    got = method.predict_logits(batch)
    assert torch.allclose(got.exp(), probs.mean(0), atol=1e-5)
    assert torch.allclose(got.exp().sum(1), torch.ones(40), atol=1e-5)
    assert not torch.allclose(probs[0], probs[1], atol=1e-3)  # a broken copy (all members equal) fails here


def test_beats_majority_on_every_pattern(trio, tiny):
    method, _ = trio
    rows = evaluate(method, tiny, conditions=pattern_conditions(tiny.modalities), seed=1111)
    majority = np.bincount(tiny.y[tiny.split == "test"]).max() / (tiny.split == "test").sum()
    assert all(r["accuracy"] > majority + 0.05 for r in rows), [(r["condition"], r["accuracy"]) for r in rows]


def test_test_rows_do_not_change_training(tiny, trio, tmp_path):
    method, _ = trio
    test = tiny.split == "test"
    rng = np.random.default_rng(0)
    feats = {m: x.copy() for m, x in tiny.feats.items()}
    for x in feats.values():
        x[test] = rng.normal(size=x[test].shape)
    y = tiny.y.copy()
    y[test] = rng.integers(0, tiny.n_classes, test.sum())
    other = MMDataset(tiny.name, tiny.modalities, feats, tiny.lengths, y, tiny.split, tiny.ids, tiny.classes)
    again = train("ae_x3", other, tmp_path / "other", {"overrides": FAST})
    batch = tiny.subset("valid").batch(np.arange(32))
    assert torch.allclose(method.predict_logits(batch), again.predict_logits(batch), atol=1e-6)


def test_a_finished_run_resumes_to_the_same_model(tiny, trio):
    method, out = trio
    seed_everything(7)  # a different global state: everything must come from the checkpoints
    again = make_method("ae_x3", tiny, {"overrides": FAST}, seed=SEED)
    Trainer(again, tiny, out, TrainConfig(seed=SEED, progress=False)).fit()
    batch = tiny.subset("valid").batch(np.arange(32))
    assert torch.allclose(method.predict_logits(batch), again.predict_logits(batch), atol=1e-6)


@pytest.mark.parametrize("overrides, match", [
    ({"size": 0}, "EnsembleConfig.size: expected an integer from 1 to 100"),
    ({"size": 10**9}, "EnsembleConfig.size: expected an integer from 1 to 100"),
    ({"member": "no_such_method"}, "unknown method 'no_such_method'"),
    ({"member": "ae_x3"}, "itself combines copies of a method"),
    ({"member": "zero_fill_pp"}, "itself combines copies of a method"),
    ({"overrides": ["train.seed=5"]}, "EnsembleConfig.overrides 'train.seed=5': the run seed"),
    ({"member": "admc_cond"}, "chooses test-time options on valid"),
    ({"member": "cider"}, "reads token ids itself"),
    ({"member": "pooled_linear"}, "'pooled_linear' gives the same model whatever the seed"),
    ({"overrides": "train.epochs=1"}, "overrides: expected a list"),
    ({"overrides": ["train.no_such_key=1"]}, "unknown key 'no_such_key'"),
    ({"preset": "no_such_preset"}, "method 'ae': unknown preset 'no_such_preset'"),
])
def test_clear_errors(tiny, overrides, match):
    with pytest.raises(ConfigError, match=match):
        make_method("ae_x3", tiny, overrides)



def test_the_paper_preset_reaches_every_member(tiny):
    plain, paper = make_method("ae_x3", tiny), make_method("ae_x3", tiny, preset="paper")
    want = make_method("ae", tiny, preset="paper").config_dict()
    assert all(m.config_dict() == want for m in paper.members)
    assert plain.members[0].config_dict() != want

"""``kernel_experts`` (mmlab/methods/kernel_experts.py): a product of per-modality Nyström-RBF
logistic experts on pooled frame statistics. Nonlinear where `pooled_linear` is not, the product
over the present modalities, choices on valid (never test), checkpoints that round-trip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mmlab.data.dataset import MMDataset, from_arrays
from mmlab.errors import ConfigError, DataError
from mmlab.evaluate import evaluate
from mmlab.methods import make_method, method_names
from conftest import splits_read
from mmlab.train import TrainConfig, Trainer, load_checkpoint

SMALL = {"gamma_grid": [0.5, 2.0], "c_grid": [0.001, 10.0]}


def rings(n: int = 900, seed: int = 0) -> MMDataset:
    """Two vector modalities whose class is the radius of a ring: no linear model separates it.
    Given the class the modalities are independent, as the product of experts assumes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    feats = {}
    for m, d in (("a", 2), ("b", 3)):
        direction = rng.normal(size=(n, d))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        radius = np.where(y == 1, 2.0, 1.0) + rng.normal(0, 0.35, n)
        feats[m] = direction * radius[:, None]
    return from_arrays("rings", feats, y)


@pytest.fixture(scope="module")
def data() -> MMDataset:
    return rings()


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory):
    """kernel_experts trained through the Trainer, with a spy on the splits of every row read
    during training (half the test rows become test_ood)."""
    split = data.split.astype("<U16")
    split[np.flatnonzero(split == "test")[::2]] = "test_ood"
    spied = replace(data, split=split)
    out_dir = tmp_path_factory.mktemp("kernel_experts")
    method = make_method("kernel_experts", spied, SMALL, seed=1111)
    with splits_read() as touched:
        summary = Trainer(method, spied, out_dir, TrainConfig(seed=1111, progress=False)).fit()
    return method, summary, out_dir, touched


def by_condition(rows) -> dict[str, float]:
    return {r["condition"]: r["accuracy"] for r in rows}


def test_registered():
    assert "kernel_experts" in method_names()


def test_nonlinear_where_pooled_linear_is_not(fitted, data):
    """Rings: a linear model on the pooled features is near chance, the kernel experts are not,
    and two modalities beat one."""
    method, _, _, _ = fitted
    kernel = by_condition(evaluate(method, data, seed=1111))
    linear_method = make_method("pooled_linear", data)
    linear_method.fit(data.training_view())
    linear = by_condition(evaluate(linear_method, data, seed=1111))
    assert linear["full"] < 0.65
    assert kernel["full"] > 0.85 and kernel["full"] > linear["full"] + 0.2
    assert kernel["full"] > max(kernel["{a}"], kernel["{b}"])


def test_training_reads_no_test_split(fitted):
    _, _, _, touched = fitted
    assert touched and touched <= {"train", "valid"}


def test_product_of_the_present_experts(fitted, data):
    """One present modality: its expert alone. Both: the normalised product over the prior.
    A modality available but with no observed frame counts as missing; none present: the prior."""
    method, _, _, _ = fitted
    batch = data.subset("test").batch(np.arange(40))
    experts = method.expert_log_proba(batch)
    both = F.log_softmax(experts.sum(1) - method.log_prior, dim=1).float()
    torch.testing.assert_close(method.predict_logits(batch), both, atol=1e-6, rtol=0)
    only_a = replace(batch, avail=batch.avail & torch.tensor([True, False]))
    torch.testing.assert_close(method.predict_logits(only_a), experts[:, 0].float(), atol=1e-6, rtol=0)
    no_frames = replace(batch, obs_mask={**batch.obs_mask, "b": torch.zeros_like(batch.obs_mask["b"])})
    torch.testing.assert_close(method.predict_logits(no_frames), method.predict_logits(only_a), atol=0, rtol=0)
    nothing = replace(batch, avail=torch.zeros_like(batch.avail))
    prior = torch.softmax(method.log_prior, 0).float().expand(batch.size, -1)
    torch.testing.assert_close(method.predict_logits(nothing).exp(), prior, atol=1e-6, rtol=0)


def test_choices_made_on_valid(fitted, data):
    """Each expert's recorded choice is the first best valid score of its grid, and that score is
    what the stored (folded) expert scores on the valid rows: the tensors are the chosen model.
    The useless C = 0.001 (weights shrunk to the prior) is never chosen."""
    method, summary, out_dir, _ = fitted
    valid = data.subset("valid").batch()
    experts = method.expert_log_proba(valid)
    for j, m in enumerate(method.modalities):
        scores = method.valid_scores[j].numpy()
        g, k = np.unravel_index(int(np.argmax(scores)), scores.shape)
        assert method.chosen_gamma_factor[j].item() == SMALL["gamma_grid"][g]
        assert method.chosen_c[j].item() == SMALL["c_grid"][k] == 10.0
        loglik = experts[:, j].gather(1, valid.y[:, None]).mean().item()  # select_metric "loss"
        assert loglik == pytest.approx(scores.max(), abs=1e-7)
    assert summary["calibration"]["C"] == {"a": 10.0, "b": 10.0}
    assert (out_dir / "calibration.json").exists()


def test_checkpoint_round_trip(fitted, data):
    method, _, out_dir, _ = fitted
    batch = data.subset("test").batch()
    want = method.predict_logits(batch)
    ckpt = load_checkpoint(out_dir / "checkpoints" / "fit" / "best.pt")  # weights_only=True
    fresh = make_method("kernel_experts", data, SMALL)
    fresh.load_state_dict(ckpt["model"])
    torch.testing.assert_close(fresh.predict_logits(batch), want, atol=0, rtol=0)


def test_landmarks_subset_from_the_run_seed(data):
    """With fewer landmarks than train rows they are a subset of the train rows drawn from the
    run seed: the same seed gives the same model, another seed other landmarks."""
    def fit(seed: int):
        method = make_method("kernel_experts", data, {**SMALL, "landmarks": 50}, seed=seed)
        method.fit(data.training_view())
        return method

    a, again, other = fit(1), fit(1), fit(2)
    assert a.landmarks_0.shape == (50, 2)
    torch.testing.assert_close(a.dual_0, again.dual_0, atol=0, rtol=0)
    assert not torch.equal(a.landmarks_0, other.landmarks_0)
    train_rows = torch.as_tensor((a.standardised(data.subset("train").batch())[:, :2]).numpy())
    assert all(torch.cdist(row[None], train_rows).min() < 1e-9 for row in a.landmarks_0)


def test_untrained_is_a_clear_error(data):
    with pytest.raises(DataError, match="not fitted"):
        make_method("kernel_experts", data).predict_logits(data.subset("test").batch())


def test_a_modality_no_train_row_has_is_a_clear_error(data):
    avail = {"b": data.split != "train"}
    with pytest.raises(DataError, match="modality 'b'.*missing from every train row"):
        make_method("kernel_experts", replace(data, avail=avail))


@pytest.mark.parametrize("override, field", [
    ("--gamma_grid=[]", "gamma_grid"), ("--c_grid=[0,1]", "c_grid"), ("--landmarks=0", "landmarks"),
    ("--moments=4", "moments"), ("--select_metric=f1", "select_metric"),
])
def test_bad_config(data, override, field):
    with pytest.raises(ConfigError, match=f"KernelExpertsConfig.{field}: expected"):
        make_method("kernel_experts", data, [override])

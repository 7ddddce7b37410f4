"""Baselines (ADMC §5.1, CM-ARR §4.2-4.4; mmlab/methods/baselines/): build, train through the one
Trainer, beat chance, every pattern, train-mean fill, and no reading of the test split during
training or model selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlab.data import load_dataset
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError
from mmlab.evaluate import evaluate, pattern_conditions
from mmlab.methods import make_method, method_names
from mmlab.methods.baselines import BASELINES
from mmlab.methods.baselines.common import CascadedResidualAE
from mmlab.train import TrainConfig, Trainer
from mmlab.utils import seed_everything

FAST = ["--train.epochs=4", "--train.patience=0"]
FAST_2STAGE = FAST + ["--pretrain.epochs=3", "--pretrain.patience=0"]



@pytest.fixture(scope="module")
def tiny() -> MMDataset:
    return load_dataset("synthetic", preset="tiny")


def fast(name: str) -> list[str]:
    return FAST_2STAGE if name in ("ae", "cra", "mmin") else FAST


def train(name: str, data: MMDataset, out, seed: int = 0):
    seed_everything(seed)
    method = make_method(name, data, fast(name))
    summary = Trainer(method, data, out, TrainConfig(seed=seed, progress=False)).fit()
    return method, summary


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """Every baseline trained once on `tiny`, with a spy on every row the training reads."""
    touched: dict[str, set[str]] = {}
    real_batch, real_take = MMDataset.batch, MMDataset.take

    def spy_batch(self, idx=None, device="cpu"):
        rows = np.arange(len(self)) if idx is None else np.asarray(idx)
        touched[current].update(self.split[rows].tolist())
        return real_batch(self, idx, device)

    def spy_take(self, idx):
        out = real_take(self, idx)
        touched[current].update(out.split.tolist())
        return out

    # half of the test rows become an extra test split: training must read neither
    split = tiny.split.astype("<U16")
    test_rows = np.flatnonzero(split == "test")
    split[test_rows[::2]] = "test_ood"
    spied = MMDataset(tiny.name, tiny.modalities, tiny.feats, tiny.lengths, tiny.y, split, tiny.ids, tiny.classes)
    out = {}
    mp = pytest.MonkeyPatch()
    mp.setattr(MMDataset, "batch", spy_batch)
    mp.setattr(MMDataset, "take", spy_take)
    try:
        for current in BASELINES:
            touched[current] = set()
            out[current] = train(current, spied, tmp_path_factory.mktemp(current))
    finally:
        mp.undo()
    return out, touched


def test_registered():
    assert set(BASELINES) <= set(method_names())


@pytest.mark.parametrize("name", BASELINES)
def test_trains_and_beats_chance(trained, tiny, name):
    method, summary = trained[0][name]
    assert all(s["epochs_run"] >= 1 for s in summary.values())
    rows = evaluate(method, tiny, conditions=pattern_conditions(tiny.modalities), seed=1111)
    by = {r["condition"]: r for r in rows}
    majority = np.bincount(tiny.y[tiny.split == "test"]).max() / (tiny.split == "test").sum()
    assert by["full"]["accuracy"] > majority + 0.1, (name, by["full"])
    assert {"{A}", "{V}", "{T}", "{AV}", "{AT}", "{VT}", "Average"} <= set(by)
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)


@pytest.mark.parametrize("name", BASELINES)
def test_every_pattern_gives_finite_logits(trained, tiny, name):
    from mmlab.missing import all_patterns, mask_batch, make_fill

    method = trained[0][name][0].eval()
    batch = tiny.subset("valid").batch(np.arange(16))
    fill = make_fill(method.fill, train=tiny)
    pad = {m: batch.pad_mask[m].numpy() for m in batch.modalities}
    with torch.no_grad():
        for pattern in all_patterns(tiny.modalities):
            masked = mask_batch(batch, pattern(pad, batch.modalities, np.random.default_rng(0)), fill)
            logits = method.predict_logits(masked.for_eval())
            assert logits.shape == (16, tiny.n_classes) and torch.isfinite(logits).all()


def test_training_never_reads_a_test_split(trained):
    _, touched = trained
    for name, splits in touched.items():
        assert splits and not {"test", "test_ood"} & splits, (name, splits)


def test_test_rows_do_not_change_training(tiny, tmp_path):
    """Scrambling every test row (features and labels) leaves the trained weights bit-identical."""
    rng = np.random.default_rng(1)
    test = tiny.split == "test"
    feats = {m: x.copy() for m, x in tiny.feats.items()}
    for m in feats:
        feats[m][test] = rng.normal(0, 50, feats[m][test].shape).astype(np.float32) * (feats[m][test] != 0)
    y = tiny.y.copy()
    y[test] = rng.integers(0, tiny.n_classes, test.sum())
    other = MMDataset(tiny.name, tiny.modalities, feats, tiny.lengths, y, tiny.split, tiny.ids, tiny.classes)
    for name in ("mean_fill", "mmin"):
        a, _ = train(name, tiny, tmp_path / f"{name}_a")
        b, _ = train(name, other, tmp_path / f"{name}_b")
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(va, vb), (name, k)


def test_mean_fill_uses_train_means(trained, tiny):
    method = trained[0]["mean_fill"][0]
    assert method.fill == "mean"
    train_rows = tiny.split == "train"
    for m in tiny.modalities:
        real = np.arange(tiny.feats[m].shape[1])[None] < tiny.lengths[m][:, None]
        want = tiny.feats[m][train_rows][real[train_rows]].mean(0)
        every = tiny.feats[m][real].mean(0)
        np.testing.assert_allclose(method.fill_policy.means[m], want, rtol=1e-4, atol=1e-5)
        assert not np.allclose(want, every, atol=1e-4)
    # a missing modality is seen as its train mean, so the fill changes the prediction
    batch = tiny.subset("valid").batch(np.arange(32))
    from mmlab.missing import FixedPattern, ZeroFill, mask_batch

    pad = {m: batch.pad_mask[m].numpy() for m in batch.modalities}
    masks = FixedPattern(("T",))(pad, batch.modalities, np.random.default_rng(0))
    with torch.no_grad():
        mean_in = method.predict_logits(mask_batch(batch, masks, method.fill_policy).for_eval())
        zero_in = method.predict_logits(mask_batch(batch, masks, ZeroFill()).for_eval())
    assert not torch.allclose(mean_in, zero_in)


def test_full_zero_trains_on_complete_data_only(trained):
    method = trained[0]["full_zero"][0]
    assert method.cfg.train_on == "full" and method.cfg.validate_on == "full" and method.fill == "zero"


def test_mmin_student_starts_from_teacher(tiny, tmp_path):
    seed_everything(0)
    method = make_method("mmin", tiny, ["--pretrain.epochs=1", "--train.epochs=0"])
    Trainer(method, tiny, tmp_path, TrainConfig(progress=False)).fit()
    for (k, a), b in zip(method.teacher.state_dict().items(), method.encoders.state_dict().values()):
        assert torch.equal(a, b), k


def test_cra_residual_cascade():
    torch.manual_seed(0)
    cra = CascadedResidualAE(12, (8, 4), n_blocks=3)
    x = torch.randn(5, 12)
    out, z = cra(x)
    assert out.shape == (5, 12) and z.shape == (5, 12) and cra.d_latent == 12
    # by hand: x_k = x_{k-1} + delta_{k-1}
    run, delta = x, torch.zeros_like(x)
    for block in cra.blocks:
        run = run + delta
        delta, _ = block(run)
    torch.testing.assert_close(out, run + delta)


@pytest.mark.parametrize("name", BASELINES)
def test_paper_preset_builds(tiny, name):
    method = make_method(name, tiny, preset="paper")
    assert method.cfg.encoder.d_out == 128


def test_bad_config_names_the_field(tiny):
    with pytest.raises(ConfigError, match="fill"):
        make_method("zero_fill", tiny, ["--fill=median"])
    with pytest.raises(ConfigError, match="n_blocks"):
        make_method("cra", tiny, ["--n_blocks=0"])
    with pytest.raises(ConfigError, match="mse_weight"):
        make_method("mmin", tiny, ["--mse_weight=-1"])


@pytest.mark.parametrize("name", ["zero_fill", "full_zero", "ae", "mmin"])
def test_mean_skip_wraps_every_sequence_encoder_by_default(name, tiny):
    """The CPU default wraps every LSTM / TextCNN encoder in MeanSkip (docs/gap_to_oracle.md §10);
    --encoder.mean_skip=false and the paper preset (MMIN's encoders) leave them unwrapped."""
    from mmlab.nn.encoders import LSTMMaxPool, MeanSkip, TextCNN

    def counts(method):
        mods = list(method.modules())
        return sum(isinstance(m, (LSTMMaxPool, TextCNN)) for m in mods), sum(isinstance(m, MeanSkip) for m in mods)

    n_seq, n_skip = counts(make_method(name, tiny, []))
    assert n_seq >= 3 and n_skip == n_seq  # tiny: LSTM for A and V, TextCNN for T
    assert counts(make_method(name, tiny, ["--encoder.mean_skip=false"]))[1] == 0
    assert counts(make_method(name, tiny, preset="paper"))[1] == 0

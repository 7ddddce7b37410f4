"""``pooled_linear`` (mmlab/methods/pooled_linear.py): a per-pattern logistic regression on pooled
frame statistics. Near the Bayes oracle on `synthetic`, one model per pattern, C chosen on
valid (never test), observed frames only, clear config errors, checkpoints that round-trip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mmlab.data import load_dataset
from mmlab.data.dataset import MMDataset, from_arrays
from mmlab.errors import ConfigError, DataError
from mmlab.evaluate import evaluate, oracle_table, rate_conditions
from mmlab.methods import make_method, method_names
from conftest import splits_read
from mmlab.train import TrainConfig, Trainer, load_checkpoint


@pytest.fixture(scope="module")
def synth() -> MMDataset:
    return load_dataset("synthetic")


@pytest.fixture(scope="module")
def fitted(synth, tmp_path_factory):
    """pooled_linear trained through the Trainer on default `synthetic`, with a spy on the splits
    every dataset row read during training belongs to (half the test rows become test_ood)."""
    split = synth.split.astype("<U16")
    test_rows = np.flatnonzero(split == "test")
    split[test_rows[::2]] = "test_ood"
    data = replace(synth, split=split)
    out_dir = tmp_path_factory.mktemp("pooled_linear")
    method = make_method("pooled_linear", data, seed=1111)
    with splits_read() as touched:
        summary = Trainer(method, data, out_dir, TrainConfig(seed=1111, progress=False)).fit()
    return method, summary, out_dir, touched


def six_average(rows) -> float:
    return next(r["accuracy"] for r in rows if r["condition"] == "Average")


def test_registered():
    assert "pooled_linear" in method_names()


def test_close_to_the_oracle_and_far_above_majority(fitted, synth):
    method, _, _, _ = fitted
    rows = evaluate(method, synth, seed=1111)
    acc = {r["condition"]: r["accuracy"] for r in rows}
    oracle = {r["condition"]: r["accuracy"] for r in oracle_table(synth)}
    oracle_six = np.mean([v for k, v in oracle.items() if k != "full"])
    majority = np.bincount(synth.y[synth.split == "test"]).max() / (synth.split == "test").sum()
    assert abs(acc["Average"] - oracle_six) < 0.02
    assert abs(acc["full"] - oracle["full"]) < 0.02
    assert acc["Average"] > majority + 0.3
    # more modalities help, as they do for the oracle
    assert acc["full"] > max(acc["{AV}"], acc["{AT}"], acc["{VT}"]) > max(acc["{A}"], acc["{V}"])


def test_log_probabilities_and_arbitrary_patterns(fitted, synth):
    """predict_logits gives log-probabilities; per-sample patterns (the rate protocol) work."""
    method, _, _, _ = fitted
    batch = synth.subset("test").batch(np.arange(64))
    lp = method.predict_logits(batch)
    assert lp.shape == (64, synth.n_classes) and lp.dtype == torch.float32
    torch.testing.assert_close(lp.exp().sum(1), torch.ones(64), atol=1e-5, rtol=0)
    rows = evaluate(method, synth, conditions=rate_conditions(), seed=1111)
    by = {r["condition"]: r["accuracy"] for r in rows}
    assert by["rate=0"] > by["rate=0.5"] > 0.5


def test_one_model_per_pattern(fitted, synth):
    method, _, _, _ = fitted
    assert len(method.patterns) == 7 and bool(method.fitted.all())
    cols = method.blocks
    a = method.patterns.index(("A",))
    av = method.patterns.index(("A", "V"))
    # {A}'s model reads A only; {AV}'s reads A and V with other weights on A
    assert method.coef[a][:, cols["V"] + cols["T"]].abs().max() == 0
    assert method.coef[a][:, cols["A"]].abs().max() > 0
    assert method.coef[av][:, cols["V"]].abs().max() > 0
    assert not torch.allclose(method.coef[a][:, cols["A"]], method.coef[av][:, cols["A"]])
    # the same rows predicted under {A} and under {AV} differ
    test = synth.subset("test")
    batch = test.batch(np.arange(200))
    only_a = replace(batch, avail=batch.avail & torch.tensor([True, False, False]),
                     obs_mask={m: batch.obs_mask[m] & (m == "A") for m in batch.modalities})
    with_v = replace(batch, avail=batch.avail & torch.tensor([True, True, False]),
                     obs_mask={m: batch.obs_mask[m] & (m != "T") for m in batch.modalities})
    assert (method.predict_logits(only_a).argmax(1) != method.predict_logits(with_v).argmax(1)).any()


def test_training_reads_no_test_split(fitted):
    _, _, _, touched = fitted
    assert touched and touched <= {"train", "valid"}


def test_c_chosen_on_valid(fitted, synth):
    """The recorded choice is the first best valid score of its pattern, the recorded score is the
    chosen model's accuracy on the valid rows under that pattern, and the run folder has it."""
    method, summary, out_dir, _ = fitted
    grid = method.cfg.c_grid
    valid = synth.subset("valid")
    for p, mods in enumerate(method.patterns):
        scores = method.valid_scores[p].tolist()
        assert method.chosen_c[p].item() == grid[int(np.argmax(scores))]
        batch = valid.batch()
        keep = torch.tensor([m in mods for m in batch.modalities])
        masked = replace(batch, avail=batch.avail & keep,
                         obs_mask={m: batch.obs_mask[m] & (m in mods) for m in batch.modalities})
        acc = (method.predict_logits(masked).argmax(1) == masked.y).double().mean().item()
        assert acc == pytest.approx(max(scores), abs=1e-9)
    assert summary["calibration"]["C"]["full"] == method.chosen_c[-1].item()
    assert (out_dir / "calibration.json").exists()


@pytest.mark.parametrize("grid, metric", [([1e-6, 1.0], "accuracy"), ([1.0, 1e-6], "accuracy"),
                                          ([1e-6, 1.0], "loss"), ([1.0, 1e-6], "macro_recall")])
def test_selection_rejects_a_useless_c(synth, grid, metric):
    """C = 1e-6 shrinks every weight to ~0 (the class prior): valid must reject it, in either order."""
    method = make_method("pooled_linear", synth, {"c_grid": grid, "select_metric": metric})
    choices = method.fit(synth.training_view())
    assert set(choices["C"].values()) == {1.0}


def _batch_with_dropped_frames(synth: MMDataset, n: int = 32, seed: int = 0):
    test = synth.subset("test")
    batch = test.batch(np.arange(n))
    g = torch.Generator().manual_seed(seed)
    obs, feats = {}, {}
    for m in batch.modalities:
        keep = batch.pad_mask[m] & (torch.rand(batch.pad_mask[m].shape, generator=g) < 0.5)
        keep[:, 0] = batch.pad_mask[m][:, 0]  # at least one observed frame per row
        obs[m] = keep
        feats[m] = torch.where(keep[..., None], batch.feats[m], torch.full_like(batch.feats[m], 1e6))
    return replace(batch, feats=feats, obs_mask=obs)


def test_pools_observed_frames_only(synth):
    method = make_method("pooled_linear", synth, ["--moments=3"])
    batch = _batch_with_dropped_frames(synth)
    got = method.pooled(batch).numpy()
    start = 0
    for m in batch.modalities:
        d = synth.dims[m]
        for i in range(batch.size):
            x = batch.feats[m][i][batch.obs_mask[m][i]].double().numpy()
            mu = x.mean(0)
            want = np.concatenate([mu, ((x - mu) ** 2).mean(0), ((x - mu) ** 3).mean(0)])
            np.testing.assert_allclose(got[i, start:start + 3 * d], want, rtol=1e-9, atol=1e-9)
        start += 3 * d


def test_missing_frames_and_modalities_in_prediction(fitted, synth):
    method, _, _, _ = fitted
    batch = _batch_with_dropped_frames(synth)
    lp = method.predict_logits(batch)
    # what sits in an unobserved frame does not matter
    other = replace(batch, feats={m: torch.where(batch.obs_mask[m][..., None], batch.feats[m], -batch.feats[m])
                                  for m in batch.modalities})
    torch.testing.assert_close(method.predict_logits(other), lp, atol=0, rtol=0)
    # available but with no observed frame = missing; nothing observed = the train prior
    no_t = replace(batch, obs_mask={**batch.obs_mask, "T": torch.zeros_like(batch.obs_mask["T"])})
    t_off = replace(batch, avail=batch.avail & torch.tensor([True, True, False]))
    t_off = replace(t_off, obs_mask={**t_off.obs_mask, "T": torch.zeros_like(t_off.obs_mask["T"])})
    torch.testing.assert_close(method.predict_logits(no_t), method.predict_logits(t_off), atol=0, rtol=0)
    nothing = replace(batch, avail=torch.zeros_like(batch.avail))
    prior = np.bincount(synth.y[synth.split == "train"]) / (synth.split == "train").sum()
    torch.testing.assert_close(method.predict_logits(nothing).exp(),
                               torch.tensor(prior, dtype=torch.float32).expand(batch.size, -1), atol=1e-6, rtol=0)


def test_vector_modalities_higher_moments_are_degenerate():
    """T = 1: the 2nd/3rd central moments are all zero, so moments=3 predicts as moments=1."""
    rng = np.random.default_rng(0)
    n, y = 400, rng.integers(0, 3, 400)
    feats = {"a": rng.normal(size=(n, 5)) + y[:, None] * 0.5, "b": rng.normal(size=(n, 4)) - y[:, None] * 0.3}
    data = from_arrays("vec", feats, y)
    out = []
    for k in (1, 3):
        method = make_method("pooled_linear", data, [f"--moments={k}"])
        method.fit(data.training_view())
        out.append(method.predict_logits(data.subset("test").batch()))
    torch.testing.assert_close(out[0], out[1], atol=1e-6, rtol=0)
    assert (out[0].argmax(1).numpy() == data.y[data.split == "test"]).mean() > 0.5


@pytest.mark.parametrize("override, field", [
    ("--moments=4", "moments"), ("--moments=0", "moments"), ("--moments=1.5", "moments"), ("--c_grid=[]", "c_grid"),
    ("--c_grid=[0.1,-1]", "c_grid"), ("--select_metric=f1", "select_metric"), ("--max_iter=0", "max_iter"),
])
def test_bad_config(synth, override, field):
    with pytest.raises(ConfigError, match=f"{field}: expected"):
        make_method("pooled_linear", synth, [override])


def test_too_many_patterns_is_a_clear_error():
    six = load_dataset("handwritten")  # 6 views: 63 patterns
    with pytest.raises(ConfigError, match=r"max_patterns.*63 availability patterns"):
        make_method("pooled_linear", six, ["--max_patterns=31"])


def test_checkpoint_round_trip_and_resume(fitted, synth):
    method, _, out_dir, _ = fitted
    batch = _batch_with_dropped_frames(synth, seed=3)
    want = method.predict_logits(batch)
    ckpt = load_checkpoint(out_dir / "checkpoints" / "fit" / "best.pt")  # weights_only=True
    fresh = make_method("pooled_linear", synth)
    fresh.load_state_dict(ckpt["model"])
    torch.testing.assert_close(fresh.predict_logits(batch), want, atol=0, rtol=0)
    # resume: the finished stage is loaded, not refitted into something else
    again = make_method("pooled_linear", synth, seed=1111)
    Trainer(again, synth, out_dir, TrainConfig(seed=1111, progress=False)).fit()
    torch.testing.assert_close(again.predict_logits(batch), want, atol=0, rtol=0)
    # deterministic: an independent fit gives the same model
    other = make_method("pooled_linear", synth)
    other.fit(synth.training_view())
    torch.testing.assert_close(other.coef, method.coef, atol=0, rtol=0)


def test_natural_missingness_fits_on_the_rows_that_have_the_modalities():
    """A natively missing modality is not a zero observation: its columns are standardised with
    the train rows that have it, and a pattern's model is fitted on the rows that have all of
    its modalities (before, the rows lacking A entered both as pooled zeros)."""
    tiny = load_dataset("synthetic", preset="tiny")
    lacks_a = np.random.default_rng(0).random(len(tiny)) < 0.4
    data = replace(tiny, avail={"A": ~lacks_a}, info={})
    method = make_method("pooled_linear", data, seed=1)
    method.fit(data)
    train_with_a = data.subset("train").take(np.flatnonzero(~lacks_a[data.split == "train"]))
    pooled_a = method.pooled(train_with_a.batch()).numpy()[:, method.blocks["A"]]
    assert np.allclose(method.feat_mean.numpy()[method.blocks["A"]], pooled_a.mean(0))
    assert np.allclose(method.feat_scale.numpy()[method.blocks["A"]], pooled_a.std(0))
    one_class = replace(tiny, y=np.where(tiny.split == "train", 0, tiny.y), info={})
    with pytest.raises(DataError, match="hold one class"):
        make_method("pooled_linear", one_class).fit(one_class)

"""The Trainer: learning, checkpoints, atomic writes, resume, frozen parts, split hygiene, errors."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import mmlab.utils
from mmlab.data import MMDataset, from_arrays
from mmlab.errors import ConfigError, DataError
from mmlab.methods.base import Method
from mmlab.methods.reference import ZeroFillLateFusion, ZeroFillLateFusionConfig
from mmlab.nn.encoders import EncoderConfig
from mmlab.evaluate import validate_classifier
from mmlab.methods.base import Validation
from mmlab.missing import random_mask_batch
from mmlab.train import Stage, TrainConfig, Trainer, TrainingError, load_checkpoint, save_checkpoint



def toy_data(n: int = 240, seed: int = 0) -> MMDataset:
    """3 classes, 3 modalities of variable length (A, V: LSTM; T: TextCNN), class signal in the means."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    feats, lens = {}, {}
    for m, (t, d) in {"A": (10, 6), "V": (7, 5), "T": (6, 7)}.items():
        mu = rng.normal(0, 1, (3, d))
        x = rng.normal(0, 1.5, (n, t, d)) + mu[y][:, None, :]
        ln = rng.integers(1, t + 1, n)
        x[np.arange(t)[None] >= ln[:, None]] = 0
        feats[m], lens[m] = x, ln
    return from_arrays("toy", feats, y, lengths=lens)


RUN = TrainConfig(epochs=4, batch_size=32, lr=3e-3, patience=2, lr_schedule="mmin_linear", grad_clip=5.0, progress=False)
SMALL = ZeroFillLateFusionConfig(encoder=EncoderConfig(d_out=16, filters=8, hidden=16), head_hidden=16, train=RUN)
QUIET = TrainConfig(progress=False)  # the Trainer's run-level fields; the stage's own config sets the rest


def small_model(data: MMDataset, init_seed: int = 0, **train) -> ZeroFillLateFusion:
    torch.manual_seed(init_seed)
    cfg = replace(SMALL, train=replace(RUN, **train)) if train else SMALL
    return ZeroFillLateFusion(cfg, data)


class TwoStage(ZeroFillLateFusion):
    """Stage "fusion" trains everything; stage "heads" retrains the heads on frozen encoders."""

    name = "two_stage_test"

    def stages(self, data):
        (fusion,) = super().stages(data)
        self.seen_training: list[bool] = []

        def heads_loss(batch, rng):
            self.seen_training.append(self.encoders.training)
            return fusion.loss(batch, rng)

        heads_cfg = TrainConfig(epochs=3, batch_size=32, lr=2e-3, patience=2, lr_schedule="mmin_linear")
        return [fusion, Stage("heads", [self.heads], heads_loss, fusion.validate, config=heads_cfg)]



def csv_rows(path):
    with open(path) as fh:
        return list(csv.reader(fh))


def state(method):
    return {k: v.clone() for k, v in method.state_dict().items()}


# ----------------------------------------------------------------------------- learning
def test_reference_model_learns(tmp_path):
    data = toy_data(300)
    model = small_model(data, epochs=8, patience=5)
    res = Trainer(model, data, tmp_path, QUIET).fit()
    assert res["fusion"]["best_metric"] > 0.6  # six-pattern mean macro recall; chance = 1/3
    test = data.subset("test")
    model.eval()
    with torch.no_grad():
        pred = model.predict_logits(test.batch()).argmax(1).numpy()
    assert np.mean(pred == test.y) > 0.7  # full input, unseen rows
    header, *rows = csv_rows(tmp_path / "metrics.csv")
    assert header == ["time", "stage", "epoch", "split", "metric", "value"]
    assert {(r[3], r[4]) for r in rows} >= {("train", "loss"), ("valid", "macro_recall"), ("valid", "accuracy")}


def test_random_mask_batch_and_late_fusion(tmp_path):
    from mmlab.missing import FixedPattern

    data = toy_data(60)
    model = small_model(data).eval()
    batch = data.batch(np.arange(8))
    masked = random_mask_batch(batch, FixedPattern(("A",)), "zero", np.random.default_rng(0))
    assert masked.avail[:, 0].all() and not masked.avail[:, 1:].any()
    assert torch.all(masked.feats["V"] == 0) and torch.equal(masked.complete["V"], batch.feats["V"])
    with torch.no_grad():  # with only A available the fused logits are A's own
        torch.testing.assert_close(model.predict_logits(masked), model.modality_logits(masked)[:, 0])


# ----------------------------------------------------------------------------- checkpoints
def _plain(x, where="ckpt"):
    if isinstance(x, dict):
        for k, v in x.items():
            assert isinstance(k, (str, int)), where
            _plain(v, f"{where}.{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            _plain(v, f"{where}[{i}]")
    else:
        assert x is None or isinstance(x, (bool, int, float, str, torch.Tensor)), (where, type(x))


def test_checkpoints_are_plain_dicts(tmp_path):
    data = toy_data(120)
    Trainer(small_model(data), data, tmp_path, QUIET).fit()
    last = torch.load(tmp_path / "checkpoints/fusion/last.pt", weights_only=True)
    best = torch.load(tmp_path / "checkpoints/fusion/best.pt", weights_only=True)
    for ck in (last, best):
        _plain(ck)
    assert last["done"] is True and last["stage"] == "fusion"
    assert {"model", "optimizer", "config", "epoch", "best_metric", "best_state", "bad_epochs", "rng",
            "mmlab_version"} <= set(last)
    assert last["config"]["lr"] == RUN.lr
    assert all(torch.equal(best["model"][k], last["best_state"][k]) for k in best["model"])
    assert (tmp_path / "config.json").exists()


def test_atomic_checkpoint_write(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})

    def broken_save(obj, f, *a, **k):
        f.write(b"partial bytes")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    monkeypatch.undo()

    def broken_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(mmlab.utils.os, "replace", broken_replace)
    with pytest.raises(DataError, match=r"last.pt: cannot write \(rename failed\); earlier files are untouched"):
        save_checkpoint(path, {"epoch": 3, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]  # no temp file left behind
    assert load_checkpoint(path)["epoch"] == 1


def test_load_checkpoint_refuses_pickled_objects(tmp_path):
    buf = io.BytesIO()
    torch.save({"config": RUN}, buf)  # a dataclass: not a plain dict
    (tmp_path / "bad.pt").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


# ----------------------------------------------------------------------------- resume
class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    torch.set_num_threads(1)
    data = toy_data(150)
    out = tmp_path_factory.mktemp("full")
    torch.manual_seed(0)
    model = TwoStage(SMALL, data)
    res = Trainer(model, data, out, QUIET).fit()
    return data, res, state(model), csv_rows(out / "metrics.csv")


@pytest.mark.parametrize("seconds", [0.0, 1e9], ids=["checkpoint-every-epoch", "checkpoint-first-epoch-only"])
@pytest.mark.parametrize("kill_at", [("fusion", 2), ("fusion", 4), ("heads", 1)])
def test_resume_is_bit_identical(tmp_path, uninterrupted, kill_at, seconds):
    """Kill after an epoch, resume with another init: the same weights and the same metrics.csv,
    whether last.pt was written every epoch or (``checkpoint_seconds`` not yet reached) only
    after the stage's first epoch; epochs recomputed after the checkpoint are not logged twice."""
    data, res_full, state_full, rows_full = uninterrupted
    run = TrainConfig(progress=False, checkpoint_seconds=seconds)

    def killer(stage, epoch, metrics):
        if (stage, epoch) == kill_at:
            raise Crash()

    torch.manual_seed(0)  # the same init as the uninterrupted run
    with pytest.raises(Crash):
        Trainer(TwoStage(SMALL, data), data, tmp_path, run, on_epoch_end=killer).fit()
    before = (tmp_path / "metrics.csv").read_text()
    last = load_checkpoint(tmp_path / "checkpoints" / kill_at[0] / "last.pt")
    assert last["epoch"] == (kill_at[1] if seconds == 0 else 1) and not last["done"]

    torch.manual_seed(123)  # a different init and global RNG state: everything must come from the checkpoints
    model = TwoStage(SMALL, data)
    res = Trainer(model, data, tmp_path, run).fit()

    assert res == res_full
    resumed = state(model)
    assert resumed.keys() == state_full.keys()
    assert all(torch.equal(resumed[k], state_full[k]) for k in resumed)
    after = (tmp_path / "metrics.csv").read_text()
    assert after.startswith(before)  # append-only
    strip = lambda rows: [r[1:] for r in rows]  # noqa: E731  (drop the time column)
    assert strip(csv_rows(tmp_path / "metrics.csv")) == strip(rows_full)

    # a finished run resumes to the same result without training again
    res2 = Trainer(TwoStage(SMALL, data), data, tmp_path, QUIET).fit()
    assert res2 == res_full and (tmp_path / "metrics.csv").read_text() == after


def test_different_config_refuses_existing_run(tmp_path):
    data = toy_data(90)
    Trainer(small_model(data, epochs=1), data, tmp_path, QUIET).fit()
    Trainer(small_model(data, epochs=1), data, tmp_path, TrainConfig(progress=True)).fit()  # progress may change
    with pytest.raises(ConfigError, match=r"config.json.*differs in method.config.train.epochs, stages.fusion.epochs\)"):
        Trainer(small_model(data, epochs=2), data, tmp_path, QUIET).fit()
    with pytest.raises(ConfigError, match=r"config.json.*differs in stages.fusion.seed, train.seed\)"):
        Trainer(small_model(data, epochs=1), data, tmp_path, TrainConfig(progress=False, seed=3)).fit()
    # a key the stored config lacks is named even when its new value is null (a field added since)
    stored = json.loads((tmp_path / "config.json").read_text())
    stored["method"]["config"]["added_since"] = None
    (tmp_path / "config.json").write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match=r"differs in method.config.added_since\)"):
        Trainer(small_model(data, epochs=1), data, tmp_path, QUIET).fit()


# ----------------------------------------------------------------------------- frozen parts, splits
def test_frozen_parts_do_not_change(tmp_path, uninterrupted):
    data = uninterrupted[0]
    model = TwoStage(SMALL, data)
    snap = {}
    model_stages = model.stages

    def stages(d):
        s = model_stages(d)
        s[0].on_end = lambda: snap.update(state(model))
        return s

    model.stages = stages
    Trainer(model, data, tmp_path, QUIET).fit()
    final = state(model)
    enc = [k for k in final if k.startswith("encoders.")]
    heads = [k for k in final if k.startswith("heads.")]
    assert enc and all(torch.equal(final[k], snap[k]) for k in enc)
    assert any(not torch.equal(final[k], snap[k]) for k in heads)
    assert model.seen_training and not any(model.seen_training)  # frozen encoders ran in eval()
    assert all(p.requires_grad for p in model.parameters())  # flags restored after the stage


def test_trainer_never_reads_test_rows(tmp_path, monkeypatch):
    data = toy_data(90)
    test_ids = set(data.ids[data.split == "test"])
    seen: set[str] = set()
    orig_batch, orig_take = MMDataset.batch, MMDataset.take

    def spy_batch(self, idx=None, device="cpu"):
        seen.update(self.ids if idx is None else self.ids[np.asarray(idx)])
        return orig_batch(self, idx, device)

    def spy_take(self, idx):
        seen.update(self.ids[np.asarray(idx)])
        return orig_take(self, idx)

    monkeypatch.setattr(MMDataset, "batch", spy_batch)
    monkeypatch.setattr(MMDataset, "take", spy_take)
    Trainer(small_model(data, epochs=1), data, tmp_path, QUIET).fit()
    assert seen and not (seen & test_ids)


def test_stage_data_must_be_train_rows(tmp_path):
    data = toy_data(60)
    model = small_model(data)
    (stage,) = model.stages(data)
    stage.data = data.subset("valid")
    model.stages = lambda d: [stage]
    with pytest.raises(DataError, match="Stage.data"):
        Trainer(model, data, tmp_path, TrainConfig(epochs=1, progress=False)).fit()
    with pytest.raises(DataError, match="valid"):
        validate_classifier(model, data.subset("test"))


def test_validation_and_test_evaluation_share_one_prediction_loop():
    """`validate_classifier` over "six"/"seven" is the mean of what `mmlab.evaluate.evaluate`
    reports for the same patterns on the same rows, for a method and for a bare logits function."""
    from mmlab.evaluate import evaluate, pattern_conditions

    data = toy_data(90)
    model = small_model(data).eval()
    valid = data.subset("valid")
    rows = evaluate(model, valid, split=None, conditions=pattern_conditions(data.modalities), seed=0)
    acc = {r["condition"]: r["accuracy"] for r in rows}
    six = [v for k, v in acc.items() if k not in ("full", "Average")]
    assert validate_classifier(model, valid, "six")["accuracy"] == pytest.approx(np.mean(six))
    assert validate_classifier(model, valid, "seven")["accuracy"] == pytest.approx(np.mean(six + [acc["full"]]))
    assert validate_classifier(model.predict_logits, valid, "full")["accuracy"] == pytest.approx(acc["full"])
    with pytest.raises(ConfigError, match="patterns"):
        validate_classifier(model, valid, "all")


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, name", [
    ({"epochs": -1}, "epochs"), ({"select_metric": "f2"}, "select_metric"), ({"lr": 0.0}, "lr"),
    ({"lr_schedule": "cosine"}, "lr_schedule"), ({"batch_size": 0}, "batch_size"), ({"patience": -2}, "patience"),
])
def test_bad_config(kwargs, name):
    with pytest.raises(ConfigError, match=f"TrainConfig.{name}"):
        TrainConfig(**kwargs)


def test_lr_schedule():
    cfg = TrainConfig(epochs=10, lr_schedule="mmin_linear")
    f = [cfg.lr_factor(e) for e in range(10)]
    assert f[:4] == [1.0] * 4 and all(a > b for a, b in zip(f[4:], f[5:])) and f[-1] > 0
    assert TrainConfig().lr_factor(7) == 1.0


class NaNMethod(Method):
    name = "nan"

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))

    def predict_logits(self, batch):
        return self.w.expand(batch.size, 3)

    def stages(self, data):
        def loss(batch, rng):
            return F.cross_entropy(self.predict_logits(batch), batch.y) * (float("nan") if self.w.sum() != 0 else 1.0), {}

        return [Stage("only", [self], loss, Validation())]


def test_nan_loss_names_stage_and_epoch(tmp_path):
    data = toy_data(60)
    with pytest.raises(TrainingError, match=r"stage 'only', epoch 1, batch 1"):
        Trainer(NaNMethod(), data, tmp_path, TrainConfig(epochs=2, batch_size=16, progress=False)).fit()


def test_unknown_select_metric_in_validation(tmp_path):
    data = toy_data(60)
    m = NaNMethod()
    (stage,) = m.stages(data)
    stage.loss = lambda b, r: (F.cross_entropy(m.predict_logits(b), b.y), {})
    stage.validate = Validation(kind="errors", errors=lambda fb: {"accuracy": fb.y.float()})
    stage.features = lambda b, split, g: {"y2": b.y}
    m.stages = lambda d: [stage]
    with pytest.raises(ConfigError, match="select_metric 'macro_recall'.*accuracy"):
        Trainer(m, data, tmp_path, TrainConfig(epochs=1, progress=False)).fit()


def test_test_options_tie_ignores_last_bit_rounding(tmp_path, monkeypatch):
    """Two settings whose valid accuracies are equal up to float summation order: the first
    (cheapest) is kept, as `Method.test_options` promises."""
    import mmlab.train

    data = toy_data()

    class Choosy(ZeroFillLateFusion):
        def test_options(self):
            return {"k": [1, 2, 3]}

        def set_test_options(self, k):
            self.k = k

    method = Choosy(ZeroFillLateFusionConfig(), data)
    scores = iter([0.3771428571428571, 0.37714285714285717, 0.2])
    monkeypatch.setattr(mmlab.train, "validate_classifier", lambda *a, **k: {"accuracy": next(scores)})
    chosen = Trainer(method, data, tmp_path / "run", TrainConfig(progress=False))._choose_test_options(data.subset("valid"))
    assert chosen["test_options"] == {"k": 1} and method.k == 1


# ----------------------------------------------------------------------------- Stage.state
class ScopedTwoStage(TwoStage):
    """`TwoStage` whose "heads" stage checkpoints the heads only (``Stage.state``)."""

    name = "scoped_two_stage_test"

    def stages(self, data):
        fusion, heads = super().stages(data)
        return [fusion, replace(heads, state=self.heads)]


def test_a_scoped_stage_checkpoints_its_part_and_resumes_bit_identically(tmp_path, uninterrupted):
    data, res_full, state_full, rows_full = uninterrupted

    def killer(stage, epoch, metrics):
        if (stage, epoch) == ("heads", 2):
            raise Crash()

    torch.manual_seed(0)
    run = TrainConfig(progress=False, checkpoint_seconds=0.0)
    with pytest.raises(Crash):
        Trainer(ScopedTwoStage(SMALL, data), data, tmp_path, run, on_epoch_end=killer).fit()
    last = load_checkpoint(tmp_path / "checkpoints" / "heads" / "last.pt")
    heads_keys = set(ScopedTwoStage(SMALL, data).heads.state_dict())
    assert set(last["model"]) == heads_keys == set(last["best_state"])  # the heads only, relative to them
    assert len(load_checkpoint(tmp_path / "checkpoints" / "fusion" / "last.pt")["model"]) > len(heads_keys)

    torch.manual_seed(123)  # another init: the weights must come from the checkpoints
    model = ScopedTwoStage(SMALL, data)
    assert Trainer(model, data, tmp_path, run).fit() == res_full
    resumed = state(model)
    assert all(torch.equal(resumed[k], state_full[k]) for k in state_full)
    torch.manual_seed(7)  # a finished run loads every stage's part again
    again = ScopedTwoStage(SMALL, data)
    Trainer(again, data, tmp_path, QUIET).fit()
    assert all(torch.equal(v, state_full[k]) for k, v in state(again).items())


def test_a_stage_state_outside_the_method_or_its_modules_is_refused(tmp_path):
    data = toy_data(90)

    class Outside(ZeroFillLateFusion):
        def stages(self, d):
            (fusion,) = super().stages(d)
            return [replace(fusion, state=torch.nn.Linear(2, 2))]

    class Narrow(TwoStage):
        def stages(self, d):
            fusion, heads = super().stages(d)
            return [replace(fusion, state=self.heads), heads]

    with pytest.raises(ConfigError, match="Stage.state is not a part of the method"):
        Trainer(Outside(SMALL, data), data, tmp_path / "a", QUIET).fit()
    with pytest.raises(ConfigError, match="Stage.state must hold every module of Stage.modules"):
        Trainer(Narrow(SMALL, data), data, tmp_path / "b", QUIET).fit()


def test_a_scoped_stage_reads_a_checkpoint_keyed_over_the_whole_method(tmp_path, uninterrupted):
    """Run folders written before ``Stage.state`` hold the whole method in every checkpoint: the
    stage's part is read from them."""
    data, res_full, state_full, _ = uninterrupted
    torch.manual_seed(0)
    Trainer(ScopedTwoStage(SMALL, data), data, tmp_path, QUIET).fit()
    path = tmp_path / "checkpoints" / "heads" / "last.pt"
    ckpt = load_checkpoint(path)
    whole = lambda part: {**{f"heads.{k}": v for k, v in part.items()},  # noqa: E731
                          **{k: v for k, v in state_full.items() if not k.startswith("heads.")}}
    ckpt["model"], ckpt["best_state"] = whole(ckpt["model"]), whole(ckpt["best_state"])
    save_checkpoint(path, ckpt)
    torch.manual_seed(5)
    model = ScopedTwoStage(SMALL, data)
    assert Trainer(model, data, tmp_path, QUIET).fit() == res_full
    assert all(torch.equal(v, state_full[k]) for k, v in state(model).items())

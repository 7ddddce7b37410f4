"""The method contract (`mmlab.methods.base`): what a method declares and the one Trainer carries
out: parameter groups, a two-step ``step`` hook, cached features of frozen parts, declared
validation, stages without trainable parameters, ``calibrate`` on valid, the run seed, and the
layering that keeps methods below the trainer and the evaluator."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mmlab.errors import ConfigError
from mmlab.methods.base import FeatureBatch, Method, Stage, TrainConfig, Validation
from mmlab.train import Trainer

from test_train import toy_data

ROOT = Path(__file__).resolve().parents[1]



class Pooled(Method):
    """Mean-pooled frames -> a frozen "encoder" (Linear) -> a head; small enough to reason about."""

    name = "pooled_test"

    def __init__(self, data, **stage):
        super().__init__()
        torch.manual_seed(0)
        d = sum(data.dims.values())
        self.mods = data.modalities
        self.encoder = nn.Linear(d, 8)
        self.head = nn.Linear(8, data.n_classes)
        self.stage_kw = stage
        self.calls = {"features": 0, "steps": 0, "calibrate": None}

    def embed(self, batch):
        pooled = [(batch.feats[m] * batch.obs_mask[m][..., None]).sum(1) / batch.obs_mask[m].sum(1).clamp_min(1)[:, None]
                  for m in self.mods]
        return self.encoder(torch.cat(pooled, -1))

    def predict_logits(self, batch):
        return self.head(self.embed(batch))

    def stages(self, data):
        return [Stage("head", [self.head], **self.stage_kw, config=TrainConfig(epochs=3, batch_size=16, lr=1e-2))]


def fit(method, data, out, **cfg):
    return Trainer(method, data, out, TrainConfig(progress=False, seed=7, **cfg)).fit()


def test_param_groups_set_their_own_lr_and_must_cover_every_parameter(tmp_path):
    data = toy_data(90)
    seen = {}

    def groups(params):
        seen["n"] = len(params)
        return [{"params": [params[0]], "lr": 1e-4, "weight_decay": 1e-3}, {"params": params[1:]}]

    def loss(batch, rng):
        return F.cross_entropy(m.predict_logits(batch), batch.y), {}

    m = Pooled(data, loss=loss, param_groups=groups)
    fit(m, data, tmp_path / "ok")
    assert seen["n"] == 2  # weight and bias of the head only: the encoder is frozen
    ck = torch.load(tmp_path / "ok" / "checkpoints" / "head" / "last.pt", weights_only=True)
    lrs = [g["lr"] for g in ck["optimizer"]["param_groups"]]
    assert lrs == [1e-4, 1e-2] and ck["optimizer"]["param_groups"][0]["weight_decay"] == 1e-3

    bad = Pooled(data, loss=loss, param_groups=lambda params: [{"params": params[:1]}])
    with pytest.raises(ConfigError, match="param_groups must hold every trainable parameter"):
        fit(bad, data, tmp_path / "bad")


def test_step_hook_takes_two_optimiser_steps_per_batch(tmp_path):
    """CIDer's MSSD shape: a step on the complete input, then one on the masked input with the
    first pass's outputs detached; the Trainer only hands over the optimiser."""
    data = toy_data(90)

    def step(batch, rng, optimizers):
        (opt,) = optimizers
        teacher = m.predict_logits(batch)
        opt.zero_grad()
        F.cross_entropy(teacher, batch.y).backward()
        opt.step()
        student = m.head(m.embed(batch) * 0.5)
        loss = F.kl_div(F.log_softmax(student, -1), F.softmax(teacher.detach(), -1), reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        opt.step()
        m.calls["steps"] += 2
        return {"loss": float(loss.detach()), "kl": float(loss.detach())}

    m = Pooled(data, step=step)
    res = fit(m, data, tmp_path)
    n_batches = int(np.ceil((data.split == "train").sum() / 16))
    assert m.calls["steps"] == 2 * n_batches * res["head"]["epochs_run"]
    logged = (tmp_path / "metrics.csv").read_text()
    assert ",train,kl," in logged and ",train,loss," in logged
    with pytest.raises(ConfigError, match="exactly one of loss= or step=, got both"):
        Stage("x", [m.head], loss=lambda b, r: None, step=step)


def test_features_of_frozen_parts_are_computed_once_and_validated_through_evaluate(tmp_path):
    data = toy_data(90)

    def features(batch, split, gen):
        m.calls["features"] += batch.size
        return {"z": m.embed(batch), "noise": torch.randn(batch.size, 2, generator=gen, device=batch.device)}

    def loss(fb, rng):
        assert isinstance(fb, FeatureBatch) and set(fb) == {"z", "noise", "y", "index"}
        return F.cross_entropy(m.head(fb["z"]), fb.y), {}

    m = Pooled(data, loss=loss, features=features, validate=Validation(kind="features", logits=lambda fb: m.head(fb["z"])))
    res = fit(m, data, tmp_path / "a")
    n_train, n_valid = int((data.split == "train").sum()), int((data.split == "valid").sum())
    assert res["head"]["epochs_run"] == 3
    assert m.calls["features"] == n_train + n_valid  # once for the stage, not once per epoch
    assert set(res["head"]["val"]) == {"accuracy", "macro_recall", "f1_weighted", "loss"}
    # the same run seed gives the same feature noise, hence the same weights
    m2 = Pooled(data, loss=loss, features=features, validate=Validation(kind="features", logits=lambda fb: m2.head(fb["z"])))
    m = m2
    fit(m2, data, tmp_path / "b")
    first = torch.load(tmp_path / "a" / "checkpoints" / "head" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(first[k], v) for k, v in m2.state_dict().items())


def test_validation_declaration_errors():
    with pytest.raises(ConfigError, match="needs logits"):
        Validation(kind="features")
    with pytest.raises(ConfigError, match="patterns"):
        Validation(patterns="eight")
    with pytest.raises(ConfigError, match="reads cached features"):
        Stage("x", [], loss=lambda b, r: None, validate=Validation(kind="errors", errors=lambda fb: {}))


def test_stage_without_trainable_parameters_runs_its_on_end(tmp_path):
    data = toy_data(90)
    ran = []

    class Stats(Pooled):
        def stages(self, data):
            return [Stage("stats", [], on_end=lambda: ran.append(True))]

    res = fit(Stats(data), data, tmp_path)
    assert ran == [True] and res["stats"]["epochs_run"] == 1


def test_calibrate_sees_the_valid_split_only_and_is_recorded(tmp_path):
    data = toy_data(90)

    class Calibrated(Pooled):
        def calibrate(self, valid):
            self.calls["calibrate"] = sorted(set(valid.split.tolist()))
            return {"tau": 0.25, "chosen_on": "valid"}

    m = Calibrated(data, loss=lambda b, r: (F.cross_entropy(m.predict_logits(b), b.y), {}))
    res = fit(m, data, tmp_path)
    assert m.calls["calibrate"] == ["valid"]
    assert res["calibration"]["tau"] == 0.25
    assert json.loads((tmp_path / "calibration.json").read_text()) == {"tau": 0.25, "chosen_on": "valid"}


def test_trainer_hands_the_run_seed_to_the_method(tmp_path):
    data = toy_data(90)
    m = Pooled(data, loss=lambda b, r: (F.cross_entropy(m.predict_logits(b), b.y), {}))
    fit(m, data, tmp_path)
    assert m.seed == 7


def test_methods_never_import_the_trainer_or_the_evaluator():
    """The layering declared in pyproject.toml holds (import-linter), and no file under
    mmlab/methods/ names mmlab.train or mmlab.evaluate, no file under mmlab/data/ a model."""
    proc = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BROKEN" not in proc.stdout and "KEPT" in proc.stdout
    for path in (ROOT / "mmlab" / "methods").rglob("*.py"):
        assert not {"mmlab.train", "mmlab.evaluate"} & imported(path), path
    for path in (ROOT / "mmlab" / "data").rglob("*.py"):
        assert not {"mmlab.methods", "mmlab.nn", "torch.nn"} & imported(path), path


def imported(path: Path) -> set[str]:
    """Every module a file imports, with its parents ("a.b.c" -> {"a", "a.b", "a.b.c"})."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in found:
            parts = name.split(".")
            names.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return names

"""Progress on long work: plain lines in a log, silent for quick phases that declare a delay."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import mmlab.progress
import mmlab.train
from mmlab.methods.base import Validation
from mmlab.progress import PlainProgress, progress
from mmlab.train import TrainConfig, Trainer
from tests.test_contract import Pooled, toy_data


@pytest.fixture(autouse=True)
def log_output(monkeypatch):
    """stderr as in a redirected log (pytest may have imported ipykernel, which means a notebook)."""
    monkeypatch.setattr(mmlab.progress, "is_interactive", lambda: False)


def test_plain_progress_prints_a_closing_line_unless_quick_work_declared_a_delay(capsys):
    assert list(PlainProgress(range(3), desc="stage")) == [0, 1, 2]
    assert capsys.readouterr().err == "stage: 3/3\n"
    assert list(progress(range(3), desc="quick", delay=10.0)) == [0, 1, 2]
    assert [int(v) for v in PlainProgress(np.arange(2), delay=10.0)] == [0, 1]  # an array is iterable too
    assert capsys.readouterr().err == ""
    bar = PlainProgress(total=2, desc="slow", delay=0.01, every=0.01)
    time.sleep(0.02)
    bar.update()
    bar.update()
    bar.close()
    assert capsys.readouterr().err.splitlines() == ["slow: 1/2", "slow: 2/2"]
    bar = PlainProgress(total=1, desc="once", every=0.0)
    bar.update()
    bar.close()  # the count did not move since the last line: no second line
    assert capsys.readouterr().err == "once: 1/1\n"


def test_trainer_shows_slow_precomputed_inputs_and_test_option_choices(tmp_path, monkeypatch, capsys):
    """A stage's precomputed inputs and the valid choice of test-time options (ADMC's K: minutes
    of sampling) report progress when they take longer than `QUIET_SECONDS` (here set to 0)."""
    data = toy_data(90)

    class Choosy(Pooled):
        def test_options(self):
            return {"k": [1, 2]}

        def set_test_options(self, k):
            self.k = k

    def features(batch, split, gen):
        return {"z": m.embed(batch)}

    def loss(fb, rng):
        return F.cross_entropy(m.head(fb["z"]), fb.y), {}

    def make():
        return Choosy(data, loss=loss, features=features,
                      validate=Validation(kind="features", logits=lambda fb: m.head(fb["z"])))

    m = make()
    Trainer(m, data, tmp_path / "quick", TrainConfig(seed=7)).fit()
    quick = capsys.readouterr().err
    assert "head: " in quick  # the stage's epochs always show
    assert "inputs" not in quick and "test-time options" not in quick
    monkeypatch.setattr(mmlab.train, "QUIET_SECONDS", 0.0)
    torch.manual_seed(0)
    m = make()
    Trainer(m, data, tmp_path / "slow", TrainConfig(seed=7)).fit()
    err = capsys.readouterr().err.splitlines()
    assert "head: train inputs: 1/1" in err and "head: valid inputs: 1/1" in err
    assert "pooled_test: test-time options on valid: 2/2" in err
    Trainer(make(), data, tmp_path / "silent", TrainConfig(seed=7, progress=False)).fit()
    assert capsys.readouterr().err == ""


def test_a_slow_evaluation_shows_its_conditions(monkeypatch, capsys):
    import mmlab.evaluate.scoring as scoring
    from mmlab.evaluate import evaluate

    data = toy_data(90)
    method = Pooled(data)
    evaluate(method, data, progress=True)
    assert capsys.readouterr().err == ""  # quick: silent
    monkeypatch.setattr(scoring, "QUIET_SECONDS", 0.0)
    evaluate(method, data, progress=True)
    assert capsys.readouterr().err.splitlines() == ["evaluate pooled_test on test (pattern): 7/7"]

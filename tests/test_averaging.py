"""`mmlab.nn.averaging.WeightAverage` and the Trainer's ``TrainConfig.ema``."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from mmlab.errors import ConfigError, DataError
from mmlab.nn.averaging import WeightAverage
from mmlab.methods.reference import ZeroFillLateFusion
from mmlab.train import Stage, TrainConfig, Trainer, load_checkpoint

from test_train import QUIET, RUN, TwoStage, SMALL, state, toy_data


class Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


def test_average_follows_the_formula_and_copies_integer_buffers():
    """d_n = min(decay, n / (n + 9)): the first update copies, the second weighs the new weights
    by 9/11, and from update 81 on (decay 0.9) the decay is the configured one."""
    mod = Counter()
    avg = WeightAverage(mod, 0.9)
    with torch.no_grad():
        mod.w.fill_(1.0)
        mod.steps.fill_(1)
    avg.update()  # the first update copies: the average starts from the trained weights
    assert torch.equal(avg.state["w"], torch.ones(2))
    with torch.no_grad():
        mod.w.fill_(3.0)
        mod.steps.fill_(2)
    avg.update()
    assert torch.allclose(avg.state["w"], torch.full((2,), 2 / 11 * 1.0 + 9 / 11 * 3.0))
    assert int(avg.state["steps"]) == 2
    for _ in range(200):
        avg.update()
    before = avg.state["w"].clone()
    with torch.no_grad():
        mod.w.fill_(13.0)
    avg.update()
    assert torch.allclose(avg.state["w"], 0.9 * before + 0.1 * 13.0)
    restored = WeightAverage(mod, 0.9, avg.saved())
    assert restored.updates == 203 and torch.equal(restored.state["w"], avg.state["w"])


def test_swapped_evaluates_the_average_and_restores_the_live_weights_on_error():
    mod = Counter()
    avg = WeightAverage(mod, 0.5)
    with avg.swapped():  # nothing averaged yet: a no-op
        assert torch.equal(mod.w, torch.zeros(2))
    avg.update()
    with torch.no_grad():
        mod.w.fill_(4.0)
    avg.update()
    with pytest.raises(RuntimeError):
        with avg.swapped():
            assert torch.allclose(mod.w.detach(), torch.full((2,), 9 / 11 * 4.0))
            raise RuntimeError("boom")
    assert torch.equal(mod.w.detach(), torch.full((2,), 4.0))


def test_a_smaller_warmup_weighs_the_new_weights_less_in_the_warm_up():
    """d_n = min(decay, n / (n + warmup)): with warmup 1 the second update weighs the new weights
    by 1/3 (instead of 9/11)."""
    mod = Counter()
    avg = WeightAverage(mod, 0.99, warmup=1)
    avg.update()
    with torch.no_grad():
        mod.w.fill_(3.0)
    avg.update()
    assert torch.allclose(avg.state["w"], torch.full((2,), 1 / 3 * 3.0))
    with pytest.raises(ConfigError, match=r"TrainConfig.ema_warmup: expected a positive integer"):
        TrainConfig(ema_warmup=0)
    with pytest.raises(ValueError, match="warmup"):
        WeightAverage(mod, 0.9, warmup=0)


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan")])
def test_bad_decay_is_refused(bad):
    with pytest.raises(ConfigError, match=r"TrainConfig.ema: expected a number in \[0, 1\)"):
        TrainConfig(ema=bad)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(Counter(), bad)


def test_trainer_keeps_the_averaged_weights_and_resumes_bit_identically(tmp_path):
    """With ``ema`` the kept state is the average (it differs from training without it), the
    average travels in last.pt, and a run killed after an epoch resumes to the same weights."""
    torch.set_num_threads(1)
    data = toy_data(150)
    cfg = replace(SMALL, train=replace(RUN, ema=0.9, patience=0))

    def trained(out, kill_at=None, init_seed=0):
        def killer(stage, epoch, metrics):
            if (stage, epoch) == kill_at:
                raise KeyboardInterrupt

        torch.manual_seed(init_seed)
        model = TwoStage(cfg, data)
        try:
            Trainer(model, data, out, QUIET, on_epoch_end=killer if kill_at else None).fit()
        except KeyboardInterrupt:
            return None
        return state(model)

    full = trained(tmp_path / "full")
    assert load_checkpoint(tmp_path / "full" / "checkpoints" / "fusion" / "last.pt")["ema"] is not None
    assert trained(tmp_path / "killed", kill_at=("fusion", 2)) is None
    resumed = trained(tmp_path / "killed", init_seed=123)
    assert all(torch.equal(resumed[k], full[k]) for k in full)

    torch.manual_seed(0)
    plain = TwoStage(replace(SMALL, train=replace(RUN, patience=0)), data)
    Trainer(plain, data, tmp_path / "plain", QUIET).fit()
    assert any(not torch.equal(v, full[k]) for k, v in state(plain).items() if v.is_floating_point())

    torch.manual_seed(0)  # the Trainer passes ``ema_warmup`` on: a longer average keeps other weights
    longer = TwoStage(replace(SMALL, train=replace(RUN, ema=0.9, ema_warmup=1, patience=0)), data)
    Trainer(longer, data, tmp_path / "longer", QUIET).fit()
    assert any(not torch.equal(v, full[k]) for k, v in state(longer).items() if v.is_floating_point())


def test_a_damaged_average_in_last_pt_is_named(tmp_path):
    torch.set_num_threads(1)
    data = toy_data(90)
    cfg = replace(SMALL, train=replace(RUN, ema=0.9, epochs=2, patience=0))

    def killer(stage, epoch, metrics):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(TwoStage(cfg, data), data, tmp_path, QUIET, on_epoch_end=killer).fit()
    last = tmp_path / "checkpoints" / "fusion" / "last.pt"
    ckpt = load_checkpoint(last)
    ckpt["ema"] = {"state": {"nothing": torch.zeros(1)}, "updates": 3}
    torch.save(ckpt, last)
    with pytest.raises(DataError, match=r"last.pt: damaged checkpoint \(weight average"):
        Trainer(TwoStage(cfg, data), data, tmp_path, QUIET).fit()


class HeadsOnly(TwoStage):
    """One stage that trains the heads with the encoders frozen, under a weight average."""

    name = "heads_only_test"

    def stages(self, data):
        (fusion,) = ZeroFillLateFusion.stages(self, data)
        cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3, patience=0, ema=0.9)
        return [Stage("heads", [self.heads], fusion.loss, fusion.validate, config=cfg)]


def test_the_average_leaves_frozen_weights_bit_for_bit(tmp_path):
    torch.set_num_threads(1)
    data = toy_data(120)
    torch.manual_seed(0)
    model = HeadsOnly(SMALL, data)
    frozen = {k: v.clone() for k, v in model.encoders.state_dict().items()}
    heads = {k: v.clone() for k, v in model.heads.state_dict().items()}
    Trainer(model, data, tmp_path, QUIET).fit()
    assert all(torch.equal(v, frozen[k]) for k, v in model.encoders.state_dict().items())
    assert any(not torch.equal(v, heads[k]) for k, v in model.heads.state_dict().items())


def test_only_the_named_entries_are_averaged_the_rest_is_copied():
    mod = nn.Linear(3, 2)
    avg = WeightAverage(mod, 0.9, averaged={"weight"})
    avg.update()
    with torch.no_grad():
        mod.weight.add_(1.0)
        mod.bias.add_(1.0)
    avg.update()
    assert torch.equal(avg.state["bias"], mod.bias.detach())  # copied: not averaged
    assert not torch.allclose(avg.state["weight"], mod.weight.detach())  # averaged: lags behind

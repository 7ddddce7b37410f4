"""One model per availability pattern (mmlab/methods/specialists.py): 2^M - 1 copies of a
registered method, each built on and trained with its pattern's modalities only, on the one
Trainer; every row goes to the specialist of the modalities it has; the specialist of all
modalities is the member trained on complete input with the run seed; clear errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mmlab.data import load_dataset
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.evaluate import evaluate, pattern_conditions
from mmlab.experiments import COMPARISON_METHODS, OUTSIDE_FULL_SUITE
from mmlab.methods import make_method, method_names
from mmlab.methods.specialists import restrict
from mmlab.missing import FixedPattern, draw_masks, mask_batch, pad_masks, resolve_fill
from test_ensemble import SEED, train

FAST = ["train.epochs=4", "train.patience=0"]


@pytest.fixture(scope="module")
def tiny() -> MMDataset:
    return load_dataset("synthetic", preset="tiny")


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("zero_fill_pp")
    return train("zero_fill_pp", tiny, out, {"overrides": FAST}), out


def test_registered_outside_the_full_suite():
    assert "zero_fill_pp" in method_names() and "zero_fill_pp" in OUTSIDE_FULL_SUITE
    assert "zero_fill_pp" not in COMPARISON_METHODS


def test_one_specialist_per_pattern_built_on_its_modalities(trained, tiny):
    method, out = trained
    assert sorted(method.specialists) == sorted(["A_V_T", "A_V", "A_T", "V_T", "A", "V", "T"])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == sorted(
        f"{k}-fusion" for k in method.specialists)
    for key, member in method.specialists.items():
        assert member.encoders.modalities == tuple(key.split("_"))
        assert member.cfg.train_on == "full" and member.cfg.validate_on == "full"
    seeds = {member.seed for member in method.specialists.values()}
    assert len(seeds) == 7 and method.specialists["A_V_T"].seed == SEED == method.seed


def test_each_row_goes_to_the_specialist_of_its_modalities(trained, tiny):
    method, _ = trained
    test = tiny.subset("test")
    idx = np.arange(60)
    pad = pad_masks(test)
    fill = resolve_fill("zero", None)
    for pattern in [("A",), ("V", "T"), ("A", "V", "T")]:
        masks = draw_masks(FixedPattern(pattern), pad, test.modalities, 0).take(idx)
        batch = mask_batch(test.batch(idx), masks, fill)
        expected = method.specialists["_".join(pattern)].predict_logits(batch)
        assert torch.allclose(method.predict_logits(batch), expected, atol=1e-6)
    # rows of different patterns in one batch: each row as in its own pattern's batch
    mixed = test.batch(idx)
    avail = mixed.avail.clone()
    avail[::2, 0] = False  # even rows lack A
    mixed = replace(mixed, avail=avail)
    got = method.predict_logits(mixed)
    odd = method.specialists["A_V_T"].predict_logits(mixed.index(np.arange(1, 60, 2)))
    even = method.specialists["V_T"].predict_logits(mixed.index(np.arange(0, 60, 2)))
    assert torch.allclose(got[1::2], odd, atol=1e-6) and torch.allclose(got[::2], even, atol=1e-6)
    nothing = replace(mixed, avail=torch.zeros_like(avail))
    assert torch.allclose(method.predict_logits(nothing), method.log_prior.expand(60, -1))


def test_the_specialist_of_all_modalities_is_the_member_trained_on_complete_input(tiny, tmp_path):
    single = train("zero_fill", tiny, tmp_path / "single", ["--" + o for o in [*FAST, "train_on=full",
                                                                                "validate_on=full"]])
    per_pattern = train("zero_fill_pp", tiny, tmp_path / "pp", {"overrides": FAST})
    batch = tiny.subset("test").batch(np.arange(48))
    assert torch.allclose(single.predict_logits(batch), per_pattern.specialists["A_V_T"].predict_logits(batch),
                          atol=1e-6)


def test_beats_majority_on_every_pattern(trained, tiny):
    method, _ = trained
    rows = evaluate(method, tiny, conditions=pattern_conditions(tiny.modalities), seed=1111)
    majority = np.bincount(tiny.y[tiny.split == "test"]).max() / (tiny.split == "test").sum()
    assert all(r["accuracy"] > majority + 0.05 for r in rows), [(r["condition"], r["accuracy"]) for r in rows]


def test_restrict_keeps_rows_and_drops_the_oracle(tiny):
    cut = restrict(tiny, ("A", "T"))
    assert cut.modalities == ("A", "T") and len(cut) == len(tiny) and "oracle" not in cut.info
    assert np.array_equal(cut.y, tiny.y) and np.array_equal(cut.split, tiny.split)


def test_clear_errors(tiny):
    with pytest.raises(ConfigError, match="max_modalities"):
        make_method("zero_fill_pp", tiny, {"max_modalities": 2})
    with pytest.raises(ConfigError, match="itself combines copies"):
        make_method("zero_fill_pp", tiny, {"member": "zero_fill_pp"})
    with pytest.raises(ConfigError, match="test-time options"):
        make_method("zero_fill_pp", tiny, {"member": "admc_cond", "specialist_overrides": []})
    with pytest.raises(ConfigError, match="overrides"):
        make_method("zero_fill_pp", tiny, {"overrides": "train.epochs=3"})
    with pytest.raises(ConfigError, match="unknown key 'no_such_key'"):
        make_method("zero_fill_pp", tiny, {"overrides": ["no_such_key=3"]})


def test_natural_missingness_trains_each_specialist_on_the_rows_that_have_its_modalities(tiny, tmp_path):
    lacks_a = np.random.default_rng(0).random(len(tiny)) < 0.3
    data = replace(tiny, avail={"A": ~lacks_a}, info={})
    method = train("zero_fill_pp", data, tmp_path, {"overrides": FAST})
    stages = {s.name: s for s in method.stages(data)}
    with_a = stages["A_V-fusion"].data
    assert with_a.avail["A"].all() and len(with_a) == int((~lacks_a & (data.split == "train")).sum())
    assert stages["V_T-fusion"].data is None or len(stages["V_T-fusion"].data) == int((data.split == "train").sum())
    batch = data.subset("test").batch(np.arange(40))
    lacks = ~batch.avail[:, 0]
    assert lacks.any() and (~lacks).any()
    got = method.predict_logits(batch)
    expected = method.specialists["V_T"].predict_logits(batch.index(lacks.nonzero().squeeze(1)))
    assert torch.allclose(got[lacks], expected, atol=1e-6)
    no_train_a = replace(tiny, avail={"A": tiny.split != "train"}, info={})
    with pytest.raises(DataError, match="no train row has all of"):
        make_method("zero_fill_pp", no_train_a)


@pytest.fixture(scope="module")
def with_shared(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("zero_fill_pp_shared")
    return train("zero_fill_pp_shared", tiny, out, {"overrides": FAST}), out


def _logits(method, data, pattern):
    batch = data.batch(np.arange(len(data)))
    masks = draw_masks(FixedPattern(pattern), pad_masks(data), data.modalities, 0)
    with torch.no_grad():
        return method.predict_logits(mask_batch(batch, masks, resolve_fill("zero", None)))


def test_shared_choice_is_made_per_pattern_on_valid_and_recorded(with_shared, trained, tiny):
    """The specialists are zero_fill_pp's to the bit; each pattern is classified by the specialist
    or the shared model, whichever valid accuracy on that pattern alone prefers."""
    import json

    from mmlab.evaluate import validate_per_pattern

    method, out = with_shared
    plain, _ = trained
    assert "shared" in dict(method.named_copies()) and (out / "checkpoints" / "shared-fusion").is_dir()
    assert method.shared.cfg.train_on == "random" and method.shared.seed not in {m.seed for m in method.specialists.values()}
    record = json.loads((out / "calibration.json").read_text())["test_options_per_pattern"]
    assert len(record) == 7 and {c["source"] for c in record.values()} <= {"specialist", "shared"}
    chosen = method.chosen()
    valid, test = tiny.subset("valid"), tiny.subset("test")
    method.set_test_options(source="specialist")
    spec = validate_per_pattern(method, valid)
    method.set_test_options(source="shared")
    shared = validate_per_pattern(method, valid)
    for key, modalities in method.patterns.items():
        want = "shared" if shared[modalities]["accuracy"] > spec[modalities]["accuracy"] + 1e-9 else "specialist"
        assert chosen[key] == want and record["+".join(modalities)]["source"] == want
    method.set_pattern_options({p: {"source": chosen[k]} for k, p in method.patterns.items()})
    for key, modalities in method.patterns.items():
        got = _logits(method, test, modalities)
        if chosen[key] == "specialist":
            assert torch.equal(got, _logits(plain, test, modalities))
        else:
            assert torch.allclose(got, _logits(method.shared, test, modalities))


def test_shared_must_be_a_flag(tiny):
    from mmlab.methods.specialists import SpecialistsConfig

    with pytest.raises(ConfigError, match="shared: expected true"):
        make_method("zero_fill_pp", tiny, {"shared": "maybe"})
    with pytest.raises(ConfigError, match="SpecialistsConfig.shared: expected true or false"):
        SpecialistsConfig(shared="yes")


def test_per_pattern_scores_read_only_the_rows_that_have_the_pattern(tiny):
    """Under natural missingness the score of a pattern is that pattern's alone: the valid rows
    lacking one of its modalities are left out, not classified as a smaller pattern."""
    from mmlab.evaluate import validate_per_pattern

    valid = tiny.subset("valid")
    has_a = np.arange(len(valid)) % 2 == 0
    gappy = replace(valid, avail={"A": has_a})
    method = make_method("zero_fill", tiny, FAST).eval()
    scores = validate_per_pattern(method, gappy)
    alone = validate_per_pattern(method, valid.take(np.flatnonzero(has_a)))
    assert scores[("A", "V")] == alone[("A", "V")] and scores[("A", "V", "T")] == alone[("A", "V", "T")]
    assert scores[("V", "T")] == validate_per_pattern(method, valid)[("V", "T")]


def test_a_mean_fill_member_with_the_shared_model_calibrates(tiny, tmp_path):
    method = train("zero_fill_pp", tiny, tmp_path, {"member": "mean_fill", "shared": True, "overrides": FAST})
    assert method.fill == "mean" and set(method.chosen().values()) <= {"specialist", "shared"}

"""`compare` / `compare_suite`: parallel workers give the same rows as one process; timing and
never-overwrite rules; the CLI's `--suite` and `--workers`."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from mmlab.cli import main
from mmlab.data import load_dataset
from mmlab.data.byo import write_npz
from mmlab.data.synthetic import make_synthetic
from mmlab.errors import ConfigError, DataError
from mmlab.evaluate import read_results
from mmlab.experiments import COMPARISON_METHODS, FULL_SUITE, OUTSIDE_FULL_SUITE, compare, compare_suite

FAST = ["--train.epochs=2"]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return make_synthetic(preset="tiny")


def _key(r):
    return (r["dataset"], r["method"], r["protocol"], r["condition"], r["seed"])


def test_two_workers_give_the_rows_of_one(tiny, tmp_path):
    """Jobs in spawned worker processes train and evaluate exactly as in this process."""
    kw = dict(methods=["reference", "zero_fill"], protocol="patterns,rates", seeds=[5, 6], overrides=FAST,
              progress=False)
    compare(tiny, out=tmp_path / "one", workers=1, **kw)
    compare(tiny, out=tmp_path / "two", workers=2, **kw)
    one = {_key(r): r for r in read_results(tmp_path / "one" / "results.csv")}
    two = {_key(r): r for r in read_results(tmp_path / "two" / "results.csv")}
    assert one.keys() == two.keys()
    assert {k[1] for k in one} == {"reference", "zero_fill", "bayes_oracle"}
    for k in one:
        assert one[k]["accuracy"] == two[k]["accuracy"], k
    # every (method, seed) ran into its own resumable run folder
    assert sorted(p.parent.name + "/" + p.name for p in (tmp_path / "two" / "runs").glob("*/seed*")) == [
        "reference/seed5", "reference/seed6", "zero_fill/seed5", "zero_fill/seed6"]
    timing = list(csv.DictReader(open(tmp_path / "two" / "timing.csv")))
    assert [(t["method"], t["seed"]) for t in timing[:-1]] == [
        ("reference", "5"), ("zero_fill", "5"), ("reference", "6"), ("zero_fill", "6")]
    assert timing[-1]["dataset"] == "all" and float(timing[-1]["seconds"]) > 0
    with pytest.raises(DataError, match="exists"):
        compare(tiny, out=tmp_path / "two", workers=2, **kw)


def test_a_method_registered_at_run_time_reaches_the_workers(tiny, tmp_path, monkeypatch):
    """register_method in the user's process, then compare with spawned workers: the jobs register
    it again (a fresh process starts with the built-in table only)."""
    from mmlab import methods

    monkeypatch.setattr(methods, "METHODS", dict(methods.METHODS))  # the registration ends with the test
    methods.register_method("zf_pair", "mmlab.methods.ensemble:Ensemble",
                            {"member": "zero_fill", "size": 2, "overrides": ["train.epochs=1"]})
    compare(tiny, ["zf_pair"], seeds=[5], out=tmp_path / "cmp", workers=2, progress=False)
    rows = read_results(tmp_path / "cmp" / "results.csv")
    assert {r["method"] for r in rows} == {"zf_pair", "bayes_oracle"}
    config = json.loads((tmp_path / "cmp" / "runs" / "zf_pair" / "seed5" / "config.json").read_text())
    assert config["method"]["config"]["size"] == 2 and config["method"]["config"]["overrides"] == ["train.epochs=1"]


def test_suite_writes_one_folder_per_dataset(tmp_path):
    """A suite of two datasets (here two BYO files) shares one job list and writes per dataset."""
    paths = {}
    for name, seed in (("first", 1), ("second", 2)):
        paths[name] = tmp_path / f"{name}.npz"
        write_npz(make_synthetic(preset="tiny", seed=seed), paths[name])
    out = tmp_path / "suite"
    written = compare_suite({str(paths["first"]): "full", str(paths["second"]): "patterns"}, methods=["reference"],
                            seeds=[3], out=out, overrides=FAST, progress=False)
    assert sorted(written) == ["first", "second"]
    first = read_results(out / "first" / "results.csv")
    second = read_results(out / "second" / "results.csv")
    assert {r["condition"] for r in first} == {"full"}
    assert {"full", "{A}", "{VT}", "Average"} <= {r["condition"] for r in second}
    assert (out / "first" / "runs" / "reference" / "seed3").is_dir()
    assert len(list(csv.DictReader(open(out / "timing.csv")))) == 3


def test_bad_arguments_are_clear_errors(tiny, tmp_path):
    with pytest.raises(ConfigError, match="workers"):
        compare(tiny, ["reference"], seeds=[1], out=tmp_path / "a", workers=0, progress=False)
    with pytest.raises(ConfigError, match="--seeds"):
        compare(tiny, ["reference"], seeds=[], out=tmp_path / "b", progress=False)
    with pytest.raises(ConfigError, match="unknown"):
        compare(tiny, ["no_such_method"], seeds=[1], out=tmp_path / "c", progress=False)
    with pytest.raises(ConfigError, match="at least one dataset"):
        compare_suite({}, out=tmp_path / "d")


def test_full_suite_covers_every_compared_method_and_both_datasets():
    from mmlab.methods import method_names

    assert set(COMPARISON_METHODS) <= set(method_names())
    assert set(method_names()) - set(COMPARISON_METHODS) == set(OUTSIDE_FULL_SUITE)
    assert FULL_SUITE == {"synthetic": ("patterns", "rates"), "handwritten": ("full", "eta", "rates")}


def test_cli_suite_refuses_data_and_protocol(tmp_path, capsys):
    rc = main(["compare", "--suite", "full", "--data", "synthetic", "--out", str(tmp_path / "s")])
    assert rc == 2 and "--suite full fixes" in capsys.readouterr().err


def _token_byo(path, n=240, seed=0):
    """A bring-your-own file with float A and V, a token-id text modality T (class words
    inside [CLS] ... [SEP]), a ``test_ood`` split and a regression target ``y_reg``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    a = (rng.normal(0, 1, (n, 6, 4)) + y[:, None, None] * 0.6).astype(np.float32)
    v = (rng.normal(0, 1, (n, 5)) + (y[:, None] == 1) * 1.0).astype(np.float32)
    ln = rng.integers(4, 9, n)
    ids = np.zeros((n, 8), np.int64)
    for i, k in enumerate(ln):
        words = np.where(rng.random(k - 2) < 0.5, 2000 + 10 * y[i], rng.integers(3000, 9000, k - 2))
        ids[i, :k] = [101, *words, 102]
    split = np.array(["train"] * 150 + ["valid"] * 30 + ["test"] * 30 + ["test_ood"] * 30)
    np.savez(path, X_A=a, X_V=v, X_T=ids, len_T=ln, y=y, y_reg=(y - 1 + rng.normal(0, 0.3, n)).astype(np.float32),
             split=split)
    return path


def test_token_text_extra_split_and_y_reg_run_through_compare(tmp_path, capsys):
    """Done-when of the core-contract issue: a BYO file with token-id text, a test_ood split and
    y_reg validates and runs through `mmlab compare --methods zero_fill,admc` on both test splits."""
    from mmlab.data.byo import validate_npz

    path = _token_byo(tmp_path / "tok.npz")
    problems, summary = validate_npz(path)
    assert problems == [] and "token ids" in summary and "test_ood" in summary
    assert main(["data", "validate", str(path)]) == 0
    tiny = ["--zero_fill.train.epochs=2", "--admc.itfn.train.epochs=2", "--admc.adn.train.epochs=2", "--admc.mf.train.epochs=1",
            "--admc.n_completions=2", "--admc.diffusion.start_step=5"]
    out = tmp_path / "cmp"
    rc = main(["compare", "--data", str(path), "--methods", "zero_fill,admc", "--seeds", "1", "--protocol", "patterns",
               "--test-split", "test,test_ood", "--out", str(out), *tiny])
    assert rc == 0, capsys.readouterr().err
    rows = read_results(out / "results.csv")
    assert {(r["method"], r["split"]) for r in rows} == {(m, s) for m in ("zero_fill", "admc") for s in ("test", "test_ood")}
    for r in rows:
        assert r["n"] == 30 and 0.0 <= r["accuracy"] <= 1.0
    assert "| split |" in (out / "results.md").read_text().splitlines()[0]
    # the text reached both methods as features of the shared frozen encoder (all-MiniLM-L6-v2: 384)
    for name in ("zero_fill", "admc"):
        cfg = json.loads((out / "runs" / name / "seed1" / "config.json").read_text())
        assert cfg["data"]["dims"] == {"A": 4, "V": 5, "T": 384}
    assert main(["compare", "--data", str(path), "--methods", "zero_fill", "--seeds", "1", "--test-split", "test_x",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "no test split ['test_x']" in capsys.readouterr().err


def test_cider_protocols_sweep_rates_zero_to_one_and_keep_token_edges():
    """rmfm / traditional_rmfm / rmm: 11 rates 0-1 (CIDer B16); token edges protected on token
    text; temporal missing refuses unaligned data."""
    from mmlab.experiments import conditions_for

    text = load_dataset("synthetic_text", preset="tiny")
    for protocol in ("rmfm", "traditional_rmfm", "rmm"):
        conds = conditions_for(protocol, text)
        assert [c.value for c in conds] == [round(0.1 * i, 1) for i in range(11)]
        assert {c.protocol for c in conds} == {protocol} and conds[0].generator.protect_edges == ("T",)
    with pytest.raises(ConfigError, match="word-aligned"):
        conditions_for("stmfm", text)

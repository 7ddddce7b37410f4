"""`compare` / `compare_suite`: parallel workers give the same rows as one process; timing and
never-overwrite rules; the CLI's `--suite` and `--workers`."""

from __future__ import annotations

import csv

import pytest
import torch

from mmlab.cli import main
from mmlab.data.byo import write_npz
from mmlab.data.synthetic import make_synthetic
from mmlab.errors import ConfigError, DataError
from mmlab.evaluate import read_results
from mmlab.experiments import COMPARISON_METHODS, FULL_SUITE, compare, compare_suite

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
    assert set(method_names()) - set(COMPARISON_METHODS) == {"reference"}
    assert FULL_SUITE == {"synthetic": ("patterns", "rates"), "handwritten": ("full", "eta", "rates")}


def test_cli_suite_refuses_data_and_protocol(tmp_path, capsys):
    rc = main(["compare", "--suite", "full", "--data", "synthetic", "--out", str(tmp_path / "s")])
    assert rc == 2 and "--suite full fixes" in capsys.readouterr().err

"""tools/choose_on_valid.py: reads the valid score of the epoch each run kept from a real sweep's
folders, chooses on valid (never on test), honours a lower-is-better selection metric, and skips
unfinished jobs and references without training."""

from __future__ import annotations

import csv
import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from mmlab.train import load_checkpoint

TOOL = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "choose_on_valid.py"))


def _job(root: Path, point: str, seed: int, valid_by_epoch: list[float], test: float, metric: str = "macro_recall",
         done: bool = True, stage: str = "fusion", method: str = "zero_fill") -> None:
    """A finished job as `mmlab compare` / `sweep` lay it out: jobs/<m>/<seed-hash>/ and runs/<m>/<seed-hash>/."""
    name = f"seed{seed}-{point}"
    job, run = root / "jobs" / method / name, root / "runs" / method / name
    job.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    (job / "spec.json").write_text(json.dumps({"dataset": "synthetic", "method": method, "seed": seed,
                                               "overrides": [f"--hidden={point}"]}))
    (job / "status.json").write_text(json.dumps({"status": "done" if done else "running"}))
    config = run / "config.json"
    stages = json.loads(config.read_text())["stages"] if config.exists() else {}
    config.write_text(json.dumps({"stages": {**stages, stage: {"select_metric": metric}}}))
    new = not (run / "metrics.csv").exists()
    with open(run / "metrics.csv", "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["time", "stage", "epoch", "split", "metric", "value"])
        for epoch, value in enumerate(valid_by_epoch, 1):
            w.writerow(["t", stage, epoch, "valid", metric, value])
            w.writerow(["t", stage, epoch, "valid", "accuracy", epoch / 10])
            w.writerow(["t", "probe_A", epoch, "valid", metric, 0.99])  # probes never count
    with open(job / "rows.test.patterns.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["condition", "accuracy"])
        w.writerow(["{A}", test])
        w.writerow(["{V}", test + 0.1])
        w.writerow(["Average", 0.0])  # evaluate's summary row: not a pattern
        w.writerow(["full", test])


def test_chooses_on_valid_at_the_kept_epoch_not_on_test(tmp_path):
    # point 16 peaks early on valid (0.70 at epoch 2) and is worse on test; point 64 is the other way
    for seed in (1, 2):
        _job(tmp_path, "16", seed, [0.60, 0.70, 0.65], test=0.40)
        _job(tmp_path, "64", seed, [0.60, 0.66, 0.68], test=0.90)
    _job(tmp_path, "256", 1, [0.99], test=0.99, done=False)  # unfinished: ignored
    table = TOOL["choose"](TOOL["collect"]([tmp_path], None))
    assert [(t["point"], t["seeds"], t["chosen"]) for t in table] == [("--hidden=16", 2, True),
                                                                      ("--hidden=64", 2, False)]
    assert abs(table[0]["valid"] - 70.0) < 1e-9 and abs(table[0]["test_six"] - 45.0) < 1e-9
    assert abs(table[0]["valid_accuracy"] - 20.0) < 1e-9  # the accuracy of the kept epoch, 2


def test_a_tie_within_a_run_keeps_the_first_epoch_as_the_trainer_does(tmp_path):
    _job(tmp_path, "16", 1, [0.60, 0.70, 0.70, 0.65], test=0.40)
    (row,) = TOOL["collect"]([tmp_path], None)
    assert row["epoch"] == 2 and abs(row["valid_accuracy"] - 20.0) < 1e-9


@pytest.mark.parametrize("metric", ["loss", "mae"])
def test_loss_and_mae_selection_are_lower_is_better(tmp_path, metric):
    _job(tmp_path, "16", 1, [0.9, 0.5, 0.7], test=0.5, metric=metric)
    _job(tmp_path, "64", 1, [0.8, 0.6, 0.4], test=0.5, metric=metric)
    rows = TOOL["collect"]([tmp_path], None)
    assert sorted(r["epoch"] for r in rows) == [2, 3]
    table = TOOL["choose"](rows)
    chosen = [t for t in table if t["chosen"]]
    assert len(chosen) == 1 and chosen[0]["point"] == "--hidden=64" and abs(chosen[0]["valid"] - 0.4) < 1e-9
    assert table[0]["chosen"]  # the best listed first


def test_admc_like_runs_need_a_stage_and_mixed_metrics_are_refused(tmp_path, capsys):
    for stage in ("mf_full", "mf_A", "mf_V"):  # one fusion model per scenario, each selected on its own
        _job(tmp_path, "16", 1, [0.5, 0.6], test=0.5, metric="accuracy", stage=stage, method="admc")
    with pytest.raises(ValueError, match="--stage"):
        TOOL["collect"]([tmp_path], None)
    (row,) = TOOL["collect"]([tmp_path], None, stage="mf_A")
    assert row["select_metric"] == "accuracy" and row["epoch"] == 2
    assert TOOL["main"]([str(tmp_path)]) == 2 and "--stage" in capsys.readouterr().err
    _job(tmp_path, "64", 1, [0.5, 0.6], test=0.5, metric="macro_recall", stage="mf_A", method="admc")
    with pytest.raises(ValueError, match="different metrics"):
        TOOL["choose"](TOOL["collect"]([tmp_path], None, stage="mf_A"))


def test_reads_a_real_sweep(tmp_path, capsys):
    from mmlab.data.byo import write_npz
    from mmlab.data.synthetic import make_synthetic
    from mmlab.experiments import sweep

    torch.set_num_threads(1)
    data = tmp_path / "tiny.npz"
    write_npz(make_synthetic(preset="tiny"), data)
    spec = tmp_path / "s.yaml"
    spec.write_text(f"datasets: {{{data}: [patterns]}}\nmethods: [reference]\nseeds: [3]\n"
                    "overrides: {train.epochs: 4, train.patience: 0}\ngrid: {train.lr: [0.01, 0.001]}\n")
    sweep(spec, tmp_path / "sw", progress=False)
    rows = TOOL["collect"]([tmp_path / "sw"], None)
    assert len(rows) == 2
    for row in rows:  # the epoch the Trainer kept, from its own best.pt
        assert row["epoch"] == load_checkpoint(Path(row["run"]) / "checkpoints" / row["stage"] / "best.pt")["epoch"]
    assert TOOL["main"]([str(tmp_path / "sw")]) == 0
    out = capsys.readouterr().out
    assert out.count("| tiny | reference |") == 2 and out.count("**yes**") == 1
    assert "--train.lr=0.01" in out and "--train.lr=0.001" in out
    assert TOOL["main"]([str(tmp_path / "none")]) == 2


def test_full_protocol_rows_give_the_full_column_when_patterns_did_not_run(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    with open(job / "rows.test.full.csv", "w", newline="") as f:  # `handwritten --protocol full`
        csv.writer(f).writerows([["condition", "accuracy"], ["full", 0.985]])
    six, full = TOOL["test_average"](job)
    assert six != six and abs(full - 0.985) < 1e-12  # no pattern rows: NaN, not 0


def test_each_other_configuration_gets_its_valid_difference_paired_by_seed(tmp_path, capsys):
    """valid - chosen per seed: 64 - 16 is -2, -3, -5 points (mean -3.33, SE sqrt(7/3)/sqrt(3) =
    0.88; unpaired or misaligned seeds give another SE); a point sharing one seed gets none."""
    for seed, (a, b) in zip((1, 2, 3), [(0.70, 0.68), (0.72, 0.69), (0.71, 0.66)]):
        _job(tmp_path, "16", seed, [a], test=0.5)
        _job(tmp_path, "64", seed, [b], test=0.5)
    _job(tmp_path, "256", 1, [0.60], test=0.5)
    table = {t["point"]: t for t in TOOL["choose"](TOOL["collect"]([tmp_path], None))}
    assert table["--hidden=16"]["chosen"]
    assert table["--hidden=64"]["valid_minus_chosen"] == pytest.approx(-10 / 3)
    assert table["--hidden=64"]["paired_se"] == pytest.approx((7 / 3) ** 0.5 / 3 ** 0.5)
    assert np.isnan(table["--hidden=256"]["paired_se"])
    assert TOOL["main"]([str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "| -3.33 (0.88) |" in captured.out
    assert "ran different seeds [(1,), (1, 2, 3)]" in captured.err


def test_a_seed_twice_in_one_configuration_is_refused(tmp_path, capsys):
    for folder in ("a", "b"):
        _job(tmp_path / folder, "16", 1, [0.7], test=0.5)
    rows = TOOL["collect"]([tmp_path / "a", tmp_path / "b"], None)
    assert len(TOOL["choose"](rows)) == 2  # two folders are two configurations
    for r in rows:
        r["folder"] = "same"
    with pytest.raises(ValueError, match="a seed occurs twice"):
        TOOL["choose"](rows)

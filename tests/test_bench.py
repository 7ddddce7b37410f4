"""mmlab.bench smoke test: one method, tiny data, the columns (not the timings)."""

from __future__ import annotations

import csv
import math

import pytest

from mmlab.bench import COLUMNS, BenchConfig, run_bench
from mmlab.data import load_dataset
from mmlab.errors import ConfigError, DataError


def test_bench_columns_and_csv(tmp_path, capsys):
    data = load_dataset("synthetic", preset="tiny")
    cfg = BenchConfig(train_steps=2, warmup=1, batch_size=16, infer_batches=1, eval_batch_size=32, max_train=64)
    rows = run_bench(["zero_fill"], data, out=tmp_path, cfg=cfg)
    assert len(rows) == 1 and tuple(rows[0]) == COLUMNS
    r = rows[0]
    assert r["method"] == "zero_fill" and r["params"] > 0 and r["stages"] == 1 and r["device"] == "cpu"
    assert r["train_samples_per_s"] > 0 and r["infer_samples_per_s"] > 0
    assert r["peak_mem_mb"] >= 0 or math.isnan(r["peak_mem_mb"])
    assert "train_samples_per_s" in capsys.readouterr().out
    with (tmp_path / "bench.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == list(COLUMNS) and table[0]["method"] == "zero_fill"
    with pytest.raises(DataError, match="bench.csv"):
        run_bench(["zero_fill"], data, out=tmp_path, cfg=cfg)


def test_bench_rejects_bad_input():
    with pytest.raises(ConfigError, match="unknown"):
        run_bench(["no_such_method"], "synthetic", verbose=False)
    with pytest.raises(ConfigError, match="train_steps"):
        BenchConfig(train_steps=0)

"""Choose a configuration on the valid split from a `mmlab compare` or `mmlab sweep` folder.

    .venv/bin/python tools/choose_on_valid.py sweeps/capacity             # every dataset of a sweep
    .venv/bin/python tools/choose_on_valid.py cmp_a cmp_b --method zero_fill   # across folders
    .venv/bin/python tools/choose_on_valid.py sweeps/capacity --csv valid.csv

For every job (dataset, method, grid point, seed) it reads the run's ``metrics.csv`` and takes,
for the last stage that validates (probes excluded), the epoch the Trainer kept: the first best
of the stage's selection metric (``train.select_metric`` of the run's ``config.json``; ``loss``
is lower-is-better). A configuration's score is the mean over its seeds of that valid value;
the chosen one per (dataset, method) is the first best (`mmlab.utils.first_best`, configurations
in the order listed). Test rows are printed beside it for reading, never used to choose.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from mmlab.utils import first_best


def kept_valid(run_dir: Path) -> dict[str, float]:
    """The valid metrics at the kept epoch of the run's last validating stage, with its name
    (``stage``), the epoch (``epoch``) and the selection metric (``select_metric``)."""
    metrics, config = run_dir / "metrics.csv", run_dir / "config.json"
    if not metrics.exists() or not config.exists():
        raise FileNotFoundError(f"{run_dir}: expected metrics.csv and config.json of a finished run")
    by_stage: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    with open(metrics, newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] == "valid" and not row["stage"].startswith("probe"):
                by_stage[row["stage"]][int(row["epoch"])][row["metric"]] = float(row["value"])
    if not by_stage:
        raise ValueError(f"{metrics}: no valid rows")
    stage = list(by_stage)[-1]
    cfg = json.loads(config.read_text())
    select = _select_metric(cfg, stage)
    epochs = sorted(by_stage[stage])
    sign = -1.0 if select == "loss" else 1.0
    best = epochs[first_best([sign * by_stage[stage][e].get(select, -np.inf * sign) for e in epochs])]
    return {**by_stage[stage][best], "stage": stage, "epoch": best, "select_metric": select}


def _select_metric(cfg: dict, stage: str) -> str:
    """The stage's ``select_metric`` (``config.json`` holds each stage's `TrainConfig` under ``stages``)."""
    return str((cfg.get("stages") or {}).get(stage, {}).get("select_metric", "macro_recall"))


def test_average(job_dir: Path) -> tuple[float, float]:
    """(six-pattern average, full input) test accuracy of a job's pattern rows, NaN if absent."""
    rows_file = job_dir / "rows.test.patterns.csv"
    if not rows_file.exists():
        return float("nan"), float("nan")
    with open(rows_file, newline="") as f:
        rows = list(csv.DictReader(f))
    six = [float(r["accuracy"]) for r in rows if r["condition"] != "full"]
    full = [float(r["accuracy"]) for r in rows if r["condition"] == "full"]
    return (float(np.mean(six)) if six else float("nan")), (float(np.mean(full)) if full else float("nan"))


def collect(folders: list[Path], method: str | None) -> list[dict]:
    """One row per finished job of the folders (a compare folder or each dataset of a suite/sweep)."""
    out = []
    for folder in folders:
        for spec_file in sorted(folder.glob("**/jobs/*/seed*/spec.json")):
            spec = json.loads(spec_file.read_text())
            if method and spec["method"] != method:
                continue
            job_dir = spec_file.parent
            run_dir = job_dir.parents[2] / "runs" / job_dir.parent.name / job_dir.name
            status = job_dir / "status.json"
            done = status.exists() and json.loads(status.read_text()).get("status") == "done"
            if not done or not (run_dir / "metrics.csv").exists():
                continue  # an unfinished job, or a reference without training (oracle, pooled_linear)
            point = " ".join(spec.get("overrides", [])) or "(defaults)"
            valid = kept_valid(run_dir)
            six, full = test_average(job_dir)
            out.append({"folder": str(folder), "dataset": spec["dataset"], "method": spec["method"], "point": point,
                        "seed": spec["seed"], "epoch": valid["epoch"], "select_metric": valid["select_metric"],
                        "valid": 100 * valid[valid["select_metric"]] if valid["select_metric"] != "loss"
                        else valid["loss"], "valid_accuracy": 100 * valid.get("accuracy", float("nan")),
                        "test_six": 100 * six, "test_full": 100 * full})
    return out


def choose(rows: list[dict]) -> list[dict]:
    """Per (dataset, method, folder + point): mean over seeds; ``chosen`` marks the valid choice."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["method"], r["folder"], r["point"])].append(r)
    table = []
    for (dataset, method, folder, point), rs in groups.items():
        mean = {k: float(np.mean([r[k] for r in rs])) for k in ("valid", "valid_accuracy", "test_six", "test_full")}
        std = float(np.std([r["test_six"] for r in rs]))
        table.append({"dataset": dataset, "method": method, "folder": folder, "point": point, "seeds": len(rs),
                      "select_metric": rs[0]["select_metric"], **mean, "test_six_std": std, "chosen": False})
    for key in {(t["dataset"], t["method"]) for t in table}:
        cands = [t for t in table if (t["dataset"], t["method"]) == key]
        sign = -1.0 if cands[0]["select_metric"] == "loss" else 1.0
        cands[first_best([sign * c["valid"] for c in cands], decimals=6)]["chosen"] = True
    return sorted(table, key=lambda t: (t["dataset"], t["method"], -t["valid"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--method", help="only this method")
    ap.add_argument("--csv", type=Path, help="also write the per-configuration table here")
    args = ap.parse_args(argv)
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        print(f"choose_on_valid: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    table = choose(collect(args.folders, args.method))
    if not table:
        print("choose_on_valid: no finished trained jobs found", file=sys.stderr)
        return 1
    print("| dataset | method | configuration | seeds | valid (kept epoch) | valid acc | test six-pattern avg "
          "| test full | chosen on valid |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in table:
        where = t["point"] if len(args.folders) == 1 else f"{t['folder']}: {t['point']}"
        print(f"| {t['dataset']} | {t['method']} | {where} | {t['seeds']} | {t['valid']:.2f} ({t['select_metric']}) "
              f"| {t['valid_accuracy']:.2f} | {t['test_six']:.2f} ± {t['test_six_std']:.2f} | {t['test_full']:.2f} "
              f"| {'**yes**' if t['chosen'] else ''} |")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

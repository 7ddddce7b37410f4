"""Choose a configuration on the valid split from a `mmlab compare` or `mmlab sweep` folder.

    .venv/bin/python tools/choose_on_valid.py sweeps/capacity             # every dataset of a sweep
    .venv/bin/python tools/choose_on_valid.py cmp_a cmp_b --method zero_fill   # across folders
    .venv/bin/python tools/choose_on_valid.py sweeps/capacity --csv valid.csv

For every job (dataset, method, grid point, seed) it reads the run's ``metrics.csv`` and takes,
for the last stage that validates (CM-ARR's linear probes ``probe_<m>`` excluded, or ``--stage``),
the epoch the Trainer kept: the first strict best of the stage's selection metric (the stage's
``select_metric`` in the run's ``config.json``; ``loss`` and ``mae`` are lower-is-better), as
`mmlab.train.Trainer` keeps it. A configuration's score is the mean over its seeds of that valid
value; the chosen one per (dataset, method) is the best, ties to the first in the printed order
(job folders sorted by name). Test rows are printed beside it for reading, never used to choose.
Beside every other configuration: its valid score minus the chosen one's, paired by seed, with
the standard error of that mean difference over the seeds both ran (two or more; with fewer,
"-"): a difference within about two standard errors is one the valid split does not resolve.
Configurations with different seed sets are named on stderr; a seed twice in one configuration
(two runs of the same point inside one folder, e.g. nested compares) is refused.

ADMC selects each scenario's fusion model (stages ``mf_*``) on its own scenario, so its last
stage is not a model-level score: such runs are refused unless ``--stage`` names the stage.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from mmlab.methods.base import LOWER_IS_BETTER


def kept_valid(run_dir: Path, stage: str | None = None) -> dict:
    """The valid metrics at the kept epoch of the run's last validating stage (or ``stage``), with
    the stage's name (``stage``), the epoch (``epoch``) and its selection metric (``select_metric``)."""
    metrics, config = run_dir / "metrics.csv", run_dir / "config.json"
    if not metrics.exists() or not config.exists():
        raise FileNotFoundError(f"{run_dir}: expected metrics.csv and config.json of a finished run")
    by_stage: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    with open(metrics, newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] == "valid" and not row["stage"].startswith("probe_"):
                by_stage[row["stage"]][int(row["epoch"])][row["metric"]] = float(row["value"])
    if stage is None:
        if sum(name.startswith("mf_") for name in by_stage) > 1:
            raise ValueError(f"{run_dir}: every mf_* stage is selected on its own scenario (ADMC), so no "
                             f"one stage scores the model; name one with --stage (stages: {list(by_stage)})")
        stage = list(by_stage)[-1] if by_stage else None
    if stage not in by_stage:
        raise ValueError(f"{metrics}: no valid rows for stage {stage!r} (stages with valid rows: {list(by_stage)})")
    select = _select_metric(json.loads(config.read_text()), stage)
    lower = select in LOWER_IS_BETTER
    best_epoch, best = None, None
    for epoch in sorted(by_stage[stage]):  # the Trainer's rule: strictly better than the best so far
        value = by_stage[stage][epoch].get(select)
        if value is not None and (best is None or (value < best if lower else value > best)):
            best_epoch, best = epoch, value
    if best_epoch is None:
        raise ValueError(f"{metrics}: stage {stage!r} has no valid {select!r}")
    return {**by_stage[stage][best_epoch], "stage": stage, "epoch": best_epoch, "select_metric": select}


def _select_metric(cfg: dict, stage: str) -> str:
    """The stage's ``select_metric`` (``config.json`` holds each stage's `TrainConfig` under ``stages``)."""
    return str((cfg.get("stages") or {}).get(stage, {}).get("select_metric", "macro_recall"))


def test_average(job_dir: Path) -> tuple[float, float]:
    """(six-pattern average, full input) test accuracy of a job's pattern rows (the ``full``
    protocol's when it ran without ``patterns``, e.g. `handwritten`), NaN where absent."""
    rows_file = next((f for f in (job_dir / "rows.test.patterns.csv", job_dir / "rows.test.full.csv") if f.exists()), None)
    if rows_file is None:
        return float("nan"), float("nan")
    with open(rows_file, newline="") as f:
        rows = list(csv.DictReader(f))
    six = [float(r["accuracy"]) for r in rows if r["condition"] not in ("full", "Average")]
    full = [float(r["accuracy"]) for r in rows if r["condition"] == "full"]
    return (float(np.mean(six)) if six else float("nan")), (float(np.mean(full)) if full else float("nan"))


def collect(folders: list[Path], method: str | None, stage: str | None = None) -> list[dict]:
    """One row per finished trained job of the folders (a compare folder or each dataset of a
    suite/sweep); references without a training run (the Bayes oracle) have no run folder."""
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
                continue  # an unfinished job, or a reference without a training run (the oracle)
            point = " ".join(spec.get("overrides", [])) or "(defaults)"
            valid = kept_valid(run_dir, stage)
            six, full = test_average(job_dir)
            out.append({"folder": str(folder), "dataset": spec["dataset"], "method": spec["method"], "point": point,
                        "seed": spec["seed"], "run": str(run_dir), "stage": valid["stage"], "epoch": valid["epoch"],
                        "select_metric": valid["select_metric"],
                        "valid": valid[valid["select_metric"]] * (1 if valid["select_metric"] in LOWER_IS_BETTER
                                                                  else 100),
                        "valid_accuracy": 100 * valid.get("accuracy", float("nan")),
                        "test_six": 100 * six, "test_full": 100 * full})
    return out


def paired_difference(values: dict, reference: dict) -> tuple[float, float]:
    """Mean over the seeds both have of ``values - reference`` and its standard error (NaN with
    fewer than two shared seeds)."""
    diff = np.array([values[s] - reference[s] for s in values if s in reference], dtype=float)
    if len(diff) < 2:
        return float("nan"), float("nan")
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))


def choose(rows: list[dict]) -> list[dict]:
    """Per (dataset, method, folder + point): mean over seeds; ``chosen`` marks the valid choice."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["method"], r["folder"], r["point"])].append(r)

    def valid_by_seed(t: dict) -> dict:
        return {r["seed"]: r["valid"] for r in groups[(t["dataset"], t["method"], t["folder"], t["point"])]}

    table = []
    for (dataset, method, folder, point), rs in groups.items():
        mean = {k: float(np.mean([r[k] for r in rs])) for k in ("valid", "valid_accuracy", "test_six", "test_full")}
        std = float(np.std([r["test_six"] for r in rs]))
        metrics = {r["select_metric"] for r in rs}
        table.append({"dataset": dataset, "method": method, "folder": folder, "point": point, "seeds": len(rs),
                      "select_metric": "/".join(sorted(metrics)), **mean, "test_six_std": std, "chosen": False,
                      "valid_minus_chosen": float("nan"), "paired_se": float("nan")})
        seeds = [r["seed"] for r in rs]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{dataset} / {method} / {point}: a seed occurs twice in {folder} "
                             f"({sorted(seeds)}); pass each run once")
    for key in dict.fromkeys((t["dataset"], t["method"]) for t in table):
        cands = [t for t in table if (t["dataset"], t["method"]) == key]
        metrics = {c["select_metric"] for c in cands}
        if len(metrics) > 1:
            raise ValueError(f"{key[0]} / {key[1]}: the configurations were selected on different metrics "
                             f"{sorted(metrics)}; their valid scores cannot be compared")
        seed_sets = {tuple(sorted(valid_by_seed(c))) for c in cands}
        if len(seed_sets) > 1:
            print(f"choose_on_valid: {key[0]} / {key[1]}: configurations ran different seeds "
                  f"{sorted(seed_sets)} (an unfinished sweep?); the paired differences use the shared ones",
                  file=sys.stderr)
        sign = -1.0 if cands[0]["select_metric"] in LOWER_IS_BETTER else 1.0
        chosen = max(cands, key=lambda c: sign * c["valid"])  # max keeps the first of equals
        chosen["chosen"] = True
        for c in cands:
            if c is not chosen:
                c["valid_minus_chosen"], c["paired_se"] = paired_difference(valid_by_seed(c), valid_by_seed(chosen))
    sign_of = {t["select_metric"]: (-1.0 if t["select_metric"] in LOWER_IS_BETTER else 1.0) for t in table}
    return sorted(table, key=lambda t: (t["dataset"], t["method"], -sign_of[t["select_metric"]] * t["valid"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--method", help="only this method")
    ap.add_argument("--stage", help="read this stage's valid rows (default: the last validating stage)")
    ap.add_argument("--csv", type=Path, help="also write the per-configuration table here")
    args = ap.parse_args(argv)
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        print(f"choose_on_valid: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        table = choose(collect(args.folders, args.method, args.stage))
    except (ValueError, FileNotFoundError) as err:
        print(f"choose_on_valid: {err}", file=sys.stderr)
        return 2
    if not table:
        print("choose_on_valid: no finished trained jobs found", file=sys.stderr)
        return 1
    print("| dataset | method | configuration | seeds | valid (kept epoch) | valid - chosen (paired SE) | valid acc "
          "| test six-pattern avg | test full | chosen on valid |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in table:
        where = t["point"] if len(args.folders) == 1 else f"{t['folder']}: {t['point']}"
        six = "-" if np.isnan(t["test_six"]) else f"{t['test_six']:.2f} ± {t['test_six_std']:.2f}"
        diff = "" if t["chosen"] else ("-" if np.isnan(t["valid_minus_chosen"])
                                       else f"{t['valid_minus_chosen']:+.2f} ({t['paired_se']:.2f})")
        print(f"| {t['dataset']} | {t['method']} | {where} | {t['seeds']} | {t['valid']:.2f} ({t['select_metric']}) "
              f"| {diff} | {t['valid_accuracy']:.2f} | {six} | {t['test_full']:.2f} "
              f"| {'**yes**' if t['chosen'] else ''} |")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

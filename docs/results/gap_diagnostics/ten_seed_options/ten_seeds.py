"""Issue #18: four options of the baselines' imputer / classifier stage (`train.lr` 5e-4,
`train.ema` 0.995, `train.batch_size` 32, `train.ema_warmup` 3 or 1) against the default (lr 1e-3,
ema 0.99, batch 64, ema_warmup 9), chosen on valid over ten seeds by a rule written down before
the runs (docs/gap_to_oracle.md §19.1).

    .venv/bin/python docs/results/gap_diagnostics/ten_seed_options/ten_seeds.py                  # from valid_by_seed.csv, 1 s
    .venv/bin/python docs/results/gap_diagnostics/ten_seed_options/ten_seeds.py --collect lr ema batch_size ema_warmup   # sweep folders -> csv

The default arm is the ``--train.lr=0.001`` point of the ``lr`` sweep. Per method and pooled over
the three methods: the valid difference (option minus default; six-pattern UA of the kept epoch,
as `tools/choose_on_valid.py` reads it) paired by seed with its standard error, and the test
six-pattern average beside it for reading.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3] / "tools"))
from choose_on_valid import collect as read_runs, paired_difference  # noqa: E402

CSV = HERE / "valid_by_seed.csv"
DEFAULT = "--train.lr=0.001"
METHODS = ("ae", "cra", "zero_fill")
RULE = ("adopt an option only if its paired valid difference is positive for each of ae, cra, zero_fill "
        "and the pooled mean of the 30 differences exceeds twice its standard error")


def collect(folders: list[Path]) -> None:
    """Write every finished job's kept-epoch valid and test average of the sweep folders to ``CSV``."""
    rows = read_runs([f / "synthetic" for f in folders], method=None)
    with open(CSV, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "point", "seed", "valid_ua", "test_six"])
        for r in sorted(rows, key=lambda r: (r["method"], r["point"], r["seed"])):
            w.writerow([r["method"], r["point"], r["seed"], f"{r['valid']:.4f}", f"{r['test_six']:.4f}"])


def report() -> None:
    table: dict[tuple[str, str], dict[int, tuple[float, float]]] = {}
    with open(CSV, newline="") as f:
        for r in csv.DictReader(f):
            table.setdefault((r["method"], r["point"]), {})[int(r["seed"])] = (float(r["valid_ua"]), float(r["test_six"]))
    options = sorted({p for _, p in table} - {DEFAULT})
    print("| option | method | seeds | valid UA, default | valid UA, option | option minus default, paired (SE) "
          "| test six-pattern avg, default -> option |")
    print("|---|---|---|---|---|---|---|")
    for option in options:
        pooled_new, pooled_base, positive = {}, {}, []
        for method in METHODS:
            base, new = table[(method, DEFAULT)], table[(method, option)]
            seeds = sorted(set(base) & set(new))
            mean, se = paired_difference({s: new[s][0] for s in seeds}, {s: base[s][0] for s in seeds})
            pooled_new.update({(method, s): new[s][0] for s in seeds})
            pooled_base.update({(method, s): base[s][0] for s in seeds})
            positive.append(mean > 0)
            print(f"| {option} | {method} | {len(seeds)} | {np.mean([base[s][0] for s in seeds]):.2f} | "
                  f"{np.mean([new[s][0] for s in seeds]):.2f} | {mean:+.2f} ({se:.2f}) | "
                  f"{np.mean([base[s][1] for s in seeds]):.2f} -> {np.mean([new[s][1] for s in seeds]):.2f} |")
        mean, se = paired_difference(pooled_new, pooled_base)
        verdict = "adopt" if all(positive) and mean > 2 * se else "keep the default"
        print(f"| {option} | pooled | {len(pooled_new)} | | | {mean:+.2f} ({se:.2f}) | {verdict} |")
    print(f"\nrule: {RULE}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--collect", nargs="+", type=Path, metavar="SWEEP", help="write valid_by_seed.csv from these sweeps")
    args = ap.parse_args(argv)
    if args.collect:
        collect(args.collect)
    report()


if __name__ == "__main__":
    main()

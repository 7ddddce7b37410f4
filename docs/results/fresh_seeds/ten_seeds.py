"""Issue #18: the six-pattern average on `synthetic` over ten seeds, the README's five (1111-1115,
the seeds every CPU default was chosen on) and five fresh ones (1116-1120, this folder), for the
single models and the variants nearest the oracle, `admc_cond` (docs/gap_to_oracle.md §18.4)
and the other learned methods of the README's table but the three by-design ones (§19.2). Reads stored
rows only, about a second:

    .venv/bin/python docs/results/fresh_seeds/ten_seeds.py
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1]
README_ROWS = [RESULTS / "baselines_skip" / "synthetic", RESULTS / "ensembles" / "synthetic",
               RESULTS / "specialists" / "synthetic", RESULTS / "admc_cond_tskip" / "synthetic",
               RESULTS / "full_suite_cmarr" / "synthetic", RESULTS / "admc_token_skip" / "synthetic",
               RESULTS / "pooled_linear" / "synthetic"]
FRESH_ROWS = [RESULTS / "fresh_seeds" / "singles", RESULTS / "fresh_seeds" / "variants",
              RESULTS / "fresh_seeds" / "admc_cond", RESULTS / "fresh_seeds" / "others", RESULTS / "fresh_seeds" / "admc"]
METHODS = ("cra_x3", "ae_x3", "zero_fill_pp", "cra", "ae", "zero_fill", "mean_fill", "dicmor", "mmin",
           "cmarr", "admc", "admc_wo_adn", "admc_wo_itfn", "admc_cond")


def averages(folders: list[Path]) -> dict[str, dict[int, float]]:
    """method -> seed -> six-pattern average accuracy (%), from the folders' results.csv; the first
    folder that holds a method's rows wins (the README's order)."""
    out: dict[str, dict[int, float]] = {}
    for folder in folders:
        found: dict[str, dict[int, float]] = {}
        with open(folder / "results.csv", newline="") as f:
            for r in csv.DictReader(f):
                if r["protocol"] == "pattern" and r["condition"] == "Average":
                    found.setdefault(r["method"], {})[int(r["seed"])] = 100 * float(r["accuracy"])
        for method, seeds in found.items():
            out.setdefault(method, seeds)
    return out


def main() -> None:
    first, fresh = averages(README_ROWS), averages(FRESH_ROWS)
    oracle = float(np.mean(list(first["bayes_oracle"].values())))
    pooled = float(np.mean(list(first["pooled_linear"].values())))  # the same for every seed
    print("| method | seeds 1111-1115 (README) | seeds 1116-1120 | ten seeds (± SE) | under the oracle, ten seeds "
          "| under `pooled_linear`, ten seeds |")
    print("|---|---|---|---|---|---|")
    for m in METHODS:
        a = np.array([first[m][s] for s in range(1111, 1116)])
        b = np.array([fresh[m][s] for s in range(1116, 1121)])
        both = np.concatenate([a, b])
        print(f"| {m} | {a.mean():.2f} ± {a.std():.2f} | {b.mean():.2f} ± {b.std():.2f} | {both.mean():.2f} ± "
              f"{both.std(ddof=1) / np.sqrt(len(both)):.2f} | {oracle - both.mean():.2f} | {pooled - both.mean():.2f} |")


if __name__ == "__main__":
    main()

"""Issue #18: which availability patterns `zero_fill_pp_shared` gave to the shared model, from the
``calibration.json`` of every run of a `mmlab compare` folder (the Trainer's per-pattern choice on
valid accuracy; mmlab/methods/specialists.py). Prints, per pattern, in how many seeds the shared
model was chosen, and the valid accuracy of each source averaged over the seeds.

    .venv/bin/python docs/results/specialists/choices.py pps/synthetic
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from mmlab.tables import markdown_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a `mmlab compare` --out folder with zero_fill_pp_shared runs")
    args = ap.parse_args()
    runs = sorted(args.folder.glob("runs/*/seed*/calibration.json"))
    if not runs:
        raise SystemExit(f"choices: no runs/*/seed*/calibration.json under {args.folder}")
    shared: dict[str, int] = defaultdict(int)
    valid: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in runs:
        record = json.loads(path.read_text())
        for pattern, combo in record["test_options_per_pattern"].items():
            shared[pattern] += combo["source"] == "shared"
        for scores in record["scores"]:
            for pattern in record["test_options_per_pattern"]:
                valid[pattern][scores["source"]].append(100 * scores[pattern])
    rows = [["{" + p.replace("+", ",") + "}", f"{shared[p]} / {len(runs)}",
             *(f"{sum(v) / len(v):.2f}" for v in (valid[p]["specialist"], valid[p]["shared"]))]
            for p in sorted(shared, key=lambda p: (p.count("+"), p))]
    print(markdown_table(["pattern", "shared chosen (seeds)", "valid acc specialist", "valid acc shared"], rows))


if __name__ == "__main__":
    main()

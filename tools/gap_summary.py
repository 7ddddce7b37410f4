"""Per method: how far from the Bayes oracle and from `pooled_linear` at the start of issue #18
and now, and how much closed (the table of `docs/gap_to_oracle.md` §17).

    D=docs/results
    .venv/bin/python tools/gap_summary.py --start $D/full_comparison $D/full_suite_cmarr/before_c16 $D/admc_cond \\
        --now $D/baselines_skip $D/admc_token_skip $D/admc_cond_tskip $D/full_suite_cmarr $D/pooled_linear \\
              $D/kernel_experts $D/ensembles

Each side reads its folders as the README's tables do (`tools/readme_tables.py`: the rows of one
(method, seed, split, protocol) come from the first folder that holds them). Cells are the
six-pattern average accuracy on `synthetic` (five seeds), in points under the oracle and under
`pooled_linear`, and the all-views accuracy on `handwritten` where a side has rows for it.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from mmlab.errors import MMLabError
from mmlab.tables import markdown_table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script whose row reading the README's tables use
from readme_tables import LINEAR, ORACLE, REFERENCES, _rows  # noqa: E402


def _averages(folders: list[Path]) -> dict[str, tuple[float, float]]:
    """method -> (mean, std) of the six-pattern average on `synthetic`, in points."""
    return {a["method"]: (100 * a["accuracy_mean"], 100 * a.get("accuracy_std", 0.0)) for a in _rows(folders, "synthetic")
            if a["protocol"] == "pattern" and a["condition"] == "Average" and _number(a.get("accuracy_mean"))}


def _all_views(folders: list[Path]) -> dict[str, float]:
    return {a["method"]: 100 * a["accuracy_mean"] for a in _rows(folders, "handwritten")
            if a["protocol"] == "pattern" and a["condition"] == "full" and _number(a.get("accuracy_mean"))}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def summary(start: list[Path], now: list[Path]) -> str:
    """The markdown table: learned methods ordered by their distance to the oracle now."""
    before, after = _averages(start), _averages(now)
    hw_before, hw_after = _all_views(start), _all_views(now)
    if ORACLE not in after or LINEAR not in after:
        sys.exit(f"gap_summary: the --now folders hold no {ORACLE} / {LINEAR} rows on synthetic")
    oracle, linear = after[ORACLE][0], after[LINEAR][0]
    methods = sorted((m for m in after if m not in REFERENCES), key=lambda m: -after[m][0])
    rows = []
    for m in [*methods, LINEAR, "kernel_experts"]:
        if m not in after:
            continue
        mean, std = after[m]
        was = oracle - before[m][0] if m in before else None
        hw = f"{hw_before[m]:.2f} -> " if m in hw_before and m in hw_after else ""
        rows.append([
            m if m not in REFERENCES else f"{m} (reference)",
            "" if was is None else f"{was:.2f}",
            f"{mean:.2f} ± {std:.2f}",
            f"{oracle - mean:.2f}",
            "" if was is None else f"{was - (oracle - mean):+.2f}",
            f"{linear - mean:.2f}",
            f"{hw}{hw_after[m]:.2f}" if m in hw_after else "",
        ])
    header = ["method", "under the oracle at the start", "six-pattern avg now", "under the oracle now",
              "closed", f"under {LINEAR} now", "handwritten all views (start -> now)"]
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--start", nargs="+", type=Path, required=True, help="folders with the rows of the issue's start")
    p.add_argument("--now", nargs="+", type=Path, required=True, help="folders with the rows at the defaults now")
    args = p.parse_args(argv)
    for f in [*args.start, *args.now]:
        if not f.is_dir():
            sys.exit(f"gap_summary: {f} is not a folder")
    try:
        print(summary(args.start, args.now), end="")
    except MMLabError as err:
        sys.exit(f"gap_summary: {err}")


if __name__ == "__main__":
    main()

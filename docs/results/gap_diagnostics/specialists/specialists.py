"""One `zero_fill` per availability pattern against the one shared model, at the CPU defaults
(issue #18, "how often each pattern is seen in training"; docs/gap_to_oracle.md §17.1).

    OMP_NUM_THREADS=1 .venv/bin/python docs/results/gap_diagnostics/specialists/specialists.py specialists

For each of the six missing patterns, `synthetic` is cut down to the pattern's modalities and
`zero_fill` is trained, selected (valid, that pattern only) and tested on it: a specialist that
sees its pattern in every step, where the shared model sees each pattern one step in seven. Five
seeds, the same test rows as the full suite. The shared model's rows are the README's
(`docs/results/baselines_skip/`), `pooled_linear`'s and the oracle's those of the same folders.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from mmlab.data import load_dataset
from mmlab.evaluate import aggregate, read_results
from mmlab.experiments import compare

ROOT = Path(__file__).resolve().parents[4]
SEEDS = [1111, 1112, 1113, 1114, 1115]
PATTERNS = [("A",), ("V",), ("T",), ("A", "V"), ("A", "T"), ("V", "T")]


def main(out: Path) -> None:
    syn = load_dataset("synthetic")
    for mods in PATTERNS:
        folder = out / "".join(mods)
        if not (folder / "results.csv").exists():
            solo = replace(syn, modalities=mods, feats={m: syn.feats[m] for m in mods},
                           lengths={m: syn.lengths[m] for m in mods}, info={})
            compare(solo, ["zero_fill"], protocol="full", seeds=SEEDS, out=folder, workers=2, progress=False,
                    overrides=["--train_on=full", "--validate_on=full"])
    shared = [r for r in read_results(ROOT / "docs/results/baselines_skip/synthetic/results.csv")
              if r["protocol"] == "pattern"]
    linear = read_results(ROOT / "docs/results/pooled_linear/synthetic/results.csv")
    look = {(a["method"], a["condition"]): a for a in aggregate([*shared, *linear])}
    print("| pattern | shared `zero_fill` | specialist `zero_fill` | specialist - shared | `pooled_linear` | oracle |")
    print("|---|---|---|---|---|---|")
    gains, sums = [], {"shared": 0.0, "solo": 0.0}
    for mods in PATTERNS:
        cond = "{" + "".join(mods) + "}"
        solo_rows = [r for r in read_results(out / "".join(mods) / "results.csv")
                     if r["method"] == "zero_fill" and r["condition"] == "full"]
        solo = aggregate(solo_rows)[0]
        sh = look[("zero_fill", cond)]
        gain = 100 * (solo["accuracy_mean"] - sh["accuracy_mean"])
        gains.append(gain)
        sums["shared"] += 100 * sh["accuracy_mean"] / len(PATTERNS)
        sums["solo"] += 100 * solo["accuracy_mean"] / len(PATTERNS)
        print(f"| {cond} | {100 * sh['accuracy_mean']:.2f} ± {100 * sh['accuracy_std']:.2f} "
              f"| {100 * solo['accuracy_mean']:.2f} ± {100 * solo['accuracy_std']:.2f} | {gain:+.2f} "
              f"| {100 * look[('pooled_linear', cond)]['accuracy_mean']:.2f} "
              f"| {100 * look[('bayes_oracle', cond)]['accuracy_mean']:.2f} |")
    avg = {k: 100 * look[(k, "Average")]["accuracy_mean"] for k in ("pooled_linear", "bayes_oracle")}
    print(f"| six-pattern average | {sums['shared']:.2f} | {sums['solo']:.2f} | {sum(gains) / len(gains):+.2f} "
          f"| {avg['pooled_linear']:.2f} | {avg['bayes_oracle']:.2f} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: specialists.py OUT_FOLDER")
    main(Path(sys.argv[1]))

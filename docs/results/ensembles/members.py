"""Issue #18: a deep ensemble against its own members, from the run folders of a `mmlab compare`
of ``*_x3`` methods (mmlab/methods/ensemble.py). Member 0 of a run is exactly the single run of
the member method with the run's seed, and members 1 and 2 are single runs with derived seeds,
so every ensemble comes with three single models trained beside it: a paired comparison.

For every run: the valid-split score the baselines select on (macro recall averaged over the
six patterns; all view subsets but the full one on `handwritten`) and the test score of the
protocol (`synthetic`, rings: the six-pattern average accuracy; `handwritten`: all views), for
the ensemble and for each member. Nothing is chosen here; the test column is only read.

    OMP_NUM_THREADS=1 .venv/bin/python docs/results/ensembles/members.py ens_syn --data synthetic
    OMP_NUM_THREADS=1 .venv/bin/python docs/results/ensembles/members.py ens_hw --data handwritten --protocol full
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from mmlab.data import load_dataset
from mmlab.evaluate import evaluate, validate_classifier
from mmlab.experiments import conditions_for, method_input
from mmlab.methods import make_method
from mmlab.train import TrainConfig, Trainer


def test_score(method, data, protocol: str, seed: int) -> float:
    rows = evaluate(method, data, conditions=conditions_for(protocol, data), seed=seed, train=data.subset("train"))
    want = "Average" if protocol == "patterns" else "full"
    return 100 * next(r["accuracy"] for r in rows if r["condition"] == want)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a `mmlab compare` --out folder of *_x3 methods")
    ap.add_argument("--data", required=True, help="the dataset the compare ran on (name or .npz path)")
    ap.add_argument("--protocol", default="patterns", choices=("patterns", "full"))
    args = ap.parse_args()
    base = load_dataset(args.data)  # once: every run of the folder reads the same dataset
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in sorted(args.folder.glob("runs/*/seed*")):
        config = json.loads((run / "config.json").read_text())
        name, seed = config["method"]["name"], int(config["train"]["seed"])
        data = method_input(name, base)
        valid_rows = data.subset("valid")
        method = make_method(name, data, seed=seed)
        Trainer(method, data, run, TrainConfig(seed=seed, progress=False)).fit()  # finished: loads the kept weights
        method.eval()
        scored = {"ensemble": method, **{f"member{i}": m for i, m in enumerate(method.members)}}
        line = []
        for label, model in scored.items():
            valid = 100 * validate_classifier(model, valid_rows, "six")["macro_recall"]
            test = test_score(model, data, args.protocol, seed)
            table[name][f"{label} valid"].append(valid)
            table[name][f"{label} test"].append(test)
            line.append(f"{label} {valid:.2f}/{test:.2f}")
        print(f"{name} seed {seed} (valid UA / test): " + ", ".join(line), flush=True)
    print("\n| method | valid UA: single (15 runs) -> ensemble (5) | test: single -> ensemble | "
          "ensemble better than its mean member, valid / test (of 5) |\n|---|---|---|---|")
    for name, cols in table.items():
        single = {s: np.array([cols[f"member{i} {s}"] for i in range(3)]) for s in ("valid", "test")}
        ens = {s: np.array(cols[f"ensemble {s}"]) for s in ("valid", "test")}
        wins = {s: int((ens[s] > single[s].mean(0)).sum()) for s in ("valid", "test")}
        print(f"| `{name}` | {single['valid'].mean():.2f} ± {single['valid'].std():.2f} -> "
              f"{ens['valid'].mean():.2f} ± {ens['valid'].std():.2f} | {single['test'].mean():.2f} ± "
              f"{single['test'].std():.2f} -> {ens['test'].mean():.2f} ± {ens['test'].std():.2f} | "
              f"{wins['valid']} / {wins['test']} |")


if __name__ == "__main__":
    main()

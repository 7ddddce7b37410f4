"""Issue #18 (docs/gap_to_oracle.md §12), `handwritten` with all views: the test rows `ae` misses
(five seeds), then the neural product of experts of `experts.py`, three seeds, at its defaults
and two variants (about 5 minutes):

    OMP_NUM_THREADS=1 .venv/bin/python docs/results/gap_diagnostics/handwritten_last_points/neural.py OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from mmlab.data import load_dataset
from mmlab.evaluate import aggregate, predict, read_results
from mmlab.experiments import compare, train_method
from mmlab.methods import register_method

sys.path.insert(0, str(Path(__file__).parent))
register_method("poe", "experts:ProductOfExperts")

VARIANTS = {
    "default": [],
    "60 epochs, patience 20": ["train.epochs=60", "train.patience=20"],
    "60 epochs, 256 wide, dropout 0.5": ["train.epochs=60", "train.patience=20", "encoder.d_out=256", "hidden=256",
                                         "dropout=0.5"],
}



def ae_errors(out: Path) -> None:
    data = load_dataset("handwritten")
    test = data.subset("test")
    for seed in range(1111, 1116):
        method = train_method("ae", data, out / "ae" / f"seed{seed}", seed=seed, progress=False)
        wrong = np.flatnonzero(predict(method, test).argmax(1) != test.y)
        print(f"ae seed {seed}: all views {100 - 100 * len(wrong) / len(test.y):.2f}, misses test rows {wrong.tolist()}")


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "poe_handwritten")
    ae_errors(out)
    for i, (name, overrides) in enumerate(VARIANTS.items()):
        csv = compare("handwritten", ["poe"], protocol="full", seeds=(1111, 1112, 1113), out=out / f"v{i}",
                      overrides=overrides, progress=False)[0]
        row = next(r for r in aggregate(read_results(csv)) if r["method"] == "poe")
        print(f"{name}: all views {100 * row['accuracy_mean']:.2f} ± {100 * row['accuracy_std']:.2f} (3 seeds)")

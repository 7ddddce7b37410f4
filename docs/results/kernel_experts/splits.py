"""Issue #18: `kernel_experts` (mmlab/methods/kernel_experts.py) at its defaults on `handwritten`
with all views, over five splits of the default protocol (split_seed 0 is mmlab's), beside the
product of RBF-SVM experts of docs/results/gap_diagnostics/handwritten_last_points/classical.py.
Choices on valid; the test split is only scored. About 6 minutes on one core.

    OMP_NUM_THREADS=1 .venv/bin/python docs/results/kernel_experts/splits.py
"""

from __future__ import annotations

import numpy as np

from mmlab.data import load_dataset
from mmlab.evaluate import Condition, evaluate
from mmlab.methods import make_method
from mmlab.missing.modality import Full


def main() -> None:
    full = [Condition("pattern", "full", Full())]
    tests = []
    for split_seed in range(5):
        data = load_dataset("handwritten", split_seed=split_seed)
        method = make_method("kernel_experts", data, seed=1111)
        choices = method.fit(data.training_view())
        acc = {s: 100 * evaluate(method, data, split=s, conditions=full)[0]["accuracy"] for s in ("valid", "test")}
        tests.append(acc["test"])
        print(f"split_seed {split_seed}: all views test {acc['test']:.2f} (valid {acc['valid']:.2f}); "
              f"C {choices['C']}, gamma factor {choices['gamma_factor']}", flush=True)
    print(f"mean over the five splits: {np.mean(tests):.2f}")


if __name__ == "__main__":
    main()

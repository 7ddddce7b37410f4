"""Issue #18, `handwritten` with all views: does a kernel per view reach 99.0 with *early* fusion,
the fusion every neural method of mmlab uses? (docs/gap_to_oracle.md §18.2). scikit-learn only,
CPU, about 2 minutes.

Each view's standardised vector goes through random Fourier features of an RBF kernel
(`RBFSampler`, 1000 features a view, width = factor / the view's columns, the parametrisation of
`kernel_experts`); the six blocks are concatenated (a sum of per-view kernels) and one multinomial
logistic regression reads them. The (factor, C) pair is chosen on valid accuracy, first best in
the printed order; the test split is only scored.

    OMP_NUM_THREADS=1 .venv/bin/python docs/results/gap_diagnostics/handwritten_last_points/kernel_early_fusion.py
"""

from __future__ import annotations

import numpy as np
from sklearn.kernel_approximation import RBFSampler
from sklearn.linear_model import LogisticRegression

from mmlab.data import load_dataset

FACTORS = (0.125, 0.25, 0.5, 1.0)
CS = (0.1, 1.0, 10.0, 100.0)


def main() -> None:
    d = load_dataset("handwritten")
    split, y = d.split, d.y
    train = split == "train"
    best = None
    for factor in FACTORS:
        blocks = []
        for i, m in enumerate(d.modalities):
            x = d.feats[m][:, 0]  # each view is one standardised vector
            blocks.append(RBFSampler(gamma=factor / x.shape[1], n_components=1000, random_state=i).fit(x[train]).transform(x))
        features = np.concatenate(blocks, 1)
        for c in CS:
            pred = LogisticRegression(C=c, max_iter=2000).fit(features[train], y[train]).predict(features)
            acc = {s: 100 * float((pred[split == s] == y[split == s]).mean()) for s in ("valid", "test")}
            print(f"factor {factor:<5} C {c:<5}: valid {acc['valid']:.2f}  test {acc['test']:.2f}", flush=True)
            if best is None or acc["valid"] > best[0]:
                best = (acc["valid"], acc["test"], factor, c)
    print(f"chosen on valid: factor {best[2]}, C {best[3]}: valid {best[0]:.2f}, test {best[1]:.2f}")


if __name__ == "__main__":
    main()

"""Issue #18, docs/gap_to_oracle.md §9.2: `pooled_linear`'s recipe (one logistic regression per
pattern, standardised on train, C on valid among 0.01, 0.1, 1) on the frame means, the frame sums,
both, or the means with the frame count and count x mean: does the frame count help?

    OMP_NUM_THREADS=1 .venv/bin/python docs/results/gap_diagnostics/pooled_counts.py     # about 10 s
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from mmlab.data import load_dataset

d = load_dataset("synthetic")
split = {s: np.where(d.split == s)[0] for s in ("train", "valid", "test")}
PAT = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)]


def feats(idx, kind):
    out = []
    for m in d.modalities:
        x, ln = d.feats[m][idx], d.lengths[m][idx]
        real = (np.arange(x.shape[1])[None, :] < ln[:, None])[..., None]
        s = (x * real).sum(1)
        mean = s / ln[:, None]
        if kind == "mean":
            out.append(mean)
        elif kind == "sum":
            out.append(s / ln.mean())
        elif kind == "both":
            out.append(np.concatenate([mean, s / ln.mean()], 1))
        elif kind == "mean_n":
            out.append(np.concatenate([mean, ln[:, None] / ln.mean(), mean * ln[:, None] / ln.mean()], 1))
    return out


for kind in ["mean", "sum", "both", "mean_n"]:
    F = {s: feats(i, kind) for s, i in split.items()}
    accs = []
    for p in PAT:
        def cols(s):
            return np.concatenate([F[s][j] for j in range(3) if p[j]], 1)
        Xtr = cols("train")
        mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-9
        def z(s):
            return (cols(s) - mu) / sd
        best = None
        for C in (0.01, 0.1, 1):
            clf = LogisticRegression(C=C, max_iter=2000).fit(z("train"), d.y[split["train"]])
            v = clf.score(z("valid"), d.y[split["valid"]])
            if best is None or v > best[0]:
                best = (v, clf.score(z("test"), d.y[split["test"]]))
        accs.append(best[1])
    print(kind, "six avg %.2f full %.2f" % (100 * np.mean(accs[:6]), 100 * accs[6]), [round(100 * a, 1) for a in accs])

"""Issue #18, docs/gap_to_oracle.md §9.2: a plain-torch MLP / linear model on standardised per-modality
frame means, with and without the three availability flags as inputs, trained under the
RandomPattern law (full input 1/7, else one of the six patterns), 40 epochs, selected on valid
six-pattern accuracy, optionally with the weight average (TensorFlow warm-up). Five seeds each.

    OMP_NUM_THREADS=1 .venv/bin/python docs/results/gap_diagnostics/plain_torch_flags.py   # about 3 min
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import sys
import copy
from mmlab.data import load_dataset

torch.set_num_threads(1)
d = load_dataset(sys.argv[1] if len(sys.argv) > 1 else "synthetic")
split = {s: np.where(d.split == s)[0] for s in ("train", "valid", "test")}


def frame_means(idx):
    out = []
    for m in d.modalities:
        x, ln = d.feats[m][idx], d.lengths[m][idx]
        real = (np.arange(x.shape[1])[None, :] < ln[:, None])[..., None]
        out.append((x * real).sum(1) / ln[:, None])
    return np.concatenate(out, 1)


X = {s: frame_means(i) for s, i in split.items()}
mu, sd = X["train"].mean(0), X["train"].std(0)
X = {s: torch.tensor((x - mu) / sd, dtype=torch.float32) for s, x in X.items()}
Y = {s: torch.tensor(d.y[i]) for s, i in split.items()}
C = int(d.y.max()) + 1
PATTERNS = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=torch.bool)
DIMS = [d.feats[m].shape[2] for m in d.modalities]
D = sum(DIMS)


def columns(avail):
    return torch.cat([avail[:, i : i + 1].expand(-1, DIMS[i]) for i in range(3)], 1).float()


class Net(nn.Module):
    def __init__(self, hidden=64, drop=0.3, skip=False, linear=False, ind=True):
        super().__init__()
        self.linear = linear
        self.ind = ind
        self.f = nn.Sequential(nn.Linear(D + 3, hidden), nn.ReLU(), nn.Dropout(drop), nn.Linear(hidden, C))
        self.s = nn.Linear(D + 3, C) if (skip or linear) else None

    def forward(self, x, avail):
        z = torch.cat([x, avail.float() if self.ind else 0 * avail.float()], 1)
        if self.linear:
            return self.s(z)
        out = self.f(z)
        return out + self.s(z) if self.s is not None else out


def accuracies(model, s):
    out = []
    for p in PATTERNS:
        a = p[None].expand(len(Y[s]), -1)
        with torch.no_grad():
            out.append((model(X[s] * columns(a), a).argmax(1) == Y[s]).float().mean().item())
    return out


def train(kw, seed, epochs=40, lr=1e-3, batch=64, wd=0.0, ema=0.0):
    torch.manual_seed(seed)
    model = Net(**kw)
    avg = copy.deepcopy(model)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    best = (-1.0, None)
    n = 0
    for _ in range(epochs):
        model.train()
        for b in np.array_split(rng.permutation(len(Y["train"])), len(Y["train"]) // batch):
            full = rng.random(len(b)) < 1 / 7
            a = torch.where(torch.tensor(full)[:, None], PATTERNS[0][None], PATTERNS[1:][rng.integers(0, 6, len(b))])
            loss = F.cross_entropy(model(X["train"][b] * columns(a), a), Y["train"][b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += 1
            dec = min(ema, n / (n + 9)) if ema else 0.0
            with torch.no_grad():
                for pa, pm in zip(avg.parameters(), model.parameters()):
                    pa.mul_(dec).add_(pm, alpha=1 - dec)
        ev = avg
        ev.eval()
        valid = np.mean(accuracies(ev, "valid")[1:])
        if valid > best[0]:
            best = (valid, accuracies(ev, "test"))
    return 100 * best[0], 100 * np.mean(best[1][1:]), 100 * best[1][0]


configs = {  # §9.2's rows: with and without the availability flags
    "mlp64": (dict(), {}),
    "mlp64_noind": (dict(ind=False), {}),
    "mlp64_ema": (dict(), dict(ema=0.99)),
    "mlp64_noind_ema": (dict(ind=False), dict(ema=0.99)),
    "lin": (dict(linear=True), {}),
    "lin_noind": (dict(linear=True, ind=False), {}),
}
for name, (kw, tk) in configs.items():
    r = np.array([train(kw, s, **tk) for s in range(5)])
    print(
        f"{name:18s} valid {r[:, 0].mean():.2f} test six {r[:, 1].mean():.2f} ± {r[:, 1].std():.2f} full {r[:, 2].mean():.2f}",
        flush=True,
    )

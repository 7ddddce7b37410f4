"""Issue #18 (docs/gap_to_oracle.md §19.3), `handwritten` with all views: is the neural product of
experts (`experts.py`) short of `kernel_experts` because its experts are miscalibrated? A product
multiplies the experts' probabilities, so an over-confident view outvotes the others; the kernel
experts are fitted by log-likelihood, the neural ones are early-stopped on accuracy. After
training, each view's expert gets a temperature T_m chosen on the valid split, and the product is
taken over the tempered experts, the class prior divided out once per extra view. Two ways to
choose: "alone", the grid value of least valid log-loss of each expert alone; "jointly", the
temperatures of least valid log-loss of the product (coordinate descent over the views from
"alone", three rounds). Seeds 1111-1115, about 3 minutes:

    OMP_NUM_THREADS=1 .venv/bin/python docs/results/gap_diagnostics/handwritten_last_points/calibrated_experts.py OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from mmlab.data import load_dataset
from mmlab.evaluate import predict
from mmlab.experiments import train_method
from mmlab.methods import register_method

sys.path.insert(0, str(Path(__file__).parent))
register_method("poe", "experts:ProductOfExperts")
TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(32.0), 57))


def expert_log_posteriors(method, data) -> torch.Tensor:
    """(N, M, C) log p_m(y | x_m) of every view's expert, all views observed."""
    flat = predict(method, data, output=lambda b: method.expert_log_posteriors(b).flatten(1))
    return torch.as_tensor(flat).reshape(len(data.y), len(method.modalities), -1)


def product(log_post: torch.Tensor, temperatures: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    tempered = F.log_softmax(log_post / temperatures[None, :, None], -1)
    return tempered.sum(1) - (log_post.shape[1] - 1) * log_prior


def main(out: Path) -> None:
    data = load_dataset("handwritten")
    valid, test = data.subset("valid"), data.subset("test")
    y_valid, y_test = torch.as_tensor(valid.y), torch.as_tensor(test.y)
    for seed in range(1111, 1116):
        method = train_method("poe", data, out / f"seed{seed}", seed=seed, progress=False)
        lv, lt = expert_log_posteriors(method, valid), expert_log_posteriors(method, test)
        chosen = []
        for m in range(lv.shape[1]):
            losses = [F.cross_entropy(lv[:, m] / t, y_valid).item() for t in TEMPERATURES]
            chosen.append(float(TEMPERATURES[int(np.argmin(losses))]))
        joint = list(chosen)
        for _ in range(3):
            for m in range(lv.shape[1]):
                def loss(t, m=m):
                    temps = torch.tensor(joint[:m] + [t] + joint[m + 1:], dtype=torch.float32)
                    return F.cross_entropy(product(lv, temps, method.log_prior), y_valid).item()
                joint[m] = float(min(TEMPERATURES, key=loss))
        ones = torch.ones(lv.shape[1])
        settings = (("as trained", ones), ("alone", torch.tensor(chosen)), ("jointly", torch.tensor(joint)))
        accuracy = {name: 100 * (product(lt, temps, method.log_prior).argmax(1) == y_test).float().mean().item()
                    for name, temps in settings}
        nll = {name: F.cross_entropy(product(lv, temps, method.log_prior), y_valid).item() for name, temps in settings}
        views = " ".join(f"{m} {t:.2f}/{u:.2f}" for m, t, u in zip(method.modalities, chosen, joint))
        per_view = " ".join(f"{m} {100 * (lt[:, i].argmax(1) == y_test).float().mean().item():.2f}"
                            for i, m in enumerate(method.modalities))
        print(f"seed {seed}: all views, test (valid log-loss of the product): "
              + ", ".join(f"{name} {accuracy[name]:.2f} ({nll[name]:.3f})" for name, _ in settings)
              + f"; T alone/jointly: {views}; each view alone on test: {per_view}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "calibrated_experts"))

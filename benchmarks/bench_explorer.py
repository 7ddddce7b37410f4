"""How long does a move of the diffusion explorer's start-step slider take to answer?

    python benchmarks/bench_explorer.py                       # admc at the CPU default, notebook 06's settings
    python benchmarks/bench_explorer.py --method admc_cond --steps 0 50 300 1000

Trains (or reuses, from ``--cache``) the method with notebook 06's CPU overrides, builds the
explorer state (400 test samples, UMAP fitted once), then times `mmlab.explore.diffusion_view`
for each start step n (as the widget does: its steps slider, 50 by default, respaces a longer
chain), uncached: a fresh completion of every sample from n, its projection, the
unimodal head on it, and on `synthetic` the exact-conditional cloud (computed once per modality,
timed separately). Target: a slider move answers within 2 s.
"""

from __future__ import annotations

import argparse
import time

import torch

from mmlab import explore
from mmlab.data import load_dataset

OVERRIDES = {"itfn.train.epochs": 6, "adn.train.epochs": 40, "mf.train.epochs": 6, "mf.scenarios": "full", "mmer": False}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="admc")
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 50, 80, 150, 300])
    ap.add_argument("--num-steps", type=int, default=50,
                    help="reverse transitions: the explorer's steps slider, 50 at notebook 06's default (a larger n "
                         "is respaced to it); 0 = every step")
    ap.add_argument("--sampler", default="ddpm")
    ap.add_argument("--projection", default="umap")
    ap.add_argument("--cache", default=None, help="run folder for the trained model (default: ~/.cache/mmlab)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("synthetic")
    t = time.perf_counter()
    method = explore.trained_method(args.method, data, args.cache, overrides=OVERRIDES, seed=1111)
    print(f"{args.method} trained or reloaded in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    state = explore.diffusion_state(method, data, n_samples=400, projection=args.projection, seed=1111)
    print(f"explorer state (encode 400 samples, fit {args.projection}): {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    num_steps = args.num_steps or None
    explore.diffusion_view(state, start_step=args.steps[0], sampler=args.sampler, num_steps=num_steps)
    print(f"first view (includes the exact-conditional cloud, once per modality): {time.perf_counter() - t:.2f} s")
    print(f"{'start step n':>12} {'transitions':>11} {'seconds':>8}")
    for n in args.steps[1:]:
        t = time.perf_counter()
        view = explore.diffusion_view(state, start_step=n, sampler=args.sampler, num_steps=num_steps)
        print(f"{n:>12} {view['num_steps']:>11} {time.perf_counter() - t:8.2f}")


if __name__ == "__main__":
    main()

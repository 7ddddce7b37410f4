"""Benchmark CM-ARR (mmlab.methods.cmarr): parameters and training time per epoch.

For the CPU default and the ``paper`` preset (d = 128, T = 50, K = 32 flow steps, 20 RCABs,
batch 16) on ``synthetic`` it prints the parameter count (total and per box of Fig. 2), then
times ``--batches`` optimiser steps of Eq. 14 on masked train batches (C1, mmlab/methods/cmarr.py) and extrapolates to
seconds per epoch over the whole training split. The flows alone: `benchmarks/bench_flow.py`.

    python benchmarks/bench_cmarr.py --device cpu --batches 20
    python benchmarks/bench_cmarr.py --device cuda --batches 200      # the paper preset on a GPU

Timings are the best of ``--repeats`` rounds; on a shared CPU they are noisy.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from mmlab.data.synthetic import make_synthetic
from mmlab.methods import make_method
from mmlab.utils import resolve_device

BOXES = {"UMC (alignment)": ("umc", "similarity"), "Conv1d projection": ("proj",), "flows": ("flows",),
         "RCAB reconstruction": ("rec", "z_mix"), "SPCL projection": ("spcl_proj",),
         "fusion (cross + self attention, head)": ("cross", "self_attn", "head"), "probes (C15)": ("probe",)}


def parameter_table(method: torch.nn.Module) -> dict[str, int]:
    """Parameters per box of the paper's Fig. 2 (module prefixes in ``BOXES``) and in total."""
    out = {box: sum(p.numel() for name, p in method.named_parameters() if name.split(".")[0] in prefixes)
           for box, prefixes in BOXES.items()}
    out["total"] = sum(p.numel() for p in method.parameters())
    return out


def epoch_seconds(method, data, device: torch.device, batches: int, repeats: int) -> tuple[float, int]:
    """(seconds per epoch extrapolated from the best of ``repeats`` rounds of ``batches`` steps,
    batch size)."""
    stage = method.stages(data)[0]
    method.to(device).train()
    train = data.subset("train")
    bs = stage.config.batch_size
    opt = torch.optim.Adam([p for m in stage.modules for p in m.parameters()], lr=stage.config.lr)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(train))

    def run() -> None:
        for i in range(batches):
            idx = order[(i * bs) % len(train):][:bs]
            loss, _ = stage.loss(train.batch(idx, device=device), rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run()  # warm-up (and ActNorm's data-dependent initialisation)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best / batches * math.ceil(len(train) / bs), bs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, default=20, help="optimiser steps per timed round")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--presets", default="default,paper", help="comma-separated: default, paper")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = make_synthetic()
    print(f"CM-ARR on synthetic ({len(data.subset('train'))} train utterances), device {device}, "
          f"{args.threads} thread(s), best of {args.repeats} x {args.batches} steps")
    for preset in args.presets.split(","):
        torch.manual_seed(0)
        method = make_method("cmarr", data, preset=None if preset == "default" else preset)
        params = parameter_table(method)
        secs, bs = epoch_seconds(method, data, device, args.batches, args.repeats)
        print(f"\n[{preset}] batch {bs}: {secs:.1f} s per epoch ({secs / math.ceil(len(data.subset('train')) / bs) * 1e3:.1f} "
              f"ms per step); parameters {params['total']:,}")
        for box, n in params.items():
            if box != "total":
                print(f"  {box:<40} {n:>12,}")


if __name__ == "__main__":
    main()

"""Benchmark CIDer (mmlab.methods.cider): parameters, seconds per epoch, samples per second.

Two configurations:

- the CPU default on ``synthetic_text`` (token text through the frozen all-MiniLM-L6-v2, memoised
  for complete rows; the student's masked text runs the encoder every step);
- CMU-MOSI's unaligned configuration of CIDer's public code (d = 32, 8 heads, text as 768-d
  BERT features x 50 tokens, audio 5 x 375, vision 20 x 500; a zero-filled stand-in, so no
  licensed data is needed; text encoder excluded as in the paper's Table VI; the binary model
  with one MCT layer), with MOSI's 1284 training utterances and batch 32 for the per-epoch figure.

A training step is both of MSSD's optimiser steps (B20 of mmlab/methods/cider.py: complete input,
then RMFM-masked input).
The paper reports 10.4 s per epoch on MOSI on an RTX 8000; run this with ``--device cuda`` on a GPU
to compare.

    python benchmarks/bench_cider.py --device cpu --steps 5

Timings are the best of ``--repeats`` rounds of ``--steps`` steps; on a shared CPU they are noisy.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from dataclasses import replace

import numpy as np
import torch

from mmlab.bench import cider_table_vi_parameters, mosi_unaligned_standin
from mmlab.data import load_dataset
from mmlab.methods import make_method
from mmlab.train import TrainConfig, Trainer
from mmlab.utils import resolve_device

MOSI_TRAIN = 1284


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(method, data, device: torch.device, steps: int, repeats: int, batch_size: int) -> float:
    """Best seconds per training step (both MSSD steps) over ``repeats`` rounds of ``steps``."""
    trainer = Trainer(method.to(device), data, Path("."), TrainConfig(device=str(device), progress=False))
    stage = method.stages(data)[0]
    cfg = replace(trainer.stage_config(stage), batch_size=batch_size)
    params, _ = trainer._freeze(stage)
    opt = trainer._optimizer(stage, cfg, params)
    trainer._set_train_mode(stage)
    rows = trainer._stage_rows(stage)
    rng = np.random.default_rng(0)
    batches = trainer._batches(rows, None, cfg, rng)

    def batch():
        nonlocal batches
        b = next(batches, None)
        if b is None:
            batches = trainer._batches(rows, None, cfg, rng)
            b = next(batches)
        return b

    trainer.train_step(stage, cfg, batch(), rng, opt, params)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(stage, cfg, batch(), rng, opt, params)
        sync(device)
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"CIDer, device {device}, {args.threads} thread(s), best of {args.repeats} x {args.steps} steps")

    data = load_dataset("synthetic_text")
    torch.manual_seed(0)
    method = make_method("cider", data)
    own = sum(p.numel() for n, p in method.named_parameters() if not n.startswith("encoder."))
    bs = method.cfg.train.batch_size
    step = time_steps(method, data, device, args.steps, args.repeats, bs)
    n_train = len(data.subset("train"))
    print(f"\n[CPU default, synthetic_text] parameters without the text encoder {own:,}; batch {bs}: "
          f"{step * math.ceil(n_train / bs):.1f} s per epoch of {n_train}, {bs / step:.0f} samples/s")

    counts = cider_table_vi_parameters()
    print("\n[MOSI unaligned configuration] parameters (paper Table VI: 247,946): "
          + ", ".join(f"{k} {v:,.0f}" for k, v in counts.items()))
    mosi = mosi_unaligned_standin(3, n=64)
    mosi = replace(mosi, split=np.array(["train"] * 48 + ["valid"] * 16))
    torch.manual_seed(0)
    method = make_method("cider", mosi, ["--mct.layers=1", "--mct.heads=8"])
    step = time_steps(method, mosi, device, args.steps, args.repeats, 32)
    print(f"  binary model, batch 32: {step * math.ceil(MOSI_TRAIN / 32):.1f} s per epoch of {MOSI_TRAIN} "
          f"(paper: 10.4 s on an RTX 8000), {32 / step:.0f} samples/s")


if __name__ == "__main__":
    main()

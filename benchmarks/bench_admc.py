"""Benchmark ADMC at its CPU default: training time per stage, ADN completion throughput, memory.

1. Trains ``admc`` (or ``--method``) on ``--data`` with the one `Trainer` into a temporary folder
   and prints the wall time, epochs run and best epoch of every stage (ITFN per modality, ADN,
   one MF per scenario, MMER).
2. With the trained ADN (or an untrained one of the same size, ``--no-train``), times MMCR
   completion of one missing modality for start steps n in ``--steps``: DDPM (every step, Eq. 3
   as printed), DDPM respaced to the method's ``sample_steps`` (the CPU default), and DDIM
   (``--ddim-steps`` strided steps), as completions per second and ms per batch.
3. Peak memory: process max RSS on CPU, ``max_memory_allocated`` on CUDA.

    python benchmarks/bench_admc.py                      # synthetic default, CPU default sizes
    python benchmarks/bench_admc.py --no-train --batch 1024
    python benchmarks/bench_admc.py --preset paper --device cuda

Timings on a shared 2-core machine are noisy (compare wall with CPU seconds); ``--threads 1``
is usually the fastest there.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import torch

from mmlab.data import load_dataset
from mmlab.methods import make_method
from mmlab.train import Trainer, TrainConfig
from mmlab.utils import resolve_device, seed_everything


class TimedTrainer(Trainer):
    """The Trainer, recording each stage's wall time (including its caches and ``on_end``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timing: dict[str, tuple[float, float]] = {}  # stage -> (wall s, process CPU s)

    def _run_stage(self, i, stage):
        t0, c0 = time.perf_counter(), time.process_time()
        out = super()._run_stage(i, stage)
        self.timing[stage.name] = (time.perf_counter() - t0, time.process_time() - c0)
        return out


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--method", default="admc")
    p.add_argument("--preset", default=None, help="method preset, e.g. paper")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--no-train", action="store_true", help="skip training; time an untrained ADN")
    p.add_argument("--batch", type=int, default=512, help="samples per completion call")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 50, 200], help="start steps n")
    p.add_argument("--ddim-steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("overrides", nargs="*", help="--section.key=value method overrides")
    args, extra = p.parse_known_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_dataset(args.data)
    seed_everything(args.seed)
    method = make_method(args.method, data, list(args.overrides) + extra, preset=args.preset)
    n_params = sum(p.numel() for p in method.parameters())
    print(f"{args.method} on {data.name}: {n_params / 1e6:.2f} M parameters, device={device}, "
          f"threads={torch.get_num_threads()}")

    if not args.no_train:
        with tempfile.TemporaryDirectory() as out:
            trainer = TimedTrainer(method, data, out, TrainConfig(seed=args.seed, device=str(device), progress=False))
            summary = trainer.fit()
        print(f"\n{'stage':<12}{'wall s':>8}{'CPU s':>8}{'epochs':>8}{'best':>6}")
        for name, (wall, cpu) in trainer.timing.items():
            s = summary[name]
            print(f"{name:<12}{wall:>8.1f}{cpu:>8.1f}{s['epochs_run']:>8}{s['best_epoch']:>6}")
        walls, cpus = zip(*trainer.timing.values())
        print(f"{'total':<12}{sum(walls):>8.1f}{sum(cpus):>8.1f}")
    method.to(device).eval()

    if getattr(method, "denoiser", None) is None:
        print("\n(no ADN in this variant: no completion timings)")
    else:
        M, D = len(method.modalities), method.d
        x = torch.randn(args.batch, M, D, device=device)
        known = torch.ones(args.batch, M, dtype=torch.bool, device=device)
        known[:, 0] = False  # one missing modality (MMCR)
        print(f"\nADN completion, batch {args.batch}, one of {M} tokens missing")
        print(f"{'sampler':<14}{'n':>5}{'calls':>7}{'ms/batch':>10}{'compl/s':>10}")
        respaced = getattr(method.cfg, "sample_steps", None) or args.ddim_steps
        for label, sampler in (("ddpm", "ddpm"), (f"ddpm-resp{respaced}", "ddpm"), ("ddim", "ddim")):
            for n in args.steps:
                # ddpm: every step n -> 0 (Eq. 3 as printed); respaced: the CPU default's transitions
                num = n if label == "ddpm" else respaced if sampler == "ddpm" else args.ddim_steps
                calls = len(method.diffusion.timesteps(n, num)) - 1
                best = float("inf")
                for r in range(args.repeats + 1):  # the first round warms up
                    g = torch.Generator(device=device).manual_seed(r)
                    sync(device)
                    t0 = time.perf_counter()
                    method.complete(x, known, start_step=n, sampler=sampler, num_steps=num, generator=g)
                    sync(device)
                    if r:
                        best = min(best, time.perf_counter() - t0)
                print(f"{label:<14}{n:>5}{calls:>7}{best * 1e3:>10.1f}{args.batch / best:>10.0f}")
    print(f"\npeak memory: {peak_mb(device):.0f} MB")


if __name__ == "__main__":
    main()

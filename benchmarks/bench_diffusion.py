"""Benchmark the masked reverse sampler of mmlab.nn.diffusion.

For a small attention denoiser stand-in (TransformerEncoder over M tokens of size D, the ADN
shape) it prints, per sampler and start step n: time per reverse step, completion throughput,
the sampler's overhead over the bare denoiser forward passes

    overhead = time(sample) / (model calls × time(one forward)) − 1      (target ≤ 10%)

the sampler's own cost per step measured with a free stand-in model (``loop us``), and peak
memory (CUDA: max_memory_allocated; CPU: process max RSS). Timings are the best of
``--repeats`` runs; on a shared CPU they are noisy, so read ``loop us`` next to ``overhead``.

    python benchmarks/bench_diffusion.py --device cpu --batch 64 --dims 128 --threads 1
    python benchmarks/bench_diffusion.py --prediction v --conditioning clean --steps 1000   --ddpm-steps 50   # admc_cond
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import torch
from torch import nn

from mmlab.nn.diffusion import DiffusionConfig, GaussianDiffusion
from mmlab.utils import resolve_device


class TinyDenoiser(nn.Module):
    """ε_θ stand-in: sinusoidal step embedding + modality embedding, pre-LN transformer, linear out."""

    def __init__(self, tokens: int = 3, dim: int = 128, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.dim = dim
        self.modality = nn.Parameter(torch.zeros(1, tokens, dim))
        self.t_mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device, dtype=x.dtype) / half)
        steps = t.to(x.dtype).reshape(x.shape[0], -1, 1)  # (B, 1, 1) or one step per token (B, M, 1)
        angles = steps * freqs
        emb = self.t_mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))
        return self.out(self.encoder(x + self.modality + emb))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_times(fns, device: torch.device, repeats: int) -> list[float]:
    """Minimum wall time of each ``fn()`` over ``repeats`` interleaved rounds (after a warm-up),
    so that load changes on a shared machine hit all of them alike."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dims", type=int, default=128, help="token size D")
    p.add_argument("--tokens", type=int, default=3, help="number of modality tokens M")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--steps", type=int, nargs="+", default=[10, 50, 200], help="start steps n")
    p.add_argument("--ddim-steps", type=int, default=10)
    p.add_argument("--ddpm-steps", type=int, default=None,
                   help="respace DDPM to this many steps (admc_cond: 50); default every step")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--prediction", default="eps", choices=["eps", "v", "x0"],
                   help="what the network predicts (admc: eps; admc_cond: v)")
    p.add_argument("--conditioning", default="replace", choices=["replace", "clean"],
                   help="replace: known tokens re-noised every step (admc); clean: fed clean with step 0 (admc_cond)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: per-core numbers, stable on a shared machine; 0 = torch's default)")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = TinyDenoiser(args.tokens, args.dims, args.layers).to(device).eval()
    diff = GaussianDiffusion(DiffusionConfig(prediction=args.prediction)).to(device)
    x_obs = torch.randn(args.batch, args.tokens, args.dims, device=device)
    known = torch.ones(1, args.tokens, 1, dtype=torch.bool, device=device)
    known[:, 0] = False  # one missing modality, the MMCR case

    # the bare calls get the step shape the sampler passes: one per token when known tokens are clean
    t = torch.full((args.batch, args.tokens) if args.conditioning == "clean" else (args.batch,), 50,
                   device=device, dtype=torch.long)

    @torch.no_grad()
    def forwards(k: int) -> None:
        for _ in range(k):
            model(x_obs, t)

    print(f"device={device} batch={args.batch} tokens={args.tokens} dims={args.dims} layers={args.layers} "
          f"threads={torch.get_num_threads()} prediction={args.prediction} conditioning={args.conditioning}")
    const = torch.zeros_like(x_obs)
    free = lambda x, t: const  # noqa: E731  (a denoiser that costs nothing: isolates the sampler)
    print(f"{'sampler':<8}{'n':>5}{'calls':>7}{'fwd ms':>8}{'ms/step':>10}{'samples/s':>12}{'overhead':>10}{'loop us':>9}{'peak MB':>10}")
    for sampler in ("ddpm", "ddim"):
        for n in args.steps:
            steps = args.ddim_steps if sampler == "ddim" else args.ddpm_steps
            calls = len(diff.timesteps(n, steps)) - 1
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            g = torch.Generator(device=device).manual_seed(0)
            kw = dict(start_step=n, sampler=sampler, num_steps=steps, generator=g,
                      conditioning=args.conditioning)
            t_fwd, t_sample, t_loop = best_times(
                [lambda: forwards(calls), lambda: diff.sample(model, x_obs, known, **kw),
                 lambda: diff.sample(free, x_obs, known, **kw)], device, args.repeats)
            mem = peak_mb(device)
            overhead = t_sample / t_fwd - 1
            print(f"{sampler:<8}{n:>5}{calls:>7}{t_fwd / calls * 1e3:>8.3f}{t_sample / calls * 1e3:>10.3f}{args.batch / t_sample:>12.0f}"
                  f"{overhead:>9.1%}{t_loop / calls * 1e6:>9.0f}{mem:>10.1f}")


if __name__ == "__main__":
    main()

"""Benchmark the Glow flow of mmlab.nn.flow: parameters, throughput and memory.

For the CPU default (``FlowConfig()``: K = 4 steps) and the paper setting (K = 32, DiCMoR's
depth; width 64 for both) it prints, on a (B, T, d) batch with every frame real:

- parameters;
- forward (x → z, log-det) and inverse (z → x) throughput without gradients, in frames/s;
- a training step (forward + backward of the standard-normal NLL), in frames/s;
- memory: on CUDA the peak ``max_memory_allocated`` of the training step; on CPU the
  activations autograd keeps for backward (``saved MB``, exact, from saved-tensor hooks) and the
  process max RSS so far (``RSS MB``, monotonic over the run).

Timings are the best of ``--repeats`` rounds; on a shared CPU they are noisy.

    python benchmarks/bench_flow.py --device cpu --repeats 3
    python benchmarks/bench_flow.py --device cuda --batch 256
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Callable

import torch

from mmlab.nn.flow import FlowConfig, Glow
from mmlab.utils import resolve_device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def saved_mb(fn: Callable[[], torch.Tensor]) -> float:
    """MB of tensors autograd saves for backward while ``fn`` builds its graph (shared storages
    counted once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values()) / 2**20


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--frames", type=int, default=50, help="sequence length T")
    p.add_argument("--dims", type=int, default=128, help="feature size d")
    p.add_argument("--hidden", type=int, default=64, help="coupling width")
    p.add_argument("--steps", type=int, nargs="+", default=[4, 32], help="flow depths K (4: CPU default, 32: paper)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: per-core numbers, stable on a shared machine; 0 = torch's default)")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    dtype = getattr(torch, args.dtype)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.frames, args.dims, device=device, dtype=dtype)
    frames = args.batch * args.frames
    print(f"device={device} dtype={args.dtype} batch={args.batch} T={args.frames} d={args.dims} "
          f"hidden={args.hidden} threads={torch.get_num_threads()}")
    mem_head = "peak MB" if device.type == "cuda" else "saved MB"
    print(f"{'K':>4}{'params':>10}{'fwd frames/s':>15}{'inv frames/s':>15}{'train frames/s':>16}{mem_head:>10}"
          f"{'RSS MB':>9}{'max |x̂-x|':>12}")
    for k in args.steps:
        flow = Glow(args.dims, FlowConfig(steps=k, hidden=args.hidden)).to(device=device, dtype=dtype)
        n_params = sum(q.numel() for q in flow.parameters())
        with torch.no_grad():
            z, _ = flow(x)  # initialises ActNorm
            err = (flow.inverse(z) - x).abs().max().item()

        def train_step() -> torch.Tensor:
            z, logdet = flow(x)
            loss = (0.5 * z.pow(2).sum() - logdet.sum()) / frames
            loss.backward()
            return loss

        with torch.no_grad():
            t_fwd = best_time(lambda: flow(x), device, args.repeats)
            t_inv = best_time(lambda: flow.inverse(z), device, args.repeats)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t_train = best_time(train_step, device, args.repeats)
        if device.type == "cuda":
            mem = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            mem = saved_mb(lambda: flow(x))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"{k:>4}{n_params:>10,}{frames / t_fwd:>15,.0f}{frames / t_inv:>15,.0f}{frames / t_train:>16,.0f}"
              f"{mem:>10.1f}{rss:>9.0f}{err:>12.1e}")


if __name__ == "__main__":
    main()

"""``mmlab bench``: size, speed and memory of every registered method at its CPU default.

For each method: parameter count; training throughput (samples/s over ``train_steps`` Adam
steps of every stage's loss, after ``warmup`` untimed steps, frozen parts frozen as in the
Trainer); inference throughput (samples/s of ``predict_logits`` on valid-split batches masked
with the random-pattern sampler and the method's fill); peak memory during both:

- CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation at the method's start;
- CPU (``mem_source`` says which): the bytes glibc's malloc has handed out and not freed
  (``mallinfo2``, where torch's CPU tensors live), polled every millisecond by a thread, peak
  minus the level at the method's start; it can miss spikes shorter than the poll. Without
  glibc, the resident set size (``/proc/self/statm``) is polled instead, which also counts
  freed memory the allocator keeps; as a last resort the ``resource`` ``ru_maxrss`` high-water
  mark, whose delta is 0 once an earlier method set a higher mark.
  (``tracemalloc`` does not see torch's allocations, so it is not used.)

The figures are for comparing methods on one machine, not training-time predictions (a few
steps, no validation, no checkpoints). Each method is built on a cut of the dataset (the first
``max_train`` train rows and ``eval_batch_size`` valid rows), so that a method which
precomputes over its training rows at its first step (ADMC's fusion stages) stays quick; the
per-step figures do not depend on the cut. One small untimed run of the first method absorbs
the process's one-time costs. Small models run faster with ``OMP_NUM_THREADS=1`` when
other processes share the cores. The test split is never read.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.tables import records_csv_text
from mmlab.utils import atomic_write_text, numpy_rng, resolve_device

COLUMNS = ("method", "params", "stages", "train_samples_per_s", "infer_samples_per_s", "peak_mem_mb", "mem_source",
           "device")


@dataclass
class BenchConfig:
    """Steps and batch sizes of one measurement (small: all methods in about a minute on 2 cores)."""

    train_steps: int = 5
    warmup: int = 1
    batch_size: int = 64
    infer_batches: int = 3
    eval_batch_size: int = 256
    max_train: int = 384
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("train_steps", "batch_size", "infer_batches", "eval_batch_size", "max_train"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"BenchConfig.{name}: expected a positive integer, got {v!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"BenchConfig.warmup: expected a non-negative integer, got {self.warmup!r}")


# --------------------------------------------------------------------------- memory
def _mallinfo2():
    """glibc's ``mallinfo2`` (bytes malloc has handed out and not yet freed), or None."""
    import ctypes
    import ctypes.util

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = MallInfo2

    def in_use() -> int:
        m = fn()
        return int(m.uordblks + m.hblkhd)

    return in_use


class _PeakMemory:
    """Peak memory in MB above the level at ``__enter__`` (see the module docstring)."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mb, self._stop = device, float("nan"), threading.Event()
        self._read = None
        if device.type == "cuda":
            self.source = "cuda_max_allocated"
        elif (fn := _mallinfo2()) is not None:
            self.source, self._read = "malloc_in_use", fn
        elif os.path.exists("/proc/self/statm"):
            self.source, self._read = "rss", self._rss
        else:
            self.source = "ru_maxrss"

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    @staticmethod
    def _maxrss() -> int:
        import resource
        import sys

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if sys.platform == "darwin" else r * 1024

    def _poll(self) -> None:
        while not self._stop.wait(0.001):
            self._max = max(self._max, self._read())

    def __enter__(self) -> "_PeakMemory":
        if self.source == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        elif self._read is not None:
            self._base = self._max = self._read()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        else:
            self._base = self._maxrss()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.source == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self._read is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._max, self._read())
        else:
            peak = self._maxrss()
        self.peak_mb = max(peak - self._base, 0) / 2**20


# --------------------------------------------------------------------------- one method
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_throughput(method, data: MMDataset, cfg: BenchConfig, device: torch.device) -> tuple[float, int]:
    """Samples/s over the timed steps of every stage: the Trainer's own stage set-up (frozen parts
    frozen, parameter groups, cached features) and its `Trainer.train_step`."""
    from mmlab.train import TrainConfig, Trainer

    trainer = Trainer(method, data, Path("."), TrainConfig(seed=cfg.seed, device=str(device), progress=False))
    method.seed = cfg.seed
    stages = method.stages(trainer.data)
    samples, seconds = 0, 0.0
    for i, stage in enumerate(stages):
        scfg = replace(trainer.stage_config(stage), batch_size=cfg.batch_size)
        params, flags = trainer._freeze(stage)
        try:
            if not params:
                continue
            opt = trainer._optimizer(stage, scfg, params)
            rows = trainer._stage_rows(stage)
            feats = trainer._features(i, stage, rows, "train", scfg) if stage.features is not None else None
            trainer._set_train_mode(stage)
            rng = numpy_rng(cfg.seed, i)
            batches = trainer._batches(rows, feats, scfg, rng)
            for step in range(cfg.warmup + cfg.train_steps):
                batch = next(batches, None)
                if batch is None:
                    batches = trainer._batches(rows, feats, scfg, rng)
                    batch = next(batches)
                _sync(device)
                t = time.perf_counter()
                trainer.train_step(stage, scfg, batch, rng, opt, params)
                _sync(device)
                if step >= cfg.warmup:
                    seconds += time.perf_counter() - t
                    samples += batch.size
        finally:
            for p in method.parameters():
                p.requires_grad_(flags[id(p)])
            method.eval()
    return (samples / seconds if seconds > 0 else float("nan")), len(stages)


def _infer_throughput(method, data: MMDataset, cfg: BenchConfig, device: torch.device) -> float:
    from mmlab.evaluate import inference_throughput
    from mmlab.missing import RandomPattern, draw_masks, pad_masks

    valid = data.subset("valid")
    masks = draw_masks(RandomPattern(p_full=1 / 7), pad_masks(valid), valid.modalities, cfg.seed)
    return inference_throughput(method, valid, masks, cfg.eval_batch_size, cfg.infer_batches, device, seed=cfg.seed)


def bench_method(name: str, data: MMDataset, device: str = "cpu", cfg: BenchConfig | None = None,
                 overrides: Sequence[str] = ()) -> dict[str, Any]:
    """One row of the benchmark for method ``name`` at its defaults (plus ``overrides``)."""
    from mmlab.methods import make_method
    from mmlab.utils import seed_everything

    cfg = cfg or BenchConfig()
    dev = resolve_device(device)
    seed_everything(cfg.seed)
    rows = [np.flatnonzero(data.split == "train")[: cfg.max_train],
            np.flatnonzero(data.split == "valid")[: cfg.eval_batch_size]]
    if not all(len(r) for r in rows):
        raise DataError(f"bench: dataset {data.name!r} needs 'train' and 'valid' rows")
    usable = data.take(np.concatenate(rows))  # never a test row
    with _PeakMemory(dev) as mem:
        method = make_method(name, usable, list(overrides)).to(dev)
        train_sps, n_stages = _train_throughput(method, usable, cfg, dev)
        infer_sps = _infer_throughput(method, usable, cfg, dev)
    return {"method": name, "params": int(sum(p.numel() for p in method.parameters())), "stages": n_stages,
            "train_samples_per_s": float(train_sps), "infer_samples_per_s": float(infer_sps),
            "peak_mem_mb": float(mem.peak_mb), "mem_source": mem.source, "device": str(dev)}


# --------------------------------------------------------------------------- CIDer at the paper's size
def mosi_unaligned_standin(n_classes: int, n: int = 4) -> MMDataset:
    """An ``n``-row stand-in with CMU-MOSI's unaligned shapes in CIDer's public code (text 768-d
    BERT features x 50 tokens, audio 5-d x 375 frames, vision 20-d x 500 frames), zeros: for
    parameter counts and timings at the paper's configuration without the licensed data."""
    shapes = {"T": (50, 768), "A": (375, 5), "V": (500, 20)}
    feats = {m: np.zeros((n, t, dim), np.float32) for m, (t, dim) in shapes.items()}
    lengths = {m: np.full(n, t, np.int64) for m, (t, _) in shapes.items()}
    return MMDataset("mosi_shape", ("T", "A", "V"), feats, lengths, np.arange(n) % n_classes, np.array(["train"] * n),
                     np.arange(n).astype(str), tuple(f"c{i}" for i in range(n_classes)))


def cider_table_vi_parameters() -> dict[str, int | float]:
    """CIDer's parameters without the text encoder at the MOSI configuration (d = 32, 8 heads):
    the binary (3-class) model with 1 MCT layer, the seven-class one with 3, and their mean, which
    is Table VI's 247,946 (tests/test_cider_params.py checks every component)."""
    from mmlab.methods import make_method

    def count(n_classes: int, layers: int) -> int:
        method = make_method("cider", mosi_unaligned_standin(n_classes), [f"--mct.layers={layers}", "--mct.heads=8"])
        return sum(p.numel() for p in method.parameters())

    binary, seven = count(3, 1), count(7, 3)
    return {"binary (3-class, 1 MCT layer)": binary, "seven-class (3 MCT layers)": seven, "mean": (binary + seven) / 2}


# --------------------------------------------------------------------------- all methods
def format_table(rows: Sequence[dict[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:,.1f}" if isinstance(v, float) else (f"{v:,}" if isinstance(v, int) else str(v))

    cells = [[fmt(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(COLUMNS)]
    line = lambda vals: "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths)))  # noqa: E731
    return "\n".join([line(COLUMNS), line(["-" * w for w in widths])] + [line(r) for r in cells])


def run_bench(methods: Sequence[str] | None = None, data: str | MMDataset = "synthetic", out: str | Path | None = None,
              device: str = "cpu", cfg: BenchConfig | None = None, overrides: Sequence[str] = (),
              verbose: bool = True) -> list[dict[str, Any]]:
    """Benchmark ``methods`` (default: every registered one) on ``data``; print a table and,
    with ``out``, write ``out/bench.csv`` (never overwriting: `DataError` naming the file)."""
    from mmlab.data import load_dataset
    from mmlab.methods import method_names

    names = list(methods) if methods else method_names()
    known = method_names()
    bad = [m for m in names if m not in known]
    if bad:
        raise ConfigError(f"methods: unknown {bad}; expected some of {known}")
    path = None
    if out is not None:
        path = Path(out) / "bench.csv"
        if path.exists():
            raise DataError(f"{path}: exists; choose another --out folder (bench results are never overwritten)")
    ds = data if isinstance(data, MMDataset) else load_dataset(data)
    if names:  # untimed warm-up: one-time costs (kernel set-up, first allocations) go here
        bench_method(names[0], ds, device, BenchConfig(train_steps=1, warmup=0, batch_size=8, infer_batches=1,
                                                       eval_batch_size=16, max_train=16), overrides)
    rows = []
    for name in names:
        rows.append(bench_method(name, ds, device, cfg, overrides))
        if verbose:
            print(f"bench: {name} done", flush=True)
    if verbose:
        print(f"\n{ds.name}, device {rows[0]['device'] if rows else device}, torch threads {torch.get_num_threads()}")
        print(format_table(rows))
        if any(n.startswith("cider") for n in names):
            counts = cider_table_vi_parameters()
            print("\nCIDer at CMU-MOSI's unaligned configuration, text encoder excluded (paper Table VI: 247,946): "
                  + ", ".join(f"{k} {v:,.0f}" for k, v in counts.items()))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, records_csv_text(rows, COLUMNS))
        if verbose:
            print(f"wrote {path}")
    return rows

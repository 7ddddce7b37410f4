"""Does the CLI choose torch's thread count well by itself? Time one command twice on a busy
machine: once with ``OMP_NUM_THREADS=1`` set by hand (what the README used to ask), once
without it (what a newcomer types), while another CPU-bound process runs on every other core.

    python benchmarks/bench_threads.py                  # the README's ADMC compare, ~10 min on 2 cores
    python benchmarks/bench_threads.py --methods zero_fill --burners 1

It prints both wall times and their ratio (target: without / with <= 1.5). The CLI pins one
torch thread per process unless ``--threads`` says otherwise (`mmlab.cli.pin_threads`).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def burn(stop: float) -> None:
    """A CPU-bound job: pure Python arithmetic until ``stop`` (monotonic seconds)."""
    x = 0
    while time.monotonic() < stop:
        for i in range(100_000):
            x = (x * 31 + i) % 1_000_003


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{proc.stderr[-2000:]}")
    return time.monotonic() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="admc")
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--burners", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                    help="CPU-bound processes running beside the command (default: cores - 1)")
    args = ap.parse_args()
    mmlab = shutil.which("mmlab") or str(Path(sys.executable).with_name("mmlab"))
    work = Path(tempfile.mkdtemp(prefix="bench_threads-"))
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    results = {}
    for label, env in (("OMP_NUM_THREADS=1", {**base, "OMP_NUM_THREADS": "1"}), ("no thread setting", base)):
        command = [mmlab, "compare", "--data", args.data, "--methods", args.methods, "--protocol", "patterns",
                   "--seeds", "1111", "--out", str(work / label.replace(" ", "_").replace("=", ""))]
        burners = [mp.Process(target=burn, args=(time.monotonic() + 3600,)) for _ in range(args.burners)]
        for b in burners:
            b.start()
        try:
            results[label] = timed(command, env)
        finally:
            for b in burners:
                b.terminate()
                b.join()
        print(f"{label:<20} {results[label]:8.1f} s   ({' '.join(command[1:-2])}, {args.burners} CPU burner(s))",
              flush=True)
    ratio = results["no thread setting"] / results["OMP_NUM_THREADS=1"]
    print(f"ratio without / with: {ratio:.2f} (target <= 1.5)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

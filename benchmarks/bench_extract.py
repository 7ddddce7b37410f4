"""How long does `mmlab extract` take on the synthetic raw sample set? Per extractor, cold (no
cache) and warm (a re-run that reads the feature cache).

    python benchmarks/bench_extract.py                       # 320 utterances, 2 workers
    python benchmarks/bench_extract.py --n-per-class 20 --workers 1 --raw DIR

Target (issue 16): the whole sample set, cold, in under 2 minutes on a 2-core machine. It prints
the time to make the sample set, then one line per extractor and the totals.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmlab.extract import ExtractConfig, TextConfig, extract, make_raw_sample  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", default=None, help="an existing raw folder (default: make the sample set)")
    ap.add_argument("--n-per-class", type=int, default=80)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--text", default="minilm_tokens")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(args.raw) if args.raw else Path(tmp) / "raw"
        if not args.raw:
            t0 = time.perf_counter()
            info = make_raw_sample(raw, n_per_class=args.n_per_class)
            print(f"make sample set: {info['samples']} samples, speech by {info['speech']}: "
                  f"{time.perf_counter() - t0:.1f} s")
        cfg = ExtractConfig(text=TextConfig(extractor=args.text), workers=args.workers,
                            cache_dir=str(Path(tmp) / "cache"), show_progress=False)
        for run in ("cold", "warm"):
            t0 = time.perf_counter()
            r = extract(raw, Path(tmp) / "x.npz", cfg)
            total = time.perf_counter() - t0
            for name, sec in r.seconds.items():
                n = r.available[{"audio": "A", "text": "T", "face": "V"}[name.split(":")[0]]]
                print(f"{run:<5} {name:<22} {sec:6.1f} s  {1000 * sec / max(n, 1):6.1f} ms/file  ({n} files)")
            print(f"{run:<5} {'total (incl. writing)':<22} {total:6.1f} s  workers={args.workers}  "
                  f"target < 120 s cold: {'met' if run == 'warm' or total < 120 else 'MISSED'}")


if __name__ == "__main__":
    main()

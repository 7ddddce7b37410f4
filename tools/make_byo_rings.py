"""Write `rings.npz`, a bring-your-own dataset whose structure is unlike `synthetic`'s (issue #18).

    .venv/bin/python tools/make_byo_rings.py --out rings.npz      # then any --data rings.npz

`synthetic` puts each class in the *frame means* of Gaussian modalities, so a linear model on
pooled means (`pooled_linear`) is close to the Bayes rule there. Here the class information is
where pooled means cannot see it:

- five classes; each modality reveals a different coarse view of the class, so one modality
  alone is ambiguous and only all three pin the class down: ``wave`` tells {0,1} / {2,3} / {4},
  ``shape`` tells {0,2,4} / {1,3}, ``meta`` tells {0,3} / {1,4} / {2};
- ``wave`` (24 frames x 4): a sinusoid whose *frequency* is the class view, with a random phase:
  its frame mean is near zero for every class (temporal structure only);
- ``shape`` (12 frames x 3): frames around an utterance point whose *distance from the origin*
  is the class view (a ring of radius 1 or 2 in a random direction): nonlinear in the mean;
- ``meta`` (one 6-d vector): a class-view prototype, linear;
- a 2-d nuisance shared by all three (it scales ``wave``'s amplitude, shifts ``shape``'s point and
  adds to ``meta``): full cross-modal covariance, so the modalities explain each other's noise;
- 5% of the utterances lack one modality natively (``avail_<name>`` False).

3000 / 500 / 1000 train / valid / test utterances, seeded. There is no exact oracle (the
frequency and ring views make the posterior an integral nobody needs here); `pooled_linear` and
the best method are the yardsticks.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

WAVE_VIEW = np.array([0, 0, 1, 1, 2])  # class -> frequency index
SHAPE_VIEW = np.array([0, 1, 0, 1, 0])  # class -> ring index
META_VIEW = np.array([0, 1, 2, 0, 1])  # class -> prototype index
SIZES = {"train": 3000, "valid": 500, "test": 1000}


def make_rings(seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of the `.npz` (layout of `mmlab/data/byo.py`)."""
    rng = np.random.default_rng(seed)
    n = sum(SIZES.values())
    y = rng.integers(0, 5, n)
    nuisance = rng.normal(size=(n, 2))

    t = np.arange(24)[None, :, None]
    freq = np.array([0.25, 0.55, 0.9])[WAVE_VIEW[y]][:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 4))
    amp = (1.0 + 0.3 * np.tanh(nuisance[:, :1]))[:, :, None]
    wave = amp * np.sin(freq * t + phase) + rng.normal(0, 0.7, (n, 24, 4))

    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = np.array([1.0, 2.0])[SHAPE_VIEW[y]][:, None]
    centre = radius * direction + 0.4 * np.c_[nuisance, np.zeros(n)]
    shape = centre[:, None, :] + rng.normal(0, 0.9, (n, 12, 3))

    prototypes = np.random.default_rng(seed + 1).normal(0, 0.6, (3, 6))
    mixing = np.random.default_rng(seed + 2).normal(0, 0.7, (2, 6))
    meta = prototypes[META_VIEW[y]] + nuisance @ mixing + rng.normal(0, 0.8, (n, 6))

    avail = np.ones((n, 3), bool)
    lacking = rng.random(n) < 0.05
    avail[lacking, rng.integers(0, 3, lacking.sum())] = False
    for x, has in zip((wave, shape, meta), avail.T):
        x[~has] = 0.0  # a natively missing modality's row is filler
    split = np.repeat(list(SIZES), list(SIZES.values()))
    return {"X_wave": wave.astype(np.float32), "X_shape": shape.astype(np.float32), "X_meta": meta.astype(np.float32),
            "avail_wave": avail[:, 0], "avail_shape": avail[:, 1], "avail_meta": avail[:, 2],
            "y": y.astype(np.int64), "split": split, "ids": np.array([f"rings-{i:05d}" for i in range(n)]),
            "classes": np.array([f"class{k}" for k in range(5)])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("rings.npz"), help="the .npz to write (never overwritten)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; choose another --out")
    if not args.out.parent.is_dir():
        raise SystemExit(f"--out {args.out}: folder {args.out.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **make_rings(args.seed))
        os.replace(tmp, args.out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""tools/make_byo_rings.py: the bring-your-own dataset of issue #18 loads, and its class information
is where the docstring says (not in the frame means of `wave`)."""

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np

from mmlab.data.byo import load_npz

TOOL = Path(__file__).resolve().parents[1] / "tools" / "make_byo_rings.py"


def test_rings_loads_and_hides_the_class_from_frame_means(tmp_path):
    out = tmp_path / "rings.npz"
    subprocess.run([sys.executable, str(TOOL), "--out", str(out)], check=True, capture_output=True)
    data = load_npz(out)
    assert data.modalities == ("wave", "shape", "meta") and data.n_classes == 5
    assert {s: int((data.split == s).sum()) for s in ("train", "valid", "test")} == {"train": 3000, "valid": 500, "test": 1000}
    lacking = ~np.stack([data.avail[m] for m in data.modalities], 1).all(1)
    assert 0.03 < lacking.mean() < 0.07
    wave_means = data.feats["wave"].mean(1)  # (N, 4): near zero for every class
    per_class = np.stack([wave_means[data.y == c].mean(0) for c in range(5)])
    assert np.abs(per_class).max() < 0.1
    again = runpy.run_path(str(TOOL))["make_rings"](0)
    np.testing.assert_array_equal(again["y"], data.y)  # seeded: the same file every time
    out.write_bytes(b"mine")
    again_run = subprocess.run([sys.executable, str(TOOL), "--out", str(out)], capture_output=True, text=True)
    assert again_run.returncode != 0 and "exists" in again_run.stderr and out.read_bytes() == b"mine"  # never overwritten

"""Hostile input can't crash, exhaust memory or corrupt a run (the loader half).

1. Bombs: tiny files that declare or imply gigabytes (compressed zeros, void dtypes, HDF5 with
   huge declared datasets or links to other files, pickles of shared nested lists, one very long
   sample, a label of 2**40, duplicate ids, a modality name methods cannot use). Every one is
   loaded in one child process under ``RLIMIT_AS`` (a few hundred MiB over what the imports
   take) with ``MMLAB_MAX_BYTES=256MiB``; each must end in a `DataError` that names the file and
   the problem, and the child's peak RSS must stay small. Nothing is timed.
2. Validate and load agree: hypothesis writes small bring-your-own files; every file
   `validate_npz` accepts loads, trains one epoch of ``reference`` and is evaluated; every file
   it refuses, `load_npz` refuses with the validator's first problem in its message.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fixtures_licensed as fx
from mmlab.data import from_arrays
from mmlab.data.budget import DEFAULT_MAX_BYTES, Budget, max_bytes, parse_bytes
from mmlab.data.byo import load_npz, validate_npz
from mmlab.data.safe_pickle import safe_load
from mmlab.errors import DataError

CHILD_BUDGET = "256MiB"
HEADROOM = 768 * 2**20  # RLIMIT_AS over the child's address space after its imports
RSS_BOUND = 400 * 2**20  # peak RSS over the child's RSS after its imports


# ---------------------------------------------------------------------------- bomb makers
def _nested(levels: int = 8) -> list:
    """10 ** (levels + 1) floats in a few hundred bytes of pickle: one list shared at every level."""
    x = [0.0] * 10
    for _ in range(levels):
        x = [x] * 10
    return x


def _zeros_npz(path: Path, key: str, shape: tuple[int, ...], descr: str, extra: dict[str, np.ndarray]) -> Path:
    """An .npz whose ``key`` is ``shape`` of zeros, deflated while streaming (never in memory)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": descr, "fortran_order": False, "shape": shape})
            left = int(np.prod(shape)) * np.dtype(descr).itemsize
            chunk = bytes(2**24)
            while left:
                fh.write(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))
        for k, v in extra.items():
            if k == key:
                continue
            buf = io.BytesIO()
            np.save(buf, v)
            zf.writestr(f"{k}.npy", buf.getvalue())
    return path


def _small(n: int = 12) -> dict[str, np.ndarray]:
    return {"X_A": np.ones((n, 3), np.float32), "y": np.arange(n) % 3,
            "split": np.array(["train"] * (n - 4) + ["valid"] * 2 + ["test"] * 2)}


def _h5_bomb(d: Path) -> Path:
    """Every utterance of comparE.h5 declared (2**21, 130) float32 (1 GiB each), nothing written."""
    base = fx.write_iemocap(d / "huge")
    with h5py.File(base / "A" / "comparE.h5", "a") as f:
        for uid in list(f):
            del f[uid]
            f.create_dataset(uid, shape=(2**21, 130), dtype="f4", chunks=(4096, 130), compression="gzip")
    return base / "A" / "comparE.h5"


def _h5_link(kind: str):
    def make(d: Path) -> Path:
        base = fx.write_iemocap(d / kind)
        outside = base / "elsewhere.h5"
        with h5py.File(outside, "w") as g:
            g["data"] = np.ones((4, 342), np.float32)
        with h5py.File(base / "V" / "denseface.h5", "a") as f:
            uid = sorted(f)[3]
            del f[uid]
            if kind == "external_link":
                f[uid] = h5py.ExternalLink(str(outside), "/data")
            elif kind == "soft_to_external":
                f["hop"] = h5py.ExternalLink(str(outside), "/data")
                f[uid] = h5py.SoftLink("/hop")
            else:  # raw data stored in another file
                (base / "raw.bin").write_bytes(np.ones((4, 342), np.float32).tobytes())
                f.create_dataset(uid, shape=(4, 342), dtype="f4", external=[(str(base / "raw.bin"), 0, 4 * 342 * 4)])
        return base / "V" / "denseface.h5"

    return make


def _mmsa_nested(d: Path) -> Path:
    base = fx.write_mmsa(d / "nested", "MOSI", n=6, dims=(8, 5, 20), lens=(10, 30, 40))
    p = base / "Processed" / "unaligned_50.pkl"
    p.write_bytes(pickle.dumps({"train": {"audio": _nested()}, "valid": {}, "test": {}}, protocol=4))
    assert p.stat().st_size < 400
    return p


def _mintrec_nested(d: Path) -> Path:
    base = fx.write_mintrec(d / "nested")
    p = base / "audio_data" / "audio_feats.pkl"
    p.write_bytes(pickle.dumps({"S04_E01_10": _nested()}, protocol=2))
    assert p.stat().st_size < 400
    return p


def _mintrec_long(d: Path) -> Path:
    """One clip of 60 000 ROI frames (one (1, 256) array shared): 59 MiB for itself, 703 MiB
    once all 12 clips are padded to it."""
    base = fx.write_mintrec(d / "long")
    p = base / "video_data" / "video_feats.pkl"
    with open(p, "rb") as fh:
        video = pickle.load(fh)  # our own fixture: trusted
    video["S05_E02_11"] = [np.ones((1, 256), np.float32)] * 60_000
    p.write_bytes(pickle.dumps(video, protocol=4))
    return p


def _mintrec_expanded_tensor(d: Path) -> Path:
    import torch

    base = fx.write_mintrec(d / "tensor")
    p = base / "audio_data" / "audio_feats.pkl"
    p.write_bytes(pickle.dumps({"S04_E01_10": torch.ones(768).expand(500_000, 768)}))  # stride 0: 1.4 GiB
    return p


def _mmsa_duplicate_ids(d: Path) -> Path:
    base = fx.write_mmsa(d / "dups", "MOSI", n=6, dims=(8, 5, 20), lens=(10, 30, 40))
    p = base / "Processed" / "unaligned_50.pkl"
    with open(p, "rb") as fh:
        data = pickle.load(fh)  # our own fixture: trusted
    data["test"]["id"] = data["train"]["id"].copy()
    p.write_bytes(pickle.dumps(data, protocol=4))
    return p


def _npz(name: str, **change):
    def make(d: Path) -> Path:
        arrays = {**_small(), **change}
        np.savez_compressed(d / name, **arrays)
        return d / name

    return make


# name: (maker, call, keywords the message must hold); call = (module, function, kwargs)
BYO = ("mmlab.data.byo", "load_npz", {})
BOMBS = {
    "npz_compressed_zeros": (lambda d: _zeros_npz(d / "zeros.npz", "X_A", (12, 5461, 1024), "<f8", _small()),
                             BYO, ["X_A", "over the memory budget", "refused before reading"]),
    "npz_void_dtype": (lambda d: _zeros_npz(d / "void.npz", "y", (12,), "|V25000000", _small()),
                       BYO, ["y", "void", "refused before reading"]),
    "npz_label_2_40": (_npz("label.npz", y=np.array([0, 1, 2] * 3 + [0, 1, 2**40])), BYO, ["y", "skip [3, 4, 5"]),
    "npz_duplicate_int_ids": (_npz("ids.npz", ids=np.array([7, 7, 7] + list(range(9)))), BYO,
                              ["ids", "not unique", "7 appears 4 times"]),
    "npz_face_v2": (_npz("dot.npz", **{"X_face.v2": np.ones((12, 2), np.float32)}), BYO, ["X_face.v2", "'face.v2'"]),
    "h5_huge_declared": (_h5_bomb, ("mmlab.data.mmin", "load_iemocap", {"root": "{root}/huge"}),
                         ["comparE.h5", "(2097152, 130) float32", "over the memory budget"]),
    "h5_external_link": (_h5_link("external_link"), ("mmlab.data.mmin", "load_iemocap", {"root": "{root}/external_link"}),
                         ["denseface.h5", "external link", "elsewhere.h5"]),
    "h5_soft_link_to_external": (_h5_link("soft_to_external"),
                                 ("mmlab.data.mmin", "load_iemocap", {"root": "{root}/soft_to_external"}),
                                 ["denseface.h5", "external link"]),
    "h5_external_storage": (_h5_link("external_storage"),
                            ("mmlab.data.mmin", "load_iemocap", {"root": "{root}/external_storage"}),
                            ["denseface.h5", "external files"]),
    "mmsa_shared_nested_list": (_mmsa_nested, ("mmlab.data.mmsa", "load_mosi", {"root": "{root}/nested"}),
                                ["unaligned_50.pkl", "[train][audio]", "shared references"]),
    "mintrec_shared_nested_list": (_mintrec_nested, ("mmlab.data.mintrec", "load_mintrec", {"root": "{root}/nested"}),
                                   ["audio_feats.pkl", "[S04_E01_10]", "shared references"]),
    "mintrec_expanded_tensor": (_mintrec_expanded_tensor,
                                ("mmlab.data.mintrec", "load_mintrec", {"root": "{root}/tensor"}),
                                ["audio_feats.pkl", "[S04_E01_10]", "over the memory budget"]),
    "mintrec_very_long_sample": (_mintrec_long, ("mmlab.data.mintrec", "load_mintrec", {"root": "{root}/long"}),
                                 ["video_feats.pkl", "zero-padded", "'S05_E02_11' has 60000 frames"]),
    "mmsa_duplicate_ids": (_mmsa_duplicate_ids, ("mmlab.data.mmsa", "load_mosi", {"root": "{root}/dups"}),
                           ["unaligned_50.pkl", "[id]", "'trvid0$_$0' appears 2 times"]),
}

_CHILD = r"""
import importlib, json, os, resource, sys, warnings
import numpy as np, h5py, torch  # the imports every case needs, before the limit
import mmlab.data.byo, mmlab.data.mmin, mmlab.data.mintrec, mmlab.data.mmsa
from mmlab.errors import DataError
warnings.simplefilter("ignore")
cases = json.loads(sys.argv[1])
vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[2]), resource.RLIM_INFINITY))
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
for name, (mod, fn, kwargs, path) in cases.items():
    out = {"name": name}
    try:
        if fn == "load_npz":
            out["problems"] = mmlab.data.byo.validate_npz(path)[0]
            mmlab.data.byo.load_npz(path, **kwargs)
        else:
            getattr(importlib.import_module(mod), fn)(**kwargs)
        out["error"] = None
    except BaseException as err:
        out["error"], out["message"] = type(err).__name__, str(err)
    out["rss_over_base"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss
    print(json.dumps(out), flush=True)
"""


@pytest.fixture(scope="module")
def bomb_results(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("bombs")
    cases = {}
    for name, (make, (mod, fn, kwargs), _) in BOMBS.items():
        path = make(root)
        kwargs = {k: v.format(root=root) for k, v in kwargs.items()}
        cases[name] = (mod, fn, kwargs, str(path))
    env = {**os.environ, "MMLAB_MAX_BYTES": CHILD_BUDGET, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cases), str(HEADROOM)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=root)
    results = {r["name"]: {**r, "path": cases[r["name"]][3]} for r in map(json.loads, proc.stdout.splitlines())}
    assert len(results) == len(BOMBS), f"the child stopped early (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return results


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_bomb_gives_a_clear_error_in_bounded_memory(bomb_results, case):
    r = bomb_results[case]
    assert r["error"] == "DataError", f"{case}: expected a DataError, got {r['error']}: {r.get('message')}"
    msg = r["message"]
    assert Path(r["path"]).name in msg, f"{case}: the message does not name the file: {msg}"
    for word in BOMBS[case][2]:
        assert word in msg, f"{case}: the message does not say {word!r}: {msg}"
    if "problems" in r:  # the validator says the same, first
        assert r["problems"] and r["problems"][0] in msg
    assert r["rss_over_base"] < RSS_BOUND, f"{case}: peak RSS grew by {r['rss_over_base'] / 2**20:.0f} MiB"


# ---------------------------------------------------------------------------- budgets, unit level
def test_budget_defaults_and_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv("MMLAB_MAX_BYTES", raising=False)
    assert max_bytes() == DEFAULT_MAX_BYTES == 4 * 2**30
    monkeypatch.setenv("MMLAB_MAX_BYTES", "512MiB")
    assert max_bytes() == 512 * 2**20 and max_bytes(1000) == 1000 and max_bytes("2e9") == 2 * 10**9
    assert parse_bytes("3 GB") == 3 * 10**9 and parse_bytes("1.5GiB") == 3 * 2**29
    for bad in ("lots", "-1", "0", True):
        with pytest.raises(DataError, match="size in bytes"):
            parse_bytes(bad)
    monkeypatch.setenv("MMLAB_MAX_BYTES", "many")
    with pytest.raises(DataError, match="MMLAB_MAX_BYTES"):
        max_bytes()
    monkeypatch.delenv("MMLAB_MAX_BYTES")
    # a file the default budget accepts is refused under a smaller one, by parameter or by env
    p = tmp_path / "ok.npz"
    np.savez(p, X_A=np.ones((12, 50, 100), np.float32), X_V=np.ones((12, 2)), y=np.arange(12) % 3,
             split=_small()["split"])
    assert validate_npz(p)[0] == []
    problems = validate_npz(p, max_bytes=100_000)[0]
    assert problems and problems[0].startswith("X_A: shape (12, 50, 100) float32 is 234 KiB") and "97.7 KiB" in problems[0]
    monkeypatch.setenv("MMLAB_MAX_BYTES", "100000")
    with pytest.raises(DataError, match="over the memory budget of 97.7 KiB"):
        load_npz(p)


def test_budget_charges_add_up():
    b = Budget("f.h5", 1000)
    b.charge(600, "[a] (150,) float32")
    with pytest.raises(DataError) as err:
        b.charge(500, "[b] (125,) float32", hint="the longest sample is 'b'")
    msg = str(err.value)
    assert msg.startswith("f.h5 [b] (125,) float32 would take 500 B") and "1.07 KiB with what this file" in msg
    assert "'b'" in msg and "MMLAB_MAX_BYTES" in msg and b.used == 600


def test_pickle_that_reuses_one_buffer_is_refused_while_unpickling():
    """BUILD copies a byte-swapped buffer for every array: 200 arrays of one 1 MiB buffer."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct

    buf = bytes(2**20)

    class A:
        def __reduce__(self):
            return _reconstruct, (np.ndarray, (0,), b"b"), (1, (2**17,), np.dtype(">f8"), False, buf)

    data = pickle.dumps([A() for _ in range(200)], protocol=4)
    assert len(data) < 2 * 2**20
    with pytest.raises(DataError, match="unpickling an array .* over the memory budget"):
        safe_load(io.BytesIO(data), max_bytes="64MiB")
    assert len(safe_load(io.BytesIO(data), max_bytes="512MiB")) == 200


def test_pickle_cycles_and_str_of_containers_are_refused():
    a: list = []
    a.append(a)
    with pytest.raises(DataError, match="holds itself"):
        safe_load(io.BytesIO(pickle.dumps(a)))
    with pytest.raises(DataError, match=r"str\(\) of \['list'\]"):
        safe_load(io.BytesIO(b"cbuiltins\nstr\n(]tR."))


def test_mmin_max_len_names_the_utterance(tmp_path):
    from mmlab.data.mmin import load_iemocap

    fx.write_iemocap(tmp_path)
    with pytest.raises(DataError, match=r"comparE\.h5 \[Ses0\w+\]: \d+ frames, more than max_len=2"):
        load_iemocap(tmp_path, max_len=2, modalities=("A",))
    assert load_iemocap(tmp_path, max_len=100).max_len["A"] <= 100


def test_dataset_refuses_unusable_modality_names_and_duplicate_ids():
    x = np.ones((6, 2), np.float32)
    for name in ("face.v2", "1st", "a-b", "training", "forward", "x" * 33):
        with pytest.raises(DataError, match="modality name"):
            from_arrays("t", {name: x}, np.arange(6) % 2)
    assert from_arrays("t", {"face_v2": x}, np.arange(6) % 2).modalities == ("face_v2",)
    with pytest.raises(DataError, match="'u' appears 6 times"):
        from_arrays("t", {"A": x}, np.arange(6) % 2, ids=np.array(["u"] * 6))


# ---------------------------------------------------------------------------- validate and load agree
GOOD_NAMES = ["A", "audio", "V", "face_v2", "T", "x1"]
BAD_NAMES = ["face.v2", "1st", "a-b", "training", "forward", "é", "x" * 33]
FAULTS = ["none"] * 12 + ["bad_name", "label_gap", "label_2_40", "label_beyond_classes", "y_reg_nan", "no_valid",
                         "split_dev", "dup_int_ids", "dup_str_ids", "len_out_of_range", "no_sep"]


@st.composite
def byo_files(draw) -> dict[str, np.ndarray]:
    """A small bring-your-own file: random sizes, dtypes, lengths, splits, ids, labels, token
    modalities, and about half the time one fault."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    fault = draw(st.sampled_from(FAULTS))
    n = draw(st.sampled_from([1, 2, 3, 4, 6, 9, 14]))
    c = draw(st.integers(1, 3))
    k = draw(st.sampled_from([1, 2, 2, 3, 3]))  # one modality only: refused (no missing-modality pattern)
    names = draw(st.lists(st.sampled_from(GOOD_NAMES), min_size=k, max_size=k, unique=True))
    if fault == "bad_name":
        names[draw(st.integers(0, len(names) - 1))] = draw(st.sampled_from(BAD_NAMES))
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        kind = draw(st.sampled_from(["vector", "sequence", "tokens"]))
        t = draw(st.integers(2, 5))
        with_len = kind != "vector" and draw(st.booleans())
        lens = rng.integers(2, t + 1, n) if with_len else np.full(n, t)
        if kind == "tokens":
            ids = np.zeros((n, t), np.int64)
            for i, k in enumerate(lens):
                ids[i, :k] = [101, *rng.integers(1000, 2000, k - 2), 102]
            if fault == "no_sep":
                ids[0, lens[0] - 1] = 1999
            arrays[f"X_{name}"] = ids.astype(draw(st.sampled_from(["int64", "int32"])))
        else:
            shape = (n, draw(st.integers(1, 3))) if kind == "vector" else (n, t, draw(st.integers(1, 3)))
            dtype = draw(st.sampled_from(["float32", "float64", "float16"] + (["int16"] if kind == "sequence" else [])))
            arrays[f"X_{name}"] = (rng.normal(size=shape) * 3).astype(dtype)
        if with_len:
            arrays[f"len_{name}"] = lens + t if fault == "len_out_of_range" else lens
    y = np.arange(n) % c
    arrays["y"] = {"label_gap": y * 2 + 1, "label_2_40": np.where(np.arange(n) == 0, 2**40, y)}.get(
        fault, draw(st.sampled_from([y, y.astype(np.float64)])))
    if fault == "label_beyond_classes" or draw(st.booleans()):
        arrays["classes"] = np.array([f"c{i}" for i in range(c if fault == "label_beyond_classes" else c + 1)])
        arrays["y"] = y + 1 if fault == "label_beyond_classes" else arrays["y"]
    if draw(st.booleans()) or fault in ("no_valid", "split_dev"):
        sp = np.array((["train", "valid", "test"] * n)[:n], dtype="<U8")
        if draw(st.booleans()) and n > 3:
            sp[-1] = "test_ood"
        arrays["split"] = {"no_valid": np.where(sp == "valid", "train", sp),
                           "split_dev": np.where(sp == "valid", "dev", sp)}.get(fault, sp)
    ids = {"dup_int_ids": "dup_int", "dup_str_ids": "dup_str"}.get(fault, draw(st.sampled_from(["none", "str", "int"])))
    if ids != "none":
        arrays["ids"] = {"str": np.array([f"u{i}" for i in range(n)]), "int": np.arange(n) * 3,
                         "dup_int": np.zeros(n, int), "dup_str": np.array(["u"] * n)}[ids]
    if fault == "y_reg_nan" or draw(st.booleans()):
        arrays["y_reg"] = np.full(n, np.nan) if fault == "y_reg_nan" else rng.uniform(-3, 3, n)
    return arrays


@pytest.fixture(scope="module")
def text_cache(tmp_path_factory):
    old = os.environ.get("MMLAB_CACHE")
    os.environ["MMLAB_CACHE"] = str(tmp_path_factory.mktemp("text_cache"))
    yield
    if old is None:
        os.environ.pop("MMLAB_CACHE", None)
    else:
        os.environ["MMLAB_CACHE"] = old


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays=byo_files())
def test_validate_and_load_agree(text_cache, arrays):
    from mmlab.evaluate import evaluate
    from mmlab.experiments import method_input
    from mmlab.methods import make_method
    from mmlab.train import TrainConfig, Trainer

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "drawn.npz"
        np.savez(path, **arrays)
        problems, summary = validate_npz(path)
        if problems:
            with pytest.raises(DataError) as err:
                load_npz(path)
            assert problems[0] in str(err.value)
            return
        assert "OK" in summary
        data = method_input("reference", load_npz(path))
        method = make_method("reference", data, ["--train.epochs=1", "--train.batch_size=8"])
        Trainer(method, data, Path(tmp) / "run", TrainConfig(progress=False)).fit()
        rows = evaluate(method, data, split=data.test_splits[0])
        assert rows and all(np.isfinite(r["accuracy"]) for r in rows)

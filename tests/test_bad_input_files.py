"""Malformed input files: every one must give a `DataError` that names the file and the problem,
never another exception type, never a hang, and must leave the directory untouched.

Each case writes a small file (or a whole fixture dataset with one file broken), then feeds the
broken file to the loader that reads it and to `validate_npz` (which must report at least one
problem and never raise).
"""

from __future__ import annotations

import os
import pickle
import signal
import zipfile
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest

import fixtures_licensed as fx
from mmlab.data import licensed
from mmlab.data.byo import load_npz, validate_npz
from mmlab.errors import DataError

N = 12


# ---------------------------------------------------------------------------- helpers
def _ok_arrays(n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "X_A": rng.normal(size=(n, 4, 3)).astype(np.float32),
        "len_A": np.full(n, 3),
        "X_V": rng.normal(size=(n, 2)).astype(np.float32),
        "y": np.arange(n) % 3,
        "split": np.array(["train"] * (n - 4) + ["valid"] * 2 + ["test"] * 2),
    }


def _npz(**change) -> Callable[[Path], Path]:
    """A valid file with keys replaced (value None = key removed)."""

    def make(d: Path) -> Path:
        arrays = _ok_arrays()
        for k, v in change.items():
            if v is None:
                arrays.pop(k, None)
            else:
                arrays[k] = v
        np.savez(d / "case.npz", **arrays)
        return d / "case.npz"

    return make


def _raw_bytes(data: bytes, name: str = "case.npz") -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name

    return make


def _truncated(keep: float) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = _npz()(d)
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * keep)])
        return p

    return make


def _zip(members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        with zipfile.ZipFile(d / "case.npz", "w", compression=compress) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        return d / "case.npz"

    return make


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def _header_only(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """A .npy header that claims ``shape`` followed by no data (refuse before allocating)."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _ok_members() -> dict[str, bytes]:
    return {f"{k}.npy": _npy_bytes(v) for k, v in _ok_arrays().items()}


def _with_member(name: str, data: bytes) -> Callable[[Path], Path]:
    m = _ok_members()
    m[f"{name}.npy"] = data
    return _zip(m)


def _crc_corrupt(d: Path) -> Path:
    p = _zip(_ok_members())(d)
    data = bytearray(p.read_bytes())
    i = data.find(b"X_A.npy")  # local header name; flip a byte well inside its data
    data[i + 200] ^= 0xFF
    p.write_bytes(bytes(data))
    return p


def _deflate_corrupt(d: Path) -> Path:
    p = _zip(_ok_members(), compress=zipfile.ZIP_DEFLATED)(d)
    data = bytearray(p.read_bytes())
    i = data.find(b"X_A.npy")
    for j in range(i + 60, i + 90):
        data[j] ^= 0x5A
    p.write_bytes(bytes(data))
    return p


def _duplicate_member(d: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we want
        with zipfile.ZipFile(d / "case.npz", "w") as zf:
            for name, data in _ok_members().items():
                zf.writestr(name, data)
            zf.writestr("y.npy", _npy_bytes(np.arange(N)))
    return d / "case.npz"


def _directory(d: Path) -> Path:
    (d / "case.npz").mkdir()
    return d / "case.npz"


a = _ok_arrays()
NPZ_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated_half": (_truncated(0.5), "not a readable"),
    "truncated_10_bytes": (_truncated(0.001), "not a readable"),
    "empty_file": (_raw_bytes(b""), "empty"),
    "text_file": (_raw_bytes(b"label,x\n1,2\n"), "not a readable"),
    "npy_not_npz": (_raw_bytes(_npy_bytes(np.ones(3))), "not a readable"),
    "zip_without_members": (_zip({}), "no arrays"),
    "zip_non_npy_member": (_zip({**_ok_members(), "notes.txt": b"hi"}), "not a .npy"),
    "corrupt_npy_header": (_with_member("X_A", b"\x93NUMPY garbage"), "header"),
    "member_data_truncated": (_with_member("X_A", _npy_bytes(a["X_A"])[:-40]), "truncated"),
    "crc_error": (_crc_corrupt, "X_A"),
    "deflate_stream_corrupt": (_deflate_corrupt, "X_A"),
    "duplicate_member": (_duplicate_member, "twice"),
    "directory_not_file": (_directory, "not a regular file"),
    "no_modality_keys": (_npz(X_A=None, X_V=None, len_A=None), "X_<name>"),
    "missing_y": (_npz(y=None), "'y'"),
    "unknown_key": (_npz(labels=np.arange(N)), "unknown key"),
    "lowercase_x_key": (_npz(x_B=np.ones((N, 2))), "unknown key"),
    "empty_modality_name": (_npz(X_=np.ones((N, 2))), "modality name"),
    "object_array_X": (_npz(X_V=np.array([np.ones(2)] * (N - 1) + [None], dtype=object)), "object"),
    "object_array_y": (_npz(y=np.array([0, 1] * (N // 2), dtype=object)), "object"),
    "strings_in_X": (_npz(X_V=np.array([["a", "b"]] * N)), "strings"),
    "complex_X": (_npz(X_V=np.ones((N, 2), np.complex64)), "complex"),
    "bool_X": (_npz(X_V=np.ones((N, 2), bool)), "booleans"),
    "float_y_not_integral": (_npz(y=np.arange(N) / 2), "not integral"),
    "string_y": (_npz(y=np.array(["a", "b"] * (N // 2))), "integer"),
    "onehot_y": (_npz(y=np.eye(3)[np.arange(N) % 3]), "one-hot"),
    "nan_in_X": (_npz(X_A=np.where(np.arange(3) == 1, np.nan, a["X_A"]).astype(np.float32)), "NaN"),
    "inf_in_X": (_npz(X_V=np.full((N, 2), np.inf, np.float32)), "inf"),
    "beyond_float32": (_npz(X_V=np.full((N, 2), 1e300)), "float32 range"),
    "nan_in_y": (_npz(y=np.array([0.0, np.nan] * (N // 2))), "NaN"),
    "nan_in_y_reg": (_npz(y_reg=np.full(N, np.nan)), "NaN"),
    "mismatched_N_X": (_npz(X_V=np.ones((N - 1, 2), np.float32)), "rows"),
    "mismatched_N_len": (_npz(len_A=np.full(N + 2, 3)), "rows"),
    "mismatched_N_split": (_npz(split=np.array(["train"] * 5)), "rows"),
    "length_zero": (_npz(len_A=np.zeros(N, int)), "[1, T=4]"),
    "length_beyond_T": (_npz(len_A=np.full(N, 9)), "[1, T=4]"),
    "length_not_integral": (_npz(len_A=np.full(N, 1.5)), "not integral"),
    "length_without_modality": (_npz(len_Q=np.ones(N, int)), "no matching"),
    "negative_labels": (_npz(y=np.arange(N) % 3 - 1), "negative"),
    "label_gap_without_classes": (_npz(y=(np.arange(N) % 3) * 2), "skip"),
    "label_beyond_classes": (_npz(classes=np.array(["a", "b"])), "out of range"),
    "duplicate_class_names": (_npz(classes=np.array(["a", "a", "b"])), "not unique"),
    "bad_split_value": (_npz(split=np.array(["train"] * (N - 1) + ["dev"])), "values must be in"),
    "split_without_test": (_npz(split=np.array(["train"] * (N - 2) + ["valid"] * 2)), "no samples"),
    "numeric_split": (_npz(split=np.zeros(N, int)), "strings"),
    "duplicate_ids": (_npz(ids=np.array(["u"] * N)), "not unique"),
    "one_dim_X": (_npz(X_V=np.ones(N, np.float32)), "dimensions"),
    "four_dim_X": (_npz(X_V=np.ones((N, 2, 2, 2), np.float32)), "4 dimensions"),
    "D_zero": (_npz(X_V=np.ones((N, 0), np.float32)), "zero-sized"),
    "T_zero": (_npz(X_A=np.ones((N, 0, 3), np.float32), len_A=None), "zero-sized"),
    "no_samples": (_npz(**{k: v[:0] for k, v in a.items()}), "no samples"),
    "absurd_dims_header": (_with_member("X_A", _header_only((N, 100_000, 100_000))), "refused before reading"),
    "absurd_y_header": (_with_member("y", _header_only((10**9,), "<i8")), "refused before reading"),
}


# ---------------------------------------------------------------------------- licensed layouts
class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _evil_subprocess(marker: Path) -> bytes:
    import subprocess

    class P:
        def __reduce__(self):
            return subprocess.check_call, (["touch", str(marker)],)

    return pickle.dumps({"S04_E01_10": P()})


def _dump(path: Path, obj) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def _h5_edit(rel: str, edit: Callable[[h5py.File], None]) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        base = fx.write_iemocap(d, dims=(130, 342, 1024))
        with h5py.File(base / rel, "a") as f:
            edit(f)
        return base / rel

    return make


def _first(f: h5py.File) -> str:
    return sorted(f.keys())[0]


def _replace_ds(value) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        k = _first(f)
        del f[k]
        f[k] = value

    return edit


def _group_instead(f: h5py.File) -> None:
    k = _first(f)
    del f[k]
    f.create_group(k)


def _short_mean(f: h5py.File) -> None:
    del f["1"]["mean"]
    f["1"]["mean"] = np.ones(7)


def _file_edit(rel: str, edit: Callable[[Path], None], writer=fx.write_iemocap) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        base = writer(d)
        edit(base / rel)
        return base / rel

    return make


def _truncate_file(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: max(1, p.stat().st_size // 2)])


def _garbage(p: Path) -> None:
    p.write_bytes(b"this is not the file you are looking for\n")


def _save(value) -> Callable[[Path], None]:
    return lambda p: np.save(p, value, allow_pickle=True)


def _evil_npy(p: Path) -> None:
    header = _header_only((2,), "|O")
    p.write_bytes(header + pickle.dumps(_Evil(p.parent / "PWNED"), protocol=3))


def _mintrec(edit: Callable[[Path], None], rel: str) -> Callable[[Path], Path]:
    return _file_edit(rel, edit, writer=fx.write_mintrec)


def _pkl_edit(fn: Callable[[dict], object]) -> Callable[[Path], None]:
    def edit(p: Path) -> None:
        with open(p, "rb") as fh:
            obj = pickle.load(fh)  # our own fixture file: trusted
        _dump(p, fn(obj))

    return edit


def _set_first(value) -> Callable[[dict], dict]:
    def fn(d: dict) -> dict:
        d[sorted(d)[0]] = value
        return d

    return fn


def _drop_first(d: dict) -> dict:
    d.pop(sorted(d)[0])
    return d


def _mmsa(edit: Callable[[dict], object]) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        base = fx.write_mmsa(d, "MOSI", n=6, dims=(8, 5, 20), lens=(10, 30, 40))
        p = base / "Processed" / "unaligned_50.pkl"
        with open(p, "rb") as fh:
            data = pickle.load(fh)  # our own fixture file: trusted
        _dump(p, edit(data))
        return p

    return make


def _split_edit(key: str, value_fn: Callable[[np.ndarray], object], split: str = "train") -> Callable[[dict], dict]:
    def fn(data: dict) -> dict:
        s = data[split]
        if value_fn is None:
            s.pop(key)
        else:
            s[key] = value_fn(s[key])
        return data

    return fn


def _with_nan(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x.flat[0] = np.nan
    return x


def _with_posinf(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[0, 0, 0] = np.inf
    return x


def _raw_pickle(data: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data)


class _FakeGlobal:
    """Pickles as a reference to ``module.name`` without importing it."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def pickle(self) -> bytes:
        return f"c{self.module}\n{self.name}\n(tR.".encode()


def _mmsa_raw(data: bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        base = fx.write_mmsa(d, "MOSI", n=6, dims=(8, 5, 20), lens=(10, 30, 40))
        p = base / "Processed" / "unaligned_50.pkl"
        p.write_bytes(data)
        return p

    return make


def _torch_zip(p: Path) -> None:
    import torch

    torch.save({"S04_E01_10": torch.ones(3, 768)}, p)


LOADERS = {
    "iemocap": lambda d: licensed.load_iemocap(d),
    "msp": lambda d: licensed.load_msp_improv(d, norm="trn"),
    "mintrec": lambda d: licensed.load_mintrec(d, text="auto"),
    "mosi": lambda d: licensed.load_mosi(d),
}

LICENSED_CASES: dict[str, tuple[str, Callable[[Path], Path], str]] = {
    # MMIN h5 / npy
    "h5_truncated": ("iemocap", _file_edit("A/comparE.h5", _truncate_file), "HDF5"),
    "h5_garbage": ("iemocap", _file_edit("V/denseface.h5", _garbage), "HDF5"),
    "h5_missing_utterance": ("iemocap", _h5_edit("L/bert_large.h5", lambda f: f.__delitem__(_first(f))), "no dataset"),
    "h5_nan": ("iemocap", _h5_edit("L/bert_large.h5", _replace_ds(np.full((5, 1024), np.nan, np.float32))), "NaN"),
    "h5_group_not_dataset": ("iemocap", _h5_edit("A/comparE.h5", _group_instead), "group"),
    "h5_string_dataset": ("iemocap", _h5_edit("A/comparE.h5", _replace_ds(np.array([b"abc"] * 3))), "real numbers"),
    "h5_inconsistent_dim": ("iemocap", _h5_edit("V/denseface.h5", _replace_ds(np.ones((3, 100), np.float32))), "feature size"),
    "h5_3d_utterance": ("iemocap", _h5_edit("A/comparE.h5", _replace_ds(np.ones((3, 2, 130), np.float32))), "(T, D)"),
    "h5_empty_utterance": ("iemocap", _h5_edit("A/comparE.h5", _replace_ds(np.ones((0, 130), np.float32))), "empty"),
    "meanstd_missing_fold": ("iemocap", _h5_edit("A/comparE_mean_std.h5", lambda f: f.__delitem__("1")), "no group"),
    "meanstd_wrong_size": ("iemocap", _h5_edit("A/comparE_mean_std.h5", _short_mean), "130"),
    "label_npy_truncated": ("iemocap", _file_edit("target/1/trn_label.npy", lambda p: p.write_bytes(p.read_bytes()[:-20])), "truncated"),
    "label_npy_garbage": ("iemocap", _file_edit("target/1/trn_label.npy", _garbage), "header"),
    "label_onehot_5_columns": ("iemocap", _file_edit("target/1/val_label.npy", _save(np.eye(5, dtype=np.float32)[:2])), "columns"),
    "label_not_onehot": ("iemocap", _file_edit("target/1/trn_label.npy", _save(np.ones((8, 4), np.float32))), "one-hot"),
    "label_object_array": ("iemocap", _file_edit("target/1/trn_label.npy", _save(np.array(["ang"] * 8, dtype=object))), "numeric"),
    "int2name_length_mismatch": ("iemocap", _file_edit("target/1/tst_int2name.npy", _save(np.array([[b"x"]]))), "names"),
    "int2name_malicious_object": ("iemocap", _file_edit("target/1/val_int2name.npy", _evil_npy), "refused global"),
    "int2name_duplicate_ids": ("iemocap", _file_edit("target/1/tst_int2name.npy", lambda p: np.save(p, np.load(p.parent / "val_int2name.npy"))), "appears 2 times"),
    "fold_files_missing": ("iemocap", _file_edit("target/1/trn_label.npy", lambda p: p.unlink()), "not found"),
    "msp_label_out_of_range": ("msp", _file_edit("target/1/tst_label.npy", _save(np.array([0, 7])), writer=fx.write_msp_improv), "[0, 4)"),
    "msp_float_labels": ("msp", _file_edit("target/1/val_label.npy", _save(np.array([0.5, 1.0])), writer=fx.write_msp_improv), "integers"),
    # MIntRec tsv / pkl
    "tsv_empty": ("mintrec", _mintrec(lambda p: p.write_text(""), "train.tsv"), "empty"),
    "tsv_header_only": ("mintrec", _mintrec(lambda p: p.write_text("season\tepisode\tclip\ttext\tlabel\n"), "dev.tsv"), "no samples"),
    "tsv_short_row": ("mintrec", _mintrec(lambda p: p.write_text(p.read_text() + "S01\tE01\t5\n"), "train.tsv"), "line"),
    "tsv_unknown_label": ("mintrec", _mintrec(lambda p: p.write_text(p.read_text().replace("Thank", "Thanks")), "train.tsv"), "unknown label"),
    "tsv_bad_header": ("mintrec", _mintrec(lambda p: p.write_text("season,episode,clip\n"), "test.tsv"), "header"),
    "tsv_not_utf8": ("mintrec", _mintrec(lambda p: p.write_bytes(p.read_bytes() + b"S01\tE01\t9\t\xff\xfe\tThank\n"), "test.tsv"), "UTF-8"),
    "tsv_duplicate_clip": ("mintrec", _mintrec(lambda p: p.write_text(p.read_text() + "S04\tE01\t10\tagain\tThank\n"), "test.tsv"), "appears more than once (2 times"),
    "pkl_truncated": ("mintrec", _mintrec(_truncate_file, "video_data/video_feats.pkl"), "not a readable pickle"),
    "pkl_os_system": ("mintrec", _mintrec(lambda p: _dump(p, {"S04_E01_10": _Evil(p.parent.parent.parent / "PWNED")}), "audio_data/audio_feats.pkl"), "refused global"),
    "pkl_subprocess": ("mintrec", _mintrec(lambda p: p.write_bytes(_evil_subprocess(p.parent.parent.parent / "PWNED")), "audio_data/audio_feats.pkl"), "refused global"),
    "pkl_eval_in_text": ("mintrec", _mintrec(_raw_pickle(b"cbuiltins\neval\n(V__import__('os').system('touch PWNED')\ntR."), "text_data/text_feats.pkl"), "refused global"),
    "pkl_list_not_dict": ("mintrec", _mintrec(lambda p: _dump(p, [np.ones((3, 768))]), "audio_data/audio_feats.pkl"), "dict"),
    "pkl_missing_key": ("mintrec", _mintrec(_pkl_edit(_drop_first), "video_data/video_feats.pkl"), "no features for sample key"),
    "pkl_wrong_rank": ("mintrec", _mintrec(_pkl_edit(_set_first(np.ones((3, 768, 2), np.float32))), "audio_data/audio_feats.pkl"), "(T, D)"),
    "pkl_nan_features": ("mintrec", _mintrec(_pkl_edit(_set_first(np.full((3, 768), np.nan, np.float32))), "audio_data/audio_feats.pkl"), "NaN"),
    "pkl_string_features": ("mintrec", _mintrec(_pkl_edit(_set_first("hello")), "audio_data/audio_feats.pkl"), "real numbers"),
    "pkl_empty_frame_list": ("mintrec", _mintrec(_pkl_edit(_set_first([])), "video_data/video_feats.pkl"), "empty list"),
    "pkl_inconsistent_dims": ("mintrec", _mintrec(_pkl_edit(lambda d: {k: (v if i else v[:, :100]) for i, (k, v) in enumerate(sorted(d.items()))}), "audio_data/audio_feats.pkl"), "feature size"),
    "pkl_is_torch_save_zip": ("mintrec", _mintrec(_torch_zip, "audio_data/audio_feats.pkl"), "not a readable pickle"),
    # MMSA pickle
    "mmsa_truncated": ("mosi", _mmsa_raw(pickle.dumps({"train": {"audio": np.ones((3, 4, 5))}})[:30]), "not a readable pickle"),
    "mmsa_posix_system": ("mosi", _mmsa_raw(b"cposix\nsystem\n(Vtouch PWNED\ntR."), "refused global"),
    "mmsa_joblib_wrapper": ("mosi", _mmsa_raw(_FakeGlobal("joblib.numpy_pickle", "NumpyArrayWrapper").pickle()), "joblib"),
    "mmsa_pandas": ("mosi", _mmsa_raw(_FakeGlobal("pandas.core.frame", "DataFrame").pickle()), "pandas"),
    "mmsa_top_level_list": ("mosi", _mmsa(lambda d: [d["train"]]), "'train', 'valid', 'test'"),
    "mmsa_missing_valid": ("mosi", _mmsa(lambda d: {"train": d["train"], "test": d["test"]}), "'valid'"),
    "mmsa_missing_regression": ("mosi", _mmsa(_split_edit("regression_labels", None)), "regression_labels"),
    "mmsa_audio_2d": ("mosi", _mmsa(_split_edit("audio", lambda x: x[:, :, 0])), "(N, T, D)"),
    "mmsa_mismatched_rows": ("mosi", _mmsa(_split_edit("vision", lambda x: x[:-1], "valid")), "rows"),
    "mmsa_nan_vision": ("mosi", _mmsa(_split_edit("vision", _with_nan, "test")), "NaN"),
    "mmsa_posinf_audio": ("mosi", _mmsa(_split_edit("audio", _with_posinf)), "inf"),
    "mmsa_negative_lengths": ("mosi", _mmsa(_split_edit("audio_lengths", lambda x: -x)), "negative"),
    "mmsa_bad_class_labels": ("mosi", _mmsa(_split_edit("classification_labels", lambda x: x + 5)), "classification_labels"),
    "mmsa_string_text": ("mosi", _mmsa(_split_edit("text", lambda x: np.full(x.shape[:2] + (1,), "w"))), "real numbers"),
    "mmsa_nan_regression": ("mosi", _mmsa(_split_edit("regression_labels", _with_nan)), "NaN"),
    "mmsa_text_bert_2_rows": ("mosi", _mmsa(_split_edit("text_bert", lambda x: x[:, :2])), "text_bert"),
    "mmsa_dims_differ_between_splits": ("mosi", _mmsa(_split_edit("vision", lambda x: x[:, :, :7], "test")), "feature sizes"),
}


# ---------------------------------------------------------------------------- the tests
@pytest.fixture(autouse=True)
def _no_hang():
    def boom(*_):
        raise TimeoutError("a bad input file made a loader hang")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _listing(d: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(d)), p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns) for p in d.rglob("*"))


def _check(tmp_path: Path, bad: Path, load: Callable[[], object], keyword: str) -> None:
    before = _listing(tmp_path)
    with pytest.raises(DataError) as err:
        load()
    msg = str(err.value)
    assert bad.name in msg, f"message does not name the file {bad.name}: {msg}"
    assert keyword.lower() in msg.lower(), f"message does not say {keyword!r}: {msg}"
    problems, summary = validate_npz(bad)
    assert problems and isinstance(summary, str) and str(bad) in summary
    assert _listing(tmp_path) == before, "a loader wrote into the data directory"
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()


def test_enough_cases():
    assert len(NPZ_CASES) + len(LICENSED_CASES) >= 50


@pytest.mark.parametrize("case", sorted(NPZ_CASES))
def test_bad_npz(tmp_path, case):
    make, keyword = NPZ_CASES[case]
    bad = make(tmp_path)
    _check(tmp_path, bad, lambda: load_npz(bad), keyword)
    if bad.is_file() and bad.stat().st_size and case not in ("text_file", "npy_not_npz", "empty_file"):
        assert any(keyword.lower() in p.lower() for p in validate_npz(bad)[0]) or keyword == "not a readable"


@pytest.mark.parametrize("case", sorted(LICENSED_CASES))
def test_bad_licensed_file(tmp_path, case):
    which, make, keyword = LICENSED_CASES[case]
    bad = make(tmp_path)
    _check(tmp_path, bad, lambda: LOADERS[which](tmp_path), keyword)

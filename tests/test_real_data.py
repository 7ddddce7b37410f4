"""Real data: the bundled Handwritten set, the bring-your-own .npz format, the safe unpickler,
and the licensed-dataset loaders on tiny fixtures written in their released layouts."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import fixtures_licensed as fx
from mmlab.data import licensed
from mmlab.data.byo import load_npz, validate_npz, write_npz
from mmlab.data.dataset import SPLITS
from mmlab.data.handwritten import BUNDLED, VIEW_DIMS, VIEWS, load_handwritten
from mmlab.data.registry import list_datasets, load_dataset
from mmlab.data.safe_pickle import safe_load, safe_load_npy
from mmlab.errors import DataError, UnsafePickleError


# ---------------------------------------------------------------------------- handwritten
@pytest.fixture(scope="module")
def hw():
    return load_handwritten()


def test_handwritten_shapes_and_classes(hw):
    assert hw.modalities == VIEWS and len(hw) == 2000
    assert hw.dims == VIEW_DIMS and all(hw.max_len[v] == 1 for v in VIEWS)
    assert hw.classes == [str(c) for c in range(10)]
    assert np.bincount(hw.y).tolist() == [200] * 10
    assert all(hw.feats[v].dtype == np.float32 for v in VIEWS)


def test_handwritten_default_split_is_stratified_70_10_20(hw):
    for c in range(10):
        counts = [int(((hw.y == c) & (hw.split == s)).sum()) for s in SPLITS]
        assert counts == [140, 20, 40]
    assert len(set(hw.ids)) == 2000


def test_handwritten_cpm_protocol():
    d = load_handwritten(protocol="cpm", views=["mor"])
    assert [int((d.split == s).sum()) for s in SPLITS] == [1440, 160, 400]
    for c in range(10):
        assert int(((d.y == c) & (d.split == "test")).sum()) == 40


def test_handwritten_split_is_seeded(hw):
    again = load_handwritten(views=["mor"], split_seed=0)
    other = load_handwritten(views=["mor"], split_seed=1)
    assert (again.split == hw.split).all()
    assert (other.split != hw.split).any()


def test_handwritten_zscore_uses_train_statistics_only(hw):
    raw = load_handwritten(normalize="none")
    with np.load(BUNDLED) as z:
        assert np.array_equal(raw.feats["pix"][:, 0], z["pix"])
    tr = hw.split == "train"
    for v in VIEWS:
        x = hw.feats[v][:, 0]
        np.testing.assert_allclose(x[tr].mean(0), 0, atol=1e-4)
        r = raw.feats[v][:, 0]
        mu, sd = r[tr].mean(0), r[tr].std(0)
        sd[sd < 1e-8] = 1
        np.testing.assert_allclose(x, (r - mu) / sd, rtol=1e-4, atol=1e-4)
    # the test split was not used: its own statistics differ from (0, 1)
    assert abs(hw.feats["fac"][hw.split == "test", 0].mean(0)).max() > 1e-3


def test_handwritten_views_subset_and_errors():
    d = load_handwritten(views=["zer", "fou"])
    assert d.modalities == ("zer", "fou") and d.dims == {"zer": 47, "fou": 76}
    for kw in ({"views": ["xyz"]}, {"views": []}, {"views": ["fou", "fou"]}, {"protocol": "bogus"}, {"normalize": "minmax"}):
        with pytest.raises(DataError):
            load_handwritten(**kw)


def test_handwritten_bundle_is_small_and_attributed():
    assert BUNDLED.stat().st_size < 3 * 2**20
    readme = (BUNDLED.parent / "README.md").read_text()
    assert "CC BY 4.0" in readme and "Duin" in readme and "UCI" in readme


def test_handwritten_batches(hw):
    b = hw.subset("valid").batch(np.arange(8))
    assert b.feats["pix"].shape == (8, 1, 240) and b.pad_mask["pix"].all()


# ---------------------------------------------------------------------------- registry
def test_registry_lists_every_dataset(tmp_path):
    rows = {r["name"]: r for r in list_datasets(tmp_path)}
    assert {"synthetic", "handwritten", "iemocap", "msp_improv", "mintrec", "mosi", "mosei"} <= set(rows)
    assert rows["handwritten"]["found"] and rows["handwritten"]["where"] == "bundled"
    assert not any(rows[n]["found"] for n in ("iemocap", "msp_improv", "mintrec", "mosi", "mosei"))
    for r in rows.values():
        assert (Path(__file__).resolve().parents[1] / "data_cards" / r["card"]).is_file(), r["card"]


def test_registry_finds_licensed_fixtures(tmp_path, monkeypatch):
    fx.write_iemocap(tmp_path)
    fx.write_msp_improv(tmp_path)
    fx.write_mintrec(tmp_path)
    fx.write_mmsa(tmp_path, "MOSI", dims=(8, 5, 20), lens=(10, 20, 30))
    fx.write_mmsa(tmp_path, "MOSEI", aligned=True, dims=(8, 74, 35), lens=(10, 10, 10))
    rows = {r["name"]: r for r in list_datasets(tmp_path)}
    for n, sub in (("iemocap", "IEMOCAP"), ("msp_improv", "MSP-IMPROV"), ("mintrec", "MIntRec"), ("mosi", "MOSI"), ("mosei", "MOSEI")):
        assert rows[n]["found"] and rows[n]["where"] == str(tmp_path / sub)
    assert len(load_dataset("mosei", data_root_dir=tmp_path, aligned=True)) == 24
    # the dataset folder itself is accepted by the loaders, and the env var is honoured
    assert len(licensed.load_iemocap(tmp_path / "IEMOCAP")) == 12
    monkeypatch.setenv("MMLAB_DATA_ROOT", str(tmp_path))
    assert len(licensed.load_mosi(task="seven")) == 24
    assert {r["name"] for r in list_datasets() if r["found"]} >= {"iemocap", "mintrec", "mosi", "mosei"}


def test_missing_licensed_data_says_where_it_looked(tmp_path):
    with pytest.raises(DataError, match="iemocap.md"):
        licensed.load_iemocap(tmp_path)


# ---------------------------------------------------------------------------- bring your own
def _byo(path: Path, n: int = 30, **extra) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "X_audio": rng.normal(size=(n, 7, 3)).astype(np.float32),
        "len_audio": rng.integers(1, 8, n),
        "X_face": rng.normal(size=(n, 5)),
        "y": np.arange(n) % 3,
    }
    arrays.update(extra)
    np.savez_compressed(path, **arrays)
    return path


def test_byo_load_defaults(tmp_path):
    p = _byo(tmp_path / "mine.npz")
    problems, summary = validate_npz(p)
    assert problems == [] and "OK" in summary and str(p) in summary
    d = load_npz(p)
    assert d.name == "mine" and d.modalities == ("audio", "face")
    assert d.feats["face"].shape == (30, 1, 5) and d.feats["audio"].dtype == np.float32
    assert d.classes == ["0", "1", "2"] and d.ids[0] == "mine-0"
    assert [int((d.split == s).sum()) for s in SPLITS] == [21, 3, 6]
    # frames past len_ are zeroed
    for i, ln in enumerate(d.lengths["audio"]):
        assert not d.feats["audio"][i, ln:].any()
    assert (load_npz(p, split_seed=1).split != d.split).any()


def test_byo_optional_keys_and_roundtrip(tmp_path):
    n = 12
    p = _byo(tmp_path / "full.npz", n=n, y=np.arange(n, dtype=np.float64) % 2, y_reg=np.linspace(-1, 1, n),
             split=np.array(["train"] * 8 + ["valid"] * 2 + ["test"] * 2),
             ids=np.array([f"u{i}".encode() for i in range(n)]), classes=np.array(["neg", "pos"]))
    d = load_npz(p)
    assert d.classes == ["neg", "pos"] and d.ids[3] == "u3" and d.y.dtype == np.int64
    assert d.y_reg is not None and d.y_reg.shape == (n,)
    q = write_npz(d, tmp_path / "out" / "copy.npz")
    assert validate_npz(q)[0] == []
    e = load_npz(q)
    for m in d.modalities:
        assert np.array_equal(e.feats[m], d.feats[m]) and np.array_equal(e.lengths[m], d.lengths[m])
    assert (e.split == d.split).all() and (e.ids == d.ids).all() and e.classes == d.classes
    assert [f.name for f in (tmp_path / "out").iterdir()] == ["copy.npz"]  # no temp file left


def test_byo_via_registry_path_and_handwritten_export(tmp_path):
    p = write_npz(load_handwritten(views=["mor", "zer"]), tmp_path / "hw.npz")
    d = load_dataset(str(p))
    assert d.modalities == ("mor", "zer") and len(d) == 2000


def test_byo_reports_every_problem(tmp_path):
    p = _byo(tmp_path / "bad.npz", X_face=np.full((30, 5), np.nan), y=-np.ones(30, int), foo=np.ones(2))
    problems, summary = validate_npz(p)
    assert len(problems) >= 3 and "3 problem" in summary
    text = "\n".join(problems)
    assert "foo" in text and "NaN" in text and "negative" in text
    with pytest.raises(DataError) as err:
        load_npz(p)
    assert str(p) in str(err.value) and "foo" in str(err.value) and "X_face" in str(err.value)


def test_byo_tiny_file_without_split(tmp_path):
    # N >= 3: the default split gives train, valid and test one sample at least, for any seed
    p = _byo(tmp_path / "tiny.npz", n=3, y=np.array([0, 1, 2]))
    assert validate_npz(p)[0] == []
    for seed in range(4):
        assert sorted(load_npz(p, split_seed=seed).split.tolist()) == ["test", "train", "valid"]
    # N < 3: the validator and the loader both ask for a split key, in the same words
    q = _byo(tmp_path / "two.npz", n=2, y=np.array([0, 1]))
    problems = validate_npz(q)[0]
    assert problems and problems[0].startswith("split: no 'split' key and only N=2 samples")
    with pytest.raises(DataError, match="store a 'split' key") as err:
        load_npz(q)
    assert problems[0] in str(err.value)


# ---------------------------------------------------------------------------- safe unpickler
class _Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path) -> dict[str, bytes]:
    cmd = f"touch {marker}"
    return {
        "os.system": pickle.dumps(_Payload(os.system, cmd)),
        "subprocess": pickle.dumps(_Payload(subprocess.check_call, ["touch", str(marker)])),
        "eval": pickle.dumps(_Payload(eval, f"__import__('os').system({cmd!r})")),
        "exec": pickle.dumps(_Payload(exec, f"open({str(marker)!r}, 'w')")),
        "nested": pickle.dumps({"ok": np.ones(2), "bad": [_Payload(os.system, cmd)]}),
        # hand-written protocol-0 pickle naming posix.system directly
        "posix.system": f"cposix\nsystem\n(V{cmd}\ntR.".encode(),
        # getattr(__import__("os"), "system")(cmd), protocol 0 by hand
        "getattr": f"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(V{cmd}\ntR.".encode(),
    }


@pytest.mark.parametrize("kind", ["os.system", "subprocess", "eval", "exec", "nested", "posix.system", "getattr"])
def test_safe_load_refuses_code_execution(tmp_path, kind):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pkl"
    path.write_bytes(_payloads(marker)[kind])
    with pytest.raises(UnsafePickleError) as err:
        safe_load(path)
    msg = str(err.value)
    assert str(path) in msg and "refused global" in msg
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_safe_load_reads_numpy_pickles(protocol):
    obj = {
        "f": np.arange(12, dtype=np.float32).reshape(3, 4), "F": np.asfortranarray(np.ones((2, 3))),
        "s": np.array(["ab", "c"]), "b": np.array([b"x"]), "o": np.array(["a", 1], dtype=object),
        "scalar": np.float64(2.5), "i": np.int64(7), "misc": [1, 2.0, "x", b"y", (1,), {1}, frozenset([2]), None, 1j],
    }
    out = safe_load(io.BytesIO(pickle.dumps(obj, protocol=protocol)))
    assert np.array_equal(out["f"], obj["f"]) and out["f"].dtype == np.float32
    assert np.array_equal(out["F"], obj["F"]) and out["s"].tolist() == ["ab", "c"]
    assert out["o"].tolist() == ["a", 1] and out["scalar"] == 2.5 and out["misc"] == obj["misc"]


def test_safe_load_torch_tensors():
    torch = pytest.importorskip("torch")
    t = {"k": torch.arange(12, dtype=torch.float32).reshape(3, 4)[:, 1:]}
    out = safe_load(io.BytesIO(pickle.dumps(t)))
    assert torch.equal(out["k"], t["k"])
    with pytest.raises(UnsafePickleError, match="convert"):
        safe_load(io.BytesIO(pickle.dumps(t)), allow_torch=False)


def test_safe_load_npy_object_array(tmp_path):
    np.save(tmp_path / "o.npy", np.array(["a", "b"], dtype=object), allow_pickle=True)
    assert safe_load_npy(tmp_path / "o.npy").tolist() == ["a", "b"]
    np.save(tmp_path / "n.npy", np.array([[b"Ses01F_x"]]))
    assert safe_load_npy(tmp_path / "n.npy").dtype.kind == "S"


# ---------------------------------------------------------------------------- IEMOCAP / MSP-IMPROV
def test_iemocap_mmin_layout(tmp_path):
    base = fx.write_iemocap(tmp_path)
    d = licensed.load_iemocap(tmp_path, fold=2)
    assert d.modalities == ("A", "V", "T") and d.dims == {"A": 130, "V": 342, "T": 1024}
    assert d.classes == ["ang", "hap", "neu", "sad"] and len(d) == 12
    assert [int((d.split == s).sum()) for s in SPLITS] == [8, 2, 2]
    names = np.load(base / "target" / "2" / "tst_int2name.npy")
    labels = np.load(base / "target" / "2" / "tst_label.npy").argmax(1)
    test = d.split == "test"
    assert d.ids[test].tolist() == [n[0].decode() for n in names] and d.y[test].tolist() == labels.tolist()
    # variable audio length kept as lengths; the no-face utterance is one frame
    import h5py

    with h5py.File(base / "A" / "comparE.h5") as fa, h5py.File(base / "A" / "comparE_mean_std.h5") as fm:
        uid = d.ids[0]
        raw = fa[uid][()]
        mean, std = fm["2"]["mean"][()], fm["2"]["std"][()]
    assert d.lengths["A"][0] == len(raw)
    np.testing.assert_allclose(d.feats["A"][0, : len(raw)], (raw - mean) / std, rtol=1e-4, atol=1e-4)
    assert not d.feats["A"][0, len(raw):].any()
    assert d.info["fold"] == 2 and d.info["n_folds"] == 10


@pytest.mark.parametrize("norm", ["train", "utt", "none"])
def test_iemocap_norm_options(tmp_path, norm):
    fx.write_iemocap(tmp_path)
    d = licensed.load_iemocap(tmp_path, fold=1, norm=norm, modalities=("A",))
    frames = np.concatenate([d.feats["A"][i, : d.lengths["A"][i]] for i in np.flatnonzero(d.split == "train")])
    if norm == "train":
        np.testing.assert_allclose(frames.mean(0), 0, atol=1e-4)
    elif norm == "none":
        assert frames.mean() > 3  # the fixture's raw audio is centred at 5


def test_iemocap_bad_arguments(tmp_path):
    fx.write_iemocap(tmp_path)
    for kw in ({"fold": 0}, {"fold": 11}, {"norm": "global"}, {"modalities": ("A", "X")}):
        with pytest.raises(DataError):
            licensed.load_iemocap(tmp_path, **kw)


def test_msp_improv_layout(tmp_path):
    base = fx.write_msp_improv(tmp_path)
    d = licensed.load_msp_improv(tmp_path, fold=12)
    assert len(d) == 12 and d.info["n_folds"] == 12
    labels = np.load(base / "target" / "12" / "trn_label.npy")
    assert d.y[d.split == "train"].tolist() == labels.tolist()
    assert d.ids[0].startswith("MSP-IMPROV")
    assert licensed.load_msp_improv(tmp_path, fold=3, norm="trn").info["norm"] == "trn"


# ---------------------------------------------------------------------------- MIntRec
def test_mintrec_without_text_warns(tmp_path):
    fx.write_mintrec(tmp_path)
    with pytest.warns(UserWarning, match="text"):
        d = licensed.load_mintrec(tmp_path)
    assert d.modalities == ("A", "V") and d.dims == {"A": 768, "V": 256}
    assert [int((d.split == s).sum()) for s in SPLITS] == [6, 3, 3]
    assert d.n_classes == 20 and d.classes[19] == "Ask for help"
    assert d.ids[0] == "S04_E01_10" and d.y[0] == 0 and d.y[1] == 3  # Complain, Thank
    assert "not available" in d.info["text"] and d.info["texts"][0].startswith("you said")


def test_mintrec_with_text_and_torch_audio(tmp_path):
    fx.write_mintrec(tmp_path, with_text=True, torch_audio=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = licensed.load_mintrec(tmp_path)
    assert d.modalities == ("A", "V", "T") and d.feats["A"].dtype == np.float32
    assert licensed.load_mintrec(tmp_path, text=False).modalities == ("A", "V")


def test_mintrec_binary_task(tmp_path):
    fx.write_mintrec(tmp_path)
    d = licensed.load_mintrec(tmp_path, task="binary", text=False)
    assert d.classes == ["Emotion", "Goal"]
    full = licensed.load_mintrec(tmp_path, text=False)
    goal = {"Inform", "Advise", "Arrange", "Introduce", "Leave", "Prevent", "Greet", "Ask for help", "Comfort"}
    assert d.y.tolist() == [int(full.classes[c] in goal) for c in full.y]


# ---------------------------------------------------------------------------- MOSI / MOSEI
@pytest.fixture(scope="module")
def mosi_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mmsa")
    fx.write_mmsa(root, "MOSI", aligned=False, dims=(16, 5, 20))
    fx.write_mmsa(root, "MOSI", aligned=True, dims=(16, 5, 20))
    return root


def test_mosi_unaligned(mosi_root):
    raw = pickle.loads((mosi_root / "MOSI" / "Processed" / "unaligned_50.pkl").read_bytes())
    d = licensed.load_mosi(mosi_root)
    assert d.modalities == ("T", "A", "V") and d.max_len == {"T": 50, "A": 375, "V": 500}
    assert [int((d.split == s).sum()) for s in SPLITS] == [8, 8, 8]
    tr = raw["train"]
    assert np.isneginf(tr["audio"]).any() and np.isfinite(d.feats["A"]).all()
    assert d.feats["A"][0, 0, 0] == 0.0  # the -inf became 0
    assert d.lengths["A"][:8].tolist() == tr["audio_lengths"].tolist()
    assert d.lengths["T"][:8].tolist() == tr["text_bert"][:, 1].sum(1).astype(int).tolist()
    assert d.y[:8].tolist() == tr["classification_labels"].astype(int).tolist()
    np.testing.assert_allclose(d.y_reg[:8], tr["regression_labels"])
    assert d.info["text_bert"].shape == (24, 3, 50) and d.ids[0] == tr["id"][0]


def test_mosi_tasks(mosi_root):
    reg = licensed.load_mosi(mosi_root, task="binary").y_reg
    seven = licensed.load_mosi(mosi_root, task="seven")
    assert seven.n_classes == 7 and seven.y.tolist() == (np.round(np.clip(reg, -3, 3)) + 3).astype(int).tolist()
    assert (licensed.load_mosi(mosi_root, task="7").y == seven.y).all()
    two = licensed.load_mosi(mosi_root, task="2")
    assert len(two) == int((reg != 0).sum()) < 24 and two.y.tolist() == (reg[reg != 0] > 0).astype(int).tolist()
    three = licensed.load_mosi(mosi_root, task="3")
    assert three.y.tolist() == (np.sign(reg) + 1).astype(int).tolist()
    with pytest.raises(DataError):
        licensed.load_mosi(mosi_root, task="five")


def test_mosi_aligned_uses_text_lengths(mosi_root):
    d = licensed.load_mosi(mosi_root, aligned=True)
    assert d.max_len == {"T": 50, "A": 50, "V": 50}
    assert (d.lengths["A"] == d.lengths["T"]).all() and (d.lengths["V"] == d.lengths["T"]).all()
    assert np.isfinite(d.feats["A"]).all()


def test_mosei_layout(tmp_path):
    fx.write_mmsa(tmp_path, "MOSEI", aligned=False, n=4, dims=(16, 74, 35), lens=(12, 40, 30))
    d = licensed.load_mosei(tmp_path)
    assert d.dims == {"T": 16, "A": 74, "V": 35} and len(d) == 12 and d.name == "mosei"

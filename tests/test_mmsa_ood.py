"""CIDer's OOD re-partitions of MOSI / MOSEI (`mmlab.data.mmsa_ood`) read from fixtures written with
``joblib.dump`` in the released layout ``OOD_{MOSI,MOSEI}/{binary,seven}/{NAME}_{aligned,unaligned}_50.pkl``
beside the IID ``{NAME}/Processed`` pickle, and the joblib reader that never calls ``joblib.load``
(`mmlab.data.safe_joblib`). Random numbers only: no licensed data."""

from __future__ import annotations

import os
import pickle
import shutil
import warnings
import zlib
from pathlib import Path

import joblib
import numpy as np
import pytest
from joblib.numpy_pickle import NumpyArrayWrapper

import fixtures_licensed as fx
from mmlab.cli import main
from mmlab.data import licensed, list_datasets, load_dataset
from mmlab.data.safe_joblib import safe_load_joblib
from mmlab.errors import DataError, UnsafePickleError

DIMS = {"MOSI": (16, 5, 20), "MOSEI": (16, 74, 35)}
LENS = {False: (50, 30, 40), True: (50, 50, 50)}  # text L = 50, as released
LOADERS = {"MOSI": licensed.load_mosi, "MOSEI": licensed.load_mosei}


def _write(root: Path, name: str = "MOSI", aligned: bool = False, task_dir: str = "binary", **kw) -> Path:
    return fx.write_mmsa_ood(root, name, aligned=aligned, task_dir=task_dir, dims=DIMS[name], lens=LENS[aligned], **kw)


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def _iid(root: Path, name: str = "MOSI", aligned: bool = False) -> dict:
    fname = f"{'aligned' if aligned else 'unaligned'}_50.pkl"
    return pickle.loads((root / name / "Processed" / fname).read_bytes())  # our own fixture: trusted


def _labels(raw: dict, rows: list[int], task: str) -> np.ndarray:
    reg = raw["regression_labels"][rows]
    return raw["classification_labels"][rows] if task == "binary" else np.round(np.clip(reg, -3, 3)) + 3


# ---------------------------------------------------------------------------- layout "test" (default)
@pytest.mark.parametrize("task", ["binary", "seven"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("name", ["MOSI", "MOSEI"])
def test_test_ood_from_released_layout(tmp_path, name, aligned, task):
    path = _write(tmp_path, name, aligned, task)
    assert path == tmp_path / f"OOD_{name}" / task / f"{name}_{'aligned' if aligned else 'unaligned'}_50.pkl"
    raw, iid = joblib.load(path), _iid(tmp_path, name, aligned)  # the fixture is a real joblib file
    with pytest.warns(UserWarning, match="dropped from test_ood"):
        d = LOADERS[name](tmp_path, aligned=aligned, task=task, ood=True)
    assert d.name == f"{name.lower()}_ood" and d.splits == ["train", "valid", "test", "test_ood"]
    assert d.test_splits == ["test", "test_ood"]
    for sp in ("train", "valid", "test"):  # the IID splits are the MMSA pickle's, unchanged
        assert d.ids[d.split == sp].tolist() == iid[sp]["id"].tolist()
    m = d.split == "test_ood"
    assert all(u.endswith("@ood") for u in d.ids[m])
    src = [u[: -len("@ood")] for u in d.ids[m]]
    seen = set(iid["train"]["id"].tolist()) | set(iid["valid"]["id"].tolist())
    assert not set(src) & seen and not set(src) & set(d.ids[np.isin(d.split, ("train", "valid"))])
    file_ids = raw["test"]["id"].tolist()
    assert src == [u for u in file_ids if u not in seen] and 0 < len(src) < len(file_ids)
    rows = [file_ids.index(u) for u in src]
    assert (d.y[m] == _labels(raw["test"], rows, task)).all()
    assert np.allclose(d.y_reg[m], raw["test"]["regression_labels"][rows])
    assert d.classes == (["negative", "neutral", "positive"] if task == "binary" else [str(v) for v in range(-3, 4)])
    audio = raw["test"]["audio"][rows]
    assert np.isneginf(audio).any()  # the last clip carries COVAREP's -inf ...
    audio[np.isneginf(audio)] = 0.0
    assert np.isfinite(d.feats["A"]).all() and np.array_equal(d.feats["A"][m][:, : audio.shape[1]], audio)  # ... set to 0
    if aligned:
        assert (d.lengths["A"] == d.lengths["T"]).all() and (d.lengths["V"] == d.lengths["T"]).all()
    else:
        assert (d.lengths["A"][m] == np.clip(raw["test"]["audio_lengths"][rows], 1, None)).all()
    info = d.info["ood"]
    assert info["layout"] == "test" and info["partition"] == task and info["file"] == str(path)
    assert info["n_partition_test"] == len(file_ids) and info["n_dropped_in_train_valid"] == len(file_ids) - len(src)
    assert d.info["text_bert"].shape == (len(d), 3, 50) and len(d.info["raw_text"]) == len(d)
    assert not np.isin(d.training_view().split, ["test", "test_ood"]).any()


def test_tasks_2_and_3_read_the_binary_partition(tmp_path):
    _write(tmp_path, "MOSI", False, "binary")
    for task in ("2", "3"):
        d = _quiet(licensed.load_mosi, tmp_path, task=task, ood=True)
        assert d.info["ood"]["partition"] == "binary" and "test_ood" in d.splits
    assert not (_quiet(licensed.load_mosi, tmp_path, task="2", ood=True).y_reg == 0).any()  # neutral dropped


# ---------------------------------------------------------------------------- layout "partition"
def test_partition_layout_is_ciders_ood_protocol(tmp_path):
    path = _write(tmp_path, "MOSEI", True, "seven")
    raw = joblib.load(path)
    shutil.rmtree(tmp_path / "MOSEI")  # CIDer's OOD protocol needs only the partition
    d = licensed.load_mosei(tmp_path, aligned=True, task="seven", ood="partition")
    assert d.name == "mosei_ood_partition" and d.splits == ["train", "valid", "test_ood"]
    for sp, out in (("train", "train"), ("valid", "valid"), ("test", "test_ood")):
        assert d.ids[d.split == out].tolist() == raw[sp]["id"].tolist()
        assert (d.y[d.split == out] == _labels(raw[sp], list(range(len(raw[sp]["id"]))), "seven")).all()
    assert not set(d.ids[d.split == "test_ood"]) & set(d.ids[np.isin(d.split, ("train", "valid"))])
    assert np.isfinite(d.feats["A"]).all()


def test_partition_that_repeats_a_clip_across_its_splits_is_refused(tmp_path):
    path = _write(tmp_path)
    data = joblib.load(path)
    data["test"]["id"][0] = data["train"]["id"][0]
    joblib.dump(data, path)
    with pytest.raises(DataError, match="not unique"):
        licensed.load_mosi(tmp_path, ood="partition")


def test_text_features_copied_by_id_when_the_partition_has_none(tmp_path):
    _write(tmp_path, with_text=False)
    iid = _iid(tmp_path)
    d = _quiet(licensed.load_mosi, tmp_path, ood=True)
    assert "T" in d.modalities and d.info["ood"]["text_from_iid"] == ["test_ood"]
    i = int(np.flatnonzero(d.split == "test_ood")[0])
    j = iid["test"]["id"].tolist().index(d.ids[i][: -len("@ood")])
    n = int(d.lengths["T"][i])
    assert np.allclose(d.feats["T"][i, :n], iid["test"]["text"][j, :n])
    p = licensed.load_mosi(tmp_path, ood="partition")
    assert p.info["ood"]["text_from_iid"] == ["train", "valid", "test"] and "T" in p.modalities
    shutil.rmtree(tmp_path / "MOSI")
    with pytest.warns(UserWarning, match="no 'text' features"):
        assert licensed.load_mosi(tmp_path, ood="partition").modalities == ("A", "V")


# ---------------------------------------------------------------------------- leaks, missing files
def test_partition_test_inside_the_iid_training_splits_is_refused(tmp_path):
    _write(tmp_path, test_from="train")
    with pytest.raises(DataError, match="every one of its 8 clips is in the train or valid split.*ood='partition'"):
        licensed.load_mosi(tmp_path, ood=True)
    assert "test_ood" in licensed.load_mosi(tmp_path, ood="partition").splits


def test_ids_that_match_nothing_are_refused(tmp_path):
    _write(tmp_path, test_from="foreign")
    with pytest.raises(DataError, match=r"none of its 8 ids \(e.g. 'other0\$_\$0'\) is an id of"):
        licensed.load_mosi(tmp_path, ood=True)


def test_missing_files_are_named_with_the_expected_path(tmp_path):
    _write(tmp_path, "MOSI", False, "binary")
    with pytest.raises(DataError) as err:
        licensed.load_mosi(tmp_path, task="seven", ood=True)
    assert str(tmp_path / "OOD_MOSI" / "seven" / "MOSI_unaligned_50.pkl") in str(err.value)
    assert "GWZhong/MSA_OOD_Dataset_in_CIDer" in str(err.value) and "data_cards/mosi.md" in str(err.value)
    with pytest.raises(DataError, match="MOSI_aligned_50.pkl"):
        licensed.load_mosi(tmp_path, aligned=True, ood="partition")
    with pytest.raises(DataError, match="OOD_MOSEI"):
        licensed.load_mosei(tmp_path, ood=True)
    shutil.rmtree(tmp_path / "MOSI")
    with pytest.raises(DataError, match="data_cards/mosi.md"):  # layout "test" needs the IID pickle too
        licensed.load_mosi(tmp_path, ood=True)
    with pytest.raises(DataError, match="expected True, 'test' or 'partition'"):
        licensed.load_mosi(tmp_path, ood="iid")


def test_ood_root_and_dataset_folder_as_root(tmp_path):
    _write(tmp_path)
    moved = tmp_path / "elsewhere" / "OOD_MOSI"
    shutil.move(str(tmp_path / "OOD_MOSI"), moved)
    assert "test_ood" in _quiet(licensed.load_mosi, tmp_path, ood=True, ood_root=moved).splits
    assert "test_ood" in _quiet(licensed.load_mosi, tmp_path / "MOSI", ood=True, ood_root=moved.parent).splits
    shutil.move(str(moved), tmp_path / "OOD_MOSI")
    assert "test_ood" in _quiet(licensed.load_mosi, tmp_path / "MOSI", ood=True).splits  # OOD_MOSI beside MOSI/


# ---------------------------------------------------------------------------- registry and compare
def test_registry_names_and_options(tmp_path):
    _write(tmp_path, "MOSI", False, "seven")
    _write(tmp_path, "MOSEI", True, "binary")
    rows = {r["name"]: r for r in list_datasets(tmp_path)}
    assert rows["mosi_ood"]["found"] and rows["mosei_ood"]["found"]
    assert rows["mosi_ood"]["where"] == str(tmp_path / "OOD_MOSI")
    d = _quiet(load_dataset, "mosi:ood,seven", data_root_dir=tmp_path)
    assert d.name == "mosi_ood" and d.info["task"] == "seven" and "test_ood" in d.splits
    assert _quiet(load_dataset, "mosi_ood:seven", data_root_dir=tmp_path).ids.tolist() == d.ids.tolist()
    p = load_dataset("mosei_ood:aligned,partition", data_root_dir=tmp_path)
    assert p.splits == ["train", "valid", "test_ood"] and p.info["aligned"] is True
    assert load_dataset("mosei:aligned", data_root_dir=tmp_path).splits == ["train", "valid", "test"]
    with pytest.raises(DataError, match="dataset option 'sideways': expected aligned | unaligned"):
        load_dataset("mosi:sideways", data_root_dir=tmp_path)
    with pytest.raises(DataError, match="aligned given twice"):
        load_dataset("mosi:aligned,unaligned", data_root_dir=tmp_path)
    with pytest.raises(DataError, match="takes no options"):
        load_dataset("synthetic:aligned")


def test_compare_scores_test_and_test_ood(tmp_path, monkeypatch, capsys):
    """`mmlab compare --data mosi_ood --test-split test,test_ood`: one model, both test splits."""
    from mmlab.evaluate import read_results

    _write(tmp_path, n=12)
    monkeypatch.setenv("MMLAB_DATA_ROOT", str(tmp_path))
    out = tmp_path / "cmp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["compare", "--data", "mosi_ood", "--methods", "zero_fill", "--seeds", "1", "--protocol", "full",
                   "--test-split", "test,test_ood", "--out", str(out), "--zero_fill.train.epochs=1"])
    assert rc == 0, capsys.readouterr().err
    rows = read_results(out / "results.csv")
    assert {r["split"] for r in rows} == {"test", "test_ood"}
    assert {r["n"] for r in rows if r["split"] == "test_ood"} == {6}  # 12 partition clips, 6 seen in IID train


# ---------------------------------------------------------------------------- the joblib reader
def test_compressed_joblib_files_read_like_plain_ones(tmp_path):
    path = _write(tmp_path)
    plain = _quiet(licensed.load_mosi, tmp_path, ood=True)
    data = joblib.load(path)
    for compress in (3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)):
        joblib.dump(data, path, compress=compress)
        d = _quiet(licensed.load_mosi, tmp_path, ood=True)
        assert d.ids.tolist() == plain.ids.tolist() and np.array_equal(d.feats["A"], plain.feats["A"])
    with pytest.raises(DataError, match="budget"):
        licensed.load_mosi(tmp_path, ood="partition", max_bytes="64KiB")
    path.write_bytes(b"\x04\x22\x4d\x18" + b"\x00" * 64)
    with pytest.raises(DataError, match=f"{path}: a joblib file lz4-compressed.*expected an uncompressed joblib.dump"):
        licensed.load_mosi(tmp_path, ood=True)
    joblib.dump(data, path, compress=3)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match=f"{path}"):
        licensed.load_mosi(tmp_path, ood=True)


def test_truncated_joblib_file_names_the_file(tmp_path):
    path = _write(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=f"{path}"):
        licensed.load_mosi(tmp_path, ood=True)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_files_are_refused_and_nothing_runs(tmp_path):
    path = _write(tmp_path)
    marker = tmp_path / "PWNED"
    path.write_bytes(f"cposix\nsystem\n(Vtouch {marker}\ntR.".encode())
    with pytest.raises(UnsafePickleError, match=f"{path}: refused global posix.system"):
        licensed.load_mosi(tmp_path, ood=True)
    joblib.dump({"train": {"id": np.array([_Evil(marker), "x"], dtype=object)}}, path)  # nested in an object array
    with pytest.raises(UnsafePickleError, match="refused global posix.system"):
        licensed.load_mosi(tmp_path, ood="partition")
    wrapper = NumpyArrayWrapper(np.ndarray, (10**6, 10**6), "C", np.dtype("f4"))  # claims 4 TB of array bytes
    path.write_bytes(pickle.dumps({"train": wrapper}, protocol=2))
    with pytest.raises(DataError, match="memory budget"):
        licensed.load_mosi(tmp_path, ood="partition")
    wrapper = NumpyArrayWrapper(np.ndarray, (2,), "C", np.dtype("f4"))
    wrapper.subclass = _Evil  # a subclass that is not numpy.ndarray is a global outside the allow-list
    path.write_bytes(pickle.dumps({"train": wrapper}, protocol=2))
    with pytest.raises(UnsafePickleError, match="refused global"):
        licensed.load_mosi(tmp_path, ood="partition")
    assert not marker.exists()


def test_safe_load_joblib_matches_joblib_load(tmp_path):
    data = {"f32": np.arange(12, dtype=np.float32).reshape(3, 4), "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            "big_endian": np.arange(5, dtype=">i4"), "text": np.array(["a", "bcd"]), "obj": np.array(["x", 1, None], dtype=object),
            "empty": np.zeros((0, 3)), "scalar": np.float32(2.5), "neg_inf": np.array([-np.inf, 1.0]), "nested": [np.ones(2)]}
    for protocol in (2, 3, 4, 5):
        joblib.dump(data, tmp_path / "x.pkl", protocol=protocol)
        ref, got = joblib.load(tmp_path / "x.pkl"), safe_load_joblib(tmp_path / "x.pkl")
        for k, v in ref.items():
            if isinstance(v, np.ndarray):
                assert got[k].shape == v.shape and got[k].dtype.isnative and got[k].tolist() == v.tolist(), k
        assert got["scalar"] == 2.5 and got["nested"][0].tolist() == [1.0, 1.0]
    with open(tmp_path / "plain.pkl", "wb") as fh:
        pickle.dump(data, fh)
    assert safe_load_joblib(tmp_path / "plain.pkl")["fortran"].tolist() == data["fortran"].tolist()
    with pytest.raises(DataError, match="joblib file not found"):
        safe_load_joblib(tmp_path / "none.pkl")
    (tmp_path / "bomb.pkl").write_bytes(zlib.compress(pickle.dumps(bytes(10**7)), 9))  # 10 kB -> 10 MB
    with pytest.raises(DataError, match="bomb.pkl: decompresses to more than 1 MiB"):
        safe_load_joblib(tmp_path / "bomb.pkl", max_bytes="1MiB")

"""The grown data contract: token-id text modalities, extra test splits, regression targets,
and the shared frozen text encoder (`mmlab.methods.text.featurize_tokens`)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from mmlab.data import VOCAB_SIZE, collate, from_arrays
from mmlab.data.byo import load_npz, validate_npz, write_npz
from mmlab.errors import ConfigError, DataError
from mmlab.missing import (
    RMFM, RMM, FixedPattern, Full, MeanFill, NoiseFill, TokenFill, TraditionalRMFM, ZeroFill, draw_masks, make_fill,
    mask_batch, pad_masks,
)
from mmlab.utils import torch_generator

N = 24


def _ids(n: int = N, t: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[CLS] words [SEP] [PAD]...; lengths in [2, t]."""
    rng = np.random.default_rng(seed)
    ln = rng.integers(2, t + 1, n)
    ln[0] = t
    ids = np.zeros((n, t), np.int64)
    for i, k in enumerate(ln):
        ids[i, :k] = [101, *rng.integers(1000, 30000, k - 2), 102]
    return ids, ln


def _split(n: int = N, extra: bool = True) -> np.ndarray:
    s = np.array(["train"] * (n - 8) + ["valid"] * 3 + ["test"] * 3 + ["test_ood"] * 2)
    return s if extra else np.where(s == "test_ood", "test", s)


def _data(extra: bool = True, y_reg: bool = True):
    ids, ln = _ids()
    rng = np.random.default_rng(1)
    a = rng.normal(size=(N, 5, 3)).astype(np.float32)
    return from_arrays(
        "tok", {"A": a, "T": ids}, np.arange(N) % 3, lengths={"A": np.full(N, 5), "T": ln}, split=_split(N, extra),
        y_reg=rng.uniform(-3, 3, N) if y_reg else None, tokens=("T",),
    )


# ------------------------------------------------------------------------------ dataset / batch
def test_token_modality_in_dataset_and_batch():
    d = _data()
    assert d.token_modalities == ("T",) and d.feats["T"].dtype == np.int64 and d.feats["T"].shape == (N, 7)
    assert d.dims == {"A": 3, "T": VOCAB_SIZE} and d.max_len["T"] == 7
    assert "token ids" in d.describe() and "test_ood=2" in d.describe()
    b = d.batch(np.arange(5))
    assert b.token_modalities == ("T",) and b.feats["T"].dtype == torch.long and b.feats["T"].dim() == 2
    assert torch.equal(b.pad_mask["T"].sum(1), torch.from_numpy(d.lengths["T"][:5]))
    b.validate().to("cpu").validate()
    assert b.index([1, 0]).feats["T"].shape[0] == 2 and b.y_reg is not None
    bad = b.index([0, 1])
    bad.feats["T"] = bad.feats["T"].clone()
    bad.feats["T"][0, 1] = VOCAB_SIZE
    with pytest.raises(DataError, match=r"\[0, 30522\)"):
        bad.validate()


def test_collate_tokens():
    samples = [
        {"feats": {"A": np.ones((2, 3)), "T": np.array([101, 7, 102])}, "y": 0},
        {"feats": {"A": np.ones((1, 3)), "T": np.array([101, 102])}, "y": 1, "avail": {"T": False}},
    ]
    b = collate(samples, ["A", "T"], tokens=("T",))
    assert b.feats["T"].tolist() == [[101, 7, 102], [101, 102, 0]] and b.feats["T"].dtype == torch.long
    assert b.pad_mask["T"].tolist() == [[True] * 3, [True, True, False]] and not b.obs_mask["T"][1].any()
    with pytest.raises(DataError, match="integer ids"):
        collate([{"feats": {"T": np.ones((2, 3))}, "y": 0}], ["T"], tokens=("T",))


def test_token_dataset_errors_name_the_problem():
    ids, ln = _ids()
    y = np.arange(N) % 3
    no_cls = ids.copy()
    no_cls[2, 0] = 5
    with pytest.raises(DataError, match=r"\[CLS\] = 101 .*row 2"):
        from_arrays("t", {"T": no_cls}, y, lengths={"T": ln}, tokens=("T",))
    with pytest.raises(DataError, match=r"\[SEP\] = 102.*counts \[CLS\] and \[SEP\]"):
        from_arrays("t", {"T": ids}, y, lengths={"T": np.minimum(ln + 1, 7)}, tokens=("T",))
    big = ids.copy()
    big[0, 1] = 40000
    with pytest.raises(DataError, match=r"\[0, 30522\).*40000"):
        from_arrays("t", {"T": big}, y, lengths={"T": ln}, tokens=("T",))
    with pytest.raises(DataError, match="integer array"):
        from_arrays("t", {"T": ids.astype(np.float32)}, y, lengths={"T": ln}, tokens=("T",))
    with pytest.raises(DataError, match="not modalities"):
        from_arrays("t", {"T": ids}, y, lengths={"T": ln}, tokens=("X",))
    d = from_arrays("t", {"T": ids + (ids == 0) * 7}, y, lengths={"T": ln}, tokens=("T",))  # padding zeroed
    assert (d.feats["T"][np.arange(7)[None] >= ln[:, None]] == 0).all()


# ------------------------------------------------------------------------------ splits / y_reg
def test_extra_test_splits_and_training_view():
    d = _data()
    assert d.splits == ["train", "valid", "test", "test_ood"] and d.test_splits == ["test", "test_ood"]
    tv = d.training_view()
    assert set(tv.split) == {"train", "valid"} and len(tv) == N - 5 and tv.y_reg is not None
    assert len(d.subset("test_ood")) == 2 and d.subset("test_ood").test_splits == ["test_ood"]
    assert np.allclose(d.subset("test_ood").y_reg, d.y_reg[d.split == "test_ood"])
    b = d.batch(d.split_indices("test_ood"))
    assert b.y_reg is not None and b.y_reg.dtype == torch.float32 and len(b) == 2
    with pytest.raises(DataError, match="test_<name>"):
        d.split_indices("dev")
    with pytest.raises(DataError, match="test_<name>"):
        from_arrays("t", {"A": np.ones((4, 2))}, np.zeros(4, int), split=np.array(["train", "valid", "dev", "test"]))
    with pytest.raises(DataError, match="y_reg contains NaN"):
        from_arrays("t", {"A": np.ones((2, 2))}, np.zeros(2, int), split=np.array(["train"] * 2), y_reg=[0.0, np.nan])


def test_byo_round_trip_tokens_splits_y_reg(tmp_path):
    d = _data()
    p = write_npz(d, tmp_path / "tok.npz")
    problems, summary = validate_npz(p)
    assert problems == [] and "token ids" in summary and "test_ood=2" in summary
    e = load_npz(p)
    assert e.token_modalities == ("T",) and np.array_equal(e.feats["T"], d.feats["T"])
    assert np.array_equal(e.lengths["T"], d.lengths["T"]) and np.array_equal(e.feats["A"], d.feats["A"])
    assert np.array_equal(e.split, d.split) and np.allclose(e.y_reg, d.y_reg) and e.y_reg.dtype == np.float32
    assert e.test_splits == ["test", "test_ood"]
    # a file whose only test split is an extra one is fine; no test split at all is not
    arrays = dict(np.load(p))
    arrays["split"] = np.where(d.split == "test", "test_ood", d.split)
    np.savez(tmp_path / "ood_only.npz", **arrays)
    assert validate_npz(tmp_path / "ood_only.npz")[0] == []
    assert load_npz(tmp_path / "ood_only.npz").test_splits == ["test_ood"]


def _byo_problems(tmp_path, **change) -> list[str]:
    ids, ln = _ids()
    arrays = {"X_T": ids, "len_T": ln, "X_A": np.ones((N, 2), np.float32), "y": np.arange(N) % 3, "split": _split()}
    arrays.update({k: v for k, v in change.items() if v is not None})
    for k in [k for k, v in change.items() if v is None]:
        arrays.pop(k)
    np.savez(tmp_path / "case.npz", **arrays)
    problems, _ = validate_npz(tmp_path / "case.npz")
    if problems:
        with pytest.raises(DataError, match="case.npz"):
            load_npz(tmp_path / "case.npz")
    return problems


@pytest.mark.parametrize("change, match", [
    ("out_of_vocab", r"^X_T: token ids must lie in \[0, 30522\)"),
    ("negative_id", r"^X_T: token ids must lie in \[0, 30522\)"),
    ("no_cls", r"^X_T: .*\[CLS\] = 101 at position 0"),
    ("no_sep", r"^X_T: .*\[SEP\] = 102.*len_T counts \[CLS\] and \[SEP\]"),
    ("len_one", r"^len_T: .*counts \[CLS\] and \[SEP\].*>= 2"),
    ("no_len_no_sep", r"^X_T: .*no len_T"),
    ("split_without_test", r"^split: no samples.*test"),
    ("split_dev", r"^split: values must be in .*test_<name>.*'valid'"),
    ("y_reg_nan", r"^y_reg: contains NaN"),
    ("y_reg_2d", r"^y_reg: expected a 1-d float array"),
    ("y_reg_huge", r"^y_reg: values exceed the float32 range"),
])
def test_byo_bad_token_files(tmp_path, change, match):
    ids, ln = _ids()
    cases = {
        "out_of_vocab": {"X_T": np.where(ids == 102, 30522, ids)},
        "negative_id": {"X_T": np.where(ids == 102, -1, ids)},
        "no_cls": {"X_T": np.where(ids == 101, 2023, ids)},
        "no_sep": {"len_T": np.minimum(ln + 1, 7)},
        "len_one": {"len_T": np.ones(N, np.int64)},
        "no_len_no_sep": {"len_T": None},
        "split_without_test": {"split": np.where(np.char.startswith(_split(), "test"), "valid", _split())},
        "split_dev": {"split": np.where(_split() == "valid", "dev", _split())},
        "y_reg_nan": {"y_reg": np.full(N, np.nan)},
        "y_reg_2d": {"y_reg": np.zeros((N, 2))},
        "y_reg_huge": {"y_reg": np.full(N, 1e300)},
    }
    problems = _byo_problems(tmp_path, **cases[change])
    assert any(re.search(match, p) for p in problems), problems


def test_byo_integer_3d_features_stay_features(tmp_path):
    np.savez(tmp_path / "f.npz", X_A=np.ones((N, 2, 3), np.int32), X_V=np.ones((N, 2), np.float32), y=np.arange(N) % 3,
             split=_split())
    d = load_npz(tmp_path / "f.npz")
    assert d.token_modalities == () and d.feats["A"].dtype == np.float32


# ------------------------------------------------------------------------------ masking / fill
def _check_edges(d, mk):
    pad = pad_masks(d)["T"]
    rows = np.arange(len(d))
    assert mk.obs["T"][:, 0].all() and mk.obs["T"][rows, d.lengths["T"] - 1].all()
    assert not (mk.obs["T"] & ~pad).any()


@pytest.mark.parametrize("gen", [RMFM(0.6), RMFM(1.0), TraditionalRMFM(0.5), RMM(0.5), FixedPattern(("A",)), Full(),
                                 RMFM(0.5, mode="exact_count", protect_edges=("A",))])
def test_draw_masks_keeps_cls_and_sep(gen):
    d = _data()
    pad = pad_masks(d)
    mk = draw_masks(gen, pad, d.modalities, seed=3, tokens=d.token_modalities)
    _check_edges(d, mk)
    content = pad["T"].copy()
    content[:, 0] = False
    content[np.arange(N), d.lengths["T"] - 1] = False
    has = content.any(1)
    j = d.modalities.index("T")
    assert np.array_equal(mk.avail[has, j], (mk.obs["T"] & content).any(1)[has])
    if isinstance(gen, RMFM) and gen.rate == 1.0:
        assert not mk.avail[has, j].any()


def test_mask_batch_tokens_whole_drop_and_frame_drop():
    d = _data()
    idx = np.arange(8)
    b = d.batch(idx)
    # whole-modality drop: avail False, [CLS] [UNK] ... [SEP] for the fill policy
    mk = draw_masks(FixedPattern(("A",)), pad_masks(d), d.modalities, 0, tokens=d.token_modalities)
    out = mask_batch(b, mk.take(idx), ZeroFill()).validate()
    assert not out.avail[:, 1].any() and out.avail[:, 0].all()
    for i, k in enumerate(d.lengths["T"][idx]):
        row = out.feats["T"][i].tolist()
        assert row[:k] == [101] + [100] * (k - 2) + [102] and set(row[k:]) <= {0}
    assert torch.equal(out.complete["T"], b.feats["T"]) and torch.equal(out.feats["A"], b.feats["A"])
    # a generator called directly (no tokens=...): mask_batch still keeps [CLS]/[SEP]
    raw = RMFM(1.0)(pad_masks(d), d.modalities, np.random.default_rng(0))
    assert not raw.obs["T"].any()
    out = mask_batch(b, raw.take(idx), NoiseFill(), generator=torch_generator(0)).validate()
    assert out.obs_mask["T"][:, 0].all() and (out.feats["T"][:, 0] == 101).all()
    has_content = torch.from_numpy(d.lengths["T"][idx] > 2)
    assert not out.avail[has_content, 1].any()


def test_make_fill_with_token_dataset():
    d = _data()
    train = d.subset("train")
    for name in ("zero", "mean", "noise", "token"):
        f = make_fill(name, train=train)
        assert isinstance(f, TokenFill), name
    assert isinstance(make_fill("mean", train=train).base, MeanFill)
    assert set(make_fill("mean", train=train).base.means) == {"A"}
    assert isinstance(make_fill("zero"), ZeroFill)  # no dataset, no tokens: unchanged
    idx = np.arange(6)
    b = d.batch(idx)
    mk = draw_masks(RMFM(0.5), pad_masks(d), d.modalities, 1, tokens=d.token_modalities).take(idx)
    out = mask_batch(b, mk, make_fill("mean", train=train)).validate()
    hole = b.pad_mask["T"] & ~out.obs_mask["T"]
    assert (out.feats["T"][hole] == 100).all() and torch.equal(out.feats["T"][~hole], b.feats["T"][~hole])


# ------------------------------------------------------------------------------ text encoder
def test_featurize_tokens_matches_encoder_and_caches(tmp_path, monkeypatch):
    from mmlab.methods import text

    d = _data()
    out = text.featurize_tokens(d, batch_size=5, cache_dir=tmp_path)
    x = out.feats["T"]
    assert out.token_modalities == () and x.dtype == np.float32 and x.shape == (N, 7, 384)
    assert out.feats["A"] is d.feats["A"] and np.array_equal(out.lengths["T"], d.lengths["T"])
    assert np.array_equal(out.split, d.split) and out.y_reg is d.y_reg and out.dims["T"] == 384
    pad = pad_masks(d)["T"]
    assert not x[~pad].any() and np.abs(x[pad]).sum(-1).min() > 0
    info = out.info["text_encoder"]["T"]
    assert info["dim"] == 384 and info["source"] == "encoder" and len(list(tmp_path.glob("*.npy"))) == 1

    model = text._load_encoder(text.resolve_model_dir(None), torch.device("cpu"))
    for i in (0, 3):
        k = int(d.lengths["T"][i])
        ids = torch.from_numpy(d.feats["T"][i : i + 1, :k])
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0].numpy()
        np.testing.assert_allclose(x[i, :k], ref, atol=2e-5, rtol=1e-4)

    def refuse(*args, **kwargs):
        raise AssertionError("the encoder was loaded although the features are cached")

    monkeypatch.setattr(text, "_load_encoder", refuse)
    again = text.featurize_tokens(d, batch_size=5, cache_dir=tmp_path)  # memory
    assert again.info["text_encoder"]["T"]["source"] == "memory" and np.array_equal(again.feats["T"], x)
    text._MEMORY.clear()
    disk = text.featurize_tokens(d, cache_dir=tmp_path)  # disk (batch size is not part of the key)
    assert disk.info["text_encoder"]["T"]["source"] == "disk" and np.array_equal(disk.feats["T"], x)
    other = _data()
    other.feats["T"][0, 1] += 1  # different ids: a new key, so the (refusing) loader is called
    with pytest.raises(AssertionError, match="cached"):
        text.featurize_tokens(other, cache_dir=tmp_path)


def test_featurize_tokens_errors_and_no_tokens(tmp_path):
    from mmlab.methods import text

    plain = from_arrays("p", {"A": np.ones((6, 2))}, np.arange(6) % 2)
    assert text.featurize_tokens(plain, model_dir=tmp_path / "absent") is plain
    with pytest.raises(ConfigError, match="not a directory"):
        text.featurize_tokens(_data(), model_dir=tmp_path / "absent", cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="config.json"):
        text.featurize_tokens(_data(), model_dir=tmp_path / "empty", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="batch_size"):
        text.featurize_tokens(_data(), batch_size=0, cache_dir=tmp_path)
    assert text.TextEncoderConfig().model_dir is None

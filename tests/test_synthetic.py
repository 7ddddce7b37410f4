"""The synthetic dataset and its exact oracles, checked against Monte Carlo and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from mmlab.data import load_dataset
from mmlab.data.synthetic import PRESETS, LinearGaussianModel, SyntheticConfig, make_synthetic
from mmlab.evaluate import oracle_table
from mmlab.errors import ConfigError

SMALL = SyntheticConfig(dims=(3, 4, 5), min_len=(2, 2, 1), max_len=(5, 5, 4), d_shared_class=2, d_shared_free=2, d_private=2)


def _pad(lengths: np.ndarray, t: int) -> np.ndarray:
    return np.arange(t)[None] < lengths[:, None]


def _sample(cfg: SyntheticConfig, n: int, seed: int):
    model = LinearGaussianModel.from_config(cfg)
    s = model.sample(n, np.random.default_rng(seed))
    feats = {m: s[f"x_{m}"] for m in cfg.modalities}
    pad = {m: _pad(s[f"len_{m}"], cfg.max_len[j]) for j, m in enumerate(cfg.modalities)}
    return model, s, feats, pad


def test_default_is_deterministic_and_shaped():
    a, b = make_synthetic(preset="tiny"), make_synthetic(preset="tiny")
    assert a.modalities == ("A", "V", "T")
    for m in a.modalities:
        np.testing.assert_array_equal(a.feats[m], b.feats[m])
        assert a.feats[m].dtype == np.float32
        # padding is zero, lengths within range
        t = a.feats[m].shape[1]
        assert not a.feats[m][~_pad(a.lengths[m], t)].any()
    assert {s: int((a.split == s).sum()) for s in ("train", "valid", "test")} == {"train": 300, "valid": 100, "test": 200}
    c = make_synthetic(preset="tiny", seed=1)
    assert not np.array_equal(a.feats["A"], c.feats["A"])


def test_registry_and_presets():
    d = load_dataset("synthetic", preset="tiny")
    assert d.name == "synthetic" and d.n_classes == 4
    assert PRESETS["paper"].dims == (130, 342, 1024)
    with pytest.raises(ConfigError, match="synthetic preset"):
        make_synthetic(preset="huge")
    with pytest.raises(ConfigError, match="synthetic.dims"):
        SyntheticConfig(dims=(3, 4))


def test_posterior_matches_brute_force_gaussian():
    """Information-form posterior == explicit Gaussian likelihood of the observed frame means."""
    cfg = SMALL
    model, s, feats, pad = _sample(cfg, 40, seed=3)
    rng = np.random.default_rng(0)
    obs = {m: pad[m] & (rng.random(pad[m].shape) < 0.6) for m in cfg.modalities}
    obs["V"][:10] = False  # some samples lose a whole modality
    logp = model.log_posterior(feats, obs)
    for i in range(40):
        blocks, rows, noise = [], [], []
        for j, m in enumerate(cfg.modalities):
            k = obs[m][i].sum()
            if k == 0:
                continue
            blocks.append(feats[m][i][obs[m][i]].mean(0))
            rows.append(model.W[j])
            noise += [cfg.noise[j] ** 2 / k] * cfg.dims[j]
        x, W = np.concatenate(blocks), np.vstack(rows)
        cov = W @ W.T + np.diag(noise)
        ll = np.array([multivariate_normal(W @ mu, cov).logpdf(x) for mu in model.means]) + np.log(model.priors)
        np.testing.assert_allclose(logp[i], ll - np.logaddexp.reduce(ll), atol=1e-8)


@pytest.mark.parametrize("available", [("A", "V", "T"), ("T",), ("A", "V")])
def test_posterior_is_calibrated_monte_carlo(available):
    """E[max_y p(y|x)] (the oracle's own expected accuracy) matches its Monte Carlo accuracy."""
    cfg = PRESETS["tiny"]
    model, s, feats, pad = _sample(cfg, 20000, seed=11)
    obs = {m: pad[m] & (m in available) for m in cfg.modalities}
    p = np.exp(model.log_posterior(feats, obs))
    hit = (p.argmax(1) == s["y"]).astype(float)
    se = hit.std() / np.sqrt(len(hit))
    assert abs(hit.mean() - p.max(1).mean()) < 3.5 * se
    # per-class: the average posterior of class k equals its empirical frequency
    np.testing.assert_allclose(p.mean(0), np.bincount(s["y"], minlength=4) / len(hit), atol=0.015)


def test_conditional_of_missing_modality_monte_carlo():
    """Residual s_T - E[s_T | A, V] has mean 0, covariance = mean oracle covariance, no correlation with x."""
    cfg = SMALL
    model, s, feats, pad = _sample(cfg, 30000, seed=5)
    obs = {"A": pad["A"], "V": pad["V"], "T": np.zeros_like(pad["T"])}
    c = model.conditional(feats, obs, "T")
    signal = s["h"] @ model.W[2].T
    resid = signal - c["mean"]
    n = len(resid)
    assert np.all(np.abs(resid.mean(0)) < 4 * resid.std(0) / np.sqrt(n))
    np.testing.assert_allclose(np.cov(resid.T), c["covariance"].mean(0), rtol=0.05, atol=0.05)  # SE ~ 0.03
    xbar_a = (feats["A"] * pad["A"][..., None]).sum(1) / pad["A"].sum(1, keepdims=True)
    corr = np.corrcoef(np.hstack([resid, xbar_a]).T)[: resid.shape[1], resid.shape[1] :]
    assert np.abs(corr).max() < 0.03
    # mixture moments are consistent with the components
    np.testing.assert_allclose(c["weights"].sum(1), 1.0)
    np.testing.assert_allclose(np.einsum("nc,ncd->nd", c["weights"], c["means"]), c["mean"])


def test_linear_classifier_reaches_but_does_not_beat_oracle():
    """With fixed lengths the Bayes rule is linear in the frame means: a well-fitted logistic
    regression reaches the oracle's accuracy within sampling error, and never beats it."""
    from sklearn.linear_model import LogisticRegression

    cfg = SyntheticConfig(dims=(6, 8, 10), min_len=(4, 4, 3), max_len=(4, 4, 3))
    model, s, feats, pad = _sample(cfg, 40000, seed=21)
    stats = np.hstack([feats[m].mean(1) for m in cfg.modalities])
    train, test = slice(0, 30000), slice(30000, None)
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(stats[train], s["y"][train])
    lin = clf.predict(stats[test]) == s["y"][test]
    bayes = model.log_posterior({m: feats[m][test] for m in feats}, {m: pad[m][test] for m in pad}).argmax(1) == s["y"][test]
    diff = lin.astype(float) - bayes.astype(float)  # paired comparison on the same samples
    se = diff.std() / np.sqrt(len(diff))
    assert diff.mean() < 2.5 * se + 1e-9, "a classifier cannot beat the Bayes oracle"
    assert diff.mean() > -0.012, f"logistic regression is {-diff.mean():.3f} under the oracle"


def test_oracle_table_orders_conditions():
    d = make_synthetic(preset="tiny")
    rows = oracle_table(d)
    names = [r["condition"] for r in rows]
    assert names == ["full", "{A}", "{V}", "{T}", "{AV}", "{AT}", "{VT}"]
    acc = {r["condition"]: r["accuracy"] for r in rows}
    assert acc["full"] >= max(acc["{A}"], acc["{V}"], acc["{T}"])
    assert all(0.0 <= r["macro_recall"] <= 1.0 for r in rows)

"""The CM-ARR notebook's helpers (mmlab/explore/cmarr.py) and figures (mmlab/viz.py): the untrained
copy is the training's initialisation, UDCL measurably aligns the UMC's Gaussians after a short
training, the latent and reconstruction views agree with the method's own paths and with the
generation protocol, and the ablation reader averages seeds and never crashes on a missing file."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from mmlab import explore, viz
from mmlab.data import load_dataset
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError

SHORT = {"train.epochs": 2, "train.batch_size": 32, "train.patience": 0, "probe.epochs": 5}


@pytest.fixture(scope="module")
def tiny() -> MMDataset:
    return load_dataset("synthetic", preset="tiny")


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    return explore.trained_method("cmarr", tiny, tmp_path_factory.mktemp("cmarr"), overrides=SHORT, seed=0)


@pytest.fixture(scope="module")
def gauss(trained, tiny):
    return {"before": explore.utterance_gaussians(explore.untrained_copy(trained, tiny), tiny),
            "after": explore.utterance_gaussians(trained, tiny)}


# ------------------------------------------------------------------ alignment
def test_untrained_copy_is_the_initialisation_and_keeps_the_callers_rng(trained, tiny):
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()
    fresh = explore.untrained_copy(trained, tiny)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert type(fresh) is type(trained) and fresh.cfg == trained.cfg and not fresh.training
    for m in tiny.modalities:  # the flows' fixed permutations are drawn at construction: same seed, same draw
        assert torch.equal(fresh.flows[m].linears[0].perm, trained.flows[m].linears[0].perm)
    moved = [not torch.equal(a, b) for a, b in zip(fresh.umc.parameters(), trained.umc.parameters())]
    assert any(moved)  # training changed the UMC


def test_gaussians_have_the_umc_shapes_and_alignment_improves_with_training(gauss, trained, tiny):
    n = len(tiny.subset("test"))
    for g in gauss.values():
        assert list(g) == list(tiny.modalities)
        for mu, var in g.values():
            assert mu.shape == var.shape == (n, trained.cfg.d_umc) and (var > 0).all() and np.isfinite(mu).all()
    before, after = (explore.alignment_distances(gauss[k]) for k in ("before", "after"))
    assert [p["pair"] for p in after["pairs"]] == ["A-V", "A-T", "V-T"]
    assert before["chance"] == pytest.approx(1 / n)
    # UDCL (Eqs. 2-4) pulls a sample's modalities together: measurably so after two short epochs
    assert after["within"] < 0.95 * before["within"]
    assert after["ratio"] < before["ratio"]
    assert 0 < after["within_mu"] < after["within"]


def test_alignment_distances_on_known_gaussians():
    rng = np.random.default_rng(0)
    mu, var = rng.normal(size=(50, 8)), rng.uniform(0.5, 2.0, size=(50, 8))
    same = explore.alignment_distances({"A": (mu, var), "B": (mu.copy(), var.copy())})
    assert same["within"] == pytest.approx(0, abs=1e-9) and same["ratio"] < 1e-9 and same["retrieval"] == 1
    perm = rng.permutation(50)
    shuffled = explore.alignment_distances({"A": (mu, var), "B": (mu[perm], var[perm])})
    assert shuffled["retrieval"] <= 0.1 and shuffled["ratio"] > 0.8
    # D_2W per dimension by hand: ||mu_a - mu_b||^2 + ||sd_a - sd_b||^2, over d
    two = explore.alignment_distances({"A": (mu[:2], var[:2]), "B": (mu[2:4], var[2:4])})
    by_hand = [(((mu[i] - mu[2 + i]) ** 2).sum() + ((np.sqrt(var[i]) - np.sqrt(var[2 + i])) ** 2).sum()) / 8
               for i in range(2)]
    assert two["within"] == pytest.approx(np.mean(by_hand))
    assert two["within_mu"] == pytest.approx(np.mean([((mu[i] - mu[2 + i]) ** 2).sum() / 8 for i in range(2)]))


def test_projected_ellipses_are_the_gaussians_in_the_pca_basis():
    rng = np.random.default_rng(1)
    g = {m: (rng.normal(size=(30, 2)), rng.uniform(0.1, 1.0, size=(30, 2))) for m in "AB"}
    pca = explore.fit_pca(np.concatenate([g[m][0] for m in g]))
    view = explore.project_gaussians(g, pca, [0, 3, 7])
    assert view["centers"].shape == (3, 2, 2) and view["covs"].shape == (3, 2, 2, 2)
    assert view["explained"] == pytest.approx(1.0)  # d = 2: the basis is a rotation
    for s, i in enumerate([0, 3, 7]):
        for j, m in enumerate("AB"):
            cov = view["covs"][s, j]
            assert np.allclose(cov, cov.T) and np.trace(cov) == pytest.approx(g[m][1][i].sum())
            assert np.linalg.norm(view["centers"][s, j]) == pytest.approx(np.linalg.norm(g[m][0][i] - pca["center"]))
    outline = viz.ellipse_xy([1.0, -1.0], np.array([[2.0, 0.5], [0.5, 1.0]]), n_sigma=2.0)
    d = outline - [1.0, -1.0]
    assert np.allclose(np.einsum("ni,ij,nj->n", d, np.linalg.inv([[2.0, 0.5], [0.5, 1.0]]), d), 4.0)


def test_sigma_stats_rows(gauss):
    rows = explore.sigma_stats(gauss["after"])
    assert [r["modality"] for r in rows] == ["A", "V", "T"]
    assert all(r["mean_sigma"] > 0 and r["sd_over_samples"] >= 0 and r["sd_over_dims"] > 0 for r in rows)


# ------------------------------------------------------------------ reconstruction
@pytest.fixture(scope="module")
def views(trained, tiny):
    return (explore.flow_latents(trained, tiny, target="T", seed=3),
            explore.reconstruction_view(trained, tiny, target="T", seed=3, k=2))


def test_flow_latents_follow_eq7_and_the_methods_own_reconstruction(views, trained, tiny):
    lat, rec = views
    n, d = len(tiny.subset("test")), trained.cfg.d
    assert set(lat["z"]) == set(tiny.modalities) and lat["sources"] == ["A", "V"]
    for key in ("z_tilde", "x_real", "x_tilde", "x_hat"):
        assert lat[key].shape == (n, d) and np.isfinite(lat[key]).all()
    assert all(lat["xy"][k].shape == (n, 2) for k in ("A", "V", "T", "z_tilde"))
    # Eq. 7 on complete rows: the mean of the sources' latents (time means commute with it)
    assert np.allclose(lat["z_tilde"], (lat["z"]["A"] + lat["z"]["V"]) / 2, atol=1e-5)
    # X^ is what `generate` returns and X the projection `real_features` reads
    assert np.allclose(lat["x_hat"], rec["features"]["generated"], atol=1e-5)
    assert np.allclose(lat["x_real"], rec["features"]["real"], atol=1e-5)
    assert lat["x_hat_mse"] > 0 and lat["zero_mse"] == pytest.approx(1.0, abs=0.01)  # X is layer-normalised
    assert [r["pair"] for r in lat["latent_pairs"]] == ["Z_A vs Z_T", "Z_V vs Z_T", "Z~_T vs Z_T"]
    with pytest.raises(ConfigError, match="target"):
        explore.flow_latents(trained, tiny, target="X")


def test_reconstruction_view_agrees_with_the_generation_protocol(views, trained, tiny):
    from mmlab.evaluate import generation_table

    _, view = views
    n = len(tiny.subset("test"))
    assert view["direction"] == "AV->T" and set(view["features"]) == {"real", "generated", "exact", "exact_mean"}
    assert all(v.shape == (n, trained.cfg.d) for v in view["features"].values())
    assert all(v.shape == (n, 2) for v in view["xy"].values())
    rows = {(r["method"], r["condition"]): r["accuracy"] for r in generation_table(trained, tiny, seed=3, k=2)
            if r["target"] == "T"}
    assert view["accuracy"]["generated"] == rows[("cmarr", "AV->T")]
    assert view["accuracy"]["real"] == rows[("cmarr", "real->T")]
    assert view["accuracy"]["exact"] == rows[("exact_conditional[cmarr]", "AV->T")]
    assert view["accuracy"]["exact_mean"] == rows[("exact_conditional[cmarr]", "AV->T mean")]
    # an exact draw is sqrt(2) times farther from the real value than the conditional mean (both are draws)
    assert 1.2 < view["exact_to_real"] / view["conditional_sd"] < 1.65
    assert view["spread"]["generated"] < view["spread"]["real"]


# ------------------------------------------------------------------ ablations
FIELDS = ["dataset", "method", "protocol", "condition", "split", "seed", "accuracy"]
PATTERNS = ["{A}", "{V}", "{T}", "{AV}", "{AT}", "{VT}"]


def _write(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({"dataset": "synthetic", "protocol": "pattern", "split": "test", **r})
    return path


def test_ablation_summary_averages_patterns_then_seeds(tmp_path):
    rows = []
    for seed, base in ((1, 0.60), (2, 0.64)):
        rows += [{"method": "cmarr", "condition": c, "seed": seed, "accuracy": base + 0.01 * i}
                 for i, c in enumerate(PATTERNS)]
        rows += [{"method": "cmarr", "condition": "full", "seed": seed, "accuracy": 0.99},  # not a pattern
                 {"method": "cmarr", "condition": "Average", "seed": seed, "accuracy": 0.0}]  # patterns win
    rows += [{"method": "dicmor", "condition": "Average", "seed": 1, "accuracy": 0.7},  # only an Average row
             {"method": "zzz_other", "condition": "{A}", "seed": 1, "accuracy": 0.5},
             {"method": "cmarr_wo_udcl", "condition": "{A}", "seed": 1, "accuracy": 0.55},
             {"method": "bayes_oracle", "condition": "{A}", "seed": 1, "accuracy": 0.8},
             {"method": "cmarr", "condition": "rate=0.5", "seed": 1, "accuracy": 0.0, "protocol": "rate_drop"}]
    out = explore.ablation_summary(_write(tmp_path / "results.csv", rows))
    assert out["found"] and "seed" in out["message"]
    assert [r["method"] for r in out["rows"]] == ["cmarr", "cmarr_wo_udcl", "dicmor", "zzz_other"]
    cmarr = out["rows"][0]
    assert cmarr["n_seeds"] == 2 and cmarr["average"] == pytest.approx(0.645)
    assert cmarr["std"] == pytest.approx(np.std([0.625, 0.665], ddof=1))
    assert out["rows"][2] == {"method": "dicmor", "average": 0.7, "std": 0.0, "n_seeds": 1,
                              "gap_to_oracle": pytest.approx(-0.1)}
    assert out["oracle"]["average"] == 0.8 and out["oracle"]["n_seeds"] == 1
    fig = viz.ablation_figure(out)
    assert list(fig.data[0].x) == ["cmarr", "cmarr_wo_udcl", "dicmor", "zzz_other"]
    assert fig.data[0].error_y.array is not None  # several seeds: error bars


def test_ablation_summary_without_a_file_says_so(tmp_path):
    missing = explore.ablation_summary(tmp_path / "nope.csv")
    assert not missing["found"] and missing["rows"] == [] and missing["oracle"] is None
    assert "nope.csv" in missing["message"]
    empty = explore.ablation_summary(_write(tmp_path / "empty.csv", []))
    assert empty["found"] and empty["rows"] == [] and "no pattern rows" in empty["message"]


def test_default_ablation_path_is_the_repositorys_committed_rows():
    path = explore.ablation_results_path()
    assert path.parts[-5:] == ("docs", "results", "cmarr", "synthetic", "results.csv")
    assert explore.ablation_results_path("~/x.csv").name == "x.csv"
    if path.exists():  # the committed rows (1 or more seeds): every method of the plot is there
        out = explore.ablation_summary()
        assert {"cmarr", "cmarr_baseline", "dicmor"} <= {r["method"] for r in out["rows"]} and out["oracle"]


# ------------------------------------------------------------------ figures
def test_figures_have_a_fixed_trace_layout(gauss, views, tiny):
    pca = explore.fit_pca(np.concatenate([gauss["after"][m][0] for m in tiny.modalities]))
    panels = {k: explore.project_gaussians(g, pca, range(4)) for k, g in gauss.items()}
    assert len(viz.gaussian_ellipses(panels).data) == 2 * (2 * 3 + 1)
    lat, view = views
    assert len(viz.latent_figure(lat).data) == 3 + 1 + tiny.n_classes
    assert len(viz.reconstruction_figure(view).data) == 3 * tiny.n_classes
    one_seed = {"rows": [{"method": "cmarr", "average": 0.6, "std": 0.0, "n_seeds": 1}], "oracle": None}
    assert viz.ablation_figure(one_seed).data[0].error_y.array is None


def test_the_missingness_explorer_accepts_cmarr(tiny):
    """Notebook 05's explorer is method-agnostic: CM-ARR's predictions under a mask draw, beside
    the Bayes oracle's."""
    from mmlab.methods import make_method

    torch.manual_seed(0)
    method = make_method("cmarr", tiny)
    method.eval()
    state = explore.missingness_state(tiny, method, max_samples=40)
    view = explore.missingness_view(state, "fixed", "{AV}", seed=3)
    assert len(view["pred"]) == 40 and view["method"] == "cmarr" and view["oracle_accuracy"] is not None

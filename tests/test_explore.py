"""The explorers' pure functions and their widgets, driven headless (no kernel, no browser)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlab import explore, viz
from mmlab.data.synthetic import make_synthetic
from mmlab.errors import ConfigError

ADMC_FAST = {"itfn.train.epochs": 1, "adn.train.epochs": 2, "mf.train.epochs": 1, "mf.scenarios": "full", "mmer": False}


@pytest.fixture(scope="module")
def data():
    return make_synthetic(preset="tiny")


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    torch.set_num_threads(1)
    return explore.trained_method("reference", data, tmp_path_factory.mktemp("ref"), {"train.epochs": 1})


@pytest.fixture(scope="module")
def admc(data, tmp_path_factory):
    torch.set_num_threads(1)
    return explore.trained_method("admc", data, tmp_path_factory.mktemp("admc"), ADMC_FAST)


@pytest.fixture()
def mstate(data, reference):
    return explore.missingness_state(data, reference)


@pytest.fixture(scope="module")
def dstate(data, admc):
    return explore.diffusion_state(admc, data, n_samples=80, projection="pca", n_track=4, max_step=100)


# ------------------------------------------------------------------------------ models
def test_override_args_formats_dicts_and_passes_lists():
    assert explore.override_args({"a.b": 2, "mmer": False, "x": None}) == ["--a.b=2", "--mmer=false", "--x=null"]
    assert explore.override_args(["--a=1"]) == ["--a=1"]
    with pytest.raises(ConfigError):
        explore.override_args("--a=1")


def test_trained_method_reloads_from_its_cache(data, reference, tmp_path_factory):
    again = explore.trained_method("reference", data, reference.run_dir.parent.parent, {"train.epochs": 1})
    assert again.run_dir == reference.run_dir
    for a, b in zip(reference.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert {r["stage"] for r in explore.training_log(again)} == {"fusion"}


# ------------------------------------------------------------------------------ missingness
def test_missingness_view_reports_method_and_oracle(mstate):
    v = explore.missingness_view(mstate, "fixed", "{AV}", seed=3)
    n, c = len(mstate.part), mstate.part.n_classes
    assert v["pred"].shape == v["oracle_pred"].shape == (n,)
    assert v["recall"].shape == v["oracle_recall"].shape == (c,)
    assert v["confusion"].sum() == n
    assert 0 <= v["accuracy"] <= 1 and 0 <= v["oracle_accuracy"] <= 1
    assert v["gap"] == pytest.approx(v["oracle_accuracy"] - v["accuracy"])
    assert v["pattern_counts"] == {"{AV}": n}
    assert v["obs"]["T"].sum() == 0 and v["obs"]["A"].any()  # T missing, A observed


def test_missingness_view_is_cached_and_seeded(mstate):
    a = explore.missingness_view(mstate, "rmm", 0.5, seed=1)
    size = len(mstate.cache)
    b = explore.missingness_view(mstate, "rmm", 0.5, seed=1)
    assert len(mstate.cache) == size  # nothing recomputed
    np.testing.assert_array_equal(a["pred"], b["pred"])
    c = explore.missingness_view(mstate, "rmm", 0.5, seed=2)
    assert a["pattern_counts"] != c["pattern_counts"]


def test_fill_changes_the_method_not_the_oracle(mstate):
    z = explore.missingness_view(mstate, "fixed", "{A}", fill="zero")
    m = explore.missingness_view(mstate, "fixed", "{A}", fill="mean")
    np.testing.assert_array_equal(z["oracle_pred"], m["oracle_pred"])
    assert z["fill"] == "zero" and m["fill"] == "mean"


def test_rate_zero_is_full_input(mstate):
    full = explore.missingness_view(mstate, "full")
    sweep = explore.missingness_sweep(mstate, "rate_drop", (0.0, 0.5))
    assert sweep["accuracy"][0] == pytest.approx(full["accuracy"])
    assert sweep["oracle_accuracy"][0] >= sweep["oracle_accuracy"][1] - 0.05


@pytest.mark.parametrize("protocol, value", [("fixed", 0.3), ("rmm", "x"), ("nope", 0.1), ("fixed", "{Q}")])
def test_bad_settings_raise_config_errors(mstate, protocol, value):
    with pytest.raises(ConfigError):
        explore.missingness_view(mstate, protocol, value)


def test_pattern_rows_cover_full_and_six_patterns(mstate):
    rows = explore.pattern_rows(mstate)
    assert [r["condition"] for r in rows] == ["full", "{A}", "{V}", "{T}", "{AV}", "{AT}", "{VT}"]
    assert all(r["oracle_accuracy"] >= 0.3 for r in rows)


def test_mask_gallery_rate_table_and_fill_examples(data):
    gallery, pad = explore.mask_gallery(data)
    fig = viz.masks_figure(gallery, pad, rows=10)
    assert len(fig.data) == len(gallery) and fig.data[0].z.shape[0] == 10
    codes = set(np.unique(np.concatenate([t.z.ravel() for t in fig.data])))
    assert codes <= {0, 1, 2} and {1, 2} <= codes
    rows = explore.rate_table(data, ("rmfm",), (0.1, 0.5))
    assert rows[0]["missing_frames"] < rows[1]["missing_frames"]
    ex = explore.fill_examples(data, "A", "rmfm", 0.5)
    miss = ~ex["observed"]
    assert miss.any() and ex["observed"].any()
    assert np.all(ex["zero"][miss] == 0)
    for k in ("zero", "mean", "noise"):
        np.testing.assert_array_equal(ex[k][ex["observed"]], ex["complete"][ex["observed"]])
    assert viz.feature_heatmaps(ex).data


def test_missingness_explorer_widgets_update_the_figure(mstate):
    app = explore.MissingnessExplorer(mstate, protocol="fixed", value="{A}")
    assert app.pattern.value == "{A}"
    heat0, bars0 = np.array(app.figure.data[0].z), np.array(app.figure.data[1].y)
    text0 = app.summary.value
    app.pattern.value = "{VT}"
    assert not np.array_equal(np.array(app.figure.data[0].z), heat0)
    assert "{VT}" in app.summary.value and app.summary.value != text0
    assert app.rate.layout.display == "none"
    app.protocol.value = "rate_drop"
    assert app.rate.layout.display is None and app.pattern.layout.display == "none"
    app.rate.value = 0.9
    assert "rate=0.90" in app.figure.layout.title.text
    assert len(app.figure.data) == 3  # updated in place
    assert not np.array_equal(np.array(app.figure.data[1].y), bars0) or app.view["label"] != "available {A}"


# ------------------------------------------------------------------------------ diffusion
def test_diffusion_view_shapes_and_trajectory(dstate):
    v = explore.diffusion_view(dstate, 20, "ddpm", None, "T", 1)
    n = len(dstate.part)
    assert v["real_xy"].shape == v["gen_xy"].shape == (n, 2)
    assert v["trajectory_steps"] == list(range(20, -1, -1))
    assert v["trajectory_xy"].shape == (21, 2)
    assert v["trajectory_distance"].shape == (21,)
    assert v["direction"] == "AV->T" and 0 <= v["generated_accuracy"] <= 1
    assert np.isfinite(v["gen_xy"]).all() and v["distance"] > 0


def test_diffusion_view_caches_and_respects_num_steps(dstate):
    explore.diffusion_view(dstate, 30, "ddim", 5, "A", 0)
    size = len(dstate.completions)
    v = explore.diffusion_view(dstate, 30, "ddim", 5, "A", 2)  # another sample: same completion
    assert len(dstate.completions) == size
    assert v["num_steps"] == 5 and len(v["trajectory_steps"]) == 6
    assert explore.diffusion_view(dstate, 3, "ddpm", 50, "A")["num_steps"] == 3  # clamped to n


def test_diffusion_view_is_reproducible(dstate, data, admc):
    a = explore.diffusion_view(dstate, 10, "ddpm", None, "V")
    fresh = explore.diffusion_state(admc, data, n_samples=80, projection="pca", n_track=4, max_step=100)
    b = explore.diffusion_view(fresh, 10, "ddpm", None, "V")
    np.testing.assert_allclose(a["gen_xy"], b["gen_xy"], rtol=1e-5, atol=1e-5)


def test_tsne_projection_is_joint_and_cached(dstate):
    v = explore.diffusion_view(dstate, 10, "ddim", 5, "T", 0, projection="tsne")
    assert v["real_xy"].shape == v["gen_xy"].shape and np.isfinite(v["trajectory_xy"]).all()
    size = len(dstate.projections)
    explore.diffusion_view(dstate, 10, "ddim", 5, "T", 1, projection="tsne")
    assert len(dstate.projections) == size + 1  # only the new sample's path


@pytest.mark.parametrize("kwargs", [{"sample_index": 99}, {"sampler": "euler"}, {"start_step": -1},
                                    {"modality": "X"}, {"projection": "mds"}])
def test_diffusion_view_rejects_bad_settings(dstate, kwargs):
    with pytest.raises(ConfigError):
        explore.diffusion_view(dstate, **kwargs)


def test_helpers_of_notebooks_02_03(dstate, data):
    from mmlab.methods.oracle import oracle_of

    rows = explore.itfn_table(dstate, oracle_of(data))
    assert [r["modality"] for r in rows] == ["A", "V", "T"] and all("oracle_accuracy" in r for r in rows)
    stats = explore.feature_stats(dstate)
    assert all(abs(r["standardised_mean"]) < 1.0 for r in stats)
    track = explore.trajectory_distances(dstate, 10, modality="T")
    assert track["distances"].shape == (dstate.n_track, 11)
    sweep = explore.step_sweep(dstate, (0, 10), "T")
    assert [r["start_step"] for r in sweep] == [0, 10]
    assert viz.embedding_panels([explore.diffusion_view(dstate, 10, modality="T")]).data


def test_diffusion_explorer_slider_changes_the_figure(dstate):
    app = explore.DiffusionExplorer(dstate, start_step=10, num_steps=10, modality="T")
    n_traces = len(app.figure.data)
    assert n_traces == 3 * dstate.part.n_classes + 5  # real, generated and exact-conditional clouds
    exact = [t for t in app.figure.data if t.name.startswith("exact conditional")]
    assert len(exact) == dstate.part.n_classes and sum(len(t.x) for t in exact) == len(dstate.part)
    assert 0.0 <= app.view["exact_accuracy"] <= 1.0
    assert explore.diffusion_state(dstate.method, dstate.part, split="test", n_samples=8, projection="pca",
                                   warm=False).max_step == dstate.method.diffusion.n_steps  # start steps up to N
    gen_before = [np.array(t.x) for t in app.figure.data if t.name.startswith("generated")]
    title_before = app.figure.layout.title.text
    app.n.value = 60  # the start-step slider
    gen_after = [np.array(t.x) for t in app.figure.data if t.name.startswith("generated")]
    assert len(app.figure.data) == n_traces
    assert any(not np.array_equal(a, b) for a, b in zip(gen_before, gen_after))
    assert "n=60" in app.figure.layout.title.text and app.figure.layout.title.text != title_before
    assert "n=60" in app.summary.value
    path_before = np.array(app.figure.data[-4].x)
    app.sample.value = 2
    assert not np.array_equal(np.array(app.figure.data[-4].x), path_before)
    app.sampler.value = "ddim"
    assert app.view["sampler"] == "ddim"


def test_refresh_replaces_traces_when_the_shape_changes():
    import plotly.graph_objects as go

    target = go.FigureWidget(go.Figure([go.Scatter(y=[1, 2])]))
    viz.refresh(target, go.Figure([go.Bar(y=[3]), go.Bar(y=[4])], layout={"title": "new"}))
    assert [t.type for t in target.data] == ["bar", "bar"] and target.layout.title.text == "new"
    viz.refresh(target, go.Figure([go.Bar(y=[5]), go.Bar(y=[6])]))
    assert list(target.data[1].y) == [6]

"""CM-ARR (mmlab/methods/cmarr.py, arXiv:2407.09029), its Table 3 ablations and the DiCMoR baseline:
shapes on sequence and vector data, what each ablation switches off, Eqs. 7-8 at test time,
a short training that beats the majority class under the six patterns, config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mmlab.data import load_dataset
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError
from mmlab.evaluate import evaluate, pattern_conditions
from mmlab.losses import cosine_matrix
from mmlab.methods import make_method, method_names
from mmlab.missing import FixedPattern, ZeroFill, all_patterns, mask_batch
from mmlab.nn.cmarr_modules import pool_gaussian, resample
from mmlab.train import TrainConfig, Trainer
from mmlab.utils import seed_everything

ABLATIONS = ("cmarr", "cmarr_baseline", "cmarr_wo_udcl", "cmarr_wo_spcl", "cmarr_wo_attention", "cmarr_point",
             "dicmor")


@pytest.fixture(scope="module")
def tiny() -> MMDataset:
    return load_dataset("synthetic", preset="tiny")


@pytest.fixture(scope="module")
def views() -> MMDataset:
    return load_dataset("handwritten")


def masked(batch, available, fill=None):
    pad = {m: batch.pad_mask[m].numpy() for m in batch.modalities}
    masks = FixedPattern(tuple(available))(pad, batch.modalities, np.random.default_rng(0))
    return mask_batch(batch, masks, fill or ZeroFill())


def train_logs(method, data, seed: int = 0) -> dict[str, float]:
    torch.manual_seed(seed)
    stage = method.stages(data)[0]
    batch = data.subset("train").batch(np.arange(32))
    loss, logs = stage.loss(batch, np.random.default_rng(seed))
    loss.backward()
    assert torch.isfinite(loss)
    return logs


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    seed_everything(0)
    # without C17's skip: the completion tests probe the projections, which the skip lets the head bypass
    method = make_method("cmarr", tiny, ["--train.epochs=12", "--train.patience=0", "--mean_skip=false"])
    summary = Trainer(method, tiny, tmp_path_factory.mktemp("cmarr"), TrainConfig(seed=0, progress=False)).fit()
    return method.eval(), summary


def test_registered():
    assert set(ABLATIONS) <= set(method_names())


@pytest.mark.parametrize("name", ABLATIONS)
def test_shapes_on_sequences_and_vectors(tiny, views, name):
    for data in (tiny, views):
        torch.manual_seed(0)
        method = make_method(name, data)
        train_logs(method, data)  # initialises the flows' ActNorm from data
        method.eval()
        batch = data.subset("valid").batch(np.arange(8))
        with torch.no_grad():
            for pattern in all_patterns(data.modalities)[:8]:
                logits = method.predict_logits(masked(batch, pattern.available).for_eval())
                assert logits.shape == (8, data.n_classes) and torch.isfinite(logits).all()
    assert make_method(name, views).length == 1  # vector views: T = 1
    assert make_method(name, tiny).length == 4


def test_anchor_is_text_else_configurable(tiny, views):
    assert make_method("cmarr", tiny).anchor == "T"
    assert make_method("cmarr", views).anchor == views.modalities[0]
    method = make_method("cmarr", views, [f"--anchor={views.modalities[2]}"])
    assert method.anchor == views.modalities[2]
    assert len(method.pairs) == len(views.modalities) - 1
    three = make_method("cmarr", tiny, ["--third_block=true"])
    assert three.pairs == [("T", "A"), ("T", "V"), ("A", "V")]


def test_each_ablation_logs_what_it_should(tiny):
    logs = {name: train_logs(make_method(name, tiny), tiny) for name in ABLATIONS}
    assert set(logs["cmarr"]) == {"ce", "udcl", "spcl", "rec"}
    assert set(logs["cmarr_wo_udcl"]) == {"ce", "spcl", "rec"}
    assert set(logs["cmarr_wo_spcl"]) == {"ce", "udcl", "rec"}
    assert set(logs["cmarr_baseline"]) == {"ce"}
    assert set(logs["cmarr_point"]) == {"ce", "udcl", "spcl", "rec"}
    assert set(logs["dicmor"]) == {"ce", "rec", "nll"}
    base = make_method("cmarr_baseline", tiny)
    assert base.cfg.train_on == "full" and not hasattr(base, "flows")


def test_point_ablation_uses_cosine_of_pooled_means(tiny):
    torch.manual_seed(0)
    method = make_method("cmarr_point", tiny).eval()
    batch = tiny.subset("train").batch(np.arange(8))
    with torch.no_grad():
        gauss = method.align(batch.feats, batch.pad_mask)
        a, v = (pool_gaussian(*gauss[m], batch.pad_mask[m]) for m in ("A", "V"))
        s = method.similarity.similarity(a, v)
        torch.testing.assert_close(s, cosine_matrix(a[0], v[0]))
        # the distribution version differs: it sees the variances and a distance
        w2 = make_method("cmarr", tiny).similarity
        assert not torch.allclose(w2.similarity(a, v), s)


def test_without_attention_frames_do_not_interact(tiny):
    batch = tiny.subset("train").batch(np.arange(4))
    x, mask = batch.feats["A"], batch.pad_mask["A"]
    changed = x.clone()
    changed[:, 1] += 5.0
    for name, interacts in (("cmarr", True), ("cmarr_wo_attention", False)):
        torch.manual_seed(0)
        umc = make_method(name, tiny).umc["A"].eval()
        with torch.no_grad():
            mu0, mu1 = umc(x, mask)[0][:, 0], umc(changed, mask)[0][:, 0]
        assert (not torch.allclose(mu0, mu1)) == interacts, name


def test_resample_is_adaptive_average_pooling_of_valid_frames():
    torch.manual_seed(0)
    x = torch.randn(3, 7, 5)
    lengths = torch.tensor([7, 3, 0])
    mask = torch.arange(7)[None] < lengths[:, None]
    out, present = resample(x, mask, 4)
    assert out.shape == (3, 4, 5) and present.tolist() == [[True] * 4, [True] * 4, [False] * 4]
    for b in range(2):
        want = F.adaptive_avg_pool1d(x[b, : lengths[b]].T[None], 4)[0].T
        torch.testing.assert_close(out[b], want)
    assert torch.equal(out[2], torch.zeros(4, 5))
    # a frame mask with holes pools the observed frames, wherever they are
    holes = torch.zeros(1, 7, dtype=torch.bool)
    holes[0, [1, 3, 4, 6]] = True
    want = F.adaptive_avg_pool1d(x[0, [1, 3, 4, 6]].T[None], 4)[0].T
    torch.testing.assert_close(resample(x[:1], holes, 4)[0][0], want)
    # padding values never matter
    noisy = x.clone()
    noisy[~mask] = 1e3
    torch.testing.assert_close(resample(noisy, mask, 4)[0], out)


def test_eq7_eq8_recover_from_the_mean_latent(tiny):
    torch.manual_seed(0)
    method = make_method("cmarr", tiny)
    train_logs(method, tiny)
    method.eval()
    batch = masked(tiny.subset("valid").batch(np.arange(6)), ("A", "V")).for_eval()
    with torch.no_grad():
        rep = method.represent(batch)
        z_tilde = (rep["z"]["A"] + rep["z"]["V"]) / 2  # Eq. 7
        want = method.rec["T"](method.flows["T"].inverse(z_tilde))  # Eq. 8, then Rec_T
        rows, x_hat = rep["x_hat"]["T"]
        assert rows.tolist() == list(range(6))
        torch.testing.assert_close(x_hat, want)
        torch.testing.assert_close(rep["x_in"]["T"], want)
        torch.testing.assert_close(rep["x_in"]["A"], rep["x"]["A"])  # available: used as they are


def test_reconstruction_is_used_at_test(trained, tiny):
    method, _ = trained
    batch = tiny.subset("valid").batch(np.arange(32))
    av = masked(batch, ("A", "V")).for_eval()
    with torch.no_grad():
        full = method.predict_logits(batch.for_eval())
        recon = method.predict_logits(av)
        # what the missing modality holds is never read: noise in its place changes nothing
        noisy = masked(batch, ("A", "V"))
        noisy.feats["T"] = torch.randn_like(noisy.feats["T"])
        torch.testing.assert_close(method.predict_logits(noisy.for_eval()), recon)
        # the same model without Eqs. 7-8 (zero-filled T enters the fusion) predicts otherwise
        method.cfg.reconstruct = False
        try:
            zero = method.predict_logits(av)
        finally:
            method.cfg.reconstruct = True
        # the reconstruction depends on the available modalities
        other = masked(batch, ("A", "V"))
        other.feats["A"] = other.feats["A"] + 1.0
        moved = method.represent(other.for_eval())["x_in"]["T"]
    assert not torch.allclose(full, recon, atol=1e-4)
    assert not torch.allclose(recon, zero, atol=1e-4)
    assert not torch.allclose(moved, method.represent(av)["x_in"]["T"], atol=1e-4)


def test_padding_never_changes_predictions(trained, tiny):
    method, _ = trained
    batch = tiny.subset("valid").batch(np.arange(8))
    longer = masked(batch, ("A", "T")).for_eval()
    base = method.predict_logits(longer)
    # padding of an *available* modality (A), which the model reads
    longer.feats["A"] = torch.cat([longer.feats["A"], torch.full((8, 3, longer.feats["A"].shape[2]), 9.0)], 1)
    for d in (longer.pad_mask, longer.obs_mask):
        d["A"] = torch.cat([d["A"], torch.zeros(8, 3, dtype=torch.bool)], 1)
    with torch.no_grad():
        torch.testing.assert_close(method.predict_logits(longer), base.detach())


def test_short_training_beats_majority_under_six_patterns(trained, tiny):
    method, summary = trained
    assert summary["cmarr"]["epochs_run"] >= 1
    rows = evaluate(method, tiny, conditions=pattern_conditions(tiny.modalities), seed=1111)
    by = {r["condition"]: r for r in rows}
    test = tiny.split == "test"
    majority = np.bincount(tiny.y[test]).max() / test.sum()
    assert by["Average"]["accuracy"] > majority + 0.15, by["Average"]
    assert by["full"]["accuracy"] > majority + 0.25, by["full"]


def test_rec_loss_trains_the_flows_unless_detached(tiny):
    for name, reaches in (("cmarr", True), ("dicmor", False)):
        torch.manual_seed(0)
        method = make_method(name, tiny)
        train_logs(method, tiny)  # ActNorm init
        method.zero_grad()
        batch = masked(tiny.subset("train").batch(np.arange(16)), ("A",))
        rep = method.represent(batch, training=True)
        rows, x_hat = rep["x_hat"]["T"]
        F.mse_loss(x_hat, rep["x"]["T"][rows].detach()).backward()
        grad = sum(float(p.grad.abs().sum()) for p in method.flows["T"].parameters() if p.grad is not None)
        assert (grad > 0) == reaches, name
        trained_after = [method.rec["T"], *([method.z_mix["T"]] if name == "dicmor" else [])]
        for module in trained_after:  # what comes after the (detached) inverse flow still learns
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), name


def test_natively_missing_rows_give_no_targets_and_no_udcl_pairs(tiny):
    """A row that lacks T natively (MMBatch.present, the availability before the training mask)
    is no Eq. 9 target and no UDCL positive: its complete T features never change the losses."""
    torch.manual_seed(0)
    method = make_method("cmarr", tiny)
    train_logs(method, tiny)
    batch = tiny.subset("train").batch(np.arange(12))
    batch.avail[:4, tiny.modalities.index("T")] = False  # as a dataset with avail_T = False gives it
    batch.obs_mask["T"][:4] = False
    gen_rows = masked(batch, ("A", "V"))  # T masked out for every row: reconstructed everywhere
    assert not bool(gen_rows.present()[:4, tiny.modalities.index("T")].any())
    torch.manual_seed(1)
    _, logs = method.training_loss(gen_rows)
    junk = masked(batch, ("A", "V"))
    junk.complete = {**junk.complete_feats(), "T": junk.complete_feats()["T"].clone()}
    junk.complete["T"][:4] = 1e3  # the filler of natively missing rows: never a target
    torch.manual_seed(1)
    _, logs_junk = method.training_loss(junk)
    assert logs_junk["rec"] == pytest.approx(logs["rec"]) and logs_junk["udcl"] == pytest.approx(logs["udcl"])
    j = tiny.modalities.index("T")  # claim the filler is real data: it becomes a target
    junk.native_avail = junk.native_avail.clone()
    junk.native_avail[:4, j] = True
    junk.native_obs = {**junk.native_obs, "T": junk.pad_mask["T"].clone()}
    torch.manual_seed(1)
    _, logs_blind = method.training_loss(junk)
    assert logs_blind["rec"] != pytest.approx(logs["rec"], rel=1e-3)


def test_dicmor_has_class_priors_and_trains_them(tiny, tmp_path):
    method = make_method("dicmor", tiny, ["--train.epochs=1", "--probe.epochs=1"])
    assert method.prior_mean.shape == (tiny.n_classes, method.cfg.d)
    assert not method.uses_umc and method.cfg.z_fusion == "conv"
    Trainer(method, tiny, tmp_path / "run", TrainConfig(seed=0, progress=False)).fit()
    assert float(method.prior_mean.abs().max()) > 0 and float(method.prior_log_sd.abs().max()) > 0


@pytest.mark.parametrize("name", ("cmarr", "dicmor"))
def test_paper_preset_builds(tiny, name):
    method = make_method(name, tiny, preset="paper")
    assert len(method.flows["A"].couplings) == 32 and method.length == 50
    assert method.cfg.train.epochs == 100
    assert method.cfg.train.ema == 0.0  # neither paper averages the weights (C16)
    assert make_method(name, tiny).cfg.train.ema == 0.99  # the CPU default does, its probes do not
    assert make_method(name, tiny).cfg.probe.ema == 0.0
    assert method.skip is None and make_method(name, tiny).skip is not None  # C17: the CPU default only


def test_bad_config_names_the_field(tiny):
    with pytest.raises(ConfigError, match="anchor"):
        make_method("cmarr", tiny, ["--anchor=Z"])
    with pytest.raises(ConfigError, match="heads"):
        make_method("cmarr", tiny, ["--d_umc=30", "--heads=4"])
    with pytest.raises(ConfigError, match="missing"):
        make_method("cmarr", tiny, ["--missing=column"])
    with pytest.raises(ConfigError, match="lam"):
        make_method("cmarr", tiny, ["--lam=-1"])
    with pytest.raises(ConfigError, match="similarity"):
        make_method("cmarr", tiny, ["--contrastive.similarity=dot"])
    with pytest.raises(ConfigError, match="steps"):
        make_method("cmarr", tiny, ["--flow.steps=0"])


# ------------------------------------------------------------------ completion interface (C15)
def test_completion_interface_probe_and_generation_rows(trained, tiny):
    """The trained model's probes read real features above chance; generate reconstructs a
    missing modality from the others (Eqs. 7-9) deterministically, refuses an available target,
    and the generation protocol scores it beside the exact conditional on synthetic."""
    from mmlab.evaluate import generation_table

    method, _ = trained
    assert method.completes() and not make_method("cmarr_baseline", tiny).completes()
    assert [s.name for s in method.stages(tiny)] == ["cmarr", "probe_A", "probe_V", "probe_T"]
    main = method.stages(tiny)[0]
    assert main.modules == [method]  # every parameter of Eq. 14 (DiCMoR's class priors too) trains here
    rows = generation_table(method, tiny, split="test", seed=1, k=2)
    by = {(r["method"], r["condition"]): r for r in rows}
    majority = np.bincount(tiny.subset("test").y).max() / len(tiny.subset("test"))
    for m in tiny.modalities:
        assert by[("cmarr", f"real->{m}")]["accuracy"] > majority + 0.05  # the probe learned
    src = {"A": "VT", "V": "AT", "T": "AV"}
    for target, source in src.items():
        gen = by[("cmarr", f"{source}->{target}")]
        assert gen["variance_ratio"] == 0.0 and np.isfinite(gen["mean_error"])
        assert ("exact_conditional[cmarr]", f"{source}->{target}") in by  # through CM-ARR's own encoder
    batch = masked(tiny.subset("test").batch(np.arange(16)), ("A", "V"))
    one = method.generate(batch.for_eval(), "T", torch.Generator().manual_seed(0))
    two = method.generate(batch.for_eval(), "T", torch.Generator().manual_seed(1))
    assert one.shape == (16, method.cfg.d) and torch.equal(one, two)
    assert method.feature_logits("T", one).shape == (16, tiny.n_classes)
    with pytest.raises(ConfigError, match="must be unavailable"):
        method.generate(tiny.subset("test").batch(np.arange(4)), "T", torch.Generator())


@pytest.mark.parametrize("name", ["cmarr", "dicmor"])
def test_mean_skip_reads_only_the_observed_frames_means(tiny, name):
    torch.manual_seed(0)
    method = make_method(name, tiny)  # C17: the CPU default
    assert method.skip.in_features == sum(tiny.dims.values())
    train_logs(method, tiny)
    assert method.skip.weight.grad is not None and method.skip.weight.grad.abs().sum() > 0
    method.eval()
    batch = masked(tiny.subset("valid").batch(np.arange(8)), ("A", "T")).for_eval()
    with torch.no_grad():
        base = method.predict_logits(batch)
        hidden = batch.feats["V"].clone()
        batch.feats["V"] += 3.0  # V is missing: neither the skip nor the reconstruction reads it
        torch.testing.assert_close(method.predict_logits(batch), base)
        batch.feats["V"] = hidden
        batch.feats["A"] += 0.5  # an observed modality's mean moves the logits through the skip too
        moved = method.predict_logits(batch)
        method.skip.weight.zero_()
        method.skip.bias.zero_()
        without_skip = method.predict_logits(batch)
    assert not torch.allclose(moved, base) and not torch.allclose(moved, without_skip)
    assert make_method(name, tiny, ["--mean_skip=false"]).skip is None

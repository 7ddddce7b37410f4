"""ADMC (mmlab/methods/admc.py; paper §3): stages and freezing, MMCR keeps available features,
routing, MMER, Table 4, ablations, resume through the Trainer, the paper preset. Tiny sizes so the
file runs in seconds."""

import numpy as np
import pytest
import torch

from mmlab.data.synthetic import make_synthetic
from mmlab.errors import ConfigError, DataError
from mmlab.methods import make_method, method_names
from mmlab.methods.admc import pattern_key
from mmlab.missing import FixedPattern, all_patterns, make_fill, make_rng, mask_batch
from mmlab.nn.attention import AttentionDenoiser, DenoiserConfig, FusionConfig, ModalityTokenTransformer
from mmlab.train import Trainer, TrainConfig, load_checkpoint
from mmlab.utils import seed_everything

TINY = {
    "itfn.encoder.d_out": 8, "itfn.encoder.hidden": 8, "itfn.encoder.filters": 4, "itfn.head_hidden": 8,
    "adn.layers": 1, "adn.heads": 2, "adn.d_ff": 16,
    "mf.layers": 1, "mf.heads": 2, "mf.d_ff": 16, "mf.head_hidden": 8, "mf.train_completions": 2,
    "itfn.train.epochs": 2, "adn.train.epochs": 3, "mf.train.epochs": 2,
    "diffusion.start_step": 8, "n_completions": 2, "eval_batch_size": 512,
}
ADMC_STAGES = ["itfn_A", "itfn_V", "itfn_T", "adn", "mf_full", "mf_A", "mf_V", "mf_T",
               "mf_AV", "mf_AT", "mf_VT", "mf_mmer"]



@pytest.fixture(scope="module")
def data():
    return make_synthetic(preset="tiny")


def _fit(name, data, out, overrides=(), on_epoch_end=None):
    seed_everything(3)  # the initial weights
    method = make_method(name, data, {**TINY, **dict(overrides)})
    Trainer(method, data, out, TrainConfig(progress=False, seed=3), on_epoch_end=on_epoch_end).fit()
    return method


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("admc")
    return _fit("admc", data, out), out


def _masked(data, available, n=40, seed=0):
    part = data.subset("test")
    batch = part.batch(np.arange(n))
    pad = {m: batch.pad_mask[m].numpy() for m in batch.modalities}
    masks = FixedPattern(available)(pad, batch.modalities, make_rng(seed))
    return mask_batch(batch, masks, make_fill("noise"), generator=torch.Generator().manual_seed(seed)).for_eval()


# ----------------------------------------------------------------------------- attention blocks
def test_denoiser_and_fusion_shapes():
    torch.manual_seed(0)
    den = AttentionDenoiser(3, 8, DenoiserConfig(layers=2, heads=2, d_ff=16))
    x = torch.randn(5, 3, 8)
    e1, e2 = den(x, torch.full((5,), 3)), den(x, torch.full((5,), 700))
    assert e1.shape == (5, 3, 8) and not torch.allclose(e1, e2)  # the step embedding matters
    mf = ModalityTokenTransformer(3, 8, 4, FusionConfig(layers=1, heads=2, d_ff=16, d_model=12), avail_embedding=True)
    assert mf(x).shape == (5, 4)
    avail = torch.tensor([[True, False, True]] * 5)
    mf.eval()
    assert torch.equal(mf(x), mf(x, avail))  # the missing-token embedding starts at zero
    with torch.no_grad():
        mf.missing_emb.normal_()
    assert not torch.allclose(mf(x), mf(x, avail))
    with pytest.raises(DataError, match="tokens expected"):
        den(torch.randn(5, 2, 8), torch.zeros(5, dtype=torch.long))
    # token_skip adds Linear(tokens) before the head, and nothing else
    torch.manual_seed(0)
    cfg = FusionConfig(layers=1, heads=2, d_ff=16, dropout=0.0, token_skip=True)
    skip = ModalityTokenTransformer(3, 8, 4, cfg).eval()
    plain = ModalityTokenTransformer(3, 8, 4, FusionConfig(layers=1, heads=2, d_ff=16, dropout=0.0)).eval()
    assert plain.skip is None and skip.skip.in_features == 24
    plain.load_state_dict({k: v for k, v in skip.state_dict().items() if not k.startswith("skip.")})
    with torch.no_grad():
        with_skip, without = skip(x), plain(x)
        skip.skip.weight.zero_()
        skip.skip.bias.zero_()
        torch.testing.assert_close(skip(x), without)  # the skip is the only difference
    assert not torch.allclose(with_skip, without)
    with pytest.raises(ConfigError, match="divisible by heads"):
        AttentionDenoiser(3, 9, DenoiserConfig(heads=2))


# ----------------------------------------------------------------------------- stages and freezing
def test_registered_names():
    for name in ("admc", "admc_wo_itfn", "admc_wo_adn", "admc_joint", "admc_use_itfn"):
        assert name in method_names()


def test_stage_list(trained, data):
    method, out = trained
    assert [s.name for s in method.stages(data)] == ADMC_STAGES
    assert method.fill == "noise" and method.scenario_mode == "per_pattern"
    for s in ADMC_STAGES:
        assert (out / "checkpoints" / s / "best.pt").exists()


def test_itfn_frozen_after_later_stages(trained):
    """Encoders and heads end as their ITFN stage left them; the ADN as its stage left it."""
    method, out = trained
    final = method.state_dict()
    for m in method.modalities:
        best = load_checkpoint(out / "checkpoints" / f"itfn_{m}" / "best.pt")["model"]
        keys = [k for k in final if k.startswith((f"encoders.{m}.", f"itfn_heads.{m}."))]
        assert keys and all(torch.equal(final[k], best[k]) for k in keys)
    adn = load_checkpoint(out / "checkpoints" / "adn" / "best.pt")["model"]
    keys = [k for k in final if k.startswith("denoiser.")]
    assert keys and all(torch.equal(final[k], adn[k]) for k in keys)
    # the standardiser was fitted on train features (A8)
    assert not torch.allclose(method.standardizer.std, torch.ones_like(method.standardizer.std))


# ----------------------------------------------------------------------------- MMCR / MMER
def test_mmcr_keeps_available_features_exactly(trained, data):
    method, _ = trained
    feats = method.encode(data.subset("test").batch(np.arange(30)))
    known = torch.tensor([[True, False, True]] * 15 + [[False, True, False]] * 15)
    g = torch.Generator().manual_seed(0)
    x, traj = method.complete(feats, known, generator=g, return_trajectory=True)
    assert torch.equal(x[known], feats[known])
    assert not torch.allclose(x[~known], feats[~known])
    assert [s for s, _ in traj] == list(range(method.cfg.diffusion.start_step, -1, -1))
    x2 = method.complete(feats, known, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)  # same generator seed -> same completion


@pytest.mark.parametrize("available", [p.available for p in all_patterns(("A", "V", "T"))] + [("A", "V", "T")])
def test_predict_logits_every_pattern(trained, data, available):
    method, _ = trained
    batch = _masked(data, available)
    logits = method.predict_logits(batch)
    assert logits.shape == (40, data.n_classes) and torch.isfinite(logits).all()
    assert torch.equal(logits, method.predict_logits(batch))  # deterministic per batch
    row = [m in available for m in method.modalities]
    expected = ("mmer" if all(row) else pattern_key(available))
    assert method._mf_key(row) == expected


def test_no_modality_gets_the_prior(trained, data):
    method, _ = trained
    batch = _masked(data, ("A",))
    batch.avail[:] = False
    assert torch.allclose(method.predict_logits(batch), method.log_prior.expand(40, -1))


def test_mmer_path_on_full_input(trained, data):
    method, _ = trained
    batch = data.subset("test").batch(np.arange(20))
    feats = method.encode(batch)
    tok = method._tokens("mmer", feats, batch.avail, 1, method._generator("t"))
    assert tok.shape == (1, 20, 3, 2 * method.d)
    assert torch.equal(tok[0, :, :, : method.d], feats)  # Eq. 5: cat(F, F')
    assert not torch.allclose(tok[0, :, :, method.d:], feats)
    direct = method._logits("mmer", tok, batch.avail)
    assert direct.shape == (20, data.n_classes)
    assert method.predict_logits(batch).shape == (20, data.n_classes)


def test_generation_table_rows(trained, data):
    from mmlab.evaluate import generation_table

    method, _ = trained
    method.cfg.table4_steps = (3, 6)
    rows = generation_table(method, data, split="test", seed=1, k=2)
    mine = [r for r in rows if r["method"] == method.name]
    exact = [r for r in rows if r["method"] == "exact_conditional"]
    # per target: 1 real row + 3 source sets x 2 steps x (one sample, mean of k); exact: 3 x 2
    assert len(mine) == 3 * (1 + 3 * 2 * 2) and len(exact) == 3 * 3 * 2
    conds = {r["condition"] for r in mine}
    assert {"AV->T@n=3", "AV->T@n=3 mean", "A->T@n=6", "VT->A@n=3", "real->V"} <= conds
    assert {r["condition"] for r in exact} >= {"AV->T", "AV->T mean", "V->A"}
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["macro_recall"] <= 1.0
    for r in mine:
        if r["condition"].startswith("real"):
            assert r["start_step"] == 0 and "mean_error" not in r
        else:
            assert r["start_step"] == int(r["condition"].split("=")[1].split()[0])
            assert r["mean_error"] > 0 and r["variance_ratio"] > 0
    # exact draws from everything else sit between the worst single source and the real feature
    # (the tiny heads are barely trained, so only the ordering is checked)
    real = {r["target"]: r["accuracy"] for r in mine if r["condition"].startswith("real")}
    assert all(r["accuracy"] <= real[r["target"]] + 0.1 for r in exact)
    method.cfg.table4_steps = (3,)
    paper = generation_table(method, data, sources="paper", include_real=False, k=1)
    assert len([r for r in paper if r["method"] == method.name and not r["condition"].endswith("mean")]) == 9
    assert all("@" not in r["condition"] for r in paper)  # one start step: no tag
    again = generation_table(method, data, sources="paper", include_real=False, k=1)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in paper]  # seeded: same rows
    method.cfg.table4_steps = (30, 50, 80)


def test_run_seed_reaches_the_completions(trained, data):
    """ADMC's completion noise derives from the run seed: the same seed gives the same
    completions, another seed other ones (the full comparison's spread is real)."""
    method, _ = trained
    batch = _masked(data, ("A", "V"))
    feats, known = method.encode(batch), batch.avail

    def completion(seed):
        method.seed = seed
        return method.complete(feats, known, generator=method._generator("predict", *batch.ids))

    try:
        assert torch.equal(completion(1111), completion(1111))
        assert not torch.allclose(completion(1111), completion(1112))
        method.seed = 1111
        a = method.predict_logits(batch)
        method.seed = 1112
        assert not torch.allclose(a, method.predict_logits(batch))
    finally:
        method.seed = 3


# ----------------------------------------------------------------------------- ablations
@pytest.mark.parametrize("name,stages", [
    ("admc_wo_itfn", ["itfn_joint", "adn", "mf_full", "mf_A", "mf_V", "mf_T", "mf_AV", "mf_AT", "mf_VT"]),
    ("admc_wo_adn", ["itfn_A", "itfn_V", "itfn_T", "mf_full", "mf_A", "mf_V", "mf_T", "mf_AV", "mf_AT", "mf_VT"]),
    ("admc_joint", ["joint"]),
    ("admc_use_itfn", ["itfn_A", "itfn_V", "itfn_T", "mf_full"]),
])
def test_ablations_build_and_train(data, tmp_path, name, stages):
    method = _fit(name, data, tmp_path)
    assert [s.name for s in method.stages(data)] == stages
    assert (method.denoiser is None) == (name in ("admc_wo_adn", "admc_joint", "admc_use_itfn"))
    for available in [("A",), ("V", "T"), ("A", "V", "T")]:
        logits = method.predict_logits(_masked(data, available))
        assert logits.shape == (40, data.n_classes) and torch.isfinite(logits).all()
    assert method.completes() == (name not in ("admc_wo_itfn", "admc_wo_adn", "admc_joint", "admc_use_itfn"))


def test_shared_mf_fallback(data, tmp_path):
    """The many-modality fallback: one MF under a random-pattern sampler (forced here on 3 modalities)."""
    method = _fit("admc", data, tmp_path, {"mf.scenarios": "shared", "mmer": False, "mf.shared_draws": 2})
    assert [s.name for s in method.stages(data)][-2:] == ["mf_full", "mf_shared"]
    assert method._mf_key([True, False, True]) == "shared"
    assert method.predict_logits(_masked(data, ("A", "T"))).shape == (40, data.n_classes)


def test_config_errors(data):
    with pytest.raises(ConfigError, match="mmer"):
        make_method("admc", data, {"completion": "zero"})
    with pytest.raises(ConfigError, match="end_to_end"):
        make_method("admc", data, {"itfn.training": "end_to_end"})
    with pytest.raises(ConfigError, match="train_max_step"):
        make_method("admc", data, {"adn.train_max_step": 5000})
    with pytest.raises(ConfigError, match="unknown key"):
        make_method("admc", data, {"mf.nope": 1})


# ----------------------------------------------------------------------------- resume, presets
def test_resume_matches_uninterrupted_run(trained, data, tmp_path):
    """Stop inside mf_AV (after its completion cache was built), resume: same final weights."""
    reference, _ = trained

    class Stop(Exception):
        pass

    def stop(stage, epoch, metrics):
        if stage == "mf_AV" and epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        _fit("admc", data, tmp_path, on_epoch_end=stop)
    resumed = _fit("admc", data, tmp_path)
    a, b = reference.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_paper_preset_constructs_with_paper_sizes(data):
    method = make_method("admc", data, preset="paper")
    cfg = method.cfg
    assert cfg.itfn.encoder.d_out == 256 and cfg.itfn.head_hidden == 128
    assert (cfg.adn.layers, cfg.adn.heads, cfg.adn.d_ff) == (4, 8, 1024)
    assert (cfg.mf.layers, cfg.mf.heads, cfg.mf.d_ff, cfg.mf.dropout, cfg.mf.head_hidden) == (2, 4, 1024, 0.3, 128)
    assert (cfg.diffusion.n_steps, cfg.diffusion.beta_start, cfg.diffusion.beta_end) == (1000, 3e-4, 0.06)
    assert cfg.diffusion.start_step == 50 and cfg.itfn.train.lr == 1e-4
    assert len(method.denoiser.blocks) == 4 and method.denoiser.blocks[0].heads == 8
    assert method.denoiser.blocks[0].ffn[0].out_features == 1024
    assert method.mfs["full"].d_model == 256 and method.mfs["mmer"].d_model == 512
    assert abs(float(method.diffusion.alphas_cumprod[50]) - 0.9155) < 1e-3


def test_itfn_mean_skip_is_the_cpu_default_and_not_the_papers(data):
    """CPU default: ITFN's sequence encoders carry MeanSkip (docs/gap_to_oracle.md §10); paper: max pool, no skip."""
    from mmlab.nn.encoders import MeanSkip

    def n_skip(method):
        return sum(isinstance(m, MeanSkip) for m in method.modules())

    assert n_skip(make_method("admc", data)) == len(data.modalities)
    paper = make_method("admc", data, preset="paper")
    assert n_skip(paper) == 0 and paper.cfg.itfn.encoder.pool == "max"
    # A11b: every MF (one per scenario, mf_mmer too) has the token skip by default, none in the paper preset
    default = make_method("admc", data)
    assert all(mf.skip is not None for mf in default.mfs.values()) and len(default.mfs) == 8
    assert all(mf.skip is None for mf in paper.mfs.values())


def test_compare_generation_protocol(data, tmp_path):
    """`mmlab compare --protocol generation` tabulates Table 4 rows from generation_table."""
    from mmlab.evaluate import read_results
    from mmlab.experiments import compare

    overrides = [f"--{k}={v}" for k, v in TINY.items()]
    compare(data, ["admc"], protocol="generation", seeds=[1], out=tmp_path, overrides=overrides, progress=False)
    rows = read_results(tmp_path / "results.csv")
    conds = {r["condition"] for r in rows}
    assert {"AV->T@n=30", "AV->T@n=50", "AV->T@n=80 mean", "real->T"} <= conds
    assert {r["method"] for r in rows} == {"admc", "exact_conditional"}
    assert all(r["protocol"] == "generation" for r in rows)


# ----------------------------------------------------------------------------- admc_cond (ours)
def test_admc_cond_trains_a_conditional_v_adn_and_chooses_k_on_valid(data, tmp_path):
    """The registered variant: conditional ADN (available tokens clean, per-token steps, loss on
    the missing ones), v-prediction, DDIM from n = N, K chosen on the valid split after training."""
    import json

    method = _fit("admc_cond", data, tmp_path, {"diffusion.n_steps": 50, "diffusion.start_step": 50,
                                               "sample_steps": 5, "k_grid": [1, 2], "table4_steps": [50]})
    cfg = method.cfg
    assert (cfg.adn.training, cfg.diffusion.prediction, cfg.diffusion.sampler) == ("conditional", "v", "ddpm")
    calib = json.loads((tmp_path / "calibration.json").read_text())
    assert calib["test_options"]["n_completions"] in (1, 2) and len(calib["scores"]) == 2
    assert method.k == calib["test_options"]["n_completions"]
    # the conditional sampler keeps the available tokens exactly and fills the missing one
    batch = _masked(data, ("A", "V"))
    feats = method.encode(batch)
    z = method.complete(feats, batch.avail, generator=method._generator("t"))
    assert torch.equal(z[:, :2], feats[:, :2]) and torch.isfinite(z).all() and not torch.allclose(z[:, 2], feats[:, 2])
    assert method.predict_logits(batch).shape == (40, data.n_classes)
    # training rows: a proper subset available, or none (the joint model, p_joint = 0.2)
    known = method._training_patterns(64, np.random.default_rng(0), feats.device)
    assert known.any(1).float().mean() > 0.5 and not known.all(1).any()
    with pytest.raises(ConfigError, match="adn.training"):
        make_method("admc", data, {"adn.training": "sideways"})

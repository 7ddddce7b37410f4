"""The CIDer notebook's helpers (mmlab/explore/cider.py) and figures (mmlab/viz.py) on the tiny
`synthetic_text` with a CIDer trained for one epoch: mask images as the evaluation draws them
([CLS]/[SEP] never dropped), the MCT's block masks as `mmlab.nn.mct` builds them and as the model
receives them, the loss-curve reader against metrics.csv and Eq. 30, the AUILC rows, Eq. 27's
counterfactual table and the tau sweep that reproduces the Trainer's choice on valid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlab import explore, viz
from mmlab.data import load_dataset
from mmlab.data.dataset import MMDataset
from mmlab.data.tokens import CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID
from mmlab.errors import ConfigError
from mmlab.evaluate import AUILC, evaluate, predict
from mmlab.metrics import auilc
from mmlab.missing import draw_masks, pad_masks
from mmlab.nn.mct import block_masks

SHORT = {"train.epochs": 1, "mct.layers": 1, "mct.heads": 2}
SPECIALS = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}


@pytest.fixture(scope="module")
def tiny() -> MMDataset:
    return load_dataset("synthetic_text", preset="tiny")


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    return explore.trained_method("cider_rate_cv", tiny, tmp_path_factory.mktemp("cider"), overrides=SHORT, seed=0)


# ------------------------------------------------------------------ 1. masks
def test_mask_images_are_the_evaluation_masks_with_token_edges_kept(tiny):
    images = explore.mask_images(tiny, rates=(0.0, 0.5, 1.0), n_samples=5, seed=3)
    test = tiny.subset("test")
    pad = pad_masks(test)
    widths = {m: pad[m].shape[1] for m in tiny.modalities}
    assert images["widths"] == widths and images["modalities"] == list(tiny.modalities)
    assert [(p["protocol"], p["rate"]) for p in images["panels"]] == [
        (pr, r) for pr in explore.CIDER_PROTOCOLS for r in (0.0, 0.5, 1.0)]
    cut = np.cumsum([0] + [widths[m] for m in tiny.modalities])
    t = list(tiny.modalities).index("T")
    for p in images["panels"]:
        img = p["image"]
        assert img.shape == (5, sum(widths.values())) and set(np.unique(img)) <= {0, 1, 2, 3}
        for j, m in enumerate(tiny.modalities):
            block = img[:, cut[j]:cut[j + 1]]
            assert np.array_equal(block == 0, ~pad[m][:5])  # padding exactly where the rows end
            # [CLS] and [SEP]: two per text row, at its first and last real position, never missing
            assert ((block == 3).sum(1) == (2 if j == t else 0)).all()
        rows = np.arange(5)
        text = img[:, cut[t]:cut[t + 1]]
        assert (text[:, 0] == 3).all() and (text[rows, test.lengths["T"][:5] - 1] == 3).all()
        assert p["edges_kept"]
        if p["rate"] == 0.0:
            assert p["missing_rate"] == 0 and not (img == 1).any()
        if p["rate"] == 1.0:
            assert p["missing_rate"] == 1 and not (img == 2).any()  # every content frame dropped, edges kept
        if p["rate"] == 0.5:
            assert 0.4 < p["missing_rate"] < 0.6
    # the picture is the mask the evaluation draws (same generator, same seed, tokens protected)
    rmfm = next(p for p in images["panels"] if p["protocol"] == "rmfm" and p["rate"] == 0.5)
    (cond,) = explore.frame_conditions("rmfm", tiny, [0.5])
    masks = draw_masks(cond.generator, pad, test.modalities, 3, tokens=test.token_modalities)
    for j, m in enumerate(tiny.modalities):
        assert np.array_equal(rmfm["image"][:, cut[j]:cut[j + 1]] >= 2, masks.obs[m][:5])
    rows = explore.mask_rate_rows(images)
    assert len(rows) == 9 and rows[0]["[CLS]/[SEP] kept"] is True
    with pytest.raises(ConfigError, match="grid"):
        explore.frame_conditions("rmfm", tiny, [0.25])


# ------------------------------------------------------------------ 2. MCT block masks
def test_block_mask_panels_are_what_mct_builds():
    lengths = (2, 3, 4)
    panels = explore.block_mask_panels(lengths, ("T", "A", "V"))
    built = block_masks(lengths)
    assert [p["subset"] for p in panels] == list(built)
    assert [p["branch"] for p in panels] == ["T·A·V (tri)", "T↔A", "T↔V", "A↔V", "T", "A", "V"]
    for p in panels:
        assert np.array_equal(p["mask"], built[p["subset"]].numpy())
        size = sum(lengths[i] for i in p["subset"])
        assert p["mask"].shape == (9, 9) and p["mask"].sum() == size ** 2
    ta = panels[1]["mask"]
    assert ta[:5, :5].all() and not ta[5:].any() and not ta[:, 5:].any()  # V's rows and columns out of T<->A
    valid = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0], bool)
    cut = explore.block_mask_panels(lengths, ("T", "A", "V"), key_valid=valid)
    assert np.array_equal(cut[0]["mask"], np.broadcast_to(valid, (9, 9)))  # padding columns out of every branch
    with pytest.raises(ConfigError):
        explore.block_mask_panels(lengths, ("T", "A"))


def test_mct_inputs_are_what_the_trained_model_runs_on(trained, tiny):
    test = tiny.subset("test")
    i = int(np.argmin(test.lengths["T"]))
    got = explore.mct_inputs(trained, tiny, index=i)
    t = trained.max_len["T"]
    assert got["names"] == ["T", "A", "V"] and got["lengths"] == (t, t, t)  # WSAM: every segment has T_l positions
    n = int(test.lengths["T"][i])
    want = np.concatenate([np.arange(t) < n] * 3)  # with WSAM, A and V rows are the text's rows
    assert np.array_equal(got["key_valid"], want) and got["sample"] == test.ids[i]
    assert not trained.training


# ------------------------------------------------------------------ 3. losses
def test_distillation_log_reads_metrics_csv_and_satisfies_eq30(trained):
    rows = explore.distillation_log(trained)
    assert [r["epoch"] for r in rows] == [1]
    raw = {(r["split"], r["metric"]): float(r["value"]) for r in explore.training_log(trained)}
    r = rows[0]
    for k in ("recon", "attn", "joint", "student_task", "teacher_task", "loss"):
        assert r[k] == raw[("train", k)] and np.isfinite(r[k])
    assert r["valid_accuracy"] == raw[("valid", "accuracy")]
    c = trained.cfg
    assert r["loss"] == pytest.approx(r["student_task"] + c.alpha * r["recon"] + c.beta * r["attn"] + c.gamma * r["joint"],
                                      rel=1e-5)
    assert r[f"{c.alpha:g}·recon"] == pytest.approx(c.alpha * r["recon"])
    assert r["recon"] > 0 and r["attn"] >= 0 and 0 <= r["joint"] <= 2


# ------------------------------------------------------------------ 4. AUILC
def test_rate_curves_hold_the_evaluation_rows_and_the_oracle(trained, tiny):
    rates = (0.0, 0.5, 1.0)
    rows = explore.rate_curves(trained, tiny, ("rmfm", "rmm"), rates, splits=("test",), max_eval=20, seed=5)
    assert len(rows) == 2 * 2 * (len(rates) + 1)  # method and oracle x protocols x (rates + AUILC)
    for who in ("cider_rate_cv", "bayes_oracle"):
        for pr in ("rmfm", "rmm"):
            sel = [r for r in rows if r["method"] == who and r["protocol"] == pr]
            curve = [r["accuracy"] for r in sel if r["condition"] != AUILC]
            (area,) = [r["accuracy"] for r in sel if r["condition"] == AUILC]
            assert area == pytest.approx(auilc(curve, rates)) and all(r["n"] == 20 for r in sel)
    part = tiny.take(tiny.split_indices("test")[:20])
    again = evaluate(trained, part, split="test", conditions=explore.frame_conditions("rmfm", tiny, rates), seed=5)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows
                                              if r["method"] == "cider_rate_cv" and r["protocol"] == "rmfm"]
    summary = explore.auilc_summary(rows)
    assert [(s["split"], s["protocol"]) for s in summary] == [("test", "rmfm"), ("test", "rmm")]
    for s in summary:
        assert s["cider_rate_cv − oracle"] == pytest.approx(s["cider_rate_cv"] - s["bayes_oracle"])
    oracle_only = explore.rate_curves(None, tiny, ("rmfm",), rates, splits=("test",), max_eval=20, seed=5)
    assert {r["method"] for r in oracle_only} == {"bayes_oracle"}


# ------------------------------------------------------------------ 5. counterfactual text
def test_counterfactual_examples_keep_special_tokens_and_mask_the_rest(trained, tiny):
    keep = trained.keep_words.cpu().numpy()
    vocab = explore.vocabulary(tiny)
    rows = explore.counterfactual_examples(trained, tiny, n=8)
    test = tiny.subset("test")
    assert len(rows) == 8 and [r["sample"] for r in rows] == list(test.ids[:8])
    for i, r in enumerate(rows):
        text, cf = r["text"].split(), r["counterfactual"].split()
        ids = test.feats["T"][i, : test.lengths["T"][i]]
        assert text == [vocab[int(w)] for w in ids] and len(cf) == len(text)
        assert cf[0] == "[CLS]" and cf[-1] == "[SEP]"
        for w, a, b in zip(ids, text, cf):
            assert b == (a if keep[w] or a in SPECIALS else "[MASK]")
        assert r["words kept"] == sum(bool(keep[w]) for w in ids if vocab[int(w)] not in SPECIALS)
    assert any("[MASK]" in r["counterfactual"] for r in rows)  # the rate rule keeps a strict subset here
    masked = explore.counterfactual_examples(trained, tiny, n=8, protocol="rmfm", rate=1.0)
    for r in masked:  # every content word dropped: [UNK] in the text and in its counterfactual
        assert set(r["text"].split()[1:-1]) <= {"[UNK]"} and r["counterfactual"] == r["text"]
    ids = torch.tensor([[CLS_ID, UNK_ID, MASK_ID, SEP_ID, PAD_ID]])
    assert torch.equal(trained.counterfactual_ids(ids), ids)


def test_bias_word_table_reads_both_rules(trained, tiny):
    with pytest.warns(UserWarning, match="kept every one"):  # the method says when the counterfactual is the text
        raw = explore.fitted_bias_words("cider", tiny)
    table = explore.bias_word_table({"raw": raw, "rate": trained}, tiny)
    counts = explore.class_counts(tiny)
    train = tiny.subset("train")
    real = np.arange(train.feats["T"].shape[1])[None] < train.lengths["T"][:, None]
    assert counts.sum() == real.sum() - 2 * len(train)  # every word but [CLS] / [SEP]
    seen = int((counts.sum(0) > 0).sum())
    assert len(table) == seen == raw.bias_word_report["seen"]
    for r in table:
        w = next(i for i, name in explore.vocabulary(tiny).items() if name == r["word"])
        assert r["kept: raw"] == bool(raw.keep_words[w]) and r["kept: rate"] == bool(trained.keep_words[w])
        assert r["kept: rate"] == (r["CV rate"] >= trained.cfg.cv_threshold)  # fewer than top_k candidates here
        assert sum(r[f"N({c})"] for c in tiny.classes) == counts[:, w].sum()
    # unequal classes: every word passes the raw-count CV, so the paper's counterfactual is the text
    assert raw.bias_word_report["kept"] == seen and all(r["kept: raw"] for r in table)
    assert 0 < trained.bias_word_report["kept"] < seen
    summary = {s["rule"]: s for s in explore.kept_summary(table)}
    assert summary["raw"]["kept"] == seen and summary["rate"]["kept"] == trained.bias_word_report["kept"]
    assert summary["raw"]["class word"] == "24 / 24"
    assert explore.counterfactual_share(raw, tiny) == 0.0 and explore.counterfactual_share(trained, tiny) > 0


# ------------------------------------------------------------------ 6. tau
def test_tau_sweep_reproduces_the_valid_choice(trained, tiny):
    tau_before = trained.tau
    sweep = explore.tau_sweep(trained, tiny, max_eval=30)
    grid = sorted(trained.cfg.tau_grid)
    assert sweep["grid"] == grid and trained.tau == tau_before
    assert sweep["n"] == {"valid": len(tiny.subset("valid")), "test": 30, "test_ood": 30}
    calibration = explore.read_calibration(trained)
    assert [s["accuracy"] for s in sweep["calibration"]] == [s["accuracy"] for s in calibration["scores"]]
    assert sweep["curves"]["valid"]["accuracy"] == [s["accuracy"] for s in calibration["scores"]]
    assert sweep["chosen"] == pytest.approx(calibration["test_options"]["tau"]) == pytest.approx(trained.tau)
    assert sweep["argmax_valid"] == sweep["chosen"]
    rows = explore.tau_rows(sweep)
    assert [r["tau"] for r in rows] == grid
    assert [r["tau"] for r in rows if r["chosen on valid"]] == [sweep["chosen"]]
    best = sweep["best"]["test_ood"]
    assert sweep["curves"]["test_ood"]["accuracy"][grid.index(best)] == max(sweep["curves"]["test_ood"]["accuracy"])
    assert [r["tau"] for r in rows if "test_ood" in r["best on"]] == [best]
    # the full-input curve at the chosen tau is the method's own prediction (Eq. 25)
    part = tiny.take(tiny.split_indices("test_ood")[:30])
    own = predict(trained, part).argmax(1)
    j = grid.index(sweep["chosen"])
    assert sweep["curves"]["test_ood"]["full"][j] == pytest.approx(float((own == part.y).mean()))
    assert 0 <= sweep["oracle"]["valid"] <= 1 and 0 <= sweep["curves"]["valid"]["cf_alone"] <= 1
    cond = explore.condition_rows(sweep)
    assert [r["condition"] for r in cond] == ["full", "{A}", "{V}", "{T}", "{AV}", "{AT}", "{VT}"]
    assert cond[0]["test_ood"] == sweep["curves"]["test_ood"]["full"][j]
    assert np.mean([r["valid"] for r in cond]) == pytest.approx(sweep["curves"]["valid"]["accuracy"][j])
    assert np.mean([r["oracle valid"] for r in cond]) == pytest.approx(sweep["oracle"]["valid"])
    at3 = explore.condition_rows(sweep, tau=3.0)  # another tau reads another column of the sweep
    assert [r["test"] for r in at3] == [sweep["curves"]["test"]["conditions"][r["condition"]][-1] for r in at3]
    assert np.mean([r["valid"] for r in at3]) == pytest.approx(sweep["curves"]["valid"]["accuracy"][-1])
    view = explore.tau_view(sweep, 2.0)
    assert view["tau"] == 2.0 and view["change"]["valid"] == pytest.approx(
        sweep["curves"]["valid"]["accuracy"][grid.index(2.0)] - sweep["curves"]["valid"]["accuracy"][j])


# ------------------------------------------------------------------ figures and the widget
def test_figures_and_the_tau_widget(trained, tiny):
    images = explore.mask_images(tiny, rates=(0.2, 0.8), n_samples=4)
    assert len(viz.mask_image_figure(images).data) == 6
    panels = explore.block_mask_panels((2, 3, 4), ("T", "A", "V"))
    assert len(viz.block_masks_figure(panels, (2, 3, 4), ("T", "A", "V")).data) == 7
    assert len(viz.distillation_figure(explore.distillation_log(trained)).data) == 7
    rows = explore.rate_curves(None, tiny, ("rmfm",), (0.0, 1.0), max_eval=10)
    assert len(viz.rate_curves_figure(rows).data) == 2  # one line per split
    sweep = explore.tau_sweep(trained, tiny, max_eval=10)
    a, b = viz.tau_figure(sweep, 0.0), viz.tau_figure(sweep, 3.0)
    assert len(a.data) == len(b.data) == 7  # 3 splits + 3 oracle lines + the test_ood star, whatever tau
    pytest.importorskip("ipywidgets")
    app = explore.TauExplorer(sweep)
    assert app.tau.value == sweep["chosen"]
    app.tau.value = 3.0
    assert "tau = 3" in app.summary.value and len(app.figure.data) == 7

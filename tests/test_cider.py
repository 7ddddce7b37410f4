"""CIDer (mmlab/methods/cider.py, mmlab/nn/mct.py, mmlab/nn/cider_modules.py,
mmlab/nn/text_encoder.py): block masks, WSAM mask, the two-step MSSD hook with a detached
teacher, L_recon on dropped real positions only, the B10 flag, MACI pieces, bad configs, and a
short training on `synthetic_text` that beats the majority class."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlab.data import load_dataset
from mmlab.data.tokens import CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID
from mmlab.errors import ConfigError
from mmlab.evaluate import evaluate, pattern_conditions
from mmlab.methods import make_method
from mmlab.missing import Masks, all_patterns, make_fill, mask_batch
from mmlab.nn.cider_modules import WSAM
from mmlab.nn.mct import MCT, MCTConfig, block_masks
from mmlab.train import TrainConfig, Trainer
from mmlab.utils import seed_everything


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("synthetic_text", preset="tiny")


@pytest.fixture(scope="module")
def method(tiny):
    seed_everything(0)
    return make_method("cider", tiny, ["--mct.layers=1", "--mct.heads=2"], seed=0)


# ------------------------------------------------------------------ MCT block masks
def test_block_masks_match_hand_written_pattern():
    """(T_l, T_a, T_v) = (2, 3, 1): rows and columns of a branch's modalities only."""
    seg = "llaaav"
    want = {
        (0, 1, 2): "llaaav", (0, 1): "llaaa", (0, 2): "llv", (1, 2): "aaav",
        (0,): "ll", (1,): "aaa", (2,): "v",
    }
    names = "lav"
    masks = block_masks((2, 3, 1))
    assert set(masks) == set(want)
    for s, members in want.items():
        inside = [c in {names[i] for i in s} for c in seg]
        hand = torch.tensor([[r and c for c in inside] for r in inside])
        assert torch.equal(masks[s], hand), s
        assert int(masks[s].sum()) == len(members) ** 2


def test_mct_rows_outside_a_branch_read_nothing():
    """Changing the vision segment leaves the l<->a branch output of the text and audio rows."""
    torch.manual_seed(0)
    from mmlab.nn.mct import MCA

    mca = MCA(8, 2).eval()
    x = torch.randn(1, 6, 8)
    lengths = (2, 3, 1)
    y1, _ = mca(x, lengths)
    x2 = x.clone()
    x2[:, 5] += 10.0
    # the l<->a branch alone: rows 0..4 must not depend on position 5
    captured = {}
    handle = mca.out_proj[1].register_forward_hook(lambda m, i, o: captured.setdefault(len(captured), i[0]))
    mca(x, lengths)
    mca(x2, lengths)
    handle.remove()
    assert torch.allclose(captured[0][:, :5], captured[1][:, :5])
    assert torch.all(captured[0][:, 5] == 0)  # the third modality's row outputs zero
    assert not torch.allclose(y1, mca(x2, lengths)[0])


# ------------------------------------------------------------------ WSAM
def test_wsam_mask_drops_cls_sep_and_padding():
    text_valid = torch.tensor([[True, True, True, True, False]])  # [CLS] w w [SEP] [PAD]
    av_pad = torch.tensor([[True, True, False]])
    m = WSAM(4).mask(text_valid, av_pad)
    want = torch.zeros(1, 5, 3, dtype=torch.bool)
    want[0, 1:3, :2] = True
    assert torch.equal(m, want)
    # float text has no [CLS]/[SEP]: every real row attends
    assert torch.equal(WSAM(4).mask(text_valid, av_pad, drop_edges=False)[0, :4, :2], torch.ones(4, 2, dtype=torch.bool))


def test_wsam_masked_rows_ignore_the_sequence():
    torch.manual_seed(0)
    w = WSAM(4).eval()
    xl, xa = torch.randn(1, 5, 4), torch.randn(1, 3, 4)
    tv, ap = torch.tensor([[True, True, True, True, False]]), torch.tensor([[True, True, False]])
    out = w(xl, xa, tv, ap)
    xa2 = xa.clone()
    xa2[:, 2] += 5  # a padding frame: no row reads it
    assert torch.allclose(out, w(xl, xa2, tv, ap))
    xa2[:, 0] += 5  # a real frame: content rows change, [CLS]/[SEP]/[PAD] rows do not
    out2 = w(xl, xa2, tv, ap)
    assert not torch.allclose(out[:, 1:3], out2[:, 1:3])
    assert torch.allclose(out[:, [0, 3, 4]], out2[:, [0, 3, 4]])


# ------------------------------------------------------------------ MSSD step hook
class CountingAdam(torch.optim.Adam):
    steps = 0

    def step(self, closure=None):
        CountingAdam.steps += 1
        return super().step(closure)


def _optimizer(method, stage):
    params = [p for p in method.parameters() if p.requires_grad]
    return CountingAdam(stage.param_groups(params), lr=1e-3)


def test_step_hook_two_steps_and_detached_teacher(tiny):
    seed_everything(0)
    m = make_method("cider", tiny, ["--mct.layers=1", "--mct.heads=2"], seed=0)
    stage = m.stages(tiny)[0]
    assert stage.step is not None and stage.loss is None
    opt = _optimizer(m, stage)
    m.train()
    batch = tiny.subset("train").batch(np.arange(32))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    CountingAdam.steps = 0
    logs = stage.step(batch, np.random.default_rng(0), [opt])
    assert CountingAdam.steps == 2
    assert {"loss", "teacher_task", "recon", "attn", "joint"} <= set(logs)
    assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items())
    t = m.last_teacher
    assert t.key_valid is not None and t.key_valid.any() and not t.key_valid.all()  # L_attn leaves padding out
    for x in (t.logits, t.joint, t.scores, t.text, *t.hidden):
        assert x.grad_fn is None and not x.requires_grad
    # the student losses never send gradient into the teacher's tensors
    leaf = type(t)(t.logits.clone().requires_grad_(), t.joint.clone().requires_grad_(), t.hidden,
                   t.scores.clone().requires_grad_(), t.text.clone().requires_grad_())
    from mmlab.missing import RMFM, random_mask_batch

    masked = random_mask_batch(batch, RMFM(rate=0.5, protect_edges=("T",)), make_fill("zero", train=tiny),
                               np.random.default_rng(1))
    loss, _ = m.student_losses(masked, leaf)
    loss.backward()
    assert leaf.joint.grad is None and leaf.scores.grad is None and leaf.text.grad is None


def test_wo_mssd_uses_one_plain_loss(tiny):
    m = make_method("cider_wo_mssd", tiny, ["--mct.layers=1", "--mct.heads=2"])
    stage = m.stages(tiny)[0]
    assert stage.loss is not None and stage.step is None


# ------------------------------------------------------------------ L_recon
def test_recon_counts_only_dropped_real_positions(method, tiny):
    method.eval()
    batch = tiny.subset("train").batch(np.arange(8))
    pad = {k: v.numpy() for k, v in batch.pad_mask.items()}
    rng = np.random.default_rng(0)
    obs = {m: pad[m] & (rng.random(pad[m].shape) < 0.5) for m in batch.modalities}
    masked = mask_batch(batch, Masks(np.ones((8, 3), bool), obs), make_fill("zero", train=tiny))
    with torch.no_grad():
        s = method.run(masked, train=True)
        teacher_text = method.run(batch, complete=True).text
        base = method.recon_loss(s, teacher_text, masked)
        # change complete A at observed and at padding positions: no effect
        a = masked.complete["A"].clone()
        keep = ~(masked.pad_mask["A"] & ~masked.obs_mask["A"])
        a[keep] += 7.0
        changed = type(masked)(**{**masked.__dict__, "complete": {**masked.complete, "A": a}})
        assert torch.allclose(method.recon_loss(s, teacher_text, changed), base)
        # change it at a dropped real position: the loss moves
        a = masked.complete["A"].clone()
        a[~keep] += 7.0
        changed = type(masked)(**{**masked.__dict__, "complete": {**masked.complete, "A": a}})
        assert not torch.allclose(method.recon_loss(s, teacher_text, changed), base)
        # nothing dropped -> zero
        assert float(method.recon_loss(method.run(batch, train=True), teacher_text, batch)) == 0.0
        # a row that lacks A natively (before the training mask) is no target, whatever its filler holds
        native = {m: o.clone() for m, o in batch.obs_mask.items()}
        native["A"][0] = False
        lacks = type(masked)(**{**masked.__dict__, "native_obs": native})  # MMBatch.observed
        without = method.recon_loss(s, teacher_text, lacks)
        a = masked.complete["A"].clone()
        a[0] += 1e3
        changed = type(masked)(**{**lacks.__dict__, "complete": {**masked.complete, "A": a}})
        assert torch.allclose(method.recon_loss(s, teacher_text, changed), without)
        changed = type(masked)(**{**masked.__dict__, "complete": {**masked.complete, "A": a}})
        assert not torch.allclose(method.recon_loss(s, teacher_text, changed), base)


# ------------------------------------------------------------------ B10
def test_positional_embedding_flag():
    x = torch.zeros(3, 5, 8)
    right = MCT(MCTConfig(d=8, layers=1, heads=2)).position(x)
    bug = MCT(MCTConfig(d=8, layers=1, heads=2, replicate_pe_bug=True)).position(x)
    assert torch.allclose(right[0], right[1]) and not torch.allclose(right[0, 0], right[0, 1])  # over time
    assert torch.allclose(bug[:, 0], bug[:, 4]) and not torch.allclose(bug[0], bug[1])  # over the batch
    assert not torch.allclose(right, bug)


def test_pe_flag_changes_predictions(tiny):
    seed_everything(0)
    a = make_method("cider", tiny, ["--mct.layers=1", "--mct.heads=2", "--mct.embed_dropout=0"])
    b = make_method("cider", tiny, ["--mct.layers=1", "--mct.heads=2", "--mct.embed_dropout=0",
                                    "--mct.replicate_pe_bug=true"])
    b.load_state_dict(a.state_dict())
    batch = tiny.subset("valid").batch(np.arange(4))
    with torch.no_grad():
        assert not torch.allclose(a.eval().predict_logits(batch), b.eval().predict_logits(batch))


# ------------------------------------------------------------------ MACI pieces
def test_counterfactual_keeps_bias_words_and_specials(method, tiny):
    kept = method.fit_bias_words(tiny.subset("train"))
    assert 0 < len(kept) <= method.cfg.top_k
    assert not set(kept.tolist()) & {PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID}
    k = int(kept[0])
    other = next(i for i in range(1000, 30000) if not method.keep_words[i])
    ids = torch.tensor([[CLS_ID, k, other, UNK_ID, SEP_ID, PAD_ID]])
    assert method.counterfactual_ids(ids).tolist() == [[CLS_ID, k, MASK_ID, UNK_ID, SEP_ID, PAD_ID]]


def test_bias_words_by_rate_separate_what_raw_counts_cannot(tiny):
    """On synthetic_text (unequal classes) Eq. 27 on raw counts keeps every seen word, filler
    included, and says so; on per-class rates it keeps fewer, dropping filler words."""
    train = tiny.subset("train")
    raw = make_method("cider", tiny, ["--mct.layers=1", "--mct.heads=2"], seed=0)
    with pytest.warns(UserWarning, match="kept every one of the"):
        kept_raw = raw.fit_bias_words(train)
    rate = make_method("cider_rate_cv", tiny, ["--mct.layers=1", "--mct.heads=2"], seed=0)
    kept_rate = rate.fit_bias_words(train)
    assert raw.calibrate(tiny.subset("valid"))["bias_words"]["kept"] == raw.bias_word_report["seen"]
    assert 0 < len(kept_rate) < len(kept_raw)
    from mmlab.data.synthetic_text import FILLER_WORDS, WORD_IDS

    filler = {WORD_IDS[w] for w in FILLER_WORDS}
    # (on the default preset: raw keeps all 24 filler words, rate 1 of 24; tiny's few rows leave noise)
    assert filler <= set(kept_raw.tolist()) and len(filler & set(kept_rate.tolist())) < len(filler)


def test_tau_is_kept_in_checkpoints(method):
    method.set_test_options(tau=0.3)
    assert method.state_dict()["tau_value"].item() == pytest.approx(0.3)
    method.set_test_options(tau=0.0)


def test_prototypes_from_train_split(method, tiny):
    train = tiny.subset("train")
    method.fit_prototypes(train)
    prior = np.bincount(train.y, minlength=tiny.n_classes) / len(train)
    np.testing.assert_allclose(method.head.prior.numpy(), prior, rtol=1e-6)
    # the A block of class 0: mean over real frames, then over the class's train rows
    a = train.feats["A"][train.y == 0]
    ln = train.lengths["A"][train.y == 0]
    real = np.arange(a.shape[1])[None] < ln[:, None]
    want = ((a * real[..., None]).sum(1) / ln[:, None]).mean(0)
    start = method.dims["T"]
    np.testing.assert_allclose(method.head.prototypes[0, start:start + 6].numpy(), want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ text encoder
def test_frozen_encoder_not_in_state_dict_and_finetune_groups(tiny, tmp_path):
    m = make_method("cider", tiny, ["--mct.layers=1", "--mct.heads=2"])
    assert not any(k.startswith("encoder") for k in m.state_dict())
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=64)).save_pretrained(tmp_path / "bert")
    f = make_method("cider", tiny, ["--mct.layers=1", "--mct.heads=2", "--text.finetune=true",
                                    f"--text.model_dir={tmp_path / 'bert'}"])
    assert f.dims["T"] == 16 and any(k.startswith("encoder.model") for k in f.state_dict())
    stage = f.stages(tiny)[0]
    params = [p for p in f.parameters() if p.requires_grad]
    groups = stage.param_groups(params)
    enc = {id(p) for p in f.encoder.parameters()}
    assert sum(len(g["params"]) for g in groups) == len(params)
    enc_groups = [g for g in groups if all(id(p) in enc for p in g["params"]) and g.get("lr") == 5e-5]
    assert sorted(g["weight_decay"] for g in enc_groups) == [0.0, 1e-3]
    names = {id(p): n for n, p in f.encoder.model.named_parameters()}
    no_decay = next(g for g in enc_groups if g["weight_decay"] == 0.0)
    assert all("bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    # one step updates the encoder
    opt = _optimizer(f, stage)
    before = f.encoder.model.embeddings.word_embeddings.weight.clone()
    f.train()
    stage.step(tiny.subset("train").batch(np.arange(16)), np.random.default_rng(0), [opt])
    assert not torch.equal(before, f.encoder.model.embeddings.word_embeddings.weight)


# ------------------------------------------------------------------ configs
@pytest.mark.parametrize("override,field", [
    ("--train_rate_sampler=per_batch", "train_rate_sampler"),
    ("--head=softmax", "head"),
    ("--text_modality=X", "text_modality"),
    ("--mct.heads=5", "heads"),
    ("--alpha=-1", "alpha"),
    ("--tau_grid=[]", "tau_grid"),
    ("--text.lr=0", "text.lr"),
])
def test_bad_config(tiny, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        make_method("cider", tiny, [override])


def test_missing_model_dir_is_a_config_error(tiny, tmp_path):
    with pytest.raises(ConfigError, match="model_dir"):
        make_method("cider", tiny, [f"--text.model_dir={tmp_path / 'nope'}"])


# ------------------------------------------------------------------ float text
def test_float_text_dataset_every_pattern():
    data = load_dataset("synthetic", preset="tiny")
    m = make_method("cider", data, ["--mct.layers=1", "--mct.heads=2"]).eval()
    m.stages(data)
    assert m.encoder is None and m.test_options() == {}
    batch = data.subset("valid").batch(np.arange(8))
    pad = {k: v.numpy() for k, v in batch.pad_mask.items()}
    with torch.no_grad():
        for pattern in all_patterns(data.modalities):
            masked = mask_batch(batch, pattern(pad, batch.modalities, np.random.default_rng(0)), make_fill("zero"))
            out = m.predict_logits(masked.for_eval())
            assert out.shape == (8, data.n_classes) and torch.isfinite(out).all()


# ------------------------------------------------------------------ training
def test_short_training_beats_majority(tiny, tmp_path):
    seed_everything(0)
    m = make_method("cider", tiny, ["--train.epochs=25", "--train.patience=0"], seed=0)
    Trainer(m, tiny, tmp_path, TrainConfig(seed=0, progress=False)).fit()
    rows = {r["condition"]: r for r in evaluate(m, tiny, conditions=pattern_conditions(tiny.modalities), seed=1111)}
    test = tiny.split == "test"
    majority = np.bincount(tiny.y[test]).max() / test.sum()
    # tiny: 300 training rows; the Bayes oracle reaches 0.655 (full) and 0.44-0.63 per pattern
    assert rows["full"]["accuracy"] > majority + 0.12, rows["full"]
    for name in ("{A}", "{V}", "{T}", "{AV}", "{AT}", "{VT}"):
        assert rows[name]["accuracy"] > majority, (name, rows[name])
    assert rows["Average"]["accuracy"] > majority + 0.08, rows["Average"]


def test_frozen_encoder_cache_is_bounded_in_bytes():
    """The frozen memo keeps at most ``cache_bytes`` of encodings (least recently used out), and
    a cached row gives exactly what the encoder gives."""
    from types import SimpleNamespace

    from mmlab.nn.text_encoder import TokenEncoder

    class Fake(torch.nn.Module):
        config = SimpleNamespace(hidden_size=4, max_position_embeddings=16)

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Embedding(200, 4)

        def forward(self, input_ids, attention_mask):
            return SimpleNamespace(last_hidden_state=self.w(input_ids))

    enc = TokenEncoder(Fake(), cache_bytes=3 * 5 * 4 * 4)  # three rows of 5 tokens x 4 floats
    ids = torch.tensor([[101, i, i + 1, i + 2, 102] for i in range(10, 60, 10)])
    valid = torch.ones_like(ids, dtype=torch.bool)
    first = enc(ids, valid)
    assert len(enc._cache) == 3 and enc._cached_bytes <= enc.cache_bytes
    torch.testing.assert_close(enc(ids[-1:], valid[-1:]), first[-1:])
    torch.testing.assert_close(enc(ids[:1], valid[:1]), first[:1])  # evicted, encoded again: the same


def test_linear_head_keeps_the_counterfactual(tiny):
    """Table V's "w/o MCM" drops the MCM head, not the counterfactual text: tau is still chosen;
    `cider_wo_maci` drops both."""
    wo_mcm = make_method("cider", tiny, ["--head=linear", "--mct.layers=1", "--mct.heads=2"], seed=0)
    assert wo_mcm.uses_counterfactual and "tau" in wo_mcm.test_options()
    assert make_method("cider_wo_maci", tiny, ["--mct.layers=1", "--mct.heads=2"], seed=0).test_options() == {}


def test_attention_kl_direction_and_padding():
    """Eq. 18 (B13): KL(teacher || student) per row, summed, averaged over batch x heads; with
    ``valid`` the padding rows and keys do not count, and equal scores give zero."""
    from mmlab.nn.mct import attention_kl

    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    p, q = torch.softmax(t, -1), torch.softmax(s, -1)
    want = (p * (p.log() - q.log())).sum() / 6
    torch.testing.assert_close(attention_kl(s, t), want)
    assert attention_kl(t, s).item() != pytest.approx(want.item())  # not symmetric: direction matters
    valid = torch.tensor([[True, True, True, False], [True, True, False, False]])
    padded = attention_kl(s, t, valid)
    by_hand = 0.0
    for b in range(2):
        k = valid[b]
        pv, qv = torch.softmax(t[b][:, k][:, :, k], -1), torch.softmax(s[b][:, k][:, :, k], -1)
        by_hand += (pv * (pv.log() - qv.log())).sum()
    torch.testing.assert_close(padded, by_hand / 6)
    s2 = s.clone()
    s2[0, :, 3, :] = 50.0  # a padding row of the student
    s2[1, :, :, 2:] = -50.0  # padding keys
    torch.testing.assert_close(attention_kl(s2, t, valid), padded, atol=1e-5, rtol=1e-5)
    assert attention_kl(t, t, valid).abs().item() < 1e-6

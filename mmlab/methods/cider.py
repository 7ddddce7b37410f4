"""CIDer: Causal Inference Distiller (Zhong, Huan, Wu, Liang, Chen, "Towards Robust Multimodal
Emotion Recognition under Missing Modalities and Distribution Shifts", submitted to the IEEE;
no arXiv id in the paper text; code https://github.com/gw-zhong/CIDer).

The boxes of its Fig. 2, in order:

1. text encoder L = BERT(S) on token ids (`mmlab.nn.text_encoder`; all-MiniLM-L6-v2 offline by
   default, ``text.model_dir`` for a local BERT-style folder), or precomputed text features;
2. Eq. 3 Conv1d(k=1, no bias) to d; Eq. 4 WSAM compresses A / V to the text length; Eq. 5 one
   GRU per modality;
3. Eqs. 6-13 MCT (`mmlab.nn.mct`); Eq. 14 naive attention pooling; Eq. 15 joint representation;
4. MSSD: per batch a step on the complete input (Eq. 28), then a step on the RMFM-masked input
   with L_task + alpha L_recon + beta L_attn + gamma L_joint (Eqs. 16-19, 29-30), teacher detached;
5. MACI: the MCM head (Eqs. 20-24) with class prototypes and priors from the train split, and the
   fine-grained counterfactual text at test (Eqs. 25-27) with tau chosen on valid.

Code-vs-paper choices (numbers of the CIDer discrepancy list):

- B1 ``train_rate_sampler``: "per_sample_uniform" (paper: r ~ U[0, 1) per sample, default) or
  "per_position_uniform" (public code: every position dropped with prob 0.5);
- B3 fill: dropped tokens -> [UNK] ([CLS]/[SEP] kept, attention mask kept), A / V frames -> 0;
- B5 tau: chosen on the valid split (Trainer `test_options`, one tau for all metrics), never on test;
- B6 epochs chosen on valid (``validate_on``, default "seven": full input + six patterns);
- B7 MCM prototypes: train-split class means (text: mean over real tokens of the *pretrained*
  encoder, then over the class; A / V: mean over real frames, then over the class); at valid /
  test every prototype is replaced by the uniform mean of the train class means and the prior
  is uniform (footnote 4, without reading any label of the evaluated split);
- ours, ``bias_counts``: Eq. 27's CV on raw per-class counts ("raw", paper and code) or on
  per-class rates ("rate", counts / the class's tokens; registered as ``cider_rate_cv``). With
  unequal classes raw counts give every frequent word a high CV, so the counterfactual text can
  keep every word (then it equals the text and tau can only scale log p: a warning says so and
  ``calibration.json`` records how many words were kept).
- B8 Eq. 24 mixes probabilities, Eq. 25 subtracts in log space: log p - tau log p_cf;
- B9 pre-LN MCT; B10 correct positional embedding, ``mct.replicate_pe_bug`` for the code's;
- B11 Eq. 15 with residual; B12 time-axis Linear in the A / V reconstruction heads;
- B13 L_attn = KL(teacher || student) of the last layer's raw tri-modal scores, batchmean over
  batch x heads; B14 the text target of L_recon is the encoder output on the complete text
  (detached); L_recon counts dropped real positions only (mask = pad & ~obs), sum-reduced
  SmoothL1 / number of masked elements, summed over modalities (Eq. 17);
- B19 WSAM mask = text rows without [CLS]/[SEP] x A / V padding (missing frames still attended);
- B20 two optimiser steps per batch (`Stage.step`); B21 ``wsam=False`` runs the MCT on the three
  native lengths (block masks for any (T_l, T_a, T_v)); on word-aligned data set ``wsam=False``,
  as the code bypasses WSAM there (default True: every registered dataset is unaligned).

Ours (paper and code silent or unusable here): every batch is padded to the dataset's maximum
lengths (the time-axis heads of B12 need fixed lengths, as the code's fixed 50 / 375 / 500);
padding is masked in the MCT and the pooling (the code attends to it); no sqrt(d) input scale
before the positional embedding; Eq. 26's CV uses the population std.

Precomputed float text (e.g. `synthetic`): Conv1d reads the features, WSAM uses every real text
row (there is no [CLS]/[SEP]), L_recon's text target is the complete features; the counterfactual
text needs words, so MACI runs MCM only (tau = 0, nothing calibrated).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.data.tokens import CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID, VOCAB_SIZE
from mmlab.errors import ConfigError
from mmlab.methods.base import VALIDATE_ON, Method, Stage, TrainConfig, Validation, module_device
from mmlab.methods.baselines.common import check_choice, check_unit, cpu_train
from mmlab.missing import RMFM, RMFM_TRAIN_SAMPLERS, make_fill, random_mask_batch
from mmlab.nn.cider_modules import WSAM, JointHead, MCMHead, NaiveAttention, SeqRecon, TextRecon
from mmlab.nn.mct import MCT, MCTConfig, attention_kl
from mmlab.nn.text_encoder import TokenEncoder


@dataclass
class CIDerTextConfig:
    """The text encoder of a token modality: ``model_dir`` None = bundled all-MiniLM-L6-v2
    (local files only), ``finetune`` False = frozen (CPU default), ``lr`` / ``weight_decay`` its
    optimiser group (CIDer's code: 5e-5, 1e-3 except bias / LayerNorm)."""

    model_dir: str | None = None
    finetune: bool = False
    lr: float = 5e-5
    weight_decay: float = 1e-3

    def __post_init__(self) -> None:
        if not isinstance(self.finetune, bool):
            raise ConfigError(f"CIDerConfig.text.finetune: expected true/false, got {self.finetune!r}")
        for name in ("lr", "weight_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (name == "lr" and v == 0):
                raise ConfigError(f"CIDerConfig.text.{name}: expected a {'positive' if name == 'lr' else 'non-negative'}"
                                  f" number, got {v!r}")


@dataclass
class CIDerConfig:
    """CIDer; defaults are a CPU size (``PRESETS["paper"]`` = Table II / the code's example)."""

    d: int = 32
    text_modality: str = "T"
    text: CIDerTextConfig = field(default_factory=CIDerTextConfig)
    wsam: bool = True
    mct: MCTConfig = field(default_factory=MCTConfig)
    out_dropout: float = 0.1
    mssd: bool = True  # False: one step per batch on the complete input (cider_wo_mssd)
    train_rate_sampler: str = "per_sample_uniform"  # B1
    alpha: float = 0.6  # L_recon
    beta: float = 0.1  # L_attn
    gamma: float = 0.5  # L_joint
    head: str = "mcm"  # "mcm" (MACI's MCM, Eqs. 21-24) | "linear" (w/o MCM)
    counterfactual: bool = True  # MACI's fine-grained counterfactual text (Eqs. 25-27)
    tau_grid: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
    cv_threshold: float = 0.1
    top_k: int = 100
    bias_counts: str = "raw"  # Eq. 27's N_w: "raw" per-class counts (paper, code) | "rate" (per class token, ours)
    validate_on: str = "seven"
    # no weight average (the baselines' default since issue #18): CIDer's rows were measured without it
    train: TrainConfig = field(default_factory=lambda: cpu_train(epochs=15, patience=4, ema=0.0))

    def __post_init__(self) -> None:
        if isinstance(self.d, bool) or not isinstance(self.d, int) or self.d < 1:
            raise ConfigError(f"CIDerConfig.d: expected a positive integer, got {self.d!r}")
        check_choice("CIDerConfig", "train_rate_sampler", self.train_rate_sampler, RMFM_TRAIN_SAMPLERS)
        check_choice("CIDerConfig", "head", self.head, ("mcm", "linear"))
        check_choice("CIDerConfig", "bias_counts", self.bias_counts, ("raw", "rate"))
        check_choice("CIDerConfig", "validate_on", self.validate_on, VALIDATE_ON)
        check_unit("CIDerConfig", "out_dropout", self.out_dropout, upper_open=True)
        for name in ("alpha", "beta", "gamma", "cv_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"CIDerConfig.{name}: expected a non-negative number, got {v!r}")
        for name in ("wsam", "mssd", "counterfactual"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"CIDerConfig.{name}: expected true/false, got {getattr(self, name)!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(f"CIDerConfig.top_k: expected a positive integer, got {self.top_k!r}")
        if not self.tau_grid or any(isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0
                                    for t in self.tau_grid):
            raise ConfigError(f"CIDerConfig.tau_grid: expected a non-empty list of non-negative numbers, "
                              f"got {self.tau_grid!r}")
        if self.mct.d != self.d:
            self.mct = replace(self.mct, d=self.d)


@dataclass
class Pass:
    """What one forward pass returns (Eqs. 3-15)."""

    logits: Tensor  # (B, C) (log-probabilities with the MCM head)
    joint: Tensor  # (B, M d) h_m
    hidden: list[Tensor]  # MCT outputs H_m^[N], text first
    scores: Tensor  # (B, heads, N, N) last layer's raw tri-modal scores
    text: Tensor  # (B, T_l, D_l) the text input of Eq. 3 (encoder output or features)
    key_valid: Tensor | None = None  # (B, N) the MCT positions that are not padding


class CIDer(Method):
    """CIDer (see the module docstring); ``reads_tokens``: runs its own text encoder."""

    Config = CIDerConfig
    PRESETS = {  # Table II + the code's example run (main_run.py); BERT fine-tuned
        "paper": {"d": 32, "mct.layers": 3, "mct.heads": 8, "mct.attn_dropout": 0.0, "mct.embed_dropout": 0.2,
                  "out_dropout": 0.3, "alpha": 0.6, "beta": 0.1, "gamma": 0.5, "text.finetune": True,
                  "tau_grid": [round(0.1 * i, 1) for i in range(31)],
                  "train.epochs": 200, "train.patience": 10, "train.batch_size": 128, "train.lr": 1e-3},
    }
    name = "cider"
    fill = "zero"  # A / V; token text always gets [UNK] (`mmlab.missing.with_tokens`)
    reads_tokens = True

    def __init__(self, cfg: CIDerConfig, data: MMDataset):
        super().__init__()
        self.cfg = cfg
        if cfg.text_modality not in data.modalities:
            raise ConfigError(f"CIDerConfig.text_modality: expected one of {list(data.modalities)}, "
                              f"got {cfg.text_modality!r}")
        if len(data.modalities) < 2:
            raise ConfigError(f"CIDer: expected at least two modalities, got {list(data.modalities)}")
        t = cfg.text_modality
        self.mods = (t, *[m for m in data.modalities if m != t])  # text first (Eq. 6 order l, a, v)
        self.tokens = t in data.token_modalities
        self.max_len = {m: data.max_len[m] for m in self.mods}
        self.n_classes = data.n_classes
        self.encoder: TokenEncoder | None = None
        if self.tokens:
            self.encoder = TokenEncoder(load_text_model(cfg.text.model_dir), cfg.text.finetune)
            if self.encoder.max_positions is not None and self.max_len[t] > self.encoder.max_positions:
                raise ConfigError(f"CIDerConfig.text.model_dir: texts of {self.max_len[t]} tokens exceed the "
                                  f"model's {self.encoder.max_positions} positions")
        d, n = cfg.d, len(self.mods)
        dims = {m: (self.encoder.hidden if (m == t and self.tokens) else data.dims[m]) for m in self.mods}
        self.dims = dims
        self.conv = nn.ModuleDict({m: nn.Conv1d(dims[m], d, 1, bias=False) for m in self.mods})  # Eq. 3
        self.wsam = nn.ModuleDict({m: WSAM(d) for m in self.mods[1:]}) if cfg.wsam else None  # Eq. 4
        self.gru = nn.ModuleDict({m: nn.GRU(d, d, batch_first=True) for m in self.mods})  # Eq. 5
        self.mct = MCT(cfg.mct, n)  # Eqs. 6-13
        self.pool = nn.ModuleDict({m: NaiveAttention(d) for m in self.mods})  # Eq. 14
        self.joint = JointHead(n * d, cfg.out_dropout)  # Eq. 15
        seg = {m: (self.max_len[t] if cfg.wsam else self.max_len[m]) for m in self.mods}
        self.recon = nn.ModuleDict({t: TextRecon(d, dims[t]), **{  # Eq. 16 (B12)
            m: SeqRecon(seg[m], self.max_len[m], d, dims[m]) for m in self.mods[1:]}})
        if cfg.head == "mcm":
            self.head: nn.Module = MCMHead(n * d, d, [dims[m] for m in self.mods], self.n_classes)
        else:
            self.head = nn.Linear(n * d, self.n_classes)
        self.register_buffer("tau_value", torch.tensor(0.0))  # Eq. 25's tau, chosen on valid; kept in checkpoints
        self.bias_word_report: dict[str, Any] = {}
        self.register_buffer("keep_words", torch.zeros(VOCAB_SIZE, dtype=torch.bool))  # counterfactual vocabulary

    # ------------------------------------------------------------------ forward
    def _fixed(self, batch: MMBatch, complete: bool = False) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Features / ids and validity masks padded to the dataset's maximum lengths."""
        feats = batch.complete_feats() if complete else batch.feats
        xs, valid = {}, {}
        for m in self.mods:
            x, v = feats[m], batch.pad_mask[m]
            extra = self.max_len[m] - x.shape[1]
            if extra > 0:
                x = F.pad(x, (0, extra), value=PAD_ID) if x.dim() == 2 else F.pad(x, (0, 0, 0, extra))
                v = F.pad(v, (0, extra), value=False)
            xs[m], valid[m] = x, v
        return xs, valid

    def text_input(self, x: Tensor, valid: Tensor) -> Tensor:
        """L: the encoder's last hidden states on token ids, or the float text features."""
        return self.encoder(x, valid) if self.tokens else x

    def run(self, batch: MMBatch, complete: bool = False, train: bool = False, text: Tensor | None = None) -> Pass:
        """One forward pass (Eqs. 3-15, 21-24) on ``batch`` (its complete features if ``complete``)."""
        t = self.mods[0]
        xs, valid = self._fixed(batch, complete)
        lt = self.text_input(xs[t], valid[t]) if text is None else text
        x = {m: self.conv[m]((lt if m == t else xs[m]).transpose(1, 2)).transpose(1, 2) for m in self.mods}  # Eq. 3
        seg_valid = {}
        for m in self.mods[1:]:
            if self.wsam is not None:  # Eq. 4 (B19)
                x[m] = self.wsam[m](x[t], x[m], valid[t], valid[m], drop_edges=self.tokens)
                seg_valid[m] = valid[t]
            else:
                seg_valid[m] = valid[m]
        seg_valid[t] = valid[t]
        h = [self.gru[m](x[m])[0] for m in self.mods]  # Eq. 5
        hidden, scores = self.mct(h, [seg_valid[m] for m in self.mods])  # Eqs. 6-13
        g = torch.cat([self.pool[m](hm, seg_valid[m]) for m, hm in zip(self.mods, hidden)], -1)  # Eq. 14
        joint = self.joint(g)  # Eq. 15
        logits = self._classify(joint, train)
        return Pass(logits, joint, hidden, scores, lt, torch.cat([seg_valid[m] for m in self.mods], 1))

    def _classify(self, joint: Tensor, train: bool) -> Tensor:
        if not isinstance(self.head, MCMHead):
            return self.head(joint)
        if train:
            return self.head(joint)  # train prototypes and prior (Eq. 24)
        protos = self.head.prototypes.mean(0, keepdim=True).expand_as(self.head.prototypes)  # B7
        prior = torch.full_like(self.head.prior, 1.0 / self.n_classes)
        return self.head(joint, protos, prior)

    def predict_logits(self, batch: MMBatch) -> Tensor:
        """Eq. 25: log p(y | do(L = l)) - tau log p(y | do(L = l_cf)) (B8); tau = 0 without the
        counterfactual."""
        out = self.run(batch).logits
        if self.tau == 0 or not self.uses_counterfactual:
            return out
        cf = replace(batch, feats={**batch.feats, self.mods[0]: self.counterfactual_ids(batch.feats[self.mods[0]])})
        # log-probabilities for either head (the MCM head's logits already are)
        return F.log_softmax(out, -1) - self.tau * F.log_softmax(self.run(cf).logits, -1)

    # ------------------------------------------------------------------ MACI
    @property
    def uses_counterfactual(self) -> bool:
        return self.cfg.counterfactual and self.tokens  # with either head ("w/o MCM" keeps F.C.T.)

    def counterfactual_ids(self, ids: Tensor) -> Tensor:
        """S_cf (Eqs. 26-27): every word outside the kept bias words becomes [MASK]; special
        tokens ([PAD], [UNK], [CLS], [SEP], [MASK]) stay, so dropped words stay [UNK]."""
        special = (ids == PAD_ID) | (ids == UNK_ID) | (ids == CLS_ID) | (ids == SEP_ID) | (ids == MASK_ID)
        keep = special | self.keep_words.to(ids.device)[ids]
        return torch.where(keep, ids, torch.full_like(ids, MASK_ID))

    def fit_bias_words(self, train: MMDataset) -> np.ndarray:
        """Eqs. 26-27 on the train split: per-class counts N_w, CV_w = std / mean (population std);
        keep the ``top_k`` most frequent words with CV_w >= ``cv_threshold``. Returns their ids."""
        t = self.mods[0]
        ids, ln, y = train.feats[t], np.asarray(train.lengths[t]), train.y
        real = np.arange(ids.shape[1])[None] < ln[:, None]
        counts = np.zeros((self.n_classes, VOCAB_SIZE))
        for c in range(self.n_classes):
            w = ids[(y == c)[:, None] & real]
            counts[c] = np.bincount(w, minlength=VOCAB_SIZE)
        for s in (PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID):
            counts[:, s] = 0
        total = counts.sum(0)
        seen = total > 0
        per = counts if self.cfg.bias_counts == "raw" else counts / counts.sum(1, keepdims=True).clip(min=1)
        cv = np.zeros(VOCAB_SIZE)
        cv[seen] = per[:, seen].std(0) / per[:, seen].mean(0)
        cand = np.flatnonzero(seen & (cv >= self.cfg.cv_threshold))
        keep = cand[np.argsort(-total[cand], kind="stable")][: self.cfg.top_k]
        self.bias_word_report = {"kept": int(len(keep)), "seen": int(seen.sum()), "counts": self.cfg.bias_counts}
        if len(keep) == int(seen.sum()):
            warnings.warn(f"CIDer: Eq. 27 kept every one of the {len(keep)} words seen in train "
                          f"(bias_counts={self.cfg.bias_counts!r}): the counterfactual text equals the text "
                          "and tau can only scale log p", stacklevel=2)
        self.keep_words.zero_()
        self.keep_words[torch.as_tensor(keep, dtype=torch.long)] = True
        return keep

    @torch.no_grad()
    def fit_prototypes(self, train: MMDataset) -> None:
        """B7: train class means [L_i; A_i; V_i] (mean over real positions, then over the class's
        samples; text through the pretrained encoder before any fine-tuning) and the train prior."""
        if not isinstance(self.head, MCMHead):
            return
        t, sums = self.mods[0], []
        per_row = {m: [] for m in self.mods}
        encoder = self.encoder.hf_model if self.encoder is not None else None
        was_training = encoder.training if encoder is not None else False
        if encoder is not None:
            encoder.eval()  # the pretrained text, without dropout
        for b in train.iter_batches(256, device=module_device(self)):
            xs, valid = self._fixed(b)
            for m in self.mods:
                x = self.text_input(xs[m], valid[m]) if m == t else xs[m]
                v = valid[m].to(x.dtype)[..., None]
                per_row[m].append((x.float() * v).sum(1) / v.sum(1).clamp_min(1))
        y = torch.as_tensor(train.y, dtype=torch.long)
        for m in self.mods:
            rows = torch.cat(per_row[m])
            sums.append(torch.stack([rows[y == c].mean(0) if (y == c).any() else rows.new_zeros(rows.shape[1])
                                     for c in range(self.n_classes)]))
        if encoder is not None:
            encoder.train(was_training)
        self.head.prototypes.copy_(torch.cat(sums, -1))
        self.head.prior.copy_(torch.bincount(y, minlength=self.n_classes).float() / len(y))

    def test_options(self) -> dict[str, list[Any]]:
        """tau of Eq. 25, chosen on valid (B5), cheapest (0) first."""
        if not self.uses_counterfactual:
            return {}
        return {"tau": sorted({float(x) for x in self.cfg.tau_grid})}

    @property
    def tau(self) -> float:
        return float(self.tau_value)

    def set_test_options(self, tau: float) -> None:
        self.tau_value.fill_(float(tau))

    def calibrate(self, valid: MMDataset) -> dict[str, Any] | None:
        """Nothing is chosen here (tau comes from `test_options`); records which bias words Eq. 27
        kept, so that a counterfactual equal to the original text (every seen word kept) shows."""
        return {"bias_words": self.bias_word_report} if self.bias_word_report else None

    # ------------------------------------------------------------------ training
    def recon_loss(self, student: Pass, teacher_text: Tensor, batch: MMBatch) -> Tensor:
        """Eq. 17 over dropped real positions only (B12, B14): sum-reduced SmoothL1 / masked
        elements; a position a row lacks natively (`MMBatch.observed`) is filler, never a target."""
        complete, valid = self._fixed(batch, complete=True)

        def fit(masks: dict[str, Tensor]) -> dict[str, Tensor]:
            return {m: F.pad(masks[m], (0, self.max_len[m] - masks[m].shape[1]), value=False) for m in self.mods}

        obs = fit(batch.obs_mask)
        valid = {m: v & o for (m, v), o in zip(valid.items(), fit(batch.observed()).values())}
        total = student.joint.new_zeros(())
        for m, hm in zip(self.mods, student.hidden):
            target = teacher_text if m == self.mods[0] else complete[m]
            drop = (valid[m] & ~obs[m])[..., None].to(target.dtype)
            n = drop.sum() * target.shape[-1]
            if n > 0:
                fake = self.recon[m](hm)
                total = total + (F.smooth_l1_loss(fake, target, reduction="none") * drop).sum() / n
        return total

    def student_losses(self, masked: MMBatch, teacher: Pass) -> tuple[Tensor, dict[str, float]]:
        """Eq. 30: L_task + alpha L_recon + beta L_attn + gamma L_joint, teacher detached."""
        s = self.run(masked, train=True)
        task = F.cross_entropy(s.logits, masked.y)
        recon = self.recon_loss(s, teacher.text.detach(), masked)  # Eq. 17
        attn = attention_kl(s.scores, teacher.scores.detach(), teacher.key_valid)  # Eq. 18 (B13), padding out
        joint = (1 - F.cosine_similarity(s.joint, teacher.joint.detach(), dim=-1)).mean()  # Eq. 19
        loss = task + self.cfg.alpha * recon + self.cfg.beta * attn + self.cfg.gamma * joint
        return loss, {k: float(v.detach()) for k, v in (("student_task", task), ("recon", recon), ("attn", attn), ("joint", joint))}

    def stages(self, data: MMDataset) -> list[Stage]:
        train = data.subset("train")
        self.fit_prototypes(train)
        if self.uses_counterfactual:
            self.fit_bias_words(train)
        fill = make_fill("zero", train=train)
        sampler = RMFM(rate=None, train_sampler=self.cfg.train_rate_sampler,
                       protect_edges=(self.mods[0],) if self.tokens else ())
        clip = self.cfg.train.grad_clip
        self.last_teacher: Pass | None = None

        def complete_loss(batch: MMBatch, rng) -> tuple[Tensor, dict[str, float]]:
            return F.cross_entropy(self.run(batch, complete=True, train=True).logits, batch.y), {}

        def step(batch: MMBatch, rng, optimizers) -> dict[str, float]:
            opt = optimizers[0]
            params = [p for g in opt.param_groups for p in g["params"]]
            t = self.run(batch, complete=True, train=True)  # teacher: complete input (Eq. 28)
            loss_t = F.cross_entropy(t.logits, batch.y)
            opt.zero_grad(set_to_none=True)
            loss_t.backward()
            if clip > 0:
                nn.utils.clip_grad_norm_(params, clip)
            opt.step()  # first step (B20)
            teacher = Pass(t.logits.detach(), t.joint.detach(), [h.detach() for h in t.hidden], t.scores.detach(),
                           t.text.detach(), t.key_valid)
            self.last_teacher = teacher
            masked = random_mask_batch(batch, sampler, fill, rng)  # RMFM (B1)
            loss_s, logs = self.student_losses(masked, teacher)
            opt.zero_grad(set_to_none=True)
            loss_s.backward()
            if clip > 0:
                nn.utils.clip_grad_norm_(params, clip)
            opt.step()  # second step (B20)
            return {"loss": float(loss_s.detach()), "teacher_task": float(loss_t.detach()), **logs}

        def groups(params: list[nn.Parameter]) -> list[dict[str, Any]]:
            enc = self.encoder.param_groups(self.cfg.text.lr, self.cfg.text.weight_decay) if self.encoder else []
            taken = {id(p) for g in enc for p in g["params"]}
            rest = [p for p in params if id(p) not in taken]
            enc = [{**g, "params": [p for p in g["params"] if id(p) in {id(q) for q in params}]} for g in enc]
            return [{"params": rest}, *[g for g in enc if g["params"]]]

        validate = Validation(logits=self.predict_logits, patterns=self.cfg.validate_on, fill=self.fill)
        if self.cfg.mssd:
            return [Stage("cider", [self], step=step, validate=validate, config=self.cfg.train, param_groups=groups)]
        return [Stage("cider", [self], loss=complete_loss, validate=validate, config=self.cfg.train,
                      param_groups=groups)]


def load_text_model(model_dir: str | None) -> nn.Module:
    """The Hugging Face encoder from local files (the bundled all-MiniLM-L6-v2 or ``model_dir``)."""
    from mmlab.methods.text import _load_encoder, resolve_model_dir

    return _load_encoder(resolve_model_dir(model_dir), torch.device("cpu"))

"""CM-ARR: Cross-Modal Alignment, Reconstruction and Refinement (Sun et al. 2024, "Enhancing Emotion
Recognition in Incomplete Data: A Novel Cross-Modal Alignment, Reconstruction, and Refinement
Framework", arXiv:2407.09029).

The boxes of the paper's Fig. 2, in order (`CMARR.represent`):

1. **Alignment** (§3.1): per modality n a UMC (`mmlab.nn.cmarr_modules.UMC`) turns the features
   R_n into per-frame Gaussians (mu_n, Sigma_n), pooled to the utterance (C3). UDCL (Eqs. 1-5,
   `mmlab.losses.ContrastiveSimilarity`): symmetric InfoNCE with S = a * D_2W + b over every
   pair of modalities.
2. **Reconstruction** (§3.2): a Conv1d projects mu_n to the common dimension d (C5) and every
   modality is resampled to a common length T (C2): X_n. Flows Z_n = F_n(X_n) (Eq. 6,
   `mmlab.nn.flow.Glow`). A missing modality m gets Z~_m = mean of the available Z_k (Eq. 7),
   X~_m = F_m^-1(Z~_m) (Eq. 8) and X^_m = Rec_m(X~_m), a stack of 1D RCABs, trained by
   L_rec = ||X^_m - X_m||^2 against X_m of the complete training features (Eq. 9, target
   detached, mean over elements).
3. **Refinement** (§3.3): SPCL, a supervised contrastive loss (Khosla et al. 2020,
   arXiv:2004.11362) over the pooled, projected X (X^ for missing modalities) of all modalities
   of the batch; then text-anchored cross-modal attention fusion (Eqs. 10-13): H_ak =
   CrossAttn(Q = X_a, K = V = X_k) for every other modality k, H = SelfAttn(Concat_k H_ak),
   mean over time, MLP classifier.
4. Loss (Eq. 14): L = alpha L_udcl + beta L_spcl + lambda L_rec + L_cls (§4.2: alpha = 1,
   beta = 0.1, lambda = 10, also the CPU default; ``cmarr_alpha01`` is our alpha = 0.1, C14).

Choices where the paper is silent or ambiguous, and ours (C1-C17):

- C1 training missingness: ``missing="row"`` (default) draws each train row's condition
  uniformly from full + the non-empty proper subsets (`RandomPattern`, p_full = 1/7 for three
  modalities); ``missing="batch"`` draws one condition per batch. Training data is complete, so
  UDCL and the reconstruction targets use the complete features of every modality.
- C2 common length: after the Conv1d every modality is resampled to ``common_len`` frames by
  adaptive average pooling over its valid frames (1 when every modality is a vector).
- C3 UMC: MAP-style (input Linear + LN; a mean and a log-variance branch, each MHA + GELU MLP
  with residuals and LN; Sigma = exp); utterance Gaussians are means over valid frames.
- C4 no flow likelihood by default (``nll_weight`` = 0, faithful to Eq. 14); gradients flow
  through F_m^-1 (``detach_inverse`` False) so that the flows are trained by L_rec and L_cls.
- C5 the Conv1d reads mu_n (``proj_input="mu"``; "features" reads R_n); its output is resampled
  and then layer-normalised without affine (``proj_norm``), so that the detached L_rec target
  cannot shrink towards 0 (the fusion's pre-LN blocks are scale invariant).
- C6 D_2W uses standard deviations (true W2); ``contrastive.w2_use_variance`` is literal Eq. 1.
  D_2W is divided by the dimension (``contrastive.w2_reduce="mean"``): with LayerNorm-ed means
  a summed D_2W is O(d), and with a = -1, tau = 0.07 the UDCL logits would be O(10 d).
- C7 a (clamped < 0), b and log tau are all learned, one set shared by every modality pair.
- C8 fusion: the anchor is the text modality ("T") when the dataset has one, else ``anchor`` or
  the first modality; a missing anchor is replaced by its X^. Cross-attention blocks are
  MulT-style (pre-LN, residual, FFN), 1 layer; features are concatenated, one self-attention
  block, mean over time, MLP head. ``third_block`` adds CrossAttn(Q = X_i, K = V = X_j) for
  every pair of non-anchor modalities (the "three blocks" wording for three modalities).
- C9 beta = 0.1 (§4.2); 0.5 (§4.5) via ``beta``.
- C10 Adam, selection by the valid six-pattern UA (``validate_on``). CPU defaults are small
  (UMC width 32, d = 32, T = 4, K = 2 flow steps of width 32, 2 RCABs, lr 1e-3, batch 64,
  20 epochs, early stopping after 5 epochs without a better valid UA); the ``paper`` preset
  restores lr 1e-5, batch 16, 100 epochs, K = 32, 20 RCABs, d = 128, T = 50.
- C11 extractors are frozen (features come precomputed).
- C12 UDCL over all M(M-1)/2 modality pairs, summed (Eq. 2 generalised; any M >= 2).
- C13 SPCL: SupCon at temperature 0.07 on normalize(Linear(mean_t X)) of every modality (X^
  for missing ones); same-instance other-modality pairs are positives, self-pairs excluded.
  L_rec is averaged over the elements of every (row, missing modality).
- C14 (ours, the registered variant ``cmarr_alpha01``; ``cmarr`` keeps the paper's alpha = 1):
  alpha = 0.1, chosen on the valid split of ``synthetic`` (six-pattern valid accuracy 0.629 at
  alpha = 1, 0.648 at 0.1, 0.654 without UDCL; with C16, five seeds, valid macro recall 0.635 /
  0.649 / 0.653). There every modality carries class information of its own, and aligning the
  pooled means of a sample's modalities (which the projection reads, C5) pulls them towards the
  shared content and away from that private information.
- C15 (ours) the completion interface (`mmlab.methods.base.Completion`, ADMC's Table 4
  protocol): a modality's feature is the time mean of its projection X_m (real) or of X^_m
  (generated from the available modalities, Eqs. 7-9). CM-ARR has no unimodal head, so after
  training a linear probe per modality is fitted on the real features of the training split
  (stages ``probe_<m>``, selected on valid), frozen, and reads generated features as the ITFN
  heads do in ADMC's Table 4. The reconstruction is deterministic (an inverse flow of the mean
  latent): one "sample" is the point estimate, and its spread over draws is zero.
- C16 (ours, CPU default) the joint stage validates and keeps an average of its weights
  (`TrainConfig.ema` = 0.99, `mmlab/nn/averaging.py`), the baselines' default: on ``synthetic``
  it raised the valid six-pattern UA of ``cmarr`` and ``dicmor`` over five seeds (issue #18,
  `docs/gap_to_oracle.md` §9). Neither paper averages: the ``paper`` presets set ``ema = 0``.
- C17 (ours, CPU default) a skip from the frames' mean (``mean_skip``), the baselines' and
  ADMC's ITFN default (`mmlab.nn.encoders.MeanSkip`) carried to the fusion: the pooled fused
  vector gains Linear(the concatenated means of every modality's observed raw frames, zeros for
  a missing one) before the MLP head. The resampling to T frames (C2) hides how many frames a
  mean averages and the UMC / LayerNorm path can blur it; the skip hands the head the statistic
  `synthetic`'s Bayes rule reads. Chosen on valid (five seeds, `synthetic`, valid six-pattern
  macro recall of the kept epoch): ``cmarr`` 63.65 -> 64.79, ``dicmor`` 64.68 -> 65.13;
  `handwritten`, valid over the view subsets: 94.73 -> 95.73, 94.66 -> 95.43. Costs, measured:
  on ``synthetic`` the Table 3 ablations land within 0.3 of one another, the C15 probes read
  reconstructions about 4 points worse (the head can bypass the projections), and all-views
  `handwritten` test drops 0.25 (`docs/gap_to_oracle.md` §11). Neither paper has it: the
  ``paper`` presets set ``mean_skip = false``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError
from mmlab.losses import ContrastiveConfig, ContrastiveSimilarity, supcon
from mmlab.methods.base import VALIDATE_ON, Method, Stage, TrainConfig, Validation
from mmlab.methods.baselines.common import check_choice, check_positive, check_unit
from mmlab.missing import Full, RandomPattern, all_patterns, random_mask_batch
from mmlab.nn.attention import Block
from mmlab.nn.cmarr_modules import UMC, CrossAttentionBlock, Reconstructor, pool_gaussian, resample
from mmlab.nn.encoders import MLPHead, masked_mean
from mmlab.nn.flow import ActNorm, FlowConfig, Glow


@dataclass
class CMARRConfig:
    """Sizes, switches for the ablations, loss weights and optimisation (module docstring, C1-C11).

    ``d_umc``/``heads``/``mlp_ratio``: UMC; ``umc_attention`` False = "w/o attention". ``d``:
    common dimension; ``conv_kernel``: the projection's kernel. ``rcab_*``: Rec_n. ``udcl`` /
    ``spcl`` / ``reconstruct``: the three phases' switches (``reconstruct`` False = missing
    modalities enter as their zero-filled features, the "Baseline"). ``z_fusion``: "mean"
    (Eq. 7) or "conv" (DiCMoR: one inverse per source, concatenated, 1x1 conv). ``nll_weight``
    / ``prior``: optional flow likelihood with a "standard" or learned class-conditional
    ("class") Gaussian prior (C4). ``train_on``: "random" (C1) or "full" (complete data).
    """

    d_umc: int = 32
    heads: int = 4
    mlp_ratio: int = 2
    umc_attention: bool = True
    d: int = 32
    conv_kernel: int = 1
    proj_input: str = "mu"
    proj_norm: bool = True
    common_len: int = 4
    flow: FlowConfig = field(default_factory=lambda: FlowConfig(steps=2, hidden=32))
    rcab_blocks: int = 2
    rcab_reduction: int = 4
    rcab_expand: int = 2
    contrastive: ContrastiveConfig = field(default_factory=lambda: ContrastiveConfig(w2_reduce="mean"))
    udcl: bool = True
    spcl: bool = True
    spcl_temperature: float = 0.07
    reconstruct: bool = True
    z_fusion: str = "mean"
    detach_inverse: bool = False
    nll_weight: float = 0.0
    prior: str = "standard"
    alpha: float = 1.0  # Eq. 14 (§4.2); cmarr_alpha01 uses 0.1, see C14
    beta: float = 0.1
    lam: float = 10.0
    anchor: str = ""
    text_modalities: tuple[str, ...] = ("T",)
    third_block: bool = False
    fusion_heads: int = 4
    hidden: int = 64
    dropout: float = 0.1
    train_on: str = "random"
    missing: str = "row"
    p_full: float = -1.0  # < 0: 1 / (number of patterns + 1), uniform over full + patterns
    validate_on: str = "six"
    mean_skip: bool = True  # C17: the head also reads Linear(the available modalities' raw frame means)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, batch_size=64, lr=1e-3, patience=5,
                                                                   ema=0.99))
    probe: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, batch_size=256, lr=1e-2, patience=5))

    def __post_init__(self) -> None:
        who = "CMARRConfig"
        for name in ("d_umc", "heads", "mlp_ratio", "d", "conv_kernel", "common_len", "rcab_reduction",
                     "rcab_expand", "fusion_heads", "hidden"):
            check_positive(who, name, getattr(self, name))
        if isinstance(self.rcab_blocks, bool) or not isinstance(self.rcab_blocks, int) or self.rcab_blocks < 0:
            raise ConfigError(f"{who}.rcab_blocks: expected a non-negative integer, got {self.rcab_blocks!r}")
        if self.d_umc % self.heads:
            raise ConfigError(f"{who}.heads: expected a divisor of d_umc={self.d_umc}, got {self.heads!r}")
        if self.d % self.fusion_heads:
            raise ConfigError(f"{who}.fusion_heads: expected a divisor of d={self.d}, got {self.fusion_heads!r}")
        if self.d < 2:
            raise ConfigError(f"{who}.d: expected at least 2 (the flows' couplings split it), got {self.d!r}")
        check_choice(who, "proj_input", self.proj_input, ("mu", "features"))
        check_choice(who, "z_fusion", self.z_fusion, ("mean", "conv"))
        check_choice(who, "prior", self.prior, ("standard", "class"))
        check_choice(who, "train_on", self.train_on, ("random", "full"))
        check_choice(who, "missing", self.missing, ("row", "batch"))
        check_choice(who, "validate_on", self.validate_on, VALIDATE_ON)
        check_unit(who, "dropout", self.dropout, upper_open=True)
        if self.p_full >= 0:
            check_unit(who, "p_full", self.p_full)
        for name in ("alpha", "beta", "lam", "nll_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ConfigError(f"{who}.{name}: expected a non-negative loss weight, got {v!r}")
        if not self.spcl_temperature > 0:
            raise ConfigError(f"{who}.spcl_temperature: expected a positive number, got {self.spcl_temperature!r}")
        self.text_modalities = tuple(self.text_modalities)


class CMARR(Method):
    """UMC -> UDCL -> Conv1d -> flows -> Eq. 7 / Eq. 8 -> RCAB -> SPCL -> cross-modal fusion."""

    Config = CMARRConfig
    PRESETS = {  # §4.2: lr 1e-5, batch 16, 100 epochs; K = 32, 20 RCABs, d = 128 (spec choices)
        "paper": {"d_umc": 256, "mlp_ratio": 4, "d": 128, "common_len": 50, "flow.steps": 32, "flow.hidden": 64,
                  "rcab_blocks": 20, "rcab_reduction": 16, "hidden": 128, "alpha": 1.0, "beta": 0.1,
                  "train.lr": 1e-5, "train.batch_size": 16, "train.epochs": 100, "train.patience": 0,
                  "train.ema": 0.0, "mean_skip": False},
    }
    name = "cmarr"
    fill = "zero"

    def __init__(self, cfg: CMARRConfig | None, data: MMDataset):
        super().__init__()
        self._flows_ready: set[str] = set()  # modalities whose flow has initialised every ActNorm
        self.cfg = cfg = cfg or CMARRConfig()
        self.modalities = mods = tuple(data.modalities)
        if len(mods) < 2:
            raise ConfigError(f"CMARR needs at least two modalities, got {list(mods)}")
        self.anchor = self._pick_anchor(cfg, mods)
        self.length = 1 if all(data.max_len[m] == 1 for m in mods) else cfg.common_len
        d, c = cfg.d, data.n_classes
        self.uses_umc = cfg.udcl or cfg.proj_input == "mu"
        if self.uses_umc:
            self.umc = nn.ModuleDict({m: UMC(data.dims[m], cfg.d_umc, cfg.heads, cfg.mlp_ratio, cfg.umc_attention,
                                             cfg.dropout) for m in mods})
        d_proj = {m: cfg.d_umc if cfg.proj_input == "mu" else data.dims[m] for m in mods}
        self.proj = nn.ModuleDict({m: nn.Conv1d(d_proj[m], d, cfg.conv_kernel, padding=cfg.conv_kernel // 2)
                                   for m in mods})
        self.similarity = ContrastiveSimilarity(cfg.contrastive) if cfg.udcl else None
        if cfg.reconstruct:
            self.flows = nn.ModuleDict({m: Glow(d, cfg.flow) for m in mods})
            self.rec = nn.ModuleDict({m: Reconstructor(d, cfg.rcab_blocks, cfg.rcab_expand, cfg.rcab_reduction)
                                      for m in mods})
            if cfg.z_fusion == "conv":
                self.z_mix = nn.ModuleDict({m: nn.Linear((len(mods) - 1) * d, d) for m in mods})
            if cfg.nll_weight > 0 and cfg.prior == "class":  # DiCMoR: one learned prior per class, shared by modalities
                self.prior_mean = nn.Parameter(torch.zeros(c, d))
                self.prior_log_sd = nn.Parameter(torch.zeros(c, d))
        self.spcl_proj = nn.Linear(d, d) if cfg.spcl else None
        others = [m for m in mods if m != self.anchor]
        self.pairs = [(self.anchor, k) for k in others]
        if cfg.third_block:
            self.pairs += list(itertools.combinations(others, 2))
        self.cross = nn.ModuleDict({f"{q}>{k}": CrossAttentionBlock(d, cfg.fusion_heads, 4, cfg.dropout)
                                    for q, k in self.pairs})
        d_fused = d * len(self.pairs)
        self.self_attn = Block(d_fused, cfg.fusion_heads, 2 * d_fused, cfg.dropout)
        self.head = MLPHead(d_fused, c, cfg.hidden, cfg.dropout)
        self.skip = nn.Linear(sum(data.dims[m] for m in mods), d_fused) if cfg.mean_skip else None  # C17
        self.probe = nn.ModuleDict({m: nn.Linear(d, c) for m in mods}) if cfg.reconstruct else None  # C15

    @staticmethod
    def _pick_anchor(cfg: CMARRConfig, mods: tuple[str, ...]) -> str:
        if cfg.anchor:
            if cfg.anchor not in mods:
                raise ConfigError(f"CMARRConfig.anchor: expected one of the dataset's modalities {list(mods)}, "
                                  f"got {cfg.anchor!r}")
            return cfg.anchor
        text = [m for m in mods if m in cfg.text_modalities]
        return text[0] if text else mods[0]

    # ------------------------------------------------------------------------------ alignment
    def align(self, feats: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        """UMC per modality: {m: (mu, Sigma)} per frame, (B, T_m, d_umc) each (§3.1.2)."""
        return {m: self.umc[m](feats[m], masks[m]) for m in self.modalities}

    def udcl_loss(self, gauss: dict[str, tuple[Tensor, Tensor]], masks: dict[str, Tensor]) -> Tensor:
        """Eq. 2 summed over every pair of modalities, on utterance Gaussians (Eqs. 1, 3-5); a pair
        is scored on the rows that have both modalities (all of them, unless some are natively
        missing)."""
        pooled = {m: pool_gaussian(*gauss[m], masks[m]) for m in self.modalities}
        has = {m: masks[m].any(1) for m in self.modalities}
        total = next(iter(gauss.values()))[0].new_zeros(())
        for n, m in itertools.combinations(self.modalities, 2):
            both = has[n] & has[m]
            if both.all():
                total = total + self.similarity(pooled[n], pooled[m])
            elif int(both.sum()) >= 2:
                total = total + self.similarity(tuple(t[both] for t in pooled[n]), tuple(t[both] for t in pooled[m]))
        return total

    # ------------------------------------------------------------------------------ reconstruction
    def project(self, x: Tensor, mask: Tensor, m: str) -> tuple[Tensor, Tensor]:
        """Conv1d to the common dimension, resampling to the common length (C2): X_m, (B, T, d)."""
        h = self.proj[m]((x * mask[..., None].to(x.dtype)).transpose(1, 2)).transpose(1, 2)
        out, present = resample(h, mask, self.length)
        if self.cfg.proj_norm:
            out = F.layer_norm(out, out.shape[-1:])
        return out * present[..., None].to(out.dtype), present

    def recover(self, m: str, z: dict[str, Tensor], avail: Tensor, rows: Tensor) -> Tensor:
        """X^_m for ``rows`` (indices): Eq. 7 (mean of the available Z_k), Eq. 8 (F_m^-1), Rec_m."""
        j = self.modalities.index(m)
        w = avail[rows].to(z[m].dtype)
        w[:, j] = 0
        src = [k for k in self.modalities if k != m]
        cut = (lambda t: t.detach()) if self.cfg.detach_inverse else (lambda t: t)  # noqa: E731
        if self.cfg.z_fusion == "mean":
            z_sum = sum(w[:, self.modalities.index(k), None, None] * z[k][rows] for k in src)
            x_tilde = cut(self.flows[m].inverse(z_sum / w.sum(1).clamp_min(1.0)[:, None, None]))
        else:  # DiCMoR: every available source through F_m^-1 (detached there), fused by a trained 1x1 conv
            parts = [w[:, self.modalities.index(k), None, None] * cut(self.flows[m].inverse(z[k][rows])) for k in src]
            x_tilde = self.z_mix[m](torch.cat(parts, -1))
        return self.rec[m](x_tilde)

    # ------------------------------------------------------------------------------ refinement
    def spcl_loss(self, x_in: dict[str, Tensor], y: Tensor) -> Tensor:
        """SPCL: SupCon over the M * B pooled projections (§3.3.1)."""
        p = torch.cat([self.spcl_proj(x_in[m].mean(1)) for m in self.modalities], 0)
        return supcon(p, y.repeat(len(self.modalities)), self.cfg.spcl_temperature)

    def fuse(self, x_in: dict[str, Tensor], batch: MMBatch) -> Tensor:
        """Eqs. 10-13: anchored cross-modal attention, concat, self-attention, pooling, classifier;
        with ``mean_skip`` (C17) the pooled vector gains a linear map of the observed frames' means
        of every modality (zeros for a missing one) of the (masked) ``batch``."""
        h = torch.cat([self.cross[f"{q}>{k}"](x_in[q], x_in[k]) for q, k in self.pairs], -1)
        pooled = self.self_attn(h).mean(1)
        if self.skip is not None:
            means = [masked_mean(batch.feats[m], batch.obs_mask[m]) for m in self.modalities]
            pooled = pooled + self.skip(torch.cat(means, -1))
        return self.head(pooled)

    # ------------------------------------------------------------------------------ forward
    def represent(self, batch: MMBatch, training: bool = False) -> dict[str, Any]:
        """The whole pipeline. ``training``: encode the complete features (UDCL and the Eq. 9
        targets need them; available modalities are unchanged by the fill), except modalities a
        row lacks natively (`MMBatch.present`). Returns the fusion inputs ``x_in``, the projections ``x``, latents ``z``,
        log-dets, reconstructions and the per-frame Gaussians."""
        cfg, mods = self.cfg, self.modalities
        if training and cfg.reconstruct:
            feats, masks, native = batch.complete_feats(), dict(batch.pad_mask), batch.present()
            if not bool(native.all()):
                masks = {m: masks[m] & native[:, j, None] for j, m in enumerate(mods)}
        else:  # the filled batch; without reconstruction (the Baseline) a missing modality's zeros enter
            feats, masks = batch.feats, (batch.obs_mask if cfg.reconstruct else batch.pad_mask)
        gauss = self.align(feats, masks) if self.uses_umc else {}
        x, present = {}, {}
        for m in mods:
            src = gauss[m][0] if cfg.proj_input == "mu" else feats[m]
            x[m], present[m] = self.project(src, masks[m], m)
        out: dict[str, Any] = {"x": x, "gauss": gauss, "masks": masks, "x_in": dict(x), "z": {}, "logdet": {},
                               "x_hat": {}}
        if not cfg.reconstruct:
            return out
        avail = batch.avail
        for j, m in enumerate(mods):
            if training:
                self._initialize_flow(m, x[m], present[m])
            rows_mask = present[m] & avail[:, j, None]
            out["z"][m], out["logdet"][m] = self.flows[m](x[m], rows_mask)  # Eq. 6
        for j, m in enumerate(mods):
            rows = (~avail[:, j]).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            x_hat = self.recover(m, out["z"], avail, rows)
            out["x_hat"][m] = (rows, x_hat)
            x_in = x[m].clone()
            x_in[rows] = x_hat
            out["x_in"][m] = x_in
        return out

    def _initialize_flow(self, m: str, x: Tensor, present: Tensor) -> None:
        """ActNorm's one data-dependent initialisation (Glow §3.1) on every row that has m, not
        only the rows the training mask keeps (a flow's inverse is used before its forward sees
        an available row)."""
        if m in self._flows_ready:
            return
        acts = [a for a in self.flows[m].modules() if isinstance(a, ActNorm)]
        if not all(bool(a.initialized) for a in acts) and bool(present.any()):
            with torch.no_grad():
                self.flows[m](x.detach(), present)
        if all(bool(a.initialized) for a in acts):
            self._flows_ready.add(m)

    def predict_logits(self, batch: MMBatch) -> Tensor:
        return self.fuse(self.represent(batch)["x_in"], batch)

    # ------------------------------------------------------------------------------ completion (C15)
    def completes(self) -> bool:
        """Variants that reconstruct (every one but the Baseline) generate missing features."""
        return self.cfg.reconstruct

    def real_features(self, batch: MMBatch, target: str) -> Tensor:
        """(B, d) the time mean of X_target, the projection of the target's real features."""
        mask = batch.pad_mask[target]
        src = self.umc[target](batch.feats[target], mask)[0] if self.cfg.proj_input == "mu" else batch.feats[target]
        return self.project(src, mask, target)[0].mean(1)

    @torch.no_grad()
    def generate(self, batch: MMBatch, target: str, generator: torch.Generator | None = None, **options: Any) -> Tensor:
        """(B, d) the time mean of X^_target reconstructed from the available modalities (Eqs. 7-9);
        deterministic, so ``generator`` is not used."""
        if not self.completes():
            raise ConfigError(f"{self.name}: generation needs the reconstruction (reconstruct=true)")
        j = self.modalities.index(target)
        if bool(batch.avail[:, j].any()):
            raise ConfigError(f"{self.name}.generate: {target!r} must be unavailable in every row of the batch")
        return self.represent(batch)["x_in"][target].mean(1)

    def feature_logits(self, target: str, feats: Tensor) -> Tensor:
        """(B, C) the frozen linear probe of ``target`` on real or generated features."""
        return self.probe[target](feats)

    def _probe_stage(self, m: str) -> Stage:
        """A linear probe on the frozen real features of ``m`` (C15), selected on valid."""
        j, probe = self.modalities.index(m), self.probe[m]

        def features(batch: MMBatch, split: str, gen: torch.Generator) -> dict[str, Tensor]:
            with torch.no_grad():
                return {"F": self.real_features(batch, m), "has": batch.present()[:, j]}

        def loss(fb: Any, rng: np.random.Generator) -> tuple[Tensor, dict[str, float]]:
            logits = probe(fb["F"])
            has = fb["has"]
            return (F.cross_entropy(logits[has], fb.y[has]) if bool(has.any()) else logits.sum() * 0.0), {}

        return Stage(f"probe_{m}", [probe], loss, Validation(kind="features", logits=lambda fb: probe(fb["F"])),
                     config=self.cfg.probe, features=features)

    # ------------------------------------------------------------------------------ training
    def nll_loss(self, rep: dict[str, Any], avail: Tensor, y: Tensor) -> Tensor:
        """Flow negative log-likelihood per dimension of the available modalities' frames (C4)."""
        total, count = 0.0, 0.0
        for j, m in enumerate(self.modalities):
            z, rows = rep["z"][m], avail[:, j]
            if self.cfg.prior == "class":
                mean, log_sd = self.prior_mean[y][:, None], self.prior_log_sd[y][:, None]
            else:
                mean, log_sd = torch.zeros_like(z), torch.zeros_like(z)
            log_p = -0.5 * ((z - mean) * torch.exp(-log_sd)) ** 2 - log_sd - 0.5 * np.log(2 * np.pi)
            log_p = (log_p.sum(-1).sum(1) + rep["logdet"][m]) * rows.to(z.dtype)
            total = total - log_p.sum()
            count = count + float(rows.sum()) * z.shape[1] * z.shape[2]
        return total / max(count, 1.0)

    def training_loss(self, batch: MMBatch) -> tuple[Tensor, dict[str, float]]:
        """Eq. 14 on a masked train batch (``batch.complete`` holds the complete features,
        `MMBatch.present` which rows have each modality at all)."""
        cfg, native = self.cfg, batch.present()
        rep = self.represent(batch, training=True)
        ce = F.cross_entropy(self.fuse(rep["x_in"], batch), batch.y)
        loss, logs = ce, {"ce": float(ce.detach())}
        if cfg.udcl:
            udcl = self.udcl_loss(rep["gauss"], rep["masks"])
            loss, logs["udcl"] = loss + cfg.alpha * udcl, float(udcl.detach())
        if cfg.spcl:
            spcl = self.spcl_loss(rep["x_in"], batch.y)
            loss, logs["spcl"] = loss + cfg.beta * spcl, float(spcl.detach())
        if cfg.reconstruct:
            sse, n = 0.0, 0
            for m, (rows, x_hat) in rep["x_hat"].items():  # Eq. 9, target detached
                keep = native[rows, self.modalities.index(m)]  # no target where the row lacks m natively
                rows, x_hat = rows[keep], x_hat[keep]
                sse = sse + F.mse_loss(x_hat, rep["x"][m][rows].detach(), reduction="sum")
                n += x_hat.numel()
            rec = sse / n if n else ce.new_zeros(())
            loss, logs["rec"] = loss + cfg.lam * rec, float(rec.detach())
            if cfg.nll_weight > 0:
                nll = self.nll_loss(rep, batch.avail, batch.y)
                loss, logs["nll"] = loss + cfg.nll_weight * nll, float(nll.detach())
        return loss, logs

    def sampler(self) -> Any:
        n = len(all_patterns(self.modalities))
        p_full = self.cfg.p_full if self.cfg.p_full >= 0 else 1.0 / (n + 1)
        return RandomPattern(p_full=p_full)

    def stages(self, data: MMDataset) -> list[Stage]:
        cfg, sampler = self.cfg, self.sampler()
        patterns = all_patterns(self.modalities)

        def loss(batch: MMBatch, rng: np.random.Generator) -> tuple[Tensor, dict[str, float]]:
            if cfg.train_on == "full":
                gen: Any = Full()
            elif cfg.missing == "row":
                gen = sampler
            else:  # C1 alternative: one condition for the whole batch
                k = len(patterns) if rng.random() < sampler.p_full else int(rng.integers(0, len(patterns)))
                gen = Full() if k == len(patterns) else RandomPattern(p_full=0.0, patterns=[patterns[k]])
            return self.training_loss(random_mask_batch(batch, gen, self.fill, rng))

        validate = Validation(logits=self.predict_logits, patterns=cfg.validate_on)
        main = Stage("cmarr", [self], loss, validate, config=cfg.train)  # the probes get no gradient here
        return [main] + ([self._probe_stage(m) for m in self.modalities] if self.completes() else [])

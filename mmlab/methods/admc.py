"""ADMC: Attention-based Diffusion Model for Missing-modality feature Completion.

Paper: W. Zhang, J. Chen et al., "ADMC: Attention-based Diffusion Model for Missing Modalities
Feature Completion", 2025 (README.md, "Papers"); §, Eq., Table and Fig. numbers below are the
paper's. The boxes of the paper's Figure 2, in the order they are trained (one `Stage` each):

(a) **ITFN**  ``itfn_<m>``: one encoder per modality (LSTM for frame sequences, max-pooled in the
    paper and mean-pooled with a frames'-mean skip by the CPU default, A1;
    TextCNN for text "T", an MLP for vector modalities) plus a 2-layer FC head, trained *alone*
    on single-modality classification with early stopping, then frozen (§3.1).
(b) **ADN**   ``adn``: a DDPM over the stacked, standardised features F⁰ (B, M, D); ε_θ is a
    self-attention network over the M modality tokens, trained by ε-MSE on full-modality train
    features (Eq. 1-2).
(c) **MF**    ``mf_full``, ``mf_<pattern>`` ..., ``mf_mmer``: self-attention fusion classifiers
    (Eq. 6), one per missing scenario, each trained on ADN-completed train features of that
    scenario; ``mf_mmer`` on cat(F, F') (Eq. 5).

Inference. **MMCR** (some modality missing): missing tokens start as Gaussian noise, the ADN
runs the reverse process from step n (Eq. 3) and after every step puts back the available
tokens forward-noised to the current step (Eq. 4), then the sample goes to its scenario's MF.
**MMER** (full input): each F'_j is generated from the other modalities, concatenated to F_j
(Eq. 5) and classified by ``mf_mmer``. A sample with no modality at all gets the train prior.

Choices where the paper is silent or contradicts itself, A1-A18 and A11b (other files cite them as
"choice A8 in mmlab/methods/admc.py"); [rec] = our default where the paper states nothing:

- A1/A2 encoders: TextCNN kernels 3/4/5 + Linear to D; 1-layer uni-LSTM ([rec], `mmlab.nn.encoders`).
  CPU default D = 64 (paper preset 256). The paper's LSTM max-pools over frames (the ``paper``
  preset); the CPU default mean-pools (``itfn.encoder.pool``): chosen on the VALID split of
  ``synthetic``, five seeds, MF six-pattern UA 65.07 -> 65.36 (issue #18, `docs/gap_to_oracle.md` §6).
  The CPU default also adds a linear map of the raw frames' mean to each embedding
  (``itfn.encoder.mean_skip``, `mmlab.nn.encoders.MeanSkip`; the paper has no such skip): chosen
  on the VALID split of ``synthetic``, five seeds, mean of the six MF stages' valid accuracy
  66.52 -> 66.80 (``mf_full`` 79.48 -> 81.24; `docs/gap_to_oracle.md` §10).
- A3 "hidden 1024" = the feed-forward size, d_model = token size ([rec]; ``adn.d_model`` /
  ``mf.d_model`` give the alternative).
- A4 ε_θ conditioning: sinusoidal step embedding -> MLP added to every token, plus a learned
  modality embedding ([rec], `mmlab.nn.attention`).
- A5 linear β schedule 3e-4..0.06, N = 1000, σ_n² = β_n ([rec]; ``diffusion.*``).
- A6 partial chain of ``diffusion.start_step`` = 50 steps; missing tokens start as N(0, I),
  the available ones as q(F^n | F_o) ([rec]; ``diffusion.init="noised"`` starts the missing
  tokens from q(F^n | 0), i.e. from the train mean). CPU default: the DDPM chain n -> 0 is
  respaced to ``sample_steps`` = 10 transitions (iDDPM respacing of Eq. 3; paper preset: every
  step) and K = ``n_completions`` = 16 completions are averaged. Measured on the VALID split of
  ``synthetic``: K = 1 -> 16 raised the six-pattern average by ~1.5-2 points (a completion
  started from pure noise at n = 50 is mostly that noise, see `mmlab.nn.diffusion`), while
  DDPM-50 vs respaced-10 vs DDIM-10 and ADN trained on n <= 200 only changed it by < 0.5.
- A7 MF sees the ground-truth available tokens (Eq. 4 makes F⁰ = F_o there exactly).
- A8 per-dimension z-scoring of the ITFN features with train statistics before ADN and MF
  ([rec]; ``standardize``). The ITFN heads (Table 4) get de-standardised features.
- A9 optimisation per stage in ``*.train`` (Adam; paper preset: lr 1e-4, MMIN LambdaLR).
  Every stage selects its best epoch on the VALID split (UA for ITFN, accuracy for MF, ε-MAE
  on fixed (n, ε) draws for ADN; ε-MSE is logged beside it as ``loss``).
- A10 splits: whatever the dataset defines; the Trainer never reads test.
- A11 one MF *per missing scenario* (paper intro), trained on ADN-completed train features of
  that scenario (``mf.train_completions`` completions per sample, cached once per stage).
  Each starts from ``mf_full``'s weights (``mf.init_from_full``, ours). ``mf.scenarios="full"``
  is the Sec. 3 reading (one MF on real full features, completed inputs at test). With many
  modalities (more than ``mf.max_patterns`` patterns, e.g. 62 for six Handwritten views),
  ``"auto"`` falls back to ONE shared MF trained on ADN completions under a uniform random
  pattern sampler (``mf.shared_draws`` draws per train sample), with a learned embedding on
  the generated tokens.
- A11b (ours, CPU default) every MF adds a linear map of its input tokens to the pooled vector
  before its FC head (``mf.token_skip``, `mmlab.nn.attention.ModalityTokenTransformer`; Eq. 6
  has no such path): the final LayerNorm of the attention stack gives every token one norm, and
  the skip keeps how strongly each modality's feature speaks, as the encoders' frames'-mean skip
  (A1) does for frames. Chosen on the VALID split of ``synthetic``, ``admc_wo_adn``, five seeds:
  mean of the six MF stages' valid accuracy 66.77 -> 67.21, ``mf_full`` 81.60 -> 82.40; the
  re-run of ``admc`` with it: 66.69 -> 67.49 (`docs/gap_to_oracle.md` §11).
- A12 "w/o ITFN" (``itfn.training="joint"``): encoders trained jointly with a full-modality
  fusion classifier (end-to-end CE), frozen, then ADN and MF as usual.
- A13 MMER: F'_j from all the other modalities for every j; ``mf_mmer`` has 2D tokens.
- A14 Table 4: the generated feature alone through the frozen unimodal ITFN head.
- A15 WA = accuracy, UA = macro recall (`mmlab.metrics`).
- A16/A17 protocols live in `mmlab.evaluate`; Use_ITFN = Zero_Padding (``admc_use_itfn``).
- A18 seeds: everything derives from the run seed (``method.seed``, set by the Trainer):
  completions use explicit generators seeded by the run seed and the batch's sample ids, so the
  same batch gets the same completions and two seeds give different ones; the completions the
  MF stages train on come from the Trainer's feature generator (run seed, stage).
- "w/o ADN" fills missing tokens with 0 in the standardised space (the train mean) and trains
  the per-scenario MFs on those inputs. ``n_completions`` K > 1 averages the MF's class
  probabilities over K independent completions.

Ours, registered as ``admc_cond`` beside the faithful ``admc``: a *conditional* ADN
(``adn.training="conditional"``: each training row draws an availability pattern, uniform over
the non-empty proper subsets and with ``adn.p_joint`` = 0.2 none; available tokens stay clean at
step 0, each token carries its own step embedding, the loss is on the missing tokens only), with
v-prediction (``diffusion.prediction="v"``, so the output carries x_t's scale and chains from
n = N stay bounded) sampled from n = N by DDPM respaced to 50 steps with the available tokens fed
clean at every call (no replacement, no resampling); K is chosen among ``k_grid`` = (1, 4, 8, 16)
on the valid split after training (`test_options`). Why: with Eq. 4's replacement from pure noise at
n = 50 the generated features keep mostly noise (docs/admc_results.md). The sampler was chosen
on the VALID split of ``synthetic`` (seed 1111, one generated sample per row, variance ratio
generated / exact conditional): DDPM-50 0.49/0.47/0.48 accuracy (exact 0.49/0.42/0.45) with
variance ratios 1.16/1.21/1.02 for VT->A, AT->V, AV->T; DDPM-10 ratios 0.85/0.87/0.74; DDIM-10
with eta 0 or 1 under-disperses (0.44-0.68). The grid first stopped at K = 4 (K = 16 gained 0.2
points of valid accuracy at four times the cost); it now goes to 16, the K of ``admc`` itself,
because with K = 4 ``admc_cond`` stayed 0.3 points under ``admc``'s six-pattern average (5 seeds)
and the valid split prefers K = 8-16 on most seeds (docs/results/admc_cond/README.md).

Registered names: ``admc`` (MMCR + MMER), ``admc_wo_itfn``, ``admc_wo_adn``, ``admc_joint``
(Table 5 Jointly_training: encoders not frozen, trained with the fusion on full input),
``admc_use_itfn`` (Table 5: frozen ITFN + MF on full input). The three Table-5 / ablation
rows without ADN zero-fill missing tokens at test; Jointly_training feeds the MF raw encoder
outputs (no A8 statistics while the encoders still move). The ablations run MMCR only
(``mmer=false``): full input goes to ``mf_full``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.losses import masked_mse
from mmlab.methods.base import FeatureBatch, Method, Stage, TrainConfig, Validation
from mmlab.missing import pattern_name
from mmlab.nn.attention import AttentionDenoiser, DenoiserConfig, FusionConfig, ModalityTokenTransformer
from mmlab.nn.diffusion import DiffusionConfig, GaussianDiffusion
from mmlab.nn.encoders import EncoderConfig, MLPHead, make_encoder
from mmlab.utils import resolve_device, torch_generator


# ============================================================================ configs
@dataclass
class ITFNConfig:
    """Stage (a): per-modality encoders + 2-layer FC heads (ADMC §3.1, §4.1-4.2; A1, A2)."""

    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(
        d_out=64, hidden=128, filters=64, pool="mean", mean_skip=True))
    head_hidden: int = 128
    head_dropout: float = 0.3
    # independent = ITFN (paper); joint = "w/o ITFN" (A12); end_to_end = Table 5 Jointly_training
    training: Literal["independent", "joint", "end_to_end"] = "independent"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=40, batch_size=64, lr=1e-3, patience=8, select_metric="macro_recall"))


@dataclass
class ADNConfig(DenoiserConfig):
    """Stage (b): ε_θ sizes (`DenoiserConfig`) and its training (ε-MSE, Eq. 1-2)."""

    train_max_step: int | None = None  # draw n ~ U{1..train_max_step} (None: N, the paper)
    # joint: ε_θ over the noised full-modality tokens (the paper, Eq. 2); conditional: each row draws
    # an availability pattern (uniform over the non-empty proper subsets, with p_joint none), the
    # available tokens stay clean at step 0, the others are noised, the loss is on the missing ones
    training: Literal["joint", "conditional"] = "joint"
    p_joint: float = 0.2
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=150, batch_size=256, lr=1e-3, patience=30, select_metric="mae"))


@dataclass
class MFConfig(FusionConfig):
    """Stage (c): MF sizes (`FusionConfig`), one MF per missing scenario (A11), and training."""

    scenarios: Literal["auto", "per_pattern", "shared", "full"] = "auto"
    max_patterns: int = 14  # "auto": per pattern up to this many patterns, else shared
    init_from_full: bool = True  # start each scenario's MF from mf_full's weights
    train_completions: int = 4  # cached ADN completions per train sample and scenario
    shared_draws: int = 8  # random patterns per train sample for the shared MF
    token_skip: bool = True  # A11b: the head also reads Linear(the input tokens); the paper preset turns it off
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=40, batch_size=64, lr=1e-3, patience=8, select_metric="accuracy"))

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("max_patterns", "train_completions", "shared_draws"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"MFConfig.{name}: expected a positive integer, got {v!r}")


@dataclass
class ADMCConfig:
    itfn: ITFNConfig = field(default_factory=ITFNConfig)
    adn: ADNConfig = field(default_factory=ADNConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    mf: MFConfig = field(default_factory=MFConfig)
    completion: Literal["adn", "zero"] = "adn"  # zero = "w/o ADN"
    mmer: bool = True  # full input: MMER (Eq. 5) instead of mf_full
    standardize: bool = True  # A8
    n_completions: int = 16  # K completions averaged at inference (paper preset: 1)
    k_grid: tuple[int, ...] = ()  # when given, K is chosen among these on the valid split after training
    sample_steps: int | None = 10  # DDPM transitions from n to 0 (None: every step, the paper; k: respaced)
    eval_batch_size: int = 1024  # chunk size for completions
    table4_steps: tuple[int, ...] = (30, 50, 80)  # start steps n the generation protocol sweeps (Table 4)
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("n_completions", "eval_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"ADMCConfig.{name}: expected a positive integer, got {v!r}")
        if self.mmer and self.completion != "adn":
            raise ConfigError("ADMCConfig.mmer: MMER generates features with the ADN; expected completion='adn' "
                              f"when mmer=true, got completion={self.completion!r}")
        if self.itfn.training == "end_to_end" and (self.completion != "zero" or self.mf.scenarios != "full"):
            raise ConfigError("ADMCConfig.itfn.training='end_to_end' (Jointly_training) trains encoders and mf_full "
                              "together: expected completion='zero', mf.scenarios='full' and mmer=false")
        if self.sample_steps is not None and (isinstance(self.sample_steps, bool) or self.sample_steps < 1):
            raise ConfigError(f"ADMCConfig.sample_steps: expected None or a positive integer, got {self.sample_steps!r}")
        if self.adn.training not in ("joint", "conditional"):
            raise ConfigError(f"ADNConfig.training: expected 'joint' or 'conditional', got {self.adn.training!r}")
        if not 0.0 <= self.adn.p_joint < 1.0:
            raise ConfigError(f"ADNConfig.p_joint: expected a number in [0, 1), got {self.adn.p_joint!r}")
        t = self.adn.train_max_step
        if t is not None and not (isinstance(t, int) and 1 <= t <= self.diffusion.n_steps):
            raise ConfigError(f"ADNConfig.train_max_step: expected None or an integer in [1, {self.diffusion.n_steps}], "
                              f"got {t!r}")


# ============================================================================ helpers
class Standardizer(nn.Module):
    """Per-(modality, dimension) z-scoring with train statistics (A8); identity until fitted."""

    def __init__(self, n_tokens: int, d: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_tokens, d))
        self.register_buffer("std", torch.ones(n_tokens, d))

    def fit(self, raw: Tensor, present: Tensor | None = None) -> None:
        """Statistics of ``raw`` (N, M, D) over the rows that have each modality (``present`` (N, M))."""
        if present is None or bool(present.all()):
            self.mean.copy_(raw.mean(0))
            self.std.copy_(raw.std(0).clamp_min(1e-3))
            return
        for j in range(raw.shape[1]):
            rows = raw[present[:, j], j]
            if len(rows) > 1:
                self.mean[j].copy_(rows.mean(0))
                self.std[j].copy_(rows.std(0).clamp_min(1e-3))

    def forward(self, raw: Tensor) -> Tensor:
        return (raw - self.mean) / self.std

    def inverse(self, z: Tensor) -> Tensor:
        return z * self.std + self.mean


def pattern_key(available: Sequence[str]) -> str:
    """A module name for a pattern (`mmlab.missing.pattern_name` without braces; "." and "," are
    not allowed in module names): ("A", "V") -> "AV", ("fou", "mor") -> "fou-mor"."""
    return pattern_name(available)[1:-1].replace(",", "-")


# ============================================================================ the method
class ADMC(Method):
    """ADMC (see the module docstring): ITFN -> ADN -> per-scenario MF; MMCR / MMER inference."""

    name = "admc"
    fill = "noise"
    Config = ADMCConfig
    PRESETS = {
        "paper": {
            # §4.2: encoders hidden 256; ITFN head hidden 128; Adam lr 1e-4 with LambdaLR (A9 [rec])
            "itfn.encoder.d_out": 256, "itfn.encoder.hidden": 256, "itfn.encoder.filters": 128,
            "itfn.encoder.pool": "max", "itfn.encoder.mean_skip": False,
            "itfn.train.lr": 1e-4, "itfn.train.batch_size": 128, "itfn.train.epochs": 40,
            "itfn.train.lr_schedule": "mmin_linear", "itfn.train.patience": 10,
            # ADN: 4 layers, 8 heads, hidden 1024 (A3: FFN); 300-500 epochs (A9 [rec]: §4.2 gives none)
            "adn.layers": 4, "adn.heads": 8, "adn.d_ff": 1024, "adn.dropout": 0.1,
            "adn.train.lr": 1e-4, "adn.train.batch_size": 128, "adn.train.epochs": 400, "adn.train.patience": 50,
            # MF: 2 layers, 4 heads, hidden 1024, dropout 0.3, classifier hidden 128
            "mf.layers": 2, "mf.heads": 4, "mf.d_ff": 1024, "mf.dropout": 0.3, "mf.head_hidden": 128,
            "mf.train.lr": 1e-4, "mf.train.batch_size": 128, "mf.train.epochs": 40,
            "mf.train.lr_schedule": "mmin_linear", "mf.train.patience": 10, "mf.token_skip": False,
            # N = 1000, β 3e-4..0.06, start step n = 50 (§4.2, §5.6)
            "diffusion.n_steps": 1000, "diffusion.beta_start": 3e-4, "diffusion.beta_end": 0.06,
            "diffusion.start_step": 50, "diffusion.sampler": "ddpm", "diffusion.init": "noise",
            "diffusion.resample": 1, "sample_steps": None, "n_completions": 1,
            "device": "auto",
        }
    }

    def __init__(self, cfg: ADMCConfig, data: MMDataset):
        super().__init__()
        self.cfg = cfg
        self.fill = "noise" if cfg.completion == "adn" else "zero"
        self.modalities = tuple(data.modalities)
        self.n_classes = data.n_classes
        if self.n_classes < 2:
            raise DataError(f"ADMC: dataset {data.name!r} has {self.n_classes} class(es); expected at least 2")
        M, D, C = len(self.modalities), cfg.itfn.encoder.d_out, self.n_classes
        self.d = D
        # (a) ITFN: Enc_m + 2-layer FC head per modality
        self.encoders = nn.ModuleDict({
            m: make_encoder(cfg.itfn.encoder, data.dims[m], data.max_len[m], m) for m in self.modalities})
        self.itfn_heads = nn.ModuleDict({
            m: MLPHead(D, C, cfg.itfn.head_hidden, cfg.itfn.head_dropout) for m in self.modalities})
        if cfg.itfn.training == "joint":  # A12: the fusion classifier the encoders are trained with
            self.joint_fusion = ModalityTokenTransformer(M, D, C, cfg.mf)
        self.standardizer = Standardizer(M, D)
        # (b) ADN
        self.diffusion = GaussianDiffusion(cfg.diffusion)
        self.denoiser = AttentionDenoiser(M, D, cfg.adn) if self._uses_adn else None
        # (c) MF: one per scenario
        self.patterns = [c for k in range(1, M) for c in itertools.combinations(self.modalities, k)]
        self._pattern_of = {pattern_key(p): p for p in self.patterns}
        mode = cfg.mf.scenarios
        if mode == "auto":
            mode = "per_pattern" if len(self.patterns) <= cfg.mf.max_patterns else "shared"
        self.scenario_mode = mode
        mfs = {"full": ModalityTokenTransformer(M, D, C, cfg.mf)}
        if mode == "per_pattern":
            mfs.update({pattern_key(p): ModalityTokenTransformer(M, D, C, cfg.mf) for p in self.patterns})
        elif mode == "shared" and self.patterns:
            mfs["shared"] = ModalityTokenTransformer(M, D, C, cfg.mf, avail_embedding=True)
        if cfg.mmer:
            mfs["mmer"] = ModalityTokenTransformer(M, 2 * D, C, cfg.mf)
        self.mfs = nn.ModuleDict(mfs)
        counts = np.bincount(data.y[data.split == "train"], minlength=C) + 1.0
        self.register_buffer("log_prior", torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32))
        self.to(resolve_device(cfg.device))

    @property
    def _uses_adn(self) -> bool:
        return self.cfg.completion == "adn" or self.cfg.mmer

    @property
    def _device(self) -> torch.device:
        return self.log_prior.device

    # ------------------------------------------------------------------ features
    def raw_features(self, batch: MMBatch) -> Tensor:
        """(B, M, D) encoder outputs F_m (unavailable modalities: zero vectors)."""
        return torch.stack([self.encoders[m](batch.feats[m], batch.obs_mask[m]) for m in self.modalities], 1)

    def encode(self, batch: MMBatch) -> Tensor:
        """(B, M, D) standardised ITFN features (A8); unavailable modalities' tokens are 0 (the train mean)."""
        z = self.standardizer(self.raw_features(batch))
        return z * batch.avail[..., None].to(z.dtype)

    def complete(self, features: Tensor, known_mask: Tensor, start_step: int | None = None,
                 sampler: str | None = None, num_steps: int | None = None, generator: torch.Generator | None = None,
                 return_trajectory: bool = False):
        """MMCR completion (Eq. 3-4): ADN reverse process from ``start_step`` on standardised
        features (B, M, D); ``known_mask`` (B, M) True = available, kept exactly. Unknown tokens are
        never read. ``sampler`` / ``num_steps`` default to ``diffusion.sampler`` and, for DDPM,
        ``sample_steps`` (DDIM: ``diffusion.ddim_steps``). Returns (B, M, D), or (x0, trajectory)
        with ``return_trajectory``."""
        if self.denoiser is None:
            raise ConfigError(f"{self.name}: complete() needs the ADN; this variant has completion="
                              f"{self.cfg.completion!r} and mmer={self.cfg.mmer}")
        if features.dim() != 3 or features.shape[1:] != (len(self.modalities), self.d):
            raise DataError(f"complete: features expected (B, M={len(self.modalities)}, D={self.d}), "
                            f"got {tuple(features.shape)}")
        known = known_mask.to(device=features.device, dtype=torch.bool)
        if known.dim() == 2:
            known = known[..., None]
        x_obs = features * known.to(features.dtype)  # missing tokens: 0 (only read by init="noised")
        if num_steps is None and (sampler or self.cfg.diffusion.sampler) == "ddpm":
            num_steps = self.cfg.sample_steps
        conditioning = "clean" if self.cfg.adn.training == "conditional" else "replace"
        return self.diffusion.sample(self.denoiser, x_obs, known, start_step=start_step, sampler=sampler,
                                     num_steps=num_steps, generator=generator, return_trajectory=return_trajectory,
                                     conditioning=conditioning)

    def _complete_chunked(self, x: Tensor, known: Tensor, gen: torch.Generator, **kw) -> Tensor:
        bs = self.cfg.eval_batch_size
        return torch.cat([self.complete(x[i:i + bs], known[i:i + bs], generator=gen, **kw)
                          for i in range(0, len(x), bs)]) if len(x) else x.clone()

    def _generator(self, *parts: object) -> torch.Generator:
        """A generator from the run seed and ``parts`` (`mmlab.utils.torch_generator`)."""
        return torch_generator(self.seed, *map(str, parts), device=self._device)

    # ------------------------------------------------------------------ scenarios
    def _mf_key(self, avail_row: Sequence[bool]) -> str:
        """Which MF classifies a sample with this availability row."""
        if all(avail_row):
            return "mmer" if self.cfg.mmer else "full"
        if self.scenario_mode == "per_pattern":
            return pattern_key([m for m, a in zip(self.modalities, avail_row) if a])
        return "shared" if self.scenario_mode == "shared" else "full"

    def _tokens(self, key: str, feats: Tensor, avail: Tensor, draws: int, gen: torch.Generator) -> Tensor:
        """(K, B, M, d) MF inputs: MMER cat(F, F') (Eq. 5), or F with missing tokens completed
        by the ADN (MMCR) or zero-filled (w/o ADN); K = ``draws`` independent completions."""
        if key == "mmer":  # Eq. 5: F'_j generated from all the other modalities, for every j
            B, M = feats.shape[:2]
            eye = torch.eye(M, dtype=torch.bool, device=feats.device)
            known = (~eye).repeat_interleave(B, 0)  # (M*B, M): row j*B+b knows all but j
            out = []
            for _ in range(draws):
                gen_all = self._complete_chunked(feats.repeat(M, 1, 1), known, gen).view(M, B, M, -1)
                f_prime = gen_all[torch.arange(M), :, torch.arange(M)].transpose(0, 1)  # (B, M, D)
                out.append(torch.cat([feats, f_prime], -1))
            return torch.stack(out)
        known = avail.bool()
        if bool(known.all()) or self.cfg.completion == "zero":
            return (feats * known[..., None].to(feats.dtype))[None]
        return torch.stack([self._complete_chunked(feats, known, gen) for _ in range(draws)])

    def _logits(self, key: str, tokens: Tensor, avail: Tensor) -> Tensor:
        """log of the MF's class probabilities averaged over the K completions."""
        mf = self.mfs[key]
        logp = torch.stack([F.log_softmax(mf(t, avail), -1) for t in tokens])
        return torch.logsumexp(logp, 0) - np.log(len(tokens))

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict_logits(self, batch: MMBatch) -> Tensor:
        """(B, C): MMCR for samples with missing modalities, MMER (or mf_full) for full ones."""
        device, batch = batch.device, batch.to(self._device)
        feats = self.encode(batch)
        avail = batch.avail.to(feats.device)
        out = self.log_prior.expand(batch.size, -1).clone()
        gen = self._generator("predict", *batch.ids)
        rows, inverse = torch.unique(avail.long(), dim=0, return_inverse=True)
        for r, row in enumerate(rows.tolist()):
            if not any(row):
                continue  # nothing observed: the train class prior
            idx = (inverse == r).nonzero().squeeze(1)
            key = self._mf_key(row)
            tokens = self._tokens(key, feats[idx], avail[idx], self.k, gen)
            out[idx] = self._logits(key, tokens, avail[idx])
        return out.to(device)

    def _scenario_tokens(self, key: str, feats: Tensor, split: str, gen: torch.Generator,
                         present: Tensor | None = None) -> dict[str, Tensor]:
        """MF inputs of one scenario for a batch of standardised features: ``tokens`` (B, K, M, d)
        and ``avail`` (B, K, M); K = ``mf.train_completions`` on train, ``n_completions`` else. A
        modality a row lacks natively (``present`` (B, M) False) is completed like a missing one."""
        N, M = len(feats), len(self.modalities)
        present = torch.ones(N, M, dtype=torch.bool, device=feats.device) if present is None else present
        draws = self.cfg.mf.train_completions if split == "train" else self.cfg.n_completions
        if key == "shared":  # uniform random missing pattern per sample and draw
            rows = torch.tensor([[m in p for m in self.modalities] for p in self.patterns], device=feats.device)
            n_draw = self.cfg.mf.shared_draws if split == "train" else 1
            avail = rows[torch.randint(len(rows), (n_draw, N), generator=gen, device=feats.device)]  # (R, N, M)
            tok = torch.cat([self._tokens(key, feats, avail[r] & present, 1 if split == "train" else draws, gen)
                             for r in range(n_draw)])
            avail = avail if split == "train" else avail.expand(len(tok), -1, -1)
        elif key in ("full", "mmer"):
            tok = self._tokens(key, feats, present, draws, gen)
            avail = torch.ones(len(tok), N, M, dtype=torch.bool, device=feats.device)
        else:
            names = self._pattern_of[key]
            row = torch.tensor([m in names for m in self.modalities], device=feats.device)
            tok = self._tokens(key, feats, row.expand(N, M) & present, draws, gen)
            avail = row.expand(len(tok), N, M)
        return {"tokens": tok.transpose(0, 1), "avail": avail.transpose(0, 1)}

    # ------------------------------------------------------------------ stages
    def stages(self, data: MMDataset) -> list[Stage]:
        """ITFN per modality (or joint) -> ADN -> mf_full -> one MF per scenario -> mf_mmer."""
        if tuple(data.modalities) != self.modalities:
            raise DataError(f"ADMC.stages: data has modalities {data.modalities}, the method was built for "
                            f"{self.modalities}")
        cfg, out = self.cfg, []
        train = data.subset("train")
        if cfg.itfn.training == "independent":
            out += [self._itfn_stage(m, train if m == self.modalities[-1] else None) for m in self.modalities]
        elif cfg.itfn.training == "joint":
            out.append(self._joint_stage(train))
        else:
            return [self._end_to_end_stage()]
        if self.denoiser is not None:
            out.append(self._adn_stage())
        out.append(self._mf_stage("full", on_end=self._init_scenarios))
        out += [self._mf_stage(k) for k in self.mfs if k not in ("full", "mmer")]
        if "mmer" in self.mfs:
            out.append(self._mf_stage("mmer"))
        return out

    def _standardizer_fit(self, train: MMDataset):
        """After the encoders are frozen: the train statistics of A8."""
        def fit() -> None:
            if self.cfg.standardize:
                with torch.no_grad():
                    batches = list(train.iter_batches(self.cfg.eval_batch_size, device=self._device))
                    raw = torch.cat([self.raw_features(b) for b in batches])
                self.standardizer.fit(raw, torch.cat([b.present() for b in batches]))
        return fit

    # (a) ITFN: Enc_m + FC head on single-modality classification, then frozen (§3.1)
    def _itfn_stage(self, m: str, train: MMDataset | None) -> Stage:
        enc, head = self.encoders[m], self.itfn_heads[m]

        def loss(batch: MMBatch, rng: np.random.Generator):
            has = batch.present()[:, self.modalities.index(m)]  # rows lacking m natively teach nothing
            if not bool(has.all()):
                batch = batch.index(has.nonzero().squeeze(1))
            logits = head(enc(batch.feats[m], batch.obs_mask[m]))
            return (F.cross_entropy(logits, batch.y) if len(batch) else logits.sum() * 0.0), {}

        return Stage(f"itfn_{m}", [enc, head], loss, Validation(logits=lambda b: head(enc(b.feats[m], b.obs_mask[m]))),
                     config=self.cfg.itfn.train, on_end=self._standardizer_fit(train) if train is not None else None)

    # A12 "w/o ITFN": encoders trained jointly with a full-modality fusion classifier, then frozen
    def _joint_stage(self, train: MMDataset) -> Stage:
        def loss(batch: MMBatch, rng: np.random.Generator):
            return F.cross_entropy(self.joint_fusion(self.raw_features(batch)), batch.y), {}

        return Stage("itfn_joint", [self.encoders, self.joint_fusion], loss,
                     Validation(logits=lambda b: self.joint_fusion(self.raw_features(b))),
                     config=self.cfg.itfn.train, on_end=self._standardizer_fit(train))

    # Table 5 Jointly_training: encoders + mf_full end to end on full input, nothing frozen
    def _end_to_end_stage(self) -> Stage:
        mf = self.mfs["full"]

        def loss(batch: MMBatch, rng: np.random.Generator):
            return F.cross_entropy(mf(self.encode(batch)), batch.y), {}

        return Stage("joint", [self.encoders, mf], loss, Validation(logits=lambda b: mf(self.encode(b))),
                     config=self.cfg.itfn.train)

    # (b) ADN: L = E ||ε − ε_θ(F^n, n)||², n ~ U{1..N}, on full-modality train features (Eq. 1-2)
    def _adn_stage(self) -> Stage:
        t_max = self.cfg.adn.train_max_step or self.diffusion.n_steps
        low_steps = self.diffusion.config.start_step  # the steps MMCR actually visits

        def features(batch: MMBatch, split: str, gen: torch.Generator) -> dict[str, Tensor]:
            x0, present = self.encode(batch), batch.present()  # natively missing tokens are no target
            if split == "train":
                return {"F": x0, "present": present}
            # valid: one fixed (n, ε) per sample (and pattern, conditional ADN), so epochs are compared
            # on the same draws
            n = torch.randint(1, t_max + 1, (len(x0),), generator=gen, device=x0.device)
            eps = torch.randn(x0.shape, generator=gen, device=x0.device)
            x_n, target = self.diffusion.q_sample(x0, n, eps), self.diffusion.target(x0, n, eps)
            if self.cfg.adn.training == "joint":
                return {"x_n": x_n, "n": n[:, None].expand(x0.shape[:2]), "target": target, "missing": present}
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=x0.device))
            known = self._training_patterns(len(x0), np.random.default_rng(seed), x0.device) & present
            return {"x_n": torch.where(known[..., None], x0, x_n), "n": torch.where(known, 0, n[:, None]),
                    "target": target, "missing": ~known & present}

        def loss(fb: FeatureBatch, rng: np.random.Generator):
            x0 = fb["F"]
            n = torch.randint(1, t_max + 1, (len(x0),), device=x0.device)
            eps = torch.randn_like(x0)
            x_n = self.diffusion.q_sample(x0, n, eps)  # Eq. 1
            target = self.diffusion.target(x0, n, eps)  # Eq. 2: ε (or v / x0 under diffusion.prediction)
            present = fb["present"]
            if self.cfg.adn.training == "joint":
                return masked_mse(self.denoiser(x_n, n), target, present[..., None]), {}
            known = self._training_patterns(len(x0), rng, x0.device) & present  # (B, M): clean, step 0
            x_in = torch.where(known[..., None], x0, x_n)
            missing = (~known & present)[..., None].to(x0.dtype)
            err = (self.denoiser(x_in, torch.where(known, 0, n[:, None])) - target) ** 2 * missing
            return err.sum() / (missing.sum() * x0.shape[-1]).clamp_min(1.0), {}

        def errors(fb: FeatureBatch) -> dict[str, Tensor]:
            n = fb["n"] if self.cfg.adn.training == "conditional" else fb["n"][:, 0]
            diff = (self.denoiser(fb["x_n"], n) - fb["target"])[fb["missing"]]  # (tokens scored, D)
            steps = fb["n"][fb["missing"]]
            return {"loss": diff**2, "mae": diff.abs(), "loss_low": (diff**2)[steps <= low_steps]}

        return Stage("adn", [self.denoiser], loss, Validation(kind="errors", errors=errors), config=self.cfg.adn.train,
                     features=features)

    # (c) MF per scenario on ADN-completed (or zero-filled) train features; Eq. 6
    def _mf_stage(self, key: str, on_end=None) -> Stage:
        mf = self.mfs[key]

        def features(batch: MMBatch, split: str, gen: torch.Generator) -> dict[str, Tensor]:
            return self._scenario_tokens(key, self.encode(batch), split, gen, batch.present())

        def loss(fb: FeatureBatch, rng: np.random.Generator):
            k = torch.as_tensor(rng.integers(0, fb["tokens"].shape[1], size=fb.size), device=fb.y.device)
            rows = torch.arange(fb.size, device=fb.y.device)
            return F.cross_entropy(mf(fb["tokens"][rows, k], fb["avail"][rows, k]), fb.y), {}

        def logits(fb: FeatureBatch) -> Tensor:
            return self._logits(key, fb["tokens"].transpose(0, 1), fb["avail"][:, 0])

        return Stage(f"mf_{key}", [mf], loss, Validation(kind="features", logits=logits), config=self.cfg.mf.train,
                     on_end=on_end, features=features)

    def _training_patterns(self, n_rows: int, rng: np.random.Generator, device: torch.device) -> Tensor:
        """(B, M) availability of the conditional ADN's training rows: with prob ``p_joint`` none
        (the joint model in the same network), else uniform over the non-empty proper subsets."""
        rows = np.array([[m in p for m in self.modalities] for p in self.patterns], dtype=bool)
        pick = rows[rng.integers(0, len(rows), n_rows)]
        pick[rng.random(n_rows) < self.cfg.adn.p_joint] = False
        return torch.as_tensor(pick, device=device)

    def _init_scenarios(self) -> None:
        """mf.init_from_full: every scenario's MF starts from mf_full's weights (ours, A11)."""
        if not self.cfg.mf.init_from_full:
            return
        state = self.mfs["full"].state_dict()
        for k, mf in self.mfs.items():
            if k not in ("full", "mmer"):
                mf.load_state_dict(state, strict=False)

    # ------------------------------------------------------------------ test-time K, chosen on valid
    @property
    def k(self) -> int:
        """K completions averaged at inference: ``n_completions``, or the one chosen on valid."""
        return getattr(self, "_k_chosen", None) or self.cfg.n_completions

    def test_options(self) -> dict[str, list[Any]]:
        """``k_grid``: K among these values, chosen on the valid split after training (the
        Trainer scores each through `mmlab.evaluate`)."""
        return {"n_completions": sorted(self.cfg.k_grid)} if self.cfg.k_grid and self.denoiser is not None else {}

    def set_test_options(self, n_completions: int) -> None:
        self._k_chosen = int(n_completions)

    # ------------------------------------------------------------------ completion interface (Table 4)
    # the variants of one seed share the independent ITFN encoders and heads, so the exact
    # conditional's rows (`mmlab.evaluate.exact_name`) are one reference for all of them
    exact_reference = "exact_conditional"

    def completes(self) -> bool:
        """Generated features are measured (Table 4, A14) for variants with an ADN and the unimodal
        ITFN heads (``itfn.training="independent"``)."""
        return self.denoiser is not None and self.cfg.itfn.training == "independent"

    def generation_options(self) -> dict[str, list[Any]]:
        """Table 4 sweeps the start step n of the reverse process."""
        return {"start_step": [int(n) for n in self.cfg.table4_steps]}

    def real_features(self, batch: MMBatch, target: str) -> Tensor:
        """(B, D) the ITFN feature F_target of the batch (raw, not standardised)."""
        return self.raw_features(batch)[:, self.modalities.index(target)]

    @torch.no_grad()
    def generate(self, batch: MMBatch, target: str, generator: torch.Generator, start_step: int | None = None,
                 **options: Any) -> Tensor:
        """(B, D) F'_target generated by MMCR (Eq. 3-4) from the available modalities, de-standardised
        into the ITFN feature space so the frozen unimodal head can read it (A14)."""
        if not self.completes():
            raise ConfigError(f"{self.name}: generation needs the ADN and independent ITFN heads")
        batch = batch.to(self._device)
        known = batch.avail.clone()
        known[:, self.modalities.index(target)] = False
        z = self.complete(self.encode(batch), known, start_step=start_step, generator=generator, **options)
        return self.standardizer.inverse(z)[:, self.modalities.index(target)]

    def feature_logits(self, target: str, feats: Tensor) -> Tensor:
        """(B, C) the frozen unimodal ITFN head of ``target`` on (generated or real) features."""
        return self.itfn_heads[target](feats.to(self._device))


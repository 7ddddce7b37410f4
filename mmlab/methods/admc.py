"""ADMC: Attention-based Diffusion Model for Missing-modality feature Completion.

Paper: ``papers/admc.txt`` (Zhang, Chen et al. 2025); implementation spec: ``papers/spec.md`` §1.
The boxes of the paper's Figure 2, in the order they are trained (one `Stage` each):

(a) **ITFN**  ``itfn_<m>``: one encoder per modality (LSTM + max-pool for frame sequences,
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

Choices where the paper is silent (spec §1.9; [rec] = the spec's recommendation):

- A1/A2 encoders: TextCNN kernels 3/4/5 + Linear to D; 1-layer uni-LSTM ([rec], `mmlab.nn.encoders`).
  CPU default D = 64 (paper preset 256).
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
- A12 "w/o ITFN" (``itfn.training="joint"``): encoders trained jointly with a full-modality
  fusion classifier (end-to-end CE), frozen, then ADN and MF as usual.
- A13 MMER: F'_j from all the other modalities for every j; ``mf_mmer`` has 2D tokens.
- A14 Table 4: the generated feature alone through the frozen unimodal ITFN head.
- A15 WA = accuracy, UA = macro recall (`mmlab.metrics`).
- A16/A17 protocols live in `mmlab.evaluate`; Use_ITFN = Zero_Padding (``admc_use_itfn``).
- A18 seeds: everything derives from ``seed`` (completions use explicit generators seeded by
  the seed and the batch's sample ids, so the same batch gets the same completions).
- "w/o ADN" fills missing tokens with 0 in the standardised space (the train mean) and trains
  the per-scenario MFs on those inputs. ``n_completions`` K > 1 averages the MF's class
  probabilities over K independent completions.

Registered names: ``admc`` (MMCR + MMER), ``admc_wo_itfn``, ``admc_wo_adn``, ``admc_joint``
(Table 5 Jointly_training: encoders not frozen, trained with the fusion on full input),
``admc_use_itfn`` (Table 5: frozen ITFN + MF on full input). The three Table-5 / ablation
rows without ADN zero-fill missing tokens at test; Jointly_training feeds the MF raw encoder
outputs (no A8 statistics while the encoders still move). The ablations run MMCR only
(``mmer=false``): full input goes to ``mf_full``.
"""

from __future__ import annotations

import itertools
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.methods import register_method
from mmlab.methods.base import Method
from mmlab.metrics import accuracy, macro_recall
from mmlab.nn.attention import AttentionDenoiser, DenoiserConfig, FusionConfig, ModalityTokenTransformer
from mmlab.nn.diffusion import DiffusionConfig, GaussianDiffusion
from mmlab.nn.encoders import EncoderConfig, MLPHead, make_encoder
from mmlab.train import Stage, TrainConfig
from mmlab.utils import resolve_device


# ============================================================================ configs
@dataclass
class ITFNConfig:
    """Stage (a): per-modality encoders + 2-layer FC heads (spec §1.2)."""

    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(d_out=64, hidden=128, filters=64))
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
    sample_steps: int | None = 10  # DDPM transitions from n to 0 (None: every step, the paper; k: respaced)
    eval_batch_size: int = 1024  # chunk size for caching features and completions
    seed: int = 0
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

    def fit(self, raw: Tensor) -> None:
        self.mean.copy_(raw.mean(0))
        self.std.copy_(raw.std(0).clamp_min(1e-3))

    def forward(self, raw: Tensor) -> Tensor:
        return (raw - self.mean) / self.std

    def inverse(self, z: Tensor) -> Tensor:
        return z * self.std + self.mean


def pattern_key(available: Sequence[str]) -> str:
    """("A", "V") -> "AV"; longer names are joined by "-": ("fou", "mor") -> "fou-mor"."""
    return ("" if all(len(m) == 1 for m in available) else "-").join(available)


def _metrics(logits: Tensor, y: Tensor, n_classes: int) -> dict[str, float]:
    y_np, pred = y.cpu().numpy(), logits.argmax(1).cpu().numpy()
    return {"accuracy": accuracy(y_np, pred), "macro_recall": macro_recall(y_np, pred, n_classes=n_classes),
            "loss": float(F.cross_entropy(logits.float(), y))}


def _seed(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())


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
            "itfn.train.lr": 1e-4, "itfn.train.batch_size": 128, "itfn.train.epochs": 40,
            "itfn.train.lr_schedule": "mmin_linear", "itfn.train.patience": 10,
            # ADN: 4 layers, 8 heads, hidden 1024 (A3: FFN); 300-500 epochs (spec §1.4 [rec])
            "adn.layers": 4, "adn.heads": 8, "adn.d_ff": 1024, "adn.dropout": 0.1,
            "adn.train.lr": 1e-4, "adn.train.batch_size": 128, "adn.train.epochs": 400, "adn.train.patience": 50,
            # MF: 2 layers, 4 heads, hidden 1024, dropout 0.3, classifier hidden 128
            "mf.layers": 2, "mf.heads": 4, "mf.d_ff": 1024, "mf.dropout": 0.3, "mf.head_hidden": 128,
            "mf.train.lr": 1e-4, "mf.train.batch_size": 128, "mf.train.epochs": 40,
            "mf.train.lr_schedule": "mmin_linear", "mf.train.patience": 10,
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
        self._cache: dict[tuple, object] = {}
        self._data: MMDataset | None = None
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
        return self.diffusion.sample(self.denoiser, x_obs, known, start_step=start_step, sampler=sampler,
                                     num_steps=num_steps, generator=generator, return_trajectory=return_trajectory)

    def _complete_chunked(self, x: Tensor, known: Tensor, gen: torch.Generator, **kw) -> Tensor:
        bs = self.cfg.eval_batch_size
        return torch.cat([self.complete(x[i:i + bs], known[i:i + bs], generator=gen, **kw)
                          for i in range(0, len(x), bs)]) if len(x) else x.clone()

    def _generator(self, *parts: object) -> torch.Generator:
        g = torch.Generator(device=self._device)
        g.manual_seed(_seed(self.cfg.seed, *parts))
        return g

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
            tokens = self._tokens(key, feats[idx], avail[idx], self.cfg.n_completions, gen)
            out[idx] = self._logits(key, tokens, avail[idx])
        return out.to(device)

    # ------------------------------------------------------------------ cached split features
    def _split(self, split: str) -> dict:
        """Standardised features of a train/valid split, computed once the encoders are frozen."""
        key = ("split", split)
        if key not in self._cache:
            if self._data is None:
                raise ConfigError("ADMC: features are cached from the data given to stages(); call stages() first")
            part = self._data.subset(split)
            bs, chunks = self.cfg.eval_batch_size, []
            with torch.no_grad():
                for batch in part.iter_batches(bs, device=self._device):
                    chunks.append(self.encode(batch))
            self._cache[key] = {"F": torch.cat(chunks), "y": torch.as_tensor(part.y, device=self._device),
                                "row": {i: k for k, i in enumerate(part.ids.tolist())}}
        return self._cache[key]

    def _rows(self, split: str, ids: Sequence[str]) -> Tensor:
        row = self._split(split)["row"]
        try:
            return torch.tensor([row[i] for i in ids], device=self._device)
        except KeyError as err:
            raise DataError(f"ADMC: sample id {err.args[0]!r} is not in the cached {split!r} split") from None

    def _scenario_data(self, key: str, split: str) -> dict:
        """Cached MF inputs of one scenario on a split: tokens (K, N, M, d) and avail (K, N, M)."""
        ck = ("scenario", key, split)
        if ck not in self._cache:
            s = self._split(split)
            feats, N, M = s["F"], len(s["F"]), len(self.modalities)
            draws = self.cfg.mf.train_completions if split == "train" else self.cfg.n_completions
            gen = self._generator("scenario", key, split)
            with torch.no_grad():
                if key == "shared":  # uniform random missing pattern per sample and draw
                    rows = torch.tensor([[m in p for m in self.modalities] for p in self.patterns], device=self._device)
                    n_draw = self.cfg.mf.shared_draws if split == "train" else 1
                    pick = torch.randint(len(rows), (n_draw, N), generator=gen, device=self._device)
                    avail = rows[pick]  # (R, N, M)
                    tok = torch.cat([self._tokens(key, feats, avail[r], 1 if split == "train" else draws, gen)
                                     for r in range(n_draw)])
                    avail = avail if split == "train" else avail.expand(len(tok), -1, -1)
                elif key in ("full", "mmer"):
                    avail = torch.ones(1, N, M, dtype=torch.bool, device=self._device)
                    tok = self._tokens(key, feats, avail[0], draws, gen)
                    avail = avail.expand(len(tok), -1, -1)
                else:
                    names = self._pattern_of[key]
                    row = torch.tensor([m in names for m in self.modalities], device=self._device)
                    avail = row.expand(N, M)
                    tok = self._tokens(key, feats, avail, draws, gen)
                    avail = avail.expand(len(tok), N, M)
            self._cache[ck] = {"tokens": tok, "avail": avail}
        return self._cache[ck]

    def _drop(self, *prefix: object) -> None:
        for k in [k for k in self._cache if k[: len(prefix)] == prefix]:
            del self._cache[k]

    # ------------------------------------------------------------------ stages
    def stages(self, data: MMDataset) -> list[Stage]:
        """ITFN per modality (or joint) -> ADN -> mf_full -> one MF per scenario -> mf_mmer."""
        if tuple(data.modalities) != self.modalities:
            raise DataError(f"ADMC.stages: data has modalities {data.modalities}, the method was built for "
                            f"{self.modalities}")
        self._data, self._cache = data, {}
        cfg, out = self.cfg, []
        if cfg.itfn.training == "independent":
            out += [self._itfn_stage(m, last=(m == self.modalities[-1])) for m in self.modalities]
        elif cfg.itfn.training == "joint":
            out.append(self._joint_stage())
        else:
            return [self._end_to_end_stage()]
        if self.denoiser is not None:
            out.append(self._adn_stage())
        out.append(self._mf_stage("full", on_end=self._init_scenarios))
        out += [self._mf_stage(k) for k in self.mfs if k not in ("full", "mmer")]
        if "mmer" in self.mfs:
            out.append(self._mf_stage("mmer"))
        return out

    def _valid_batches(self):
        return self._data.subset("valid").iter_batches(self.cfg.eval_batch_size, device=self._device)

    def _fit_standardizer(self) -> None:
        """After the encoders are frozen: train statistics for A8, then drop the feature caches."""
        self._cache = {}
        if self.cfg.standardize:
            with torch.no_grad():
                raw = torch.cat([self.raw_features(b) for b in
                                 self._data.subset("train").iter_batches(self.cfg.eval_batch_size, device=self._device)])
            self.standardizer.fit(raw)
        self._cache = {}

    # (a) ITFN: Enc_m + FC head on single-modality classification, then frozen (§3.1)
    def _itfn_stage(self, m: str, last: bool) -> Stage:
        enc, head = self.encoders[m], self.itfn_heads[m]

        def loss(batch: MMBatch, rng: np.random.Generator):
            return F.cross_entropy(head(enc(batch.feats[m], batch.obs_mask[m])), batch.y), {}

        def validate() -> dict[str, float]:
            logits, ys = [], []
            for b in self._valid_batches():
                logits.append(head(enc(b.feats[m], b.obs_mask[m])))
                ys.append(b.y)
            return _metrics(torch.cat(logits), torch.cat(ys), self.n_classes)

        return Stage(f"itfn_{m}", [enc, head], loss, validate, config=self.cfg.itfn.train,
                     on_end=self._fit_standardizer if last else None)

    # A12 "w/o ITFN": encoders trained jointly with a full-modality fusion classifier, then frozen
    def _joint_stage(self) -> Stage:
        def loss(batch: MMBatch, rng: np.random.Generator):
            return F.cross_entropy(self.joint_fusion(self.raw_features(batch)), batch.y), {}

        def validate() -> dict[str, float]:
            pairs = [(self.joint_fusion(self.raw_features(b)), b.y) for b in self._valid_batches()]
            return _metrics(torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]), self.n_classes)

        return Stage("itfn_joint", [self.encoders, self.joint_fusion], loss, validate, config=self.cfg.itfn.train,
                     on_end=self._fit_standardizer)

    # Table 5 Jointly_training: encoders + mf_full end to end on full input, nothing frozen
    def _end_to_end_stage(self) -> Stage:
        mf = self.mfs["full"]

        def loss(batch: MMBatch, rng: np.random.Generator):
            return F.cross_entropy(mf(self.encode(batch)), batch.y), {}

        def validate() -> dict[str, float]:
            pairs = [(mf(self.encode(b)), b.y) for b in self._valid_batches()]
            return _metrics(torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]), self.n_classes)

        return Stage("joint", [self.encoders, mf], loss, validate, config=self.cfg.itfn.train)

    # (b) ADN: L = E ||ε − ε_θ(F^n, n)||², n ~ U{1..N}, on full-modality train features (Eq. 1-2)
    def _adn_stage(self) -> Stage:
        t_max = self.cfg.adn.train_max_step or self.diffusion.n_steps

        def loss(batch: MMBatch, rng: np.random.Generator):
            x0 = self._split("train")["F"][self._rows("train", batch.ids)]
            n = torch.randint(1, t_max + 1, (len(x0),), device=x0.device)
            eps = torch.randn_like(x0)
            x_n = self.diffusion.q_sample(x0, n, eps)  # Eq. 1
            return F.mse_loss(self.denoiser(x_n, n), eps), {}  # Eq. 2 + ε-MSE

        def validate() -> dict[str, float]:
            if ("adn_valid",) not in self._cache:  # fixed (n, ε) per valid sample
                x0 = self._split("valid")["F"]
                g = self._generator("adn_valid")
                n = torch.randint(1, t_max + 1, (len(x0),), generator=g, device=x0.device)
                eps = torch.randn(x0.shape, generator=g, device=x0.device)
                self._cache[("adn_valid",)] = (self.diffusion.q_sample(x0, n, eps), n, eps)
            x_n, n, eps = self._cache[("adn_valid",)]
            bs = self.cfg.eval_batch_size
            diff = torch.cat([self.denoiser(x_n[i:i + bs], n[i:i + bs]) - eps[i:i + bs] for i in range(0, len(n), bs)])
            low = n <= self.diffusion.config.start_step  # the steps MMCR actually visits
            return {"loss": float((diff**2).mean()), "mae": float(diff.abs().mean()),
                    "loss_low": float((diff[low] ** 2).mean()) if bool(low.any()) else float("nan")}

        return Stage("adn", [self.denoiser], loss, validate, config=self.cfg.adn.train)

    # (c) MF per scenario on ADN-completed (or zero-filled) train features; Eq. 6
    def _mf_stage(self, key: str, on_end=None) -> Stage:
        mf = self.mfs[key]

        def loss(batch: MMBatch, rng: np.random.Generator):
            d = self._scenario_data(key, "train")
            rows = self._rows("train", batch.ids)
            k = torch.as_tensor(rng.integers(0, len(d["tokens"]), size=len(rows)), device=rows.device)
            return F.cross_entropy(mf(d["tokens"][k, rows], d["avail"][k, rows]), batch.y), {}

        def validate() -> dict[str, float]:
            d, s = self._scenario_data(key, "valid"), self._split("valid")
            bs, tok, av = self.cfg.eval_batch_size, d["tokens"], d["avail"]
            logits = torch.cat([self._logits(key, tok[:, i:i + bs], av[0, i:i + bs]) for i in range(0, tok.shape[1], bs)])
            return _metrics(logits, s["y"], self.n_classes)

        def end() -> None:
            self._drop("scenario", key, "train")
            if on_end is not None:
                on_end()

        return Stage(f"mf_{key}", [mf], loss, validate, config=self.cfg.mf.train, on_end=end)

    def _init_scenarios(self) -> None:
        """mf.init_from_full: every scenario's MF starts from mf_full's weights (ours, A11)."""
        if not self.cfg.mf.init_from_full:
            return
        state = self.mfs["full"].state_dict()
        for k, mf in self.mfs.items():
            if k not in ("full", "mmer"):
                mf.load_state_dict(state, strict=False)

    # ------------------------------------------------------------------ Table 4
    @torch.no_grad()
    def generation_table(self, data: MMDataset, split: str = "test", start_steps: Sequence[int] = (30, 50, 80),
                         seed: int = 0, sources: Literal["auto", "all", "paper"] = "auto",
                         include_real: bool = True) -> list[dict]:
        """Table 4 (A14): classify generated features alone with the frozen unimodal ITFN head of
        the generated modality, for every source -> target pair and start step n.

        ``sources``: "all" = every non-empty subset of the other modalities; "paper" = all the
        others and each single one (the 9 rows of Table 4 for A, V, T); "auto" = "all" for up to
        three modalities, else "paper". ``include_real`` adds the real feature of each target
        ("real->T", start_step 0) for reference. Rows: condition ("AV->T@n=50"), source, target,
        start_step, accuracy, macro_recall.
        """
        if self.cfg.itfn.training != "independent":
            warnings.warn(f"{self.name}: generation_table needs the unimodal ITFN heads; this variant has "
                          f"itfn.training={self.cfg.itfn.training!r}, so there is no table", stacklevel=2)
            return []
        if self.denoiser is None:
            raise ConfigError(f"{self.name}: generation_table needs the ADN (completion='adn' or mmer=true)")
        if tuple(data.modalities) != self.modalities:
            raise DataError(f"generation_table: data has modalities {data.modalities}, expected {self.modalities}")
        part = data.subset(split)
        feats = torch.cat([self.encode(b) for b in part.iter_batches(self.cfg.eval_batch_size, device=self._device)])
        y = part.y
        mode = sources if sources != "auto" else ("all" if len(self.modalities) <= 3 else "paper")
        sep = "" if all(len(m) == 1 for m in self.modalities) else ","

        def score(target: str, z: Tensor) -> dict[str, float]:
            j = self.modalities.index(target)
            raw = self.standardizer.inverse(z)[:, j]
            pred = self.itfn_heads[target](raw).argmax(1).cpu().numpy()
            return {"accuracy": accuracy(y, pred), "macro_recall": macro_recall(y, pred, n_classes=self.n_classes)}

        rows = []
        for target in self.modalities:
            others = [m for m in self.modalities if m != target]
            if mode == "all":
                srcs = [c for k in range(len(others), 0, -1) for c in itertools.combinations(others, k)]
            else:
                srcs = [tuple(others)] + [(m,) for m in others if len(others) > 1]
            if include_real:
                rows.append({"condition": f"real->{target}", "source": target, "target": target, "start_step": 0,
                             **score(target, feats)})
            for src in srcs:
                known = torch.tensor([m in src for m in self.modalities], device=self._device).expand(len(feats), -1)
                for n in start_steps:
                    gen = self._generator("generation", seed, target, src, n)
                    z = self._complete_chunked(feats, known, gen, start_step=int(n))
                    name = sep.join(src)
                    rows.append({"condition": f"{name}->{target}@n={n}", "source": name, "target": target,
                                 "start_step": int(n), **score(target, z)})
        return rows


register_method("admc", "mmlab.methods.admc:ADMC")
register_method("admc_wo_itfn", "mmlab.methods.admc:ADMC", {"itfn.training": "joint", "mmer": False})
register_method("admc_wo_adn", "mmlab.methods.admc:ADMC", {"completion": "zero", "mmer": False})
register_method("admc_joint", "mmlab.methods.admc:ADMC",
                {"itfn.training": "end_to_end", "completion": "zero", "mmer": False, "mf.scenarios": "full"})
register_method("admc_use_itfn", "mmlab.methods.admc:ADMC",
                {"completion": "zero", "mmer": False, "mf.scenarios": "full"})

"""Losses shared by the methods.

- `masked_mse`: a reconstruction MSE over the elements that hold real data (a modality a sample
  lacks natively is filler in ``MMBatch.complete``, never a target);

- `w2_distance` / `cosine_matrix`: pairwise similarities between two batches of embeddings;
- `ContrastiveSimilarity` + `info_nce`: the symmetric InfoNCE of CM-ARR's unsupervised
  distribution-based contrastive learning (Sun et al. 2024, "Enhancing Emotion Recognition in
  Incomplete Data: A Novel Cross-Modal Alignment, Reconstruction, and Refinement Framework",
  arXiv:2407.09029, Eqs. 1-5) with a pluggable similarity: cosine of points, or the negative
  2-Wasserstein distance between diagonal Gaussians, S = a * D_2W + b (a < 0, b learned) with a
  learned temperature tau (as in MAP, Ji et al. 2023, arXiv:2210.04183);
- `supcon`: the supervised contrastive loss of Khosla et al. 2020, "Supervised Contrastive
  Learning", arXiv:2004.11362, Eq. 2 (L_out), self-pairs excluded.

This module sits beside `mmlab.nn`: it imports torch and `mmlab.errors` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmlab.errors import ConfigError

SIMILARITIES = ("w2", "cosine")
Gaussian = tuple[Tensor, Tensor]  # (mean (N, d), variance (N, d))


def masked_mse(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Mean squared error over the elements where ``weight`` (broadcastable, 0/1) is 1; exactly
    ``F.mse_loss`` when every element counts, 0 when none does."""
    if bool((weight != 0).all()):
        return F.mse_loss(pred, target)
    w = weight.to(pred.dtype).expand_as(pred)
    return ((pred - target) ** 2 * w).sum() / w.sum().clamp_min(1.0)


def w2_distance(a: Gaussian, b: Gaussian, use_variance: bool = False, reduce: str = "sum") -> Tensor:
    """(N, M) squared 2-Wasserstein distances between diagonal Gaussians a_i and b_j.

    For diagonal covariances W2^2 = ||mu_a - mu_b||^2 + ||sigma_a - sigma_b||^2 (sigma = std).
    ``use_variance``: the literal Eq. 1 of arXiv:2407.09029, ||Sigma_a - Sigma_b||^2 on variances.
    ``reduce="mean"`` divides by the dimension d (a fixed rescaling of Eq. 1 that keeps
    S = a * D_2W + b at the scale of a cosine whatever d is).
    """
    (mu_a, var_a), (mu_b, var_b) = a, b
    s_a, s_b = (var_a, var_b) if use_variance else (var_a.clamp_min(0).sqrt(), var_b.clamp_min(0).sqrt())
    d = torch.cdist(mu_a, mu_b).pow(2) + torch.cdist(s_a, s_b).pow(2)
    return d / mu_a.shape[-1] if reduce == "mean" else d


def cosine_matrix(a: Tensor, b: Tensor) -> Tensor:
    """(N, M) cosine similarities between rows of a (N, d) and b (M, d)."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def info_nce(sim: Tensor, tau: Tensor | float) -> Tensor:
    """Symmetric InfoNCE, Eqs. 2-4 of arXiv:2407.09029: ``sim[i, j]`` = S(a_i, b_j), pairs (i, i)
    are the positives; returns L^{a2b} + L^{b2a}, each averaged over the N anchors."""
    if sim.dim() != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"info_nce: expected a square (N, N) similarity matrix, got {tuple(sim.shape)}")
    logits = sim / tau
    target = torch.arange(sim.shape[0], device=sim.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)


@dataclass
class ContrastiveConfig:
    """``similarity``: "w2" (negative 2-Wasserstein, Eq. 5) or "cosine" (points, the "w/ Point"
    ablation). ``w2_use_variance``: literal Eq. 1 on variances instead of stds (CM-ARR C6).
    ``w2_reduce``: "sum" (Eq. 1) or "mean" (divided by the dimension, `w2_distance`).
    ``a_init`` / ``b_init``: initial scale (< 0) and shift of S = a * D_2W + b; a stays below
    ``a_max`` (a = a_max - softplus(a_raw)); b cancels in the InfoNCE softmax (it has no gradient
    and is kept for Eq. 5's form). ``tau_init``: initial temperature; log tau is learned when
    ``learn_tau``, and tau is clamped to at least ``tau_min``."""

    similarity: str = "w2"
    w2_use_variance: bool = False
    w2_reduce: str = "sum"
    a_init: float = -1.0
    b_init: float = 0.0
    a_max: float = -1e-3
    tau_init: float = 0.07
    learn_tau: bool = True
    tau_min: float = 0.01

    def __post_init__(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise ConfigError(f"ContrastiveConfig.similarity: expected one of {list(SIMILARITIES)}, "
                              f"got {self.similarity!r}")
        if self.w2_reduce not in ("sum", "mean"):
            raise ConfigError(f"ContrastiveConfig.w2_reduce: expected 'sum' or 'mean', got {self.w2_reduce!r}")
        if not self.a_max < 0:
            raise ConfigError(f"ContrastiveConfig.a_max: expected a negative number, got {self.a_max!r}")
        if not self.a_init <= self.a_max:
            raise ConfigError(f"ContrastiveConfig.a_init: expected a negative scale <= a_max={self.a_max}, "
                              f"got {self.a_init!r}")
        if not (self.tau_min > 0 and self.tau_init >= self.tau_min):
            raise ConfigError(f"ContrastiveConfig.tau_init: expected a temperature >= tau_min={self.tau_min} > 0, "
                              f"got {self.tau_init!r}")


class ContrastiveSimilarity(nn.Module):
    """The learnable similarity S and temperature tau of Eqs. 3-5 of arXiv:2407.09029.

    ``forward(a, b)`` returns the symmetric InfoNCE loss of the paired batches a, b: Gaussians
    ``(mean, variance)`` for "w2", or plain (N, d) tensors / Gaussians (mean used) for "cosine".
    """

    def __init__(self, cfg: ContrastiveConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ContrastiveConfig()
        # a = a_max - softplus(a_raw) < 0 with a gradient everywhere (a clamp would freeze UDCL
        # for good once an optimiser step crossed a_max)
        gap = float(cfg.a_max - cfg.a_init)
        self.a_raw = nn.Parameter(torch.tensor(gap + math.log(-math.expm1(-gap)) if gap > 0 else -20.0))
        self.b = nn.Parameter(torch.tensor(float(cfg.b_init)))
        log_tau = torch.tensor(math.log(cfg.tau_init))
        if cfg.learn_tau:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)

    @property
    def tau(self) -> Tensor:
        return self.log_tau.exp().clamp_min(self.cfg.tau_min)

    def scale(self) -> Tensor:
        """a < a_max < 0 (a larger distance must mean a smaller similarity)."""
        return self.cfg.a_max - F.softplus(self.a_raw)

    def similarity(self, a: Gaussian | Tensor, b: Gaussian | Tensor) -> Tensor:
        """(N, M) similarity matrix S(a_i, b_j)."""
        if self.cfg.similarity == "cosine":
            pa = a[0] if isinstance(a, tuple) else a
            pb = b[0] if isinstance(b, tuple) else b
            return cosine_matrix(pa, pb)
        if not (isinstance(a, tuple) and isinstance(b, tuple)):
            raise ValueError("ContrastiveSimilarity(similarity='w2'): expected (mean, variance) pairs")
        return self.scale() * w2_distance(a, b, self.cfg.w2_use_variance, self.cfg.w2_reduce) + self.b  # Eq. 5

    def forward(self, a: Gaussian | Tensor, b: Gaussian | Tensor) -> Tensor:
        return info_nce(self.similarity(a, b), self.tau)


def supcon(feats: Tensor, labels: Tensor, temperature: float = 0.07, normalize: bool = True) -> Tensor:
    """Supervised contrastive loss L_out (arXiv:2004.11362, Eq. 2) over N anchors.

    For anchor i with positives P(i) = {p != i : y_p = y_i} and A(i) = {a != i}:
    L_i = -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p / t) / sum_{a in A(i)} exp(z_i.z_a / t) ),
    averaged over the anchors that have a positive (0 when none has). ``feats`` (N, d) are
    L2-normalised first unless ``normalize`` is False.
    """
    if feats.dim() != 2 or labels.shape != feats.shape[:1]:
        raise ValueError(f"supcon: expected feats (N, d) and labels (N,), got {tuple(feats.shape)}, "
                         f"{tuple(labels.shape)}")
    z = F.normalize(feats, dim=-1) if normalize else feats
    logits = z @ z.T / temperature
    n = z.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return feats.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0)).sum(1)[has] / n_pos[has]
    return per_anchor.mean()

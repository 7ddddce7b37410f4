"""Building blocks of CM-ARR (Sun et al. 2024, "Enhancing Emotion Recognition in Incomplete Data: A
Novel Cross-Modal Alignment, Reconstruction, and Refinement Framework", arXiv:2407.09029) and
of the DiCMoR baseline:

- `UMC`: the uncertainty modelling component (§3.1.2, Fig. 3), a MAP-style probabilistic
  encoder (Ji et al. 2023, arXiv:2210.04183): per frame a mean and a variance;
- `resample`: adaptive average pooling of the valid frames to a common length T;
- `RCAB` / `Reconstructor`: residual channel attention blocks (RCAN, Zhang et al. 2018,
  arXiv:1807.02758) with 1D convolutions, the reconstruction module Rec_n (§3.2);
- `CrossAttentionBlock`: a MulT-style cross-modal attention block (Eqs. 10-11).

Shapes: sequences are (B, T, d) with a (B, T) bool mask, True = real frame.

The choice labels (C1-C14) are defined in `mmlab/methods/cmarr.py`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _key_padding(mask: Tensor) -> Tensor:
    """``key_padding_mask`` for nn.MultiheadAttention (True = ignore); rows without a real frame
    attend to every frame (their output is discarded) so that the softmax stays finite."""
    empty = ~mask.any(1, keepdim=True)
    return ~(mask | empty)


class _Branch(nn.Module):
    """u = LN(h + MHA(h)) (skipped without attention); out = LN(u + MLP_GELU(u))."""

    def __init__(self, d: int, heads: int, mlp_ratio: int, attention: bool, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True) if attention else None
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_ratio * d, d))

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        u = h
        if self.attn is not None:
            u = self.ln1(h + self.attn(h, h, h, key_padding_mask=_key_padding(mask), need_weights=False)[0])
        return self.ln2(u + self.mlp(u))


class UMC(nn.Module):
    """Uncertainty modelling component (arXiv:2407.09029 §3.1.2, Fig. 3; MAP-style, choice C3).

    h = LN(Linear(R_n)); a mean branch and a log-variance branch of the same structure
    (`_Branch`: multi-head attention for sequence-level and a GELU MLP for feature-level
    interaction, each with a residual and LayerNorm); Sigma = exp(log Sigma).
    ``forward(x (B, T, D), mask) -> (mu, var)``, each (B, T, d), zero on frames outside ``mask``.
    ``attention=False`` is the "w/o attention" ablation (MLP only).
    """

    def __init__(self, d_in: int, d: int, heads: int = 4, mlp_ratio: int = 4, attention: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(d_in, d), nn.LayerNorm(d))
        self.mean = _Branch(d, heads, mlp_ratio, attention, dropout)
        self.log_var = _Branch(d, heads, mlp_ratio, attention, dropout)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        h = self.inp(x)
        keep = mask[..., None].to(h.dtype)
        return self.mean(h, mask) * keep, self.log_var(h, mask).exp() * keep


def pool_gaussian(mu: Tensor, var: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Utterance-level Gaussian (choice C3): means over the valid frames of mu and Sigma, (B, d) each."""
    w = mask.to(mu.dtype)[..., None]
    n = w.sum(1).clamp_min(1.0)
    return (mu * w).sum(1) / n, (var * w).sum(1) / n


def resample(x: Tensor, mask: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Adaptive average pooling of each row's valid frames to ``length`` frames (choice C2).

    Row b with L valid frames (anywhere in the row: a frame mask may have holes): output frame j
    is the mean of the valid frames of rank floor(j L / length) .. ceil((j + 1) L / length) - 1,
    as ``adaptive_avg_pool1d`` on the row's valid frames (a short row repeats frames). Returns (B, length, d) and the (B, length)
    mask, all True for rows with a real frame and all False (zeros) for the others.
    """
    b = x.shape[0]
    n = mask.sum(1).to(x.dtype)  # (B,)
    j = torch.arange(length, device=x.device, dtype=x.dtype)
    start = torch.floor(j[None] * n[:, None] / length)  # (B, length)
    end = torch.ceil((j[None] + 1) * n[:, None] / length)
    pos = (mask.cumsum(1) - 1).to(x.dtype)[:, None, :]  # each frame's rank among the row's valid frames
    w = ((pos >= start[..., None]) & (pos < end[..., None])).to(x.dtype)  # (B, length, T)
    w = w * mask[:, None, :].to(x.dtype)
    out = w @ x / w.sum(-1, keepdim=True).clamp_min(1.0)
    present = mask.any(1)
    return out, present[:, None].expand(b, length)


class ChannelAttention(nn.Module):
    """RCAN channel attention in 1D: x * sigmoid(W_2 ReLU(W_1 mean_T(x)))."""

    def __init__(self, c: int, reduction: int):
        super().__init__()
        r = max(1, c // reduction)
        self.net = nn.Sequential(nn.Conv1d(c, r, 1), nn.ReLU(), nn.Conv1d(r, c, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.net(x.mean(-1, keepdim=True))


class RCAB(nn.Module):
    """Residual channel attention block with 1D convolutions: x + CA(Conv(ReLU(Conv(x))))."""

    def __init__(self, c: int, reduction: int = 16, kernel: int = 3):
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(nn.Conv1d(c, c, kernel, padding=pad), nn.ReLU(),
                                  nn.Conv1d(c, c, kernel, padding=pad), ChannelAttention(c, reduction))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Reconstructor(nn.Module):
    """Rec_n of arXiv:2407.09029 §3.2 (as DiCMoR's module): Conv1d(d -> e d, k=1), a group of
    ``n_blocks`` RCABs closed by a Conv1d(k=3) with a long residual, Conv1d(e d -> d, k=1).
    ``forward(x (B, T, d)) -> (B, T, d)``."""

    def __init__(self, d: int, n_blocks: int = 20, expand: int = 2, reduction: int = 16):
        super().__init__()
        c = expand * d
        self.head = nn.Conv1d(d, c, 1)
        self.group = nn.Sequential(*[RCAB(c, reduction) for _ in range(n_blocks)], nn.Conv1d(c, c, 3, padding=1))
        self.tail = nn.Conv1d(c, d, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.head(x.transpose(1, 2))
        return self.tail(h + self.group(h)).transpose(1, 2)


class CrossAttentionBlock(nn.Module):
    """MulT-style cross-modal attention (Eqs. 10-11): H = Q + MHA(LN(Q), LN(KV), LN(KV)), then
    H + FFN(LN(H)); ``forward(q (B, Tq, d), kv (B, Tk, d), kv_mask (B, Tk) or None)``."""

    def __init__(self, d: int, heads: int = 4, ff_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        self.ln_q, self.ln_kv, self.ln_ff = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d, ff_ratio * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_ratio * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, q: Tensor, kv: Tensor, kv_mask: Tensor | None = None) -> Tensor:
        kv_n = self.ln_kv(kv)
        pad = None if kv_mask is None else _key_padding(kv_mask)
        h = q + self.drop(self.attn(self.ln_q(q), kv_n, kv_n, key_padding_mask=pad, need_weights=False)[0])
        return h + self.drop(self.ffn(self.ln_ff(h)))

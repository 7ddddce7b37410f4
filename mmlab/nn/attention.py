"""Self-attention over modality tokens: ADMC's fusion classifier MF (Eq. 6) and the ADN noise
predictor ε_θ (Eq. 2): ADMC §3.2-3.3 and §4.2 (Zhang, Chen et al. 2025, "ADMC: Attention-based
Diffusion Model for Missing Modalities Feature Completion"); choices A3 and A4 in
mmlab/methods/admc.py, where the paper is silent.

Both models see one token per modality, (B, M, D). Neither paper model says how a token
knows which modality it is, so both add a learned modality embedding (A4 [rec]). The blocks
are pre-LN transformer encoder layers (``x + Attn(LN(x))``, ``x + FFN(LN(x))``). "Hidden size
1024" of the paper is read as the feed-forward size, with d_model = the token size (A3 [rec]);
``d_model`` can be set to project tokens in and out instead (the A3 alternative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmlab.errors import ConfigError, DataError
from mmlab.nn.encoders import MLPHead


def _positive(who: str, **values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{who}.{name}: expected a positive integer, got {v!r}")


def _check_heads(who: str, d_model: int, heads: int) -> None:
    if d_model % heads:
        raise ConfigError(f"{who}: d_model={d_model} must be divisible by heads={heads}")


class Block(nn.Module):
    """One pre-LN transformer encoder layer over the M modality tokens."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        _check_heads("Block", d_model, heads)
        self.heads, self.dropout = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def attention(self, x: Tensor) -> Tensor:
        """Multi-head self-attention: softmax(Q K^T / sqrt(d_h)) V over tokens (Eq. 2 / Eq. 6)."""
        b, m, d = x.shape
        q, k, v = self.qkv(x).view(b, m, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, H, M, d_h)
        return self.proj(y.transpose(1, 2).reshape(b, m, d))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attention(self.ln1(x)))
        return x + self.drop(self.ffn(self.ln2(x)))


def _check_tokens(x: Tensor, n_tokens: int, d_token: int, who: str) -> None:
    if x.dim() != 3 or x.shape[1] != n_tokens or x.shape[2] != d_token:
        raise DataError(f"{who}: tokens expected (B, M={n_tokens}, D={d_token}), got {tuple(x.shape)}")


# ----------------------------------------------------------------------------- MF (Eq. 6)
@dataclass
class FusionConfig:
    """MF: paper 2 layers, 4 heads, "hidden 1024" (= FFN, A3), dropout 0.3, FC head hidden 128."""

    d_model: int | None = None  # None: the token size (A3 [rec]); else project tokens to d_model
    layers: int = 2
    heads: int = 4
    d_ff: int = 256
    dropout: float = 0.3
    head_hidden: int = 128
    token_skip: bool = False  # not ADMC's: the head also reads a linear map of the input tokens

    def __post_init__(self) -> None:
        _positive("FusionConfig", layers=self.layers, heads=self.heads, d_ff=self.d_ff, head_hidden=self.head_hidden)
        if self.d_model is not None:
            _positive("FusionConfig", d_model=self.d_model)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"FusionConfig.dropout: expected a number in [0, 1), got {self.dropout!r}")


class ModalityTokenTransformer(nn.Module):
    """ADMC MF (Eq. 6): Output = FC( (1/M) Σ_i Attention(F_M)_i ).

    tokens (B, M, d_token) -> + modality embedding -> L pre-LN self-attention layers -> final
    LN -> mean over the M tokens -> 2-layer FC head (hidden 128, dropout). ``avail_embedding``
    adds a learned vector to the tokens marked unavailable (for one MF shared by many missing
    patterns, where the tokens alone do not say which ones were generated). ``token_skip`` (not
    ADMC's; issue #18) adds Linear(the concatenated input tokens) to the pooled vector before the
    head: the final LayerNorm scales every token to one norm, and the skip keeps how strongly each
    modality's feature speaks.
    """

    def __init__(self, n_tokens: int, d_token: int, n_classes: int, cfg: FusionConfig | None = None,
                 avail_embedding: bool = False):
        super().__init__()
        cfg = cfg or FusionConfig()
        _positive("ModalityTokenTransformer", n_tokens=n_tokens, d_token=d_token, n_classes=n_classes)
        d = cfg.d_model or d_token
        _check_heads("ModalityTokenTransformer", d, cfg.heads)
        self.n_tokens, self.d_token, self.d_model = n_tokens, d_token, d
        self.inp = nn.Identity() if d == d_token else nn.Linear(d_token, d)
        self.modality_emb = nn.Parameter(0.02 * torch.randn(n_tokens, d))
        self.missing_emb = nn.Parameter(torch.zeros(n_tokens, d)) if avail_embedding else None
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.d_ff, cfg.dropout) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(d)
        self.head = MLPHead(d, n_classes, cfg.head_hidden, cfg.dropout)
        self.skip = nn.Linear(n_tokens * d_token, d) if cfg.token_skip else None

    def pooled(self, tokens: Tensor, avail: Tensor | None = None) -> Tensor:
        """(B, d_model): the mean-pooled attention output (the joint representation)."""
        _check_tokens(tokens, self.n_tokens, self.d_token, "ModalityTokenTransformer")
        x = self.inp(tokens) + self.modality_emb
        if self.missing_emb is not None and avail is not None:
            x = x + (~avail.bool()).to(x.dtype)[..., None] * self.missing_emb
        for block in self.blocks:
            x = block(x)
        return self.ln(x).mean(1)  # (1/M) Σ_i Attention(F_M)_i

    def forward(self, tokens: Tensor, avail: Tensor | None = None) -> Tensor:
        """(B, C) logits."""
        pooled = self.pooled(tokens, avail)
        if self.skip is not None:
            pooled = pooled + self.skip(tokens.flatten(1))
        return self.head(pooled)


# ----------------------------------------------------------------------------- ADN ε_θ (Eq. 2)
@dataclass
class DenoiserConfig:
    """ADN ε_θ: paper 4 layers, 8 heads, "hidden 1024" (= FFN, A3); the CPU default is smaller."""

    d_model: int | None = None  # None: the token size (A3 [rec]); the A3 alternative is 1024
    layers: int = 3
    heads: int = 4
    d_ff: int = 256
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _positive("DenoiserConfig", layers=self.layers, heads=self.heads, d_ff=self.d_ff)
        if self.d_model is not None:
            _positive("DenoiserConfig", d_model=self.d_model)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"DenoiserConfig.dropout: expected a number in [0, 1), got {self.dropout!r}")


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of integer steps t (B,) -> (B, dim) (Transformer / DDPM positional code)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], -1)
    return F.pad(emb, (0, dim % 2))


class AttentionDenoiser(nn.Module):
    """ADN noise predictor ε_θ(F^n, n) (ADMC Eq. 2, §4.2; conditioning A4 [rec]):

    x_t (B, M, D) -> Linear in (when d_model != D) + learned modality embedding + MLP(sinusoid(n))
    added to every token (A4) -> L pre-LN self-attention layers -> LN -> Linear to D = ε̂.
    """

    def __init__(self, n_tokens: int, d_token: int, cfg: DenoiserConfig | None = None):
        super().__init__()
        cfg = cfg or DenoiserConfig()
        _positive("AttentionDenoiser", n_tokens=n_tokens, d_token=d_token)
        d = cfg.d_model or d_token
        _check_heads("AttentionDenoiser", d, cfg.heads)
        self.n_tokens, self.d_token, self.d_model = n_tokens, d_token, d
        self.inp = nn.Identity() if d == d_token else nn.Linear(d_token, d)
        self.modality_emb = nn.Parameter(0.02 * torch.randn(n_tokens, d))
        self.time_mlp = nn.Sequential(nn.Linear(d, cfg.d_ff), nn.SiLU(), nn.Linear(cfg.d_ff, d))
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.d_ff, cfg.dropout) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(d)
        self.out = nn.Linear(d, d_token)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """ε̂ (or v̂, x̂0) (B, M, D) for noisy tokens x (B, M, D) at integer steps t: (B,), one step
        for every token, or (B, M), a step per token (the conditional ADN: available tokens at 0)."""
        _check_tokens(x, self.n_tokens, self.d_token, "AttentionDenoiser")
        B, M = x.shape[:2]
        if t.shape not in ((B,), (B, M)):
            raise DataError(f"AttentionDenoiser: t expected shape (B={B},) or (B, M)=({B}, {M}), got {tuple(t.shape)}")
        temb = self.time_mlp(timestep_embedding(t.reshape(-1), self.d_model))
        temb = temb.view(B, 1, -1) if t.dim() == 1 else temb.view(B, M, -1)
        h = self.inp(x) + self.modality_emb + temb
        for block in self.blocks:
            h = block(h)
        return self.out(self.ln(h))

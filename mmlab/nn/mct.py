"""CIDer's Multimodal Composite Transformer (MCT): one self-attention over the concatenated
modality sequences, read through block masks as the tri-modal, bimodal and unimodal attentions
(Zhong et al., "Towards Robust Multimodal Emotion Recognition under Missing Modalities and
Distribution Shifts", submitted to the IEEE, no arXiv id in the paper text; §III-B, Eqs. 6-13).

The segments may have any lengths (T_l, T_a, T_v): with WSAM they are all T_l, without it (the
"w/o WSAM" ablation, B21) each keeps its own. With M modalities there is one branch per
non-empty subset S (M = 3: tri, l<->a, l<->v, a<->v, l, a, v). Choices (numbers of the CIDer
discrepancy list in the method's docstring, `mmlab.methods.cider`):

- B9: standard pre-LN layers, ``x + Drop(MCA(LN x))``, ``x + Drop(FFN(LN x))``, final LayerNorm
  (the public code), not Eq. 13's LN inside the residual;
- B10: the sinusoidal positional embedding runs over the 3 T_l positions of the concatenation;
  ``replicate_pe_bug=True`` reproduces the public code, whose embedding is indexed by the
  position *in the batch* and is constant over time;
- branch rule (public code): in branch S, rows of S attend to the columns of S only; rows outside
  S output zero (their softmax weights are multiplied by the 0/1 mask, so V values outside S
  are never read); the attention dropout acts on the tri branch only;
- ours: padding columns are masked in every branch (the code pads every text to 50 and uses no
  padding mask; we mask them so a sample's output does not depend on its padding).

The choice labels (B1-B21) are defined in `mmlab/methods/cider.py`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmlab.errors import ConfigError


def branches(n_modalities: int) -> list[tuple[int, ...]]:
    """Every non-empty subset of ``range(n_modalities)``, largest first (tri, bi..., uni...)."""
    idx = range(n_modalities)
    return [s for k in range(n_modalities, 0, -1) for s in itertools.combinations(idx, k)]


def segment_ids(lengths: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """(sum T_m,) the modality index of every position of the concatenation (Eq. 6)."""
    return torch.cat([torch.full((t,), m, dtype=torch.long, device=device) for m, t in enumerate(lengths)])


def block_masks(lengths: Sequence[int], device: torch.device | str | None = None) -> dict[tuple[int, ...], Tensor]:
    """Per branch S, the (N, N) bool mask over the concatenation: True where row and column both
    belong to a modality of S (the six block masks on Attn_tri of Eq. 7, plus the tri one)."""
    seg = segment_ids(lengths, device)
    out = {}
    for s in branches(len(lengths)):
        inside = torch.isin(seg, torch.tensor(s, device=seg.device))
        out[s] = inside[:, None] & inside[None, :]
    return out


def sinusoid(n: int, d: int, device: torch.device | str | None = None) -> Tensor:
    """(n, d) sinusoidal embedding (Vaswani et al.): sin on even, cos on odd features."""
    pos = torch.arange(n, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return pe


@dataclass
class MCTConfig:
    """MCT sizes (Table II: d = 32; layers in [1, 4]; heads in {1, 2, 4, 8}; dropouts in [0, 0.5];
    relu / residual dropout 0.1 in the public code)."""

    d: int = 32
    layers: int = 2
    heads: int = 4
    attn_dropout: float = 0.0
    embed_dropout: float = 0.2
    relu_dropout: float = 0.1
    res_dropout: float = 0.1
    replicate_pe_bug: bool = False

    def __post_init__(self) -> None:
        for name in ("d", "layers", "heads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"MCTConfig.{name}: expected a positive integer, got {v!r}")
        if self.d % self.heads:
            raise ConfigError(f"MCTConfig.heads: expected a divisor of d={self.d}, got {self.heads}")
        for name in ("attn_dropout", "embed_dropout", "relu_dropout", "res_dropout"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ConfigError(f"MCTConfig.{name}: expected a number in [0, 1), got {v!r}")
        if not isinstance(self.replicate_pe_bug, bool):
            raise ConfigError(f"MCTConfig.replicate_pe_bug: expected true/false, got {self.replicate_pe_bug!r}")


class MCA(nn.Module):
    """Multimodal composite attention (Eqs. 7-12) for ``n_modalities`` segments."""

    def __init__(self, d: int, heads: int, n_modalities: int = 3, attn_dropout: float = 0.0):
        super().__init__()
        self.d, self.heads, self.m = d, heads, n_modalities
        self.branches = branches(n_modalities)
        self.in_proj = nn.Linear(d, 3 * d)  # W_Q, W_K, W_V shared by every branch (Eqs. 7-8)
        self.out_proj = nn.ModuleList(nn.Linear(d, d) for _ in self.branches)  # Eq. 9, one per branch
        per_mod = sum(1 for s in self.branches if 0 in s)  # branches holding a modality: 4 for M = 3
        self.merge = nn.ModuleList(nn.Linear(per_mod * d, d) for _ in range(n_modalities))  # Eq. 11
        self.final = nn.Linear(d, d)  # Eq. 12
        self.attn_drop = nn.Dropout(attn_dropout)

    def forward(self, x: Tensor, lengths: Sequence[int], key_valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x`` (B, N, d) over segments of ``lengths``; ``key_valid`` (B, N) bool (None: all).
        Returns the output (B, N, d) and the raw scaled tri-modal scores (B, heads, N, N)."""
        b, n, d = x.shape
        h, dh = self.heads, d // self.heads
        q, k, v = self.in_proj(x).view(b, n, 3, h, dh).permute(2, 0, 3, 1, 4)  # (B, h, N, dh) each
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # Eq. 7 per head
        masks = block_masks(lengths, x.device)
        seg = segment_ids(lengths, x.device)
        outs = {}
        for j, s in enumerate(self.branches):
            allow = masks[s][None, None]  # (1, 1, N, N)
            if key_valid is not None:
                allow = allow & key_valid[:, None, None, :]
            w = torch.softmax(scores.masked_fill(~allow, -1e9), -1) * allow  # rows outside S -> 0
            if len(s) == self.m:
                w = self.attn_drop(w)  # attention dropout on the tri branch only (public code)
            y = (w @ v).transpose(1, 2).reshape(b, n, d)  # Eq. 8
            outs[s] = self.out_proj[j](y)  # Eq. 9
        parts = []
        for mi in range(self.m):
            rows = seg == mi
            cat = torch.cat([outs[s][:, rows] for s in self.branches if mi in s], -1)  # Eq. 10
            parts.append(self.merge[mi](cat))  # Eq. 11
        return self.final(torch.cat(parts, 1)), scores  # Eq. 12


class MCTLayer(nn.Module):
    """One MCT layer (Eq. 13, pre-LN form of the public code: B9)."""

    def __init__(self, cfg: MCTConfig, n_modalities: int = 3):
        super().__init__()
        d = cfg.d
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mca = MCA(d, cfg.heads, n_modalities, cfg.attn_dropout)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.ReLU(), nn.Dropout(cfg.relu_dropout), nn.Linear(4 * d, d))
        self.res_drop = nn.Dropout(cfg.res_dropout)

    def forward(self, x: Tensor, lengths: Sequence[int], key_valid: Tensor | None) -> tuple[Tensor, Tensor]:
        y, scores = self.mca(self.ln1(x), lengths, key_valid)
        x = x + self.res_drop(y)
        return x + self.res_drop(self.ffn(self.ln2(x))), scores


class MCT(nn.Module):
    """Positional embedding + dropout, ``layers`` MCT layers, final LayerNorm (Eqs. 6-13)."""

    def __init__(self, cfg: MCTConfig, n_modalities: int = 3):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(MCTLayer(cfg, n_modalities) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(cfg.d)
        self.embed_drop = nn.Dropout(cfg.embed_dropout)

    def position(self, x: Tensor) -> Tensor:
        """The positional embedding added to ``x`` (B, N, d): over the N positions (B10 fixed), or
        over the batch index, constant in time (``replicate_pe_bug``, the public code)."""
        b, n, d = x.shape
        if self.cfg.replicate_pe_bug:
            return sinusoid(b, d, x.device)[:, None, :].expand(b, n, d)
        return sinusoid(n, d, x.device)[None].expand(b, n, d)

    def forward(self, segments: Sequence[Tensor], valid: Sequence[Tensor] | None = None
                ) -> tuple[list[Tensor], Tensor]:
        """``segments`` [(B, T_m, d)], ``valid`` [(B, T_m) bool] (None: no padding). Returns the
        per-modality outputs H_m^[N] (split back, Eq. 13) and the last layer's raw tri-modal
        scores (B, heads, N, N) for L_attn (Eq. 18)."""
        lengths = [s.shape[1] for s in segments]
        x = torch.cat(list(segments), 1)  # Eq. 6
        key_valid = None if valid is None else torch.cat(list(valid), 1)
        x = self.embed_drop(x + self.position(x))
        scores = x.new_zeros(0)
        for layer in self.layers:
            x, scores = layer(x, lengths, key_valid)
        x = self.ln(x)
        return list(torch.split(x, lengths, 1)), scores


def attention_kl(student_scores: Tensor, teacher_scores: Tensor, valid: Tensor | None = None) -> Tensor:
    """Eq. 18 as the public code computes it (B13): KL(teacher || student) between the softmaxes
    of the raw tri-modal scores, summed over rows and columns and averaged over batch x heads.
    ``valid`` (B, N): padding positions are neither rows nor keys (the public code pads nothing
    out, but its MCT does not mask padding either; ours does, so its L_attn matches it)."""
    b, h, n, _ = student_scores.shape
    s, t = student_scores.reshape(b * h, n, n), teacher_scores.detach().reshape(b * h, n, n)
    if valid is None:
        return F.kl_div(F.log_softmax(s, -1), F.softmax(t, -1), reduction="batchmean")
    keys = valid.repeat_interleave(h, 0)[:, None, :]  # (B h, 1, N)
    log_s = F.log_softmax(s.masked_fill(~keys, -1e9), -1)
    p_t = F.softmax(t.masked_fill(~keys, -1e9), -1)
    kl = (p_t * (torch.log(p_t.clamp_min(1e-30)) - log_s)) * keys  # padding keys carry p_t = 0
    rows = valid.repeat_interleave(h, 0)[:, :, None]
    return (kl * rows).sum() / (b * h)

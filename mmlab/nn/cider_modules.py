"""CIDer's building blocks around the MCT (`mmlab.nn.mct`): WSAM (Eq. 4), naive attention
pooling (Eq. 14), the joint representation (Eq. 15), the reconstruction heads (Eq. 16) and
the MCM head of MACI (Eqs. 21-24). Zhong et al., "Towards Robust Multimodal Emotion Recognition
under Missing Modalities and Distribution Shifts" (submitted to the IEEE; §III-B, §III-C).
B-numbers refer to the discrepancy list in `mmlab.methods.cider`.

The choice labels (B1-B21) are defined in `mmlab/methods/cider.py`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def edges(valid: Tensor) -> Tensor:
    """(B, T) bool: the first and last real position of each row of a (B, T) validity mask
    ([CLS] and [SEP] of a token row)."""
    t = valid.shape[1]
    pos = torch.arange(t, device=valid.device)[None]
    n = valid.sum(1, keepdim=True)
    return valid & ((pos == 0) | (pos == n - 1))


class WSAM(nn.Module):
    """Word-level self-aligned attention (Eq. 4): text queries compress an audio or visual
    sequence to the text length T_l. Single head with in-projection biases and an output
    Linear(d, d), as the public code (4,224 parameters at d = 32).

    B19: MASK = outer(text rows, A/V padding mask); text rows are the real text positions
    without [CLS] and [SEP] when ``drop_edges`` (token text); missing (zeroed) A/V frames are
    still attended. Masked scores get -1e9 and the softmax weights are multiplied by the mask,
    so masked rows read nothing (their output is the output bias).
    """

    def __init__(self, d: int):
        super().__init__()
        self.d = d
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def mask(self, text_valid: Tensor, other_pad: Tensor, drop_edges: bool = True) -> Tensor:
        """(B, T_l, T_m) 0/1 mask of Eq. 4 (B19)."""
        rows = text_valid & ~edges(text_valid) if drop_edges else text_valid
        return rows[:, :, None] & other_pad[:, None, :]

    def forward(self, x_l: Tensor, x_m: Tensor, text_valid: Tensor, other_pad: Tensor,
                drop_edges: bool = True) -> Tensor:
        """(B, T_l, d) X'_m = softmax(X_l W_Q (X_m W_K)^T / sqrt(d) + MASK) X_m W_V (Eq. 4)."""
        m = self.mask(text_valid, other_pad, drop_edges)
        s = self.q(x_l) @ self.k(x_m).transpose(1, 2) / math.sqrt(self.d)
        w = torch.softmax(s.masked_fill(~m, -1e9), -1) * m
        return self.out(w @ self.v(x_m))


class NaiveAttention(nn.Module):
    """Naive attention pooling (Eq. 14): scores = w^T tanh(W h_t + b) + c, softmax over the
    valid positions, G = sum_t softmax_t h_t (the public code's NA; padding masked: ours)."""

    def __init__(self, d: int):
        super().__init__()
        self.proj, self.score = nn.Linear(d, d), nn.Linear(d, 1)

    def forward(self, h: Tensor, valid: Tensor | None = None) -> Tensor:
        s = self.score(torch.tanh(self.proj(h))).squeeze(-1)
        if valid is not None:
            s = s.masked_fill(~valid, -1e9)
        return (torch.softmax(s, -1)[..., None] * h).sum(1)


class JointHead(nn.Module):
    """Eq. 15 with the public code's residual and output dropout (B11):
    h_m = x + W_2 Dropout(ReLU(W_1 x)), x = [G_l; G_a; G_v]."""

    def __init__(self, d_joint: int, dropout: float = 0.0):
        super().__init__()
        self.w1, self.w2 = nn.Linear(d_joint, d_joint), nn.Linear(d_joint, d_joint)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.w2(self.drop(torch.relu(self.w1(x))))


class TextRecon(nn.Module):
    """L_fake = Linear(H~_l^[N]) (Eq. 16): d -> d_l per position."""

    def __init__(self, d: int, d_out: int):
        super().__init__()
        self.lin = nn.Linear(d, d_out)

    def forward(self, h: Tensor) -> Tensor:
        return self.lin(h)


class SeqRecon(nn.Module):
    """A_fake / V_fake = Linear(ReLU(Linear(H~^[N]))) (Eq. 16). B12 (public code): the first
    Linear acts on the *time* axis (T_in -> T_out, e.g. T_l -> T_a), the second on features
    (d -> d_m); this resolves the paper's length mismatch."""

    def __init__(self, t_in: int, t_out: int, d: int, d_out: int):
        super().__init__()
        self.time, self.feat = nn.Linear(t_in, t_out), nn.Linear(d, d_out)

    def forward(self, h: Tensor) -> Tensor:
        return self.feat(torch.relu(self.time(h.transpose(1, 2))).transpose(1, 2))


class MCMHead(nn.Module):
    """Multimodal causal module (Eqs. 21-24): backdoor adjustment over class prototypes.

    ``prototypes[i]`` = [L_i; A_i; V_i] (class means, set by the method from the train split);
    H_i^m = MLP_m(m_i) (3 Linear, 2 ReLU, shared across classes, Eq. 21); y'_i = Classifier_i([h_m;
    H_i^l; H_i^a; H_i^v]) (Eqs. 22-23); y' = sum_i softmax(y'_i) P(i) (Eq. 24 as the code mixes
    probabilities, B8). Returns log y' (log-probabilities, usable as logits).
    """

    def __init__(self, d_joint: int, d: int, proto_dims: list[int], n_classes: int):
        super().__init__()
        self.dims = list(proto_dims)
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(k, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d)) for k in self.dims)
        self.classifiers = nn.ModuleList(nn.Linear(d_joint + d * len(self.dims), n_classes) for _ in range(n_classes))
        self.register_buffer("prototypes", torch.zeros(n_classes, sum(self.dims)))
        self.register_buffer("prior", torch.full((n_classes,), 1.0 / n_classes))

    def forward(self, h: Tensor, prototypes: Tensor | None = None, prior: Tensor | None = None) -> Tensor:
        """(B, C) log of the prior-weighted mixture; ``prototypes`` (C, sum dims) and ``prior`` (C,)
        default to the buffers (training values)."""
        protos = self.prototypes if prototypes is None else prototypes
        p = self.prior if prior is None else prior
        z = torch.cat([mlp(part) for mlp, part in zip(self.mlps, torch.split(protos, self.dims, -1))], -1)  # (C, kd)
        mix = 0.0
        for i, clf in enumerate(self.classifiers):
            hc = torch.cat([h, z[i].expand(h.shape[0], -1)], -1)  # Eq. 22
            mix = mix + torch.softmax(clf(hc), -1) * p[i]  # Eqs. 23-24
        return torch.log(mix.clamp_min(1e-12))

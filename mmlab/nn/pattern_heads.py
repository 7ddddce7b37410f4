"""One classifier head per availability pattern on shared embeddings.

A model that shares its encoders and its head across the 2^M - 1 availability patterns fits one
decision rule to all of them; `docs/gap_to_oracle.md` §17.1 measured what that costs `zero_fill`
against one whole model per pattern (`zero_fill_pp`). `PatternHeads` keeps the encoders shared and
gives each pattern its own `MLPHead`: a row is classified by the head of the modalities it has.
A row with no modality at all goes to the full-input head (it sees only fill values, as the
shared head would).
"""

from __future__ import annotations

import torch
from torch import nn

from mmlab.errors import ConfigError
from mmlab.nn.encoders import MLPHead

MAX_MODALITIES = 6  # 63 heads; each is small, but 2^M grows fast


def pattern_index(avail: torch.Tensor) -> torch.Tensor:
    """(B,) long: the availability pattern of each row as sum_m avail_m 2^m, minus 1 (0 .. 2^M - 2);
    a row with no modality gets the full pattern's index."""
    weights = 2 ** torch.arange(avail.shape[1], device=avail.device)
    code = (avail.long() * weights).sum(1)
    full = int(weights.sum())
    return torch.where(code == 0, torch.full_like(code, full), code) - 1


class PatternHeads(nn.Module):
    """``2^M - 1`` `MLPHead` s; ``forward(h, avail)`` gives each row its pattern's logits."""

    def __init__(self, n_modalities: int, d_in: int, n_classes: int, hidden: int, dropout: float):
        super().__init__()
        if not 1 <= n_modalities <= MAX_MODALITIES:
            raise ConfigError(f"PatternHeads: {n_modalities} modalities; a head per pattern supports 1 to "
                              f"{MAX_MODALITIES} (2^M - 1 heads)")
        self.n_classes = n_classes
        self.heads = nn.ModuleList(MLPHead(d_in, n_classes, hidden, dropout) for _ in range(2 ** n_modalities - 1))

    def forward(self, h: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        idx = pattern_index(avail)
        out = h.new_empty(h.shape[0], self.n_classes)
        for p in torch.unique(idx).tolist():
            rows = idx == p
            out[rows] = self.heads[p](h[rows])
        return out

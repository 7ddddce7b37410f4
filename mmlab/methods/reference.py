"""The small reference model: zero fill + per-modality encoders + late fusion of logits.

One encoder per modality (`mmlab.nn.encoders.make_encoder`: LSTM + max-pool for sequences,
TextCNN for text, MLP for vectors, ADMC §4.1) and one `MLPHead` per modality; the fused logits
are the mean of the logits of the *available* modalities. Missing inputs are zero-filled
outside the model (the zero-padding baseline, ADMC §2.1). It is trained in one stage
("fusion") with the MMIN-style (Zhao et al., ACL 2021) `RandomPattern` sampler (full input with
prob ``p_full``, otherwise one of the six patterns), so it handles every availability pattern.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError
from mmlab.methods.base import Method, Stage, TrainConfig, Validation
from mmlab.missing import RandomPattern, random_mask_batch
from mmlab.nn.encoders import EncoderConfig, MLPHead, make_encoder


@dataclass
class ZeroFillLateFusionConfig:
    """``p_full``: prob. of a full-modality training sample (MMIN: 1/7 = uniform over the 7
    conditions). ``validate_on``: "six" (mean over the six patterns) or "full". ``train``: the
    stage's optimisation (its seed / device / progress come from the Trainer)."""

    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(d_out=64, filters=64, hidden=64))
    head_hidden: int = 64
    dropout: float = 0.3
    p_full: float = 1 / 7
    validate_on: str = "six"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, batch_size=64, lr=1e-3, patience=5))

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_full <= 1.0:
            raise ConfigError(f"ZeroFillLateFusionConfig.p_full: expected a number in [0, 1], got {self.p_full!r}")
        if self.validate_on not in ("six", "full"):
            raise ConfigError(f"ZeroFillLateFusionConfig.validate_on: expected 'six' or 'full', got {self.validate_on!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"ZeroFillLateFusionConfig.dropout: expected a number in [0, 1), got {self.dropout!r}")


class ZeroFillLateFusion(Method):
    """Per-modality encoder + head; logits averaged over the available modalities."""

    Config = ZeroFillLateFusionConfig
    name = "zero_fill_late_fusion"
    fill = "zero"

    def __init__(self, cfg: ZeroFillLateFusionConfig | None, data: MMDataset):
        super().__init__()
        self.cfg = cfg = cfg or ZeroFillLateFusionConfig()
        self.modalities = data.modalities
        dims, max_len, d = data.dims, data.max_len, cfg.encoder.d_out
        self.encoders = nn.ModuleDict({m: make_encoder(cfg.encoder, dims[m], max_len[m], m) for m in self.modalities})
        self.heads = nn.ModuleDict({m: MLPHead(d, data.n_classes, cfg.head_hidden, cfg.dropout) for m in self.modalities})

    def modality_logits(self, batch: MMBatch) -> torch.Tensor:
        """(B, M, C): each modality's own logits (encoders pool over observed frames)."""
        return torch.stack([self.heads[m](self.encoders[m](batch.feats[m], batch.obs_mask[m])) for m in self.modalities], 1)

    def predict_logits(self, batch: MMBatch) -> torch.Tensor:
        """Late fusion: mean of the available modalities' logits (zeros when none is available)."""
        logits = self.modality_logits(batch)
        w = torch.stack([batch.avail_of(m) for m in self.modalities], 1).to(logits.dtype)[..., None]
        return (logits * w).sum(1) / w.sum(1).clamp_min(1.0)

    def stages(self, data: MMDataset) -> list[Stage]:
        sampler = RandomPattern(p_full=self.cfg.p_full)

        def loss(batch: MMBatch, rng) -> tuple[torch.Tensor, dict[str, float]]:
            masked = random_mask_batch(batch, sampler, self.fill, rng)
            return F.cross_entropy(self.predict_logits(masked), masked.y), {}

        return [Stage("fusion", [self], loss, Validation(patterns=self.cfg.validate_on), config=self.cfg.train)]

"""Fill baselines: "zero_fill", "mean_fill" (zero / mean padding, ADMC §2.1) and the full-modality
"full_zero" (CM-ARR §4.4).

Per-modality encoders (LSTM for A/V, TextCNN for T; ADMC §4.1 / MMIN; mean-pooled over frames with
a linear skip from the frames' mean by the CPU default, `cpu_encoder`; max-pooled without the skip
by MMIN and the ``paper`` preset) whose utterance embeddings are
concatenated and classified by an MLP (early fusion). Missing
modalities are filled *outside* the model and the encoders read every real frame
(``pad_mask``), so the fill value is what the model sees in place of a missing modality:

- ``zero_fill``: zeros; trained under the MMIN-style `RandomPattern` sampler (full input with
  prob. ``p_full``, else one of the six patterns), selected on the valid six-pattern UA;
- ``mean_fill``: the train-split mean frame of each modality (`MeanFill.from_dataset` on the
  train rows only), same sampler;
- ``full_zero``: CM-ARR's "Baseline" (Table 3): trained on complete data only and selected
  on complete valid input; at test missing modalities arrive zero-filled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError
from mmlab.methods.base import VALIDATE_ON, Method, Stage, TrainConfig, Validation
from mmlab.methods.baselines.common import (EncoderBank, check_choice, check_positive, check_unit,
                                            cpu_encoder, cpu_train)
from mmlab.missing import RandomPattern, make_fill, random_mask_batch
from mmlab.nn.encoders import EncoderConfig, MLPHead
from mmlab.nn.pattern_heads import PatternHeads


@dataclass
class FillFusionConfig:
    """``fill``: "zero" | "mean". ``train_on``: "random" (RandomPattern(p_full)) | "full"
    (complete data only). ``validate_on``: "six" | "full" | "seven" (full + six)."""

    encoder: EncoderConfig = field(default_factory=cpu_encoder)
    hidden: int = 64
    dropout: float = 0.3
    fill: str = "zero"
    train_on: str = "random"
    p_full: float = 1 / 7
    validate_on: str = "six"
    heads: str = "shared"
    train: TrainConfig = field(default_factory=lambda: cpu_train(epochs=20))

    def __post_init__(self) -> None:
        check_choice("FillFusionConfig", "fill", self.fill, ("zero", "mean"))
        check_choice("FillFusionConfig", "train_on", self.train_on, ("random", "full"))
        check_choice("FillFusionConfig", "validate_on", self.validate_on, VALIDATE_ON)
        check_choice("FillFusionConfig", "heads", self.heads, ("shared", "pattern"))
        if self.heads == "pattern" and (self.train_on == "full" or self.p_full >= 1):
            raise ConfigError("FillFusionConfig.heads: 'pattern' needs training under missing patterns "
                              f"(train_on='random', p_full < 1); got train_on={self.train_on!r}, p_full={self.p_full}: "
                              "the heads of the missing patterns would never be trained")
        check_unit("FillFusionConfig", "p_full", self.p_full)
        check_unit("FillFusionConfig", "dropout", self.dropout, upper_open=True)
        check_positive("FillFusionConfig", "hidden", self.hidden)


class FillFusion(Method):
    """Encoders -> concat -> MLP head, on inputs whose missing modalities hold the fill value."""

    Config = FillFusionConfig
    PRESETS = {  # MMIN sizes: 128-d encoders, classifier 128, batch 128, lr 2e-4, 20 epochs
        "paper": {"encoder.d_out": 128, "encoder.filters": 128, "encoder.pool": "max", "encoder.mean_skip": False,
                  "train.ema": 0.0,
                  "hidden": 128,
                  "train.epochs": 20, "train.batch_size": 128, "train.lr": 2e-4, "train.lr_schedule": "mmin_linear"},
    }
    name = "zero_fill"

    def __init__(self, cfg: FillFusionConfig, data: MMDataset):
        super().__init__()
        self.cfg = cfg
        self.fill = cfg.fill
        self.encoders = EncoderBank(data, cfg.encoder)
        if cfg.heads == "pattern":
            self.head = PatternHeads(len(data.modalities), self.encoders.d_total, data.n_classes, cfg.hidden,
                                     cfg.dropout)
        else:
            self.head = MLPHead(self.encoders.d_total, data.n_classes, cfg.hidden, cfg.dropout)
        self.fill_policy = None  # built from the train rows in `stages`

    def predict_logits(self, batch: MMBatch) -> torch.Tensor:
        h = self.encoders(batch.feats, batch.pad_mask)
        return self.head(h, batch.avail) if self.cfg.heads == "pattern" else self.head(h)

    def stages(self, data: MMDataset) -> list[Stage]:
        self.fill_policy = make_fill(self.cfg.fill, train=data.subset("train"))
        sampler = RandomPattern(p_full=self.cfg.p_full)

        def loss(batch: MMBatch, rng) -> tuple[torch.Tensor, dict[str, float]]:
            if self.cfg.train_on == "random":
                batch = random_mask_batch(batch, sampler, self.fill_policy, rng)
            return F.cross_entropy(self.predict_logits(batch), batch.y), {}

        validate = Validation(logits=self.predict_logits, patterns=self.cfg.validate_on, fill=self.fill_policy)
        return [Stage("fusion", [self], loss, validate, config=self.cfg.train)]

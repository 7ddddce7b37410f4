"""Embedding-imputation baselines of ADMC §5.1 (CRA also CM-ARR §4.2): "ae" and "cra" (Tran et al.,
"Missing Modalities Imputation via Cascaded Residual Autoencoder", CVPR 2017).

Both work on the concatenated per-modality utterance embeddings v = [e_A; e_V; e_T]:

1. stage ``encoders`` (the full-modality "utt_fusion" model of MMIN): per-modality encoders +
   an MLP head on v, trained with CE on complete train data, selected on complete valid input;
2. stage ``impute``: the encoders are FROZEN (pretrained, not joint; their embeddings of the
   complete batch are the reconstruction target). Under the `RandomPattern` sampler the
   imputer receives v with the missing modalities' slots zeroed (an absent modality's encoder
   output is 0), reconstructs the full vector (MSE to the complete v, weight ``rec_weight``),
   the observed slots are kept and the missing ones taken from the reconstruction, and the
   imputed vector goes to the head (initialised from stage 1, fine-tuned with CE). Selected on
   the valid six-pattern UA.

- ``ae``: one fully connected autoencoder, v_hat = Dec(Enc(v_obs)) (Bengio et al. 2007 style);
- ``cra``: Cascaded Residual Autoencoder (Tran et al. 2017): ``n_blocks`` AEs, each adding a
  residual to the running reconstruction; MMIN's configuration is 5 blocks of 256-128-64
  (``paper`` preset), the CPU default 3 blocks of 128-64-32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError
from mmlab.losses import masked_mse
from mmlab.methods.base import VALIDATE_ON, Method, Stage, TrainConfig, Validation
from mmlab.methods.baselines.common import (AEBlock, CascadedResidualAE, EncoderBank, check_choice,
                                            check_positive, check_unit, cpu_encoder, cpu_train)
from mmlab.missing import RandomPattern, ZeroFill, random_mask_batch
from mmlab.nn.encoders import EncoderConfig, MLPHead


@dataclass
class ImputeConfig:
    """``imputer``: "ae" (one AE) | "cra" (``n_blocks`` residual AEs). ``layers``: the AE's
    encoder widths (the decoder mirrors them). ``rec_weight``: weight of the reconstruction MSE."""

    encoder: EncoderConfig = field(default_factory=cpu_encoder)
    hidden: int = 64
    dropout: float = 0.3
    imputer: str = "ae"
    layers: tuple[int, ...] = (128, 64, 32)
    n_blocks: int = 3
    rec_weight: float = 1.0
    p_full: float = 1 / 7
    validate_on: str = "six"
    pretrain: TrainConfig = field(default_factory=lambda: cpu_train(epochs=15))
    train: TrainConfig = field(default_factory=lambda: cpu_train(epochs=20))

    def __post_init__(self) -> None:
        self.layers = tuple(self.layers)
        check_choice("ImputeConfig", "imputer", self.imputer, ("ae", "cra"))
        check_choice("ImputeConfig", "validate_on", self.validate_on, VALIDATE_ON)
        check_positive("ImputeConfig", "layers", self.layers)
        check_positive("ImputeConfig", "n_blocks", self.n_blocks)
        check_positive("ImputeConfig", "hidden", self.hidden)
        check_unit("ImputeConfig", "p_full", self.p_full)
        check_unit("ImputeConfig", "dropout", self.dropout, upper_open=True)
        if self.rec_weight < 0:
            raise ConfigError(f"ImputeConfig.rec_weight: expected a non-negative number, got {self.rec_weight!r}")


class ImputeClassify(Method):
    """Frozen pretrained encoders -> AE / CRA imputation of missing embedding slots -> MLP head."""

    Config = ImputeConfig
    PRESETS = {
        "paper": {"encoder.d_out": 128, "encoder.filters": 128, "encoder.pool": "max", "encoder.mean_skip": False,
                  "pretrain.ema": 0.0, "train.ema": 0.0,
                  "hidden": 128, "layers": [256, 128, 64], "n_blocks": 5,
                  "pretrain.epochs": 20, "pretrain.batch_size": 128, "pretrain.lr": 2e-4,
                  "train.epochs": 60, "train.batch_size": 128, "train.lr": 2e-4, "train.lr_schedule": "mmin_linear"},
    }
    name = "ae"
    fill = "zero"

    def __init__(self, cfg: ImputeConfig, data: MMDataset):
        super().__init__()
        self.cfg = cfg
        self.encoders = EncoderBank(data, cfg.encoder)
        d = self.encoders.d_total
        if cfg.imputer == "ae":
            self.imputer = AEBlock(d, cfg.layers)
        else:
            self.imputer = CascadedResidualAE(d, cfg.layers, cfg.n_blocks)
        self.head = MLPHead(d, data.n_classes, cfg.hidden, cfg.dropout)

    def embed(self, batch: MMBatch) -> torch.Tensor:
        """Observed embedding vector: the encoders pool observed frames, so missing slots are 0."""
        return self.encoders(batch.feats, batch.obs_mask)

    def impute(self, batch: MMBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(imputed vector, raw reconstruction): observed slots kept, missing slots reconstructed."""
        v = self.embed(batch)
        recon = self.imputer(v)[0]
        keep = self.encoders.slot_mask(batch.avail)
        return keep * v + (1 - keep) * recon, recon

    def predict_logits(self, batch: MMBatch) -> torch.Tensor:
        return self.head(self.impute(batch)[0])

    def full_logits(self, batch: MMBatch) -> torch.Tensor:
        """Stage 1 (no imputation): the head on the complete-input embeddings."""
        return self.head(self.encoders(batch.feats, batch.pad_mask))

    def stages(self, data: MMDataset) -> list[Stage]:
        sampler, zero = RandomPattern(p_full=self.cfg.p_full), ZeroFill()

        def pretrain_loss(batch: MMBatch, rng) -> tuple[torch.Tensor, dict[str, float]]:
            return F.cross_entropy(self.full_logits(batch), batch.y), {}

        def impute_loss(batch: MMBatch, rng) -> tuple[torch.Tensor, dict[str, float]]:
            masked = random_mask_batch(batch, sampler, zero, rng)
            with torch.no_grad():  # frozen encoders: the target is the complete embedding vector
                target = self.encoders(masked.complete, masked.pad_mask)
            imputed, recon = self.impute(masked)
            real = self.encoders.slot_mask(masked.present())  # natively missing slots are no target
            ce, rec = F.cross_entropy(self.head(imputed), masked.y), masked_mse(recon, target, real)
            return ce + self.cfg.rec_weight * rec, {"ce": float(ce.detach()), "rec_mse": float(rec.detach())}

        return [
            Stage("encoders", [self.encoders, self.head], pretrain_loss,
                  Validation(logits=self.full_logits, patterns="full", fill=zero), config=self.cfg.pretrain),
            Stage("impute", [self.imputer, self.head], impute_loss,
                  Validation(logits=self.predict_logits, patterns=self.cfg.validate_on, fill=zero),
                  config=self.cfg.train),
        ]

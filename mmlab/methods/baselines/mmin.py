"""MMIN: Missing Modality Imagination Network (Zhao et al., "Missing Modality Imagination Network for
Emotion Recognition with Uncertain Missing Modalities", ACL 2021; public code
https://github.com/AIM3-RUC/MMIN), a baseline of ADMC §5.1 and CM-ARR §4.2.

Stages, as in the public code (``utt_fusion`` teacher, then ``mmin``):

1. ``utt_fusion``: teacher encoders (LSTM for A/V, TextCNN for T; max-pooled in the ``paper``
   preset, mean-pooled with a frames'-mean skip by the CPU default, `cpu_encoder`) + an MLP
   head on the concatenated embeddings, CE on complete train data, selected on complete valid
   input.
   At its end the student encoders are initialised from the teacher's (MMIN ``post_process``).
2. ``mmin``: the teacher is frozen. For a train batch masked by the `RandomPattern` sampler the
   student encoders read the zero-filled input (every real frame, like MMIN's ``A * mask``):
   v = [e_A; e_V; e_T]. Forward imagination: (v_hat, z) = CRA(v); backward (cycle)
   imagination: v_cyc = CRA'(v_hat). The classifier reads the CRA latents z (concatenated over
   the blocks). Loss (weights 1 / 4 / 2, ``CAP_mmin.sh``)::

       L = CE(C(z), y) + 4 * MSE(v_hat, t) + 2 * MSE(v_cyc, v.detach())

   with t the teacher embeddings of the *missing* modalities on the complete input and 0 on
   the available slots (MMIN feeds the teacher ``x * (1 - mask)``; our encoders map an empty
   input to exactly 0, MMIN's LSTM to a constant). Selected on the valid six-pattern UA.

Our choices: ``p_full`` = 1/7 adds the full condition to MMIN's six
training patterns (so rate 0 is in the training distribution; the ``paper`` preset uses 0 as
MMIN does); one hidden classifier layer (`MLPHead`) instead of MMIN's two.
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
from mmlab.methods.baselines.common import (CascadedResidualAE, EncoderBank, check_choice, check_positive,
                                            check_unit, cpu_encoder, cpu_train)
from mmlab.missing import RandomPattern, ZeroFill, random_mask_batch
from mmlab.nn.encoders import EncoderConfig, MLPHead


@dataclass
class MMINConfig:
    """Sizes, loss weights (``ce_weight`` / ``mse_weight`` / ``cycle_weight``) and both stages'
    optimisation. ``share_cycle``: one CRA for both directions (MMIN's MSP-IMPROV setting)."""

    encoder: EncoderConfig = field(default_factory=cpu_encoder)
    ae_layers: tuple[int, ...] = (128, 64, 32)
    n_blocks: int = 3
    hidden: int = 64
    dropout: float = 0.5
    teacher_dropout: float = 0.3
    ce_weight: float = 1.0
    mse_weight: float = 4.0
    cycle_weight: float = 2.0
    share_cycle: bool = False
    p_full: float = 1 / 7
    validate_on: str = "six"
    pretrain: TrainConfig = field(default_factory=lambda: cpu_train(epochs=15))
    train: TrainConfig = field(default_factory=lambda: cpu_train(epochs=20, grad_clip=1.0))

    def __post_init__(self) -> None:
        self.ae_layers = tuple(self.ae_layers)
        check_positive("MMINConfig", "ae_layers", self.ae_layers)
        check_positive("MMINConfig", "n_blocks", self.n_blocks)
        check_positive("MMINConfig", "hidden", self.hidden)
        check_unit("MMINConfig", "dropout", self.dropout, upper_open=True)
        check_unit("MMINConfig", "teacher_dropout", self.teacher_dropout, upper_open=True)
        check_unit("MMINConfig", "p_full", self.p_full)
        check_choice("MMINConfig", "validate_on", self.validate_on, VALIDATE_ON)
        for name in ("ce_weight", "mse_weight", "cycle_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"MMINConfig.{name}: expected a non-negative number, got {getattr(self, name)!r}")


class MMIN(Method):
    """Teacher (utt_fusion) -> student encoders -> CRA imagination (+ cycle) -> classifier on latents."""

    Config = MMINConfig
    PRESETS = {  # scripts/CAP_mmin.sh and CAP_utt_fusion.sh
        "paper": {"encoder.d_out": 128, "encoder.filters": 128, "encoder.pool": "max", "encoder.mean_skip": False,
                  "pretrain.ema": 0.0, "train.ema": 0.0,
                  "ae_layers": [256, 128, 64], "n_blocks": 5,
                  "hidden": 128, "p_full": 0.0,
                  "pretrain.epochs": 20, "pretrain.batch_size": 128, "pretrain.lr": 2e-4,
                  "pretrain.lr_schedule": "mmin_linear",
                  "train.epochs": 60, "train.batch_size": 128, "train.lr": 2e-4, "train.weight_decay": 1e-5,
                  "train.lr_schedule": "mmin_linear"},
    }
    name = "mmin"
    fill = "zero"

    def __init__(self, cfg: MMINConfig, data: MMDataset):
        super().__init__()
        self.cfg = cfg
        self.teacher = EncoderBank(data, cfg.encoder)
        self.teacher_head = MLPHead(self.teacher.d_total, data.n_classes, cfg.hidden, cfg.teacher_dropout)
        self.encoders = EncoderBank(data, cfg.encoder)
        d = self.encoders.d_total
        self.imagine = CascadedResidualAE(d, cfg.ae_layers, cfg.n_blocks, transition=True)
        self.imagine_back = self.imagine if cfg.share_cycle else CascadedResidualAE(d, cfg.ae_layers, cfg.n_blocks,
                                                                                    transition=True)
        self.classifier = MLPHead(self.imagine.d_latent, data.n_classes, cfg.hidden, cfg.dropout)

    def forward_imagination(self, batch: MMBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(v, v_hat, z): student embeddings of the filled input, imagined embeddings, CRA latents."""
        v = self.encoders(batch.feats, batch.pad_mask)
        v_hat, z = self.imagine(v)
        return v, v_hat, z

    def predict_logits(self, batch: MMBatch) -> torch.Tensor:
        return self.classifier(self.forward_imagination(batch)[2])

    def teacher_logits(self, batch: MMBatch) -> torch.Tensor:
        return self.teacher_head(self.teacher(batch.feats, batch.pad_mask))

    def stages(self, data: MMDataset) -> list[Stage]:
        sampler, zero, cfg = RandomPattern(p_full=self.cfg.p_full), ZeroFill(), self.cfg

        def teacher_loss(batch: MMBatch, rng) -> tuple[torch.Tensor, dict[str, float]]:
            return F.cross_entropy(self.teacher_logits(batch), batch.y), {}

        def init_student() -> None:  # MMIN post_process: student encoders start from the teacher's
            self.encoders.load_state_dict(self.teacher.state_dict())

        def mmin_loss(batch: MMBatch, rng) -> tuple[torch.Tensor, dict[str, float]]:
            masked = random_mask_batch(batch, sampler, zero, rng)
            v, v_hat, z = self.forward_imagination(masked)
            with torch.no_grad():  # teacher embeddings of the missing modalities, 0 on available slots
                target = self.teacher(masked.complete, masked.pad_mask) * (1 - self.teacher.slot_mask(masked.avail))
            v_cyc = self.imagine_back(v_hat)[0]
            ce = F.cross_entropy(self.classifier(z), masked.y)
            real = self.teacher.slot_mask(masked.present())  # natively missing slots are no target
            mse, cyc = masked_mse(v_hat, target, real), F.mse_loss(v_cyc, v.detach())
            loss = cfg.ce_weight * ce + cfg.mse_weight * mse + cfg.cycle_weight * cyc
            return loss, {"ce": float(ce.detach()), "mse": float(mse.detach()), "cycle": float(cyc.detach())}

        student = [self.encoders, self.imagine, self.classifier] + ([] if cfg.share_cycle else [self.imagine_back])
        return [
            Stage("utt_fusion", [self.teacher, self.teacher_head], teacher_loss,
                  Validation(logits=self.teacher_logits, patterns="full", fill=zero),
                  config=cfg.pretrain, on_end=init_student),
            Stage("mmin", student, mmin_loss,
                  Validation(logits=self.predict_logits, patterns=cfg.validate_on, fill=zero), config=cfg.train),
        ]

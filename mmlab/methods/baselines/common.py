"""Parts the baselines share: a bank of per-modality encoders, the cascaded residual
autoencoder (Tran et al. 2017 / MMIN's ``ResidualAE``) and argument checks.

Sizes: the CPU defaults use 64-d utterance embeddings (MMIN: 128) so that every baseline here
trains in about a minute on the default `synthetic` dataset with 2 cores, mean-pool their
encoders (MMIN: max), add a linear skip from the frames' mean (MMIN: none) and keep an average
of the weights (MMIN: the last weights of the best epoch); each method's ``PRESETS["paper"]``
restores the published sizes, pooling, encoders and weights.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError
from mmlab.nn.encoders import EncoderConfig, make_encoder
from mmlab.methods.base import TrainConfig


def cpu_encoder() -> EncoderConfig:
    """CPU default encoders: LSTM(64) for A/V, TextCNN(3,4,5 x 32 filters -> 64) for T, each
    **mean**-pooled over the valid frames (issue #18: chosen on the valid split over max pooling,
    five seeds; `docs/gap_to_oracle.md` §6), plus a linear map of the raw frames' mean added to
    each embedding (``mean_skip``, `mmlab.nn.encoders.MeanSkip`; issue #18: valid six-pattern UA
    +0.28 to +1.06 on `synthetic` for all five baselines it reaches, -0.72 to +0.81 on `rings`,
    +3.3 summed over both, `docs/gap_to_oracle.md` §10). MMIN's encoders max-pool and have no
    skip: the ``paper`` presets set ``encoder.pool = "max"`` and ``encoder.mean_skip = false``."""
    return EncoderConfig(d_out=64, filters=32, pool="mean", mean_skip=True)


def cpu_train(epochs: int = 20, lr: float = 1e-3, patience: int = 5, ema: float = 0.99, **kw) -> TrainConfig:
    """CPU default optimisation of the stages of `zero_fill`, `mean_fill`, `full_zero`, `ae`,
    `cra` and `mmin`: Adam 1e-3, batch 64, early stopping, and an average of the weights with
    decay 0.99 validated and kept (`TrainConfig.ema`; issue #18: chosen on the valid split, five
    seeds, `docs/gap_to_oracle.md` §7-§8; `full_zero`'s registry entry and CIDer set 0). MMIN
    does not average: the ``paper`` presets set ``ema = 0``."""
    return TrainConfig(epochs=epochs, lr=lr, patience=patience, batch_size=64, ema=ema, **kw)


def check_choice(cls: str, name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{cls}.{name}: expected one of {list(choices)}, got {value!r}")


def check_unit(cls: str, name: str, value: float, upper_open: bool = False) -> None:
    ok = 0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0
    if not ok:
        raise ConfigError(f"{cls}.{name}: expected a number in [0, 1{')' if upper_open else ']'}, got {value!r}")


def check_positive(cls: str, name: str, values: Sequence[int] | int) -> None:
    vals = values if isinstance(values, (tuple, list)) else (values,)
    if not vals or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals):
        raise ConfigError(f"{cls}.{name}: expected positive integer(s), got {values!r}")


class EncoderBank(nn.Module):
    """One utterance encoder per modality (`mmlab.nn.encoders.make_encoder`, ADMC §4.1 / MMIN)."""

    def __init__(self, data: MMDataset, cfg: EncoderConfig):
        super().__init__()
        self.modalities = tuple(data.modalities)
        self.d = cfg.d_out
        self.enc = nn.ModuleDict({m: make_encoder(cfg, data.dims[m], data.max_len[m], m) for m in self.modalities})

    @property
    def d_total(self) -> int:
        return self.d * len(self.modalities)

    def forward(self, feats: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, M * d): the modalities' embeddings, concatenated in ``modalities`` order."""
        return torch.cat([self.enc[m](feats[m], masks[m]) for m in self.modalities], -1)

    def slot_mask(self, avail: torch.Tensor) -> torch.Tensor:
        """(B, M * d) float: 1 on the embedding slots of available modalities."""
        return avail.to(torch.float32).repeat_interleave(self.d, dim=1)


class AEBlock(nn.Module):
    """One fully connected AE (MMIN ``ResidualAE`` block): d -> layers (LeakyReLU, no activation
    on the bottleneck) -> reversed layers (ReLU) -> d (linear)."""

    def __init__(self, d: int, layers: Sequence[int], dropout: float = 0.0):
        super().__init__()
        enc: list[nn.Module] = []
        for i, (a, b) in enumerate(zip((d, *layers), layers)):
            enc += [nn.Linear(a, b)] + ([nn.LeakyReLU(), nn.Dropout(dropout)] if i < len(layers) - 1 else [])
        dims = (*reversed(layers), d)
        dec: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims, dims[1:])):
            dec += [nn.Linear(a, b)] + ([nn.ReLU(), nn.Dropout(dropout)] if i < len(dims) - 2 else [])
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return self.decoder(z), z


class CascadedResidualAE(nn.Module):
    """Cascaded Residual Autoencoder (Tran et al. 2017; MMIN ``ResidualAE``).

    Block k sees the running reconstruction x_k = x_{k-1} + delta_{k-1} (x_0 = input, delta_0 = 0)
    and predicts the next residual delta_k. Returns (x_K + delta_K, latents concatenated over the
    blocks). With ``transition`` (MMIN) a 2-layer MLP maps the sum to the output.
    """

    def __init__(self, d: int, layers: Sequence[int], n_blocks: int, transition: bool = False, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(AEBlock(d, layers, dropout) for _ in range(n_blocks))
        self.transition = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d)) if transition else nn.Identity()
        self.d_latent = layers[-1] * n_blocks

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        delta, latents = torch.zeros_like(x), []
        for block in self.blocks:
            x = x + delta
            delta, z = block(x)
            latents.append(z)
        return self.transition(x + delta), torch.cat(latents, -1)

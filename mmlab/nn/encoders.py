"""Per-modality encoders and the small MLP classifier head (ADMC §4.1-4.2; Zhang, Chen et al. 2025,
"ADMC: Attention-based Diffusion Model for Missing Modalities Feature Completion").

Every encoder maps a padded sequence to one utterance vector::

    forward(x (B, T, D), mask (B, T) bool) -> (B, d_out)

``mask`` is True on the frames to pool over: pass ``batch.pad_mask[m]`` (real frames) or
``batch.obs_mask[m]`` (real and observed). The common rule for all encoders:

- frames after the last True frame of a row are padding: never seen, whatever their values,
  so appending padding frames does not change the output;
- a False frame before that is seen by the sequence model (it holds the fill value) but is
  left out of the pooling;
- a row with no True frame (a missing modality) yields a zero vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmlab.errors import ConfigError, DataError


def _check(x: torch.Tensor, mask: torch.Tensor, d_in: int, who: str) -> None:
    if x.dim() != 3 or x.shape[2] != d_in:
        raise DataError(f"{who}: x expected (B, T, D={d_in}), got {tuple(x.shape)}")
    if mask.shape != x.shape[:2] or mask.dtype != torch.bool:
        raise DataError(f"{who}: mask expected bool {tuple(x.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}")


def _extent(mask: torch.Tensor) -> torch.Tensor:
    """(B,) number of frames up to and including the last True frame (0 for an all-False row)."""
    t = mask.shape[1]
    pos = torch.arange(1, t + 1, device=mask.device).expand_as(mask)
    return torch.where(mask, pos, torch.zeros_like(pos)).amax(1) if t else mask.new_zeros(mask.shape[0], dtype=torch.long)


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over time of h (B, T, H) on frames where mask (B, T) is True; zeros for empty rows."""
    out = h.masked_fill(~mask[..., None], float("-inf")).amax(1)
    return torch.where(mask.any(1, keepdim=True), out, torch.zeros_like(out))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of x (B, T, D) on frames where mask is True; zeros for empty rows."""
    w = mask.to(x.dtype)[..., None]
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


POOLS = {"max": masked_max, "mean": masked_mean}


def _pool_fn(pool: str, who: str):
    if pool not in POOLS:
        raise ConfigError(f"{who}: pool expected one of {list(POOLS)}, got {pool!r}")
    return POOLS[pool]


class LSTMMaxPool(nn.Module):
    """ADMC Enc_a / Enc_v: LSTM (hidden = d_out) then max-pool over valid frames (ADMC §4.1-4.2).

    Padding is removed with ``pack_padded_sequence``; frames where the mask is False are left
    out of the pool (set to -inf for the max). With ``bidirectional`` each direction has d_out // 2
    units. ``pool="mean"`` (not ADMC's) averages the hidden states over the valid frames instead.
    """

    def __init__(self, d_in: int, d_out: int = 256, layers: int = 1, bidirectional: bool = False, pool: str = "max"):
        super().__init__()
        self.pool = _pool_fn(pool, "LSTMMaxPool")
        if bidirectional and d_out % 2:
            raise ConfigError(f"LSTMMaxPool: d_out must be even when bidirectional, got {d_out}")
        self.d_in, self.d_out = d_in, d_out
        hidden = d_out // 2 if bidirectional else d_out
        self.lstm = nn.LSTM(d_in, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check(x, mask, self.d_in, "LSTMMaxPool")
        ext = _extent(mask)
        if x.shape[1] == 0 or not bool(ext.any()):
            return x.new_zeros(x.shape[0], self.d_out)
        packed = pack_padded_sequence(x, ext.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])
        return self.pool(h, mask)


class TextCNN(nn.Module):
    """ADMC Enc_t: TextCNN (Kim 2014), ADMC §4.1; kernels, filters and output size are choices A1, A2
    in mmlab/methods/admc.py (the paper does not state them).

    One Conv1d per kernel size k, ReLU, masked global max-pool (or mean: ``pool``), concat
    (len(kernels) * filters), Linear to d_out. Each sequence is right-padded with k - 1 zero frames, so output position j
    is the window that starts at frame j; it is pooled where ``mask[j]`` is True. Sequences
    shorter than the kernel are handled by that padding. ``pool="mean"`` (not Kim's) averages
    the windows instead of taking their max.
    """

    def __init__(self, d_in: int, d_out: int = 256, kernels: tuple[int, ...] = (3, 4, 5), filters: int = 128,
                 pool: str = "max"):
        super().__init__()
        self.pool = _pool_fn(pool, "TextCNN")
        if not kernels or any(k < 1 for k in kernels):
            raise ConfigError(f"TextCNN: kernels expected positive integers, got {kernels}")
        self.d_in, self.d_out, self.kernels = d_in, d_out, tuple(kernels)
        self.convs = nn.ModuleList(nn.Conv1d(d_in, filters, k) for k in self.kernels)
        self.proj = nn.Linear(filters * len(self.kernels), d_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check(x, mask, self.d_in, "TextCNN")
        ext = _extent(mask)
        t = x.shape[1]
        seen = torch.arange(t, device=x.device)[None, :] < ext[:, None]  # frames before the padding
        xt = (x * seen[..., None].to(x.dtype)).transpose(1, 2)  # (B, D, T), padding zeroed
        pooled = []
        for k, conv in zip(self.kernels, self.convs):
            h = torch.relu(conv(nn.functional.pad(xt, (0, k - 1))))  # (B, F, T)
            pooled.append(self.pool(h.transpose(1, 2), mask))
        out = self.proj(torch.cat(pooled, -1))
        return out * mask.any(1, keepdim=True).to(out.dtype)


class MLPEncoder(nn.Module):
    """For vector-valued modalities (T = 1): mean of the valid frames, then a 2-layer MLP."""

    def __init__(self, d_in: int, d_out: int = 256, hidden: int = 256):
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check(x, mask, self.d_in, "MLPEncoder")
        out = self.net(masked_mean(x, mask))
        return out * mask.any(1, keepdim=True).to(out.dtype)


class MeanSkip(nn.Module):
    """A sequence encoder plus a linear map of the mean of the raw frames it pools over (not in
    ADMC or MMIN; issue #18, `docs/gap_to_oracle.md` §10): ``enc(x, mask) + W masked_mean(x, mask)``.

    When the class information is in the frames' mean (as on `synthetic`, where the mean is a
    sufficient statistic) the skip hands it to the head directly; the sequence path still sees
    what a mean cannot (e.g. a frequency). Rows with no True frame stay zero vectors.

    ``count_gate`` scales the skip per output dimension by ``1 + g * n / max_len`` (n: the row's
    real frames; g learned, starting at 0), so that the head can weigh a modality's mean by how
    many frames it averages: `synthetic`'s Bayes rule weighs each frame mean by its frame count
    (`mmlab/data/synthetic.py`), which a plain mean hides.
    """

    def __init__(self, encoder: nn.Module, d_in: int, d_out: int, max_len: int = 1, count_gate: bool = False):
        super().__init__()
        self.encoder, self.d_in, self.d_out, self.max_len = encoder, d_in, d_out, max(int(max_len), 1)
        self.skip = nn.Linear(d_in, d_out)
        self.gate = nn.Parameter(torch.zeros(d_out)) if count_gate else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check(x, mask, self.d_in, "MeanSkip")
        frames = mask.sum(1, keepdim=True).to(x.dtype)  # (B, 1): real frames per row
        skip = self.skip(masked_mean(x, mask)) * (frames > 0).to(x.dtype)
        if self.gate is not None:
            skip = skip * (1 + self.gate * frames / self.max_len)
        return self.encoder(x, mask) + skip


class MLPHead(nn.Module):
    """The 2-layer FC classifier of ADMC §4.2: Linear(d_in, hidden), ReLU, Dropout, Linear(hidden, C)."""

    def __init__(self, d_in: int, n_classes: int, hidden: int = 128, dropout: float = 0.3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


EncoderKind = Literal["auto", "lstm", "textcnn", "mlp"]
PoolKind = Literal["max", "mean"]


@dataclass
class EncoderConfig:
    """One per-modality encoder.

    ``kind="auto"`` picks, per modality: ``mlp`` when max_len == 1 (utterance vectors), else
    ``textcnn`` when the modality is named in ``text_modalities`` (ADMC uses TextCNN for text),
    else ``lstm`` (ADMC Enc_a / Enc_v).
    """

    kind: EncoderKind = "auto"
    d_out: int = 256
    layers: int = 1  # lstm
    bidirectional: bool = False  # lstm
    kernels: tuple[int, ...] = (3, 4, 5)  # textcnn
    filters: int = 128  # textcnn
    hidden: int = 256  # mlp
    text_modalities: tuple[str, ...] = ("T",)
    pool: PoolKind = "max"  # lstm, textcnn: "max" over frames (ADMC, MMIN) or "mean"
    mean_skip: bool = False  # lstm, textcnn: add a linear map of the raw frames' mean (`MeanSkip`)
    skip_count_gate: bool = False  # with mean_skip: scale the skip by 1 + g * frames / max_len (`MeanSkip`)

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "lstm", "textcnn", "mlp"):
            raise ConfigError(f"EncoderConfig.kind: expected 'auto', 'lstm', 'textcnn' or 'mlp', got {self.kind!r}")
        for name in ("mean_skip", "skip_count_gate"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"EncoderConfig.{name}: expected true or false, got {getattr(self, name)!r}")
        if self.pool not in POOLS:
            raise ConfigError(f"EncoderConfig.pool: expected one of {list(POOLS)}, got {self.pool!r}")
        for name in ("d_out", "layers", "filters", "hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"EncoderConfig.{name}: expected a positive integer, got {v!r}")
        self.kernels = tuple(self.kernels)
        self.text_modalities = tuple(self.text_modalities)


def resolve_kind(cfg: EncoderConfig, max_len: int, modality: str | None = None) -> str:
    """The concrete encoder kind ``make_encoder`` builds (see `EncoderConfig` for the auto rule)."""
    if cfg.kind != "auto":
        return cfg.kind
    if max_len == 1:
        return "mlp"
    return "textcnn" if modality is not None and modality in cfg.text_modalities else "lstm"


def make_encoder(cfg: EncoderConfig, d_in: int, max_len: int, modality: str | None = None) -> nn.Module:
    """Build the encoder for one modality with input size ``d_in`` and longest sequence ``max_len``."""
    if d_in < 1:
        raise ConfigError(f"make_encoder: d_in expected a positive integer, got {d_in}")
    kind = resolve_kind(cfg, max_len, modality)
    if kind == "mlp":
        return MLPEncoder(d_in, cfg.d_out, cfg.hidden)
    if kind == "lstm":
        encoder: nn.Module = LSTMMaxPool(d_in, cfg.d_out, cfg.layers, cfg.bidirectional, cfg.pool)
    else:
        encoder = TextCNN(d_in, cfg.d_out, cfg.kernels, cfg.filters, cfg.pool)
    return MeanSkip(encoder, d_in, cfg.d_out, max_len, cfg.skip_count_gate) if cfg.mean_skip else encoder

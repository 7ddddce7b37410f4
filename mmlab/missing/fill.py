"""Fill policies (what a model sees at unobserved frames) and `mask_batch`, which applies masks
and a fill to an `MMBatch` (mmlab.missing).

Token modalities (integer ids, `MMBatch.token_modalities`) always go through `TokenFill`
(unobserved real tokens become [UNK]); the named fill (zero / mean / noise) applies to the float
modalities. `make_fill` and `mask_batch` resolve this once, with `with_tokens`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np
import torch

from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.data.tokens import UNK_ID
from mmlab.missing.masks import Masks, keep_token_edges, pad_masks


# ------------------------------------------------------------------------------------- fill policies
def _real(pad: Mapping[str, torch.Tensor] | None, m: str, obs: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(obs) if pad is None else pad[m].to(obs.device)


def _need_float(x: torch.Tensor, m: str, who: str) -> None:
    if not torch.is_floating_point(x):
        raise DataError(f"{who}: modality {m!r} holds {x.dtype} (token ids?); use TokenFill for integer inputs")


def _check_fill_inputs(feats: Mapping[str, torch.Tensor], obs: Mapping[str, torch.Tensor]) -> None:
    for m, x in feats.items():
        if m not in obs:
            raise DataError(f"fill: no observation mask for modality {m!r} (have {sorted(obs)})")
        if tuple(obs[m].shape) != tuple(x.shape[:2]) or obs[m].dtype != torch.bool:
            raise DataError(f"fill: obs[{m!r}] expected bool {tuple(x.shape[:2])}, got {obs[m].dtype} {tuple(obs[m].shape)}")


@dataclass
class ZeroFill:
    """Unobserved frames become zeros (CM-ARR and most baselines; CIDer audio/vision, in its code)."""

    def __call__(self, feats, obs, generator: torch.Generator | None = None, pad=None) -> dict[str, torch.Tensor]:
        _check_fill_inputs(feats, obs)
        out = {}
        for m, x in feats.items():
            _need_float(x, m, "ZeroFill")
            out[m] = torch.where(obs[m].to(x.device)[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        return out


@dataclass
class MeanFill:
    """Unobserved real frames become the train-split mean feature (mean padding, ADMC §2.1)."""

    means: dict[str, np.ndarray]

    @classmethod
    def from_dataset(cls, train: MMDataset) -> "MeanFill":
        """Per-modality mean over the valid frames of the dataset's train rows only (float
        modalities; token modalities have no mean and are filled by `TokenFill`)."""
        rows = np.flatnonzero(train.split == "train")
        if len(rows) == 0:
            raise DataError(f"MeanFill.from_dataset: dataset {train.name!r} has no 'train' rows; pass the train split")
        pad = pad_masks(train)
        means = {}
        for m in train.modalities:
            if m in train.token_modalities:
                continue
            x, p = train.feats[m][rows], pad[m][rows]
            means[m] = (x[p].astype(np.float64).sum(0) / max(int(p.sum()), 1)).astype(np.float32)
        return cls(means)

    def __call__(self, feats, obs, generator: torch.Generator | None = None, pad=None) -> dict[str, torch.Tensor]:
        _check_fill_inputs(feats, obs)
        out = {}
        for m, x in feats.items():
            _need_float(x, m, "MeanFill")
            if m not in self.means:
                raise DataError(f"MeanFill: no train mean for modality {m!r} (have {sorted(self.means)})")
            mu = torch.as_tensor(np.asarray(self.means[m]), dtype=x.dtype, device=x.device)
            if mu.shape != (x.shape[-1],):
                raise DataError(f"MeanFill.means[{m!r}]: expected shape ({x.shape[-1]},), got {tuple(mu.shape)}")
            o, real = obs[m].to(x.device), _real(pad, m, obs[m]).to(x.device)
            out[m] = torch.where(o[..., None], x, torch.where(real[..., None], mu, torch.zeros_like(x)))
        return out


@dataclass
class NoiseFill:
    """Unobserved real frames become N(mean, std²) noise (ADMC's start for ADN, §3.3).
    Needs an explicit ``torch.Generator``; noise is drawn on the generator's device."""

    std: float = 1.0
    mean: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.std, (int, float)) and self.std >= 0 and math.isfinite(self.std)):
            raise ConfigError(f"std: expected a non-negative number, got {self.std!r}")

    def __call__(self, feats, obs, generator: torch.Generator | None = None, pad=None) -> dict[str, torch.Tensor]:
        if generator is None:
            raise ConfigError("NoiseFill: pass an explicit torch.Generator (generator=...) for reproducible noise")
        _check_fill_inputs(feats, obs)
        out = {}
        for m, x in feats.items():
            _need_float(x, m, "NoiseFill")
            z = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
            z = z * self.std + self.mean
            o, real = obs[m].to(x.device), _real(pad, m, obs[m]).to(x.device)
            out[m] = torch.where(o[..., None], x, torch.where(real[..., None], z, torch.zeros_like(x)))
        return out


@dataclass
class TokenFill:
    """Token-id inputs (as CIDer's code; its paper gives no fill values): unobserved real tokens
    become ``unk_id`` ([UNK] = 100 in BERT); float modalities go to ``base`` (zero fill). Pair
    with ``protect_edges`` to keep [CLS]/[SEP]; the attention (pad) mask is unchanged."""

    unk_id: int = UNK_ID
    base: Any = field(default_factory=ZeroFill)

    def __call__(self, feats, obs, generator: torch.Generator | None = None, pad=None) -> dict[str, torch.Tensor]:
        _check_fill_inputs(feats, obs)
        floats = {m: x for m, x in feats.items() if torch.is_floating_point(x)}
        out = self.base(floats, {m: obs[m] for m in floats}, generator=generator, pad=pad) if floats else {}
        for m, x in feats.items():
            if m not in floats:
                o, real = obs[m].to(x.device), _real(pad, m, obs[m]).to(x.device)
                out[m] = torch.where(real & ~o, torch.full_like(x, self.unk_id), x)
        return {m: out[m] for m in feats}


FILLS = ("zero", "mean", "noise", "token")


FillFn = Callable[..., dict[str, torch.Tensor]]


def with_tokens(fill: FillFn, tokens: tuple[str, ...] | list[str]) -> FillFn:
    """``fill`` made safe for token modalities: unchanged when there are none (or it is already
    a `TokenFill`), else ``TokenFill(base=fill)`` ([UNK] for tokens, ``fill`` for the rest)."""
    return fill if not tokens or isinstance(fill, TokenFill) else TokenFill(base=fill)


def make_fill(name: str, train: MMDataset | None = None, **params: Any) -> Callable[..., dict[str, torch.Tensor]]:
    """A fill policy by name: "zero" | "mean" (needs the ``train`` dataset) | "noise" | "token".

    When ``train`` has token modalities the policy is wrapped by `with_tokens`: the named fill
    covers the float modalities and token modalities get [UNK].
    """
    key = str(name).strip().lower()
    if key == "zero":
        fill: Any = ZeroFill(**params)
    elif key == "mean":
        if train is None:
            raise ConfigError("fill 'mean': needs the train dataset (make_fill('mean', train=...))")
        fill = MeanFill.from_dataset(train)
    elif key == "noise":
        fill = NoiseFill(**params)
    elif key == "token":
        fill = TokenFill(**params)
    else:
        raise ConfigError(f"fill: unknown name {name!r}; known fills: {', '.join(FILLS)}")
    return with_tokens(fill, train.token_modalities if train is not None else ())


def resolve_fill(fill: Any, train: MMDataset | None = None) -> Callable[..., dict[str, torch.Tensor]]:
    """The one way to get a fill policy: a name ("zero", "mean", "noise", "token"; "mean" needs
    ``train``) goes through `make_fill`, a ready-made policy object is returned as it is."""
    return make_fill(fill, train) if isinstance(fill, str) else fill


# ------------------------------------------------------------------------------------- batches
def _fit_time(o: np.ndarray, pad: np.ndarray, m: str) -> np.ndarray:
    """Cut or extend a mask drawn on (N, T_max) to the batch's T (extra columns must be padding)."""
    t = pad.shape[1]
    if o.shape[1] > t:
        if o[:, t:].any():
            raise DataError(f"mask_batch: masks for {m!r} observe frames beyond the batch length {t}")
        return o[:, :t]
    if o.shape[1] < t:
        if pad[:, o.shape[1]:].any():
            raise DataError(f"mask_batch: masks for {m!r} have {o.shape[1]} frames, the batch has real frames up to {t}")
        return np.concatenate([o, np.zeros((o.shape[0], t - o.shape[1]), bool)], axis=1)
    return o


def mask_batch(batch: MMBatch, masks: Masks, fill: Callable[..., dict[str, torch.Tensor]],
               generator: torch.Generator | None = None) -> MMBatch:
    """Apply ``masks`` (rows = the batch's rows, e.g. ``masks.take(idx)``) and ``fill`` to a batch.

    Returns a new batch: ``feats`` filled, ``obs_mask`` / ``avail`` from the masks (intersected
    with the batch's own, so a natively missing modality stays missing), and ``complete`` = the
    original unmasked features (those of a batch that was already masked stay the originals), with
    the masks from before the first mask in ``native_avail`` / ``native_obs`` (`MMBatch.present`).
    Token modalities keep [CLS]/[SEP] observed (`keep_token_edges`) and are filled with [UNK]
    whatever ``fill`` is (`with_tokens`).
    """
    if set(masks.modalities) != set(batch.modalities):
        raise DataError(f"mask_batch: masks are for {list(masks.modalities)}, the batch has {list(batch.modalities)}")
    if len(masks) != batch.size:
        raise DataError(f"mask_batch: masks have {len(masks)} rows, the batch has {batch.size} (use masks.take(idx))")
    dev, complete, tokens = batch.device, batch.complete_feats(), batch.token_modalities
    obs = {}
    for m in batch.modalities:
        pad = batch.pad_mask[m]
        o = torch.from_numpy(np.ascontiguousarray(_fit_time(masks.obs[m], pad.cpu().numpy(), m))).to(dev)
        if (o & ~pad).any():
            raise DataError(f"mask_batch: masks for {m!r} mark padding frames of the batch as observed")
        obs[m] = o & batch.obs_mask[m]
    cols = [masks.modalities.index(m) for m in batch.modalities]
    avail = torch.from_numpy(masks.avail[:, cols].copy()).to(dev) & batch.avail
    if tokens:
        cpu = lambda d: {m: d[m].cpu().numpy() for m in batch.modalities}  # noqa: E731
        fitted = keep_token_edges(Masks(avail.cpu().numpy(), cpu(obs)), cpu(batch.pad_mask), tokens)
        obs = {m: torch.from_numpy(o).to(dev) for m, o in fitted.obs.items()}
        avail = torch.from_numpy(fitted.avail).to(dev)
    feats = with_tokens(fill, tokens)(complete, obs, generator=generator, pad=batch.pad_mask)
    return replace(batch, feats=feats, obs_mask=obs, avail=avail, complete=complete,
                   native_avail=batch.present(), native_obs=batch.observed())

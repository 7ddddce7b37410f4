"""The data contract: `MMBatch` (what every model receives) and `collate`.

A batch carries named modalities, any number of them. For modality ``m``:

- ``feats[m]``     (B, T_m, D_m) float32; an utterance-level vector is T_m = 1; a token
  modality (`MMBatch.token_modalities`) holds bert-base-uncased ids (B, T_m) int64 instead
  ([CLS] first, [SEP] last real, [PAD] = 0 after; `mmlab.data.tokens`);
- ``pad_mask[m]``  (B, T_m) bool, True = real frame (False = padding);
- ``obs_mask[m]``  (B, T_m) bool, True = observed after missingness (never True on padding);
- ``avail``        (B, M) bool, True = modality m (column order = ``modalities``) is present;
- ``y``            (B,) int64 class labels; ``y_reg`` (B,) float32 where a dataset has one;
- ``ids``          list of B sample ids.

Masking never destroys the originals: `mmlab.missing.mask_batch` puts the filled features in
``feats`` and keeps the complete ones in ``complete`` so that a method can reach them during
training. Evaluation hands models ``batch.for_eval()``, which drops ``complete``.

A modality can also be missing *natively* (a sample without a recording: ``avail`` False from
the data, `mmlab.data.dataset.MMDataset.avail`). Its ``complete`` features are filler, not a
target: a masked batch keeps the masks from before the (training) mask in ``native_avail`` /
``native_obs``, and `MMBatch.present` / `MMBatch.observed` give them (the batch's own masks
when it was never masked), so a reconstruction or distillation loss scores real data only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch

from mmlab.data.tokens import PAD_ID, VOCAB_SIZE
from mmlab.errors import DataError


@dataclass
class MMBatch:
    """A batch of multimodal samples with explicit padding, observation and availability masks."""

    modalities: tuple[str, ...]
    feats: dict[str, torch.Tensor]
    pad_mask: dict[str, torch.Tensor]
    obs_mask: dict[str, torch.Tensor]
    avail: torch.Tensor
    y: torch.Tensor
    ids: list[str] = field(default_factory=list)
    y_reg: torch.Tensor | None = None
    complete: dict[str, torch.Tensor] | None = None
    native_avail: torch.Tensor | None = None
    native_obs: dict[str, torch.Tensor] | None = None

    # ----------------------------------------------------------------- properties
    @property
    def size(self) -> int:
        return int(self.y.shape[0])

    def __len__(self) -> int:
        return self.size

    @property
    def device(self) -> torch.device:
        return self.y.device

    @property
    def token_modalities(self) -> tuple[str, ...]:
        """The modalities whose ``feats`` are integer token ids (B, T) rather than (B, T, D)."""
        return tuple(m for m in self.modalities if not torch.is_floating_point(self.feats[m]))

    def avail_of(self, modality: str) -> torch.Tensor:
        """(B,) bool availability of one modality."""
        return self.avail[:, self.modalities.index(modality)]

    def present(self) -> torch.Tensor:
        """(B, M) bool: which modalities each row really has (before any training mask), i.e.
        where ``complete_feats()`` holds data rather than filler."""
        return self.native_avail if self.native_avail is not None else self.avail

    def observed(self) -> dict[str, torch.Tensor]:
        """{m: (B, T_m) bool}: the frames each row really has (before any training mask)."""
        return self.native_obs if self.native_obs is not None else self.obs_mask

    def lengths(self, modality: str) -> torch.Tensor:
        """(B,) number of real (non-padding) frames."""
        return self.pad_mask[modality].sum(1)

    # ----------------------------------------------------------------- transforms
    def to(self, device: torch.device | str) -> "MMBatch":
        mv = lambda d: None if d is None else {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return replace(
            self,
            feats=mv(self.feats),
            pad_mask=mv(self.pad_mask),
            obs_mask=mv(self.obs_mask),
            avail=self.avail.to(device),
            y=self.y.to(device),
            y_reg=None if self.y_reg is None else self.y_reg.to(device),
            complete=mv(self.complete),
            native_avail=None if self.native_avail is None else self.native_avail.to(device),
            native_obs=mv(self.native_obs),
        )

    def for_eval(self) -> "MMBatch":
        """The batch a model may see at evaluation: without the complete (unmasked) features or
        the masks from before the mask."""
        return replace(self, complete=None, native_avail=None, native_obs=None)

    def complete_feats(self) -> dict[str, torch.Tensor]:
        """The unmasked features: ``complete`` when the batch was masked, else ``feats``."""
        return self.complete if self.complete is not None else self.feats

    def index(self, idx: torch.Tensor | np.ndarray | Sequence[int]) -> "MMBatch":
        """Rows ``idx`` of the batch."""
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.y.device)
        sel = lambda d: None if d is None else {k: v[idx] for k, v in d.items()}  # noqa: E731
        return replace(
            self,
            feats=sel(self.feats),
            pad_mask=sel(self.pad_mask),
            obs_mask=sel(self.obs_mask),
            avail=self.avail[idx],
            y=self.y[idx],
            ids=[self.ids[i] for i in idx.tolist()] if self.ids else [],
            y_reg=None if self.y_reg is None else self.y_reg[idx],
            complete=sel(self.complete),
            native_avail=None if self.native_avail is None else self.native_avail[idx],
            native_obs=sel(self.native_obs),
        )

    def validate(self) -> "MMBatch":
        """Check shapes, dtypes and mask consistency; raise `DataError` naming what is wrong."""
        b = self.size
        if self.avail.shape != (b, len(self.modalities)) or self.avail.dtype != torch.bool:
            raise DataError(
                f"MMBatch.avail: expected bool ({b}, {len(self.modalities)}), "
                f"got {self.avail.dtype} {tuple(self.avail.shape)}"
            )
        for m in self.modalities:
            for name, d in (("feats", self.feats), ("pad_mask", self.pad_mask), ("obs_mask", self.obs_mask)):
                if m not in d:
                    raise DataError(f"MMBatch.{name}: modality {m!r} is missing (have {sorted(d)})")
            x = self.feats[m]
            token = not torch.is_floating_point(x)
            if token:
                if x.dtype != torch.long or x.dim() != 2 or x.shape[0] != b:
                    raise DataError(f"MMBatch.feats[{m!r}]: token ids expected int64 (B={b}, T), "
                                    f"got {x.dtype} {tuple(x.shape)}")
                if x.numel() and (int(x.min()) < 0 or int(x.max()) >= VOCAB_SIZE):
                    raise DataError(f"MMBatch.feats[{m!r}]: token ids must lie in [0, {VOCAB_SIZE}), "
                                    f"got range [{int(x.min())}, {int(x.max())}]")
            elif x.dim() != 3 or x.shape[0] != b:
                raise DataError(f"MMBatch.feats[{m!r}]: expected (B={b}, T, D), got {tuple(x.shape)}")
            t = x.shape[1]
            for name, mask in (("pad_mask", self.pad_mask[m]), ("obs_mask", self.obs_mask[m])):
                if mask.shape != (b, t) or mask.dtype != torch.bool:
                    raise DataError(
                        f"MMBatch.{name}[{m!r}]: expected bool ({b}, {t}), got {mask.dtype} {tuple(mask.shape)}"
                    )
            if (self.obs_mask[m] & ~self.pad_mask[m]).any():
                raise DataError(f"MMBatch.obs_mask[{m!r}] marks padding frames as observed")
            if not token and not torch.isfinite(x).all():
                raise DataError(f"MMBatch.feats[{m!r}] contains NaN or inf")
        return self


def _collate_tokens(samples: Sequence[dict], m: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) int64 token ids padded with [PAD] = 0, and the (B, T) pad mask."""
    arrs = []
    for i, s in enumerate(samples):
        if m not in s["feats"]:
            raise DataError(f"collate: sample {i} has no modality {m!r}")
        a = np.asarray(s["feats"][m])
        if a.ndim != 1 or a.dtype.kind not in "iu" or a.size == 0:
            raise DataError(f"collate: sample {i} token modality {m!r}: expected integer ids (T,), got {a.dtype} {a.shape}")
        arrs.append(a.astype(np.int64))
    x = np.full((len(arrs), max(len(a) for a in arrs)), PAD_ID, np.int64)
    mask = np.zeros(x.shape, bool)
    for i, a in enumerate(arrs):
        x[i, : len(a)], mask[i, : len(a)] = a, True
    return torch.from_numpy(x), torch.from_numpy(mask)


def collate(
    samples: Sequence[dict],
    modalities: Sequence[str],
    tokens: Sequence[str] = (),
) -> MMBatch:
    """Pad a list of samples into an `MMBatch`.

    Each sample is a dict with ``feats`` {m: array (T_m, D_m) or (D_m,)}, ``y`` (int), and
    optionally ``id`` (str), ``y_reg`` (float) and ``avail`` {m: bool} (default all True).
    Sequences are zero-padded at the end to the longest one in the batch. The modalities named
    in ``tokens`` hold integer token ids (T_m,) instead, padded with [PAD] = 0.
    """
    if not samples:
        raise DataError("collate: got an empty list of samples")
    modalities = tuple(modalities)
    feats, pad = {}, {}
    for m in modalities:
        if m in tokens:
            feats[m], pad[m] = _collate_tokens(samples, m)
            continue
        arrs = []
        for i, s in enumerate(samples):
            if m not in s["feats"]:
                raise DataError(f"collate: sample {i} has no modality {m!r}")
            a = np.asarray(s["feats"][m], dtype=np.float32)
            if a.ndim == 1:
                a = a[None, :]
            if a.ndim != 2:
                raise DataError(f"collate: sample {i} modality {m!r}: expected (T, D) or (D,), got {a.shape}")
            arrs.append(a)
        dims = {a.shape[1] for a in arrs}
        if len(dims) != 1:
            raise DataError(f"collate: modality {m!r} has inconsistent feature sizes {sorted(dims)}")
        t_max = max(max(a.shape[0] for a in arrs), 1)
        x = np.zeros((len(arrs), t_max, dims.pop()), np.float32)
        mask = np.zeros((len(arrs), t_max), bool)
        for i, a in enumerate(arrs):
            x[i, : a.shape[0]] = a
            mask[i, : a.shape[0]] = True
        feats[m] = torch.from_numpy(x)
        pad[m] = torch.from_numpy(mask)
    avail = torch.tensor(
        [[bool(s.get("avail", {}).get(m, True)) for m in modalities] for s in samples], dtype=torch.bool
    )
    obs = {m: pad[m] & avail[:, j, None] for j, m in enumerate(modalities)}
    y = torch.tensor([int(s["y"]) for s in samples], dtype=torch.long)
    y_reg = None
    if all("y_reg" in s for s in samples):
        y_reg = torch.tensor([float(s["y_reg"]) for s in samples], dtype=torch.float32)
    ids = [str(s.get("id", i)) for i, s in enumerate(samples)]
    return MMBatch(modalities, feats, pad, obs, avail, y, ids, y_reg).validate()

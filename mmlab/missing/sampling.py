"""Training-time missingness: draw masks for one train batch and apply them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmlab.data.batch import MMBatch
from mmlab.missing.fill import mask_batch, resolve_fill


def random_mask_batch(batch: MMBatch, generator: Any, fill: Any, rng: np.random.Generator,
                      torch_gen: torch.Generator | None = None) -> MMBatch:
    """Draw masks for a train batch with the stage's ``rng`` and apply them.

    ``generator`` is any mask generator (e.g. ``RandomPattern(p_full=1/7)``); ``fill`` a fill
    policy or its name ("zero", "noise"; "mean" needs ``make_fill("mean", train=...)``). The
    result keeps the complete features in ``batch.complete``.
    """
    pad = {m: batch.pad_mask[m].cpu().numpy() for m in batch.modalities}
    masks = generator(pad, batch.modalities, rng)
    return mask_batch(batch, masks, resolve_fill(fill), generator=torch_gen)

"""The interface every method (ADMC, baselines, the reference model) implements.

A method is an ``nn.Module`` that

- declares its training ``stages(data)`` for the one `mmlab.train.Trainer`;
- names the ``fill`` policy the evaluator applies to missing inputs before calling it
  (``"zero"``, ``"mean"`` or ``"noise"``; missingness is applied *outside* the model);
- returns class logits from ``predict_logits(batch)`` for a masked, filled batch whose
  ``avail`` / ``obs_mask`` say what is missing. It never sees ``batch.complete`` at evaluation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mmlab.data.batch import MMBatch

if TYPE_CHECKING:  # pragma: no cover
    from mmlab.data.dataset import MMDataset
    from mmlab.train import Stage


class Method(nn.Module):
    """Base class: subclasses set ``name`` and ``fill`` and implement the two methods below."""

    name: str = "method"
    fill: str = "zero"

    def stages(self, data: "MMDataset") -> list["Stage"]:
        """The training stages, in order (see `mmlab.train.Stage`)."""
        raise NotImplementedError

    def predict_logits(self, batch: MMBatch) -> torch.Tensor:
        """(B, C) class logits for a masked, filled batch."""
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        """The method's resolved config as a plain dict (saved beside its checkpoints)."""
        cfg = getattr(self, "cfg", None)
        if cfg is None:
            return {}
        from mmlab.config import to_dict

        return to_dict(cfg)

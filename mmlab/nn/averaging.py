"""An exponential moving average of a module's weights (Polyak averaging), for the Trainer's
``TrainConfig.ema``.

After every optimisation step ``average <- decay * average + (1 - decay) * weights`` for every
floating-point parameter and buffer; integer and boolean buffers (counters, "initialised"
flags) take the live value. The average starts from the weights after the first step, so
parts that initialise on their first forward (ActNorm) start from their initialised values.
With ``decay = 0.99`` and 47 steps an epoch (3000 rows, batch 64) the average spans about the
last two epochs.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


class WeightAverage:
    """The running average of ``module``'s ``state_dict``; `swapped` evaluates with it."""

    def __init__(self, module: nn.Module, decay: float, state: dict[str, torch.Tensor] | None = None):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"WeightAverage: decay must be in (0, 1), got {decay!r}")
        self.module, self.decay = module, decay
        self.state = None if state is None else {k: v.detach().clone() for k, v in state.items()}

    @torch.no_grad()
    def update(self) -> None:
        """Fold the module's current weights into the average (call after each optimiser step)."""
        live = self.module.state_dict()
        if self.state is None:
            self.state = {k: v.detach().clone() for k, v in live.items()}
            return
        for k, v in live.items():
            avg = self.state[k]
            if avg.is_floating_point():
                avg.mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
            else:
                avg.copy_(v)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """Inside the block the module holds the averaged weights; the live ones come back after
        (also on an exception). A no-op before the first `update`."""
        if self.state is None:
            yield
            return
        live = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self.module.load_state_dict(self.state)
        try:
            yield
        finally:
            self.module.load_state_dict(live)

"""An exponential moving average of a module's weights (Polyak averaging), for the Trainer's
``TrainConfig.ema``.

After update n (n = 1, 2, ...) ``average <- d_n * average + (1 - d_n) * weights`` for every
floating-point parameter and buffer, with the warm-up d_n = min(decay, n / (n + c)), c =
``warmup`` (9: TensorFlow's ``ExponentialMovingAverage(num_updates=...)``): the first update
copies the weights (so parts that initialise on their first forward, such as ActNorm, start from
their initialised values) and a short run is not dominated by its first steps. Only the entries
named in ``averaged`` (the Trainer passes the stage's trainable parameters and the buffers of its
modules) are averaged, and only floating-point ones; every other entry (frozen parts, integer
and boolean buffers such as counters and "initialised" flags) is copied from the live module, so
a frozen weight stays bit-for-bit what it was. With ``decay = 0.99`` and c = 9 the warm-up ends
after 891 updates (19 epochs of 3000 rows in batches of 64); until then iterate k of n weighs
about c k^(c-1) / n^c, the last ~n/c updates, so a run that keeps an earlier epoch never reaches
the decay (a larger decay changes nothing there; a smaller c averages a longer stretch). After
the warm-up the average spans about the last 100 steps.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Collection, Iterator

import torch
from torch import nn


class WeightAverage:
    """The running average of ``module``'s ``state_dict``; `swapped` evaluates with it."""

    def __init__(self, module: nn.Module, decay: float, saved: dict[str, Any] | None = None,
                 averaged: Collection[str] | None = None, warmup: int = 9):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"WeightAverage: decay must be in (0, 1), got {decay!r}")
        if warmup < 1:
            raise ValueError(f"WeightAverage: warmup must be a positive integer, got {warmup!r}")
        self.module, self.decay, self.warmup = module, decay, warmup
        self.averaged = set(module.state_dict()) if averaged is None else set(averaged)
        self.updates, self.state = 0, None
        if saved is not None:  # what `saved` returned (a checkpoint's "ema")
            self.updates = int(saved["updates"])
            self.state = {k: v.detach().clone() for k, v in saved["state"].items()}

    def saved(self) -> dict[str, Any]:
        """The average and its update count, for a checkpoint."""
        return {"updates": self.updates, "state": self.state}

    @torch.no_grad()
    def update(self) -> None:
        """Fold the module's current weights into the average (call after each optimiser step)."""
        live = self.module.state_dict()
        self.updates += 1
        if self.state is None:
            self.state = {k: v.detach().clone() for k, v in live.items()}
            return
        decay = min(self.decay, self.updates / (self.updates + self.warmup))
        for k, v in live.items():
            avg = self.state[k]
            if k in self.averaged and avg.is_floating_point():
                avg.mul_(decay).add_(v.detach(), alpha=1.0 - decay)
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

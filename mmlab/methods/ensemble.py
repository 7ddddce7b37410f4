"""``*_x3``: a deep ensemble of one registered method, any method that declares stages.

Deep ensembles (Lakshminarayanan, Pritzel and Blundell, "Simple and Scalable Predictive
Uncertainty Estimation using Deep Ensembles", arXiv:1612.01474): ``size`` copies of the
``member`` method, each trained from its own initialisation and its own training randomness
with its own early stopping on the valid split, and at prediction the average of their class
probabilities,

    p(y | x) = (1 / N) sum_i p_i(y | x),   returned as log p(y | x).

Nothing is chosen on test and nothing is tuned per member: the members are the registered
method at its defaults. The ensemble only lowers the variance over initialisations and
training order that a single run carries (the 0.2-0.5 points of seed spread of
`docs/gap_to_oracle.md`); it costs ``size`` times the training and the prediction.

How it runs on the one Trainer: ``stages`` returns every member's stages in turn, renamed
``member{i}-{stage}`` and validated on their own member's predictions (a stage that validates
"the method" validates its member). Member 0 is built first from the global RNG the run seed
set and keeps the run seed, and its stages come first, so it is exactly the single run of
``member`` with that seed (a size-1 ensemble reproduces it); member i > 0 is built next from
the same RNG stream and gets ``derive_seed(seed, "ensemble member", i)`` for its own
generators, while the Trainer's epoch seeds differ by stage index.

Members with test-time options chosen on valid (ADMC's K) or that read token ids themselves
(CIDer) are refused: their choices are made by the Trainer for one method, not per member.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError
from mmlab.methods.base import Method
from mmlab.methods.copies import Copies, check_member, refuse_unsupported
from mmlab.utils import derive_seed


MAX_SIZE = 100


@dataclass
class EnsembleConfig:
    """``member``: a registered method name; ``size``: how many copies are trained and
    averaged; ``preset``: the member's preset (``--preset paper`` reaches the members through
    it); ``overrides``: dotted overrides applied to every member after it
    (``["train.epochs=10"]``), empty = the member's defaults."""

    member: str = "ae"
    size: int = 3
    preset: str | None = None
    overrides: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 1 <= self.size <= MAX_SIZE:
            raise ConfigError(f"EnsembleConfig.size: expected an integer from 1 to {MAX_SIZE}, got {self.size!r}")
        check_member("EnsembleConfig", self.member, self.overrides, self.preset)
        from mmlab.methods import method_class

        if not getattr(method_class(self.member), "uses_seed", True):
            raise ConfigError(f"EnsembleConfig.member: {self.member!r} gives the same model whatever the seed, so "
                              f"its {self.size} copies would be identical; expected a method that trains from a "
                              "random start")


class Ensemble(Copies):
    """The average of ``size`` independently trained copies of ``member`` (see module doc)."""

    Config = EnsembleConfig
    PRESETS = {"paper": {"preset": "paper"}}
    name = "ensemble"

    def __init__(self, cfg: EnsembleConfig | None, data: MMDataset):
        super().__init__()
        from mmlab.methods import make_method

        self.cfg = cfg = cfg or EnsembleConfig()
        # members drawn one after another from the global RNG (seeded with the run seed by the caller)
        first = make_method(cfg.member, data, list(cfg.overrides), preset=cfg.preset)
        refuse_unsupported("EnsembleConfig", cfg.member, first)
        self.members = nn.ModuleList([first, *(make_method(cfg.member, data, list(cfg.overrides), preset=cfg.preset)
                                               for _ in range(cfg.size - 1))])
        self.fill = first.fill

    def named_copies(self) -> Iterator[tuple[str, Method]]:
        return ((f"member{i}", m) for i, m in enumerate(getattr(self, "members", ())))

    def copy_seed(self, name: str) -> int:
        return self.member_seed(int(name.removeprefix("member")))

    def member_seed(self, i: int) -> int:
        """The run seed for member 0, a derived one for the others."""
        return self._seed if i == 0 else derive_seed(self._seed, "ensemble member", i)

    def predict_logits(self, batch: MMBatch) -> torch.Tensor:
        """log of the members' class probabilities averaged."""
        logp = torch.stack([F.log_softmax(m.predict_logits(batch).float(), -1) for m in self.members])
        return torch.logsumexp(logp, 0) - math.log(len(self.members))

"""``*_pp``: one model per availability pattern, each trained on its pattern only.

The neural counterpart of `pooled_linear`'s structure (one classifier per pattern): for every
non-empty subset P of the modalities, a copy of the ``member`` method is built on the dataset
cut down to P's modalities and trained, early-stopped and selected on complete input of those
modalities (``specialist_overrides``, by default ``train_on=full`` and ``validate_on=full``).
At prediction each sample goes to the specialist of the modalities it has, so every pattern is
classified by a model that saw it in every training step, where the shared model sees each of
the 2^M - 1 patterns a fraction of the steps and must fit them all with one set of weights.
A sample with no modality gets the train class prior.

Why it is here (issue #18, `docs/gap_to_oracle.md` §17.1): with the skip from the frames' mean
the shared `zero_fill` sits about 0.5 under `pooled_linear` on `synthetic`; trained per pattern
(`docs/results/gap_diagnostics/specialists/`) it gains most where two modalities are combined.
It costs 2^M - 1 trainings (7 for three modalities; each on fewer modalities, so cheaper than
the shared model's), and a pattern that is rare or absent in a real test set still costs its
training. More than ``max_modalities`` modalities are refused (2^M models).

With ``shared=True`` (registered as ``zero_fill_pp_shared``) the member is also trained once as
the shared model (its own defaults and ``overrides``, on every row), and for each pattern the
Trainer chooses on valid accuracy, that pattern alone, between its specialist and the shared
model (`Method.test_options_per_pattern`; the specialist on a tie). Where sharing helps a
pattern (on `synthetic`, {T}: its text encoder learns from four patterns) the shared model can
keep it. One more training; its seed is ``derive_seed(seed, "specialist", "shared")``.

Seeds: the specialist of all modalities keeps the run seed; the others get
``derive_seed(seed, "specialist", pattern)``. Natural missingness (``MMDataset.avail``): a
specialist is built and trained on the rows that have all of its modalities (`rows_with`), and a
sample goes to the specialist of the modalities it has; its validation reads every valid row
(`Validation` has no row filter), so a natively missing modality there is filled as usual.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np
import torch
from torch import nn

from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.methods.base import Method, Stage
from mmlab.methods.copies import Copies, check_member, refuse_unsupported
from mmlab.utils import derive_seed


@dataclass
class SpecialistsConfig:
    """``member``: a registered method name that can train and validate on complete input;
    ``specialist_overrides``: how each copy is told to train on its pattern only;
    ``overrides``: dotted overrides for every specialist after those; ``preset``: the member's
    preset; ``max_modalities``: refuse datasets with more (2^M - 1 specialists); ``shared``: also
    train the shared member and choose per pattern on valid between it and the specialist."""

    member: str = "zero_fill"
    specialist_overrides: list[str] = field(default_factory=lambda: ["train_on=full", "validate_on=full"])
    overrides: list[str] = field(default_factory=list)
    preset: str | None = None
    max_modalities: int = 6
    shared: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.specialist_overrides, list):
            raise ConfigError("SpecialistsConfig.specialist_overrides: expected a list of 'key=value' strings, "
                              f"got {self.specialist_overrides!r}")
        check_member("SpecialistsConfig", self.member, [*self.specialist_overrides, *self.overrides]
                     if isinstance(self.overrides, list) else self.overrides, self.preset)
        if isinstance(self.max_modalities, bool) or not isinstance(self.max_modalities, int) or self.max_modalities < 1:
            raise ConfigError(f"SpecialistsConfig.max_modalities: expected a positive integer, got {self.max_modalities!r}")
        if not isinstance(self.shared, bool):
            raise ConfigError(f"SpecialistsConfig.shared: expected true or false, got {self.shared!r}")


SHARED = "shared"  # the copy trained on every pattern (``shared=True``)


def pattern_name(modalities: tuple[str, ...]) -> str:
    """The stage-name prefix of a pattern's specialist, e.g. "A_T"."""
    return "_".join(modalities)


def rows_with(data: MMDataset, modalities: tuple[str, ...], needed: str = "train") -> MMDataset:
    """The rows of ``data`` that natively have every one of ``modalities`` (all rows without
    natural missingness); `DataError` when none of them is in split ``needed``."""
    have = data.has_all(modalities)
    if have.all():
        return data
    if not (have & (data.split == needed)).any():
        raise DataError(f"dataset {data.name!r}: no {needed} row has all of {list(modalities)}; "
                        "a specialist of that pattern cannot be trained")
    return data.take(np.flatnonzero(have))


def restrict(data: MMDataset, modalities: tuple[str, ...], needed: str = "train") -> MMDataset:
    """``data`` with only ``modalities``, on the rows that have them all (`rows_with`; same
    splits and labels; no oracle)."""
    data = rows_with(data, modalities, needed)
    keep = set(modalities)
    return replace(data, modalities=modalities, feats={m: data.feats[m] for m in modalities},
                   lengths={m: data.lengths[m] for m in modalities},
                   avail={m: a for m, a in data.avail.items() if m in keep}, info={})


class Specialists(Copies):
    """One ``member`` per availability pattern, each trained on its pattern (see module doc)."""

    Config = SpecialistsConfig
    PRESETS = {"paper": {"preset": "paper"}}
    name = "specialists"

    def __init__(self, cfg: SpecialistsConfig | None, data: MMDataset):
        super().__init__()
        from mmlab.methods import make_method

        self.cfg = cfg = cfg or SpecialistsConfig()
        if data.token_modalities:
            raise ConfigError(f"SpecialistsConfig.member: {cfg.member!r} on {data.name!r}: token-text modalities are "
                              "not supported per pattern")
        if len(data.modalities) > cfg.max_modalities:
            raise ConfigError(f"SpecialistsConfig.max_modalities: {data.name!r} has {len(data.modalities)} modalities "
                              f"(2^{len(data.modalities)} - 1 specialists); raise max_modalities to allow it")
        self.modalities = tuple(data.modalities)
        self.patterns = {pattern_name(p): p for k in range(len(self.modalities), 0, -1)
                         for p in itertools.combinations(self.modalities, k)}  # all modalities first
        self._position = {key: i for i, key in enumerate(self.patterns)}  # index into `use_shared`
        overrides = [*cfg.specialist_overrides, *cfg.overrides]
        specialists = {key: make_method(cfg.member, restrict(data, p), overrides, preset=cfg.preset)
                       for key, p in self.patterns.items()}
        refuse_unsupported("SpecialistsConfig", cfg.member, next(iter(specialists.values())))  # one member class
        self.specialists = nn.ModuleDict(specialists)
        self.shared = make_method(cfg.member, data, list(cfg.overrides), preset=cfg.preset) if cfg.shared else None
        # per pattern (in `patterns` order): classify with the shared model instead of the specialist
        self.register_buffer("use_shared", torch.zeros(len(self.patterns), dtype=torch.bool))
        counts = np.bincount(data.y[data.split == "train"], minlength=data.n_classes).astype(np.float64)
        self.register_buffer("log_prior", torch.tensor(np.log((counts + 1) / (counts + 1).sum()), dtype=torch.float32))
        self.fill = self.shared.fill if self.shared is not None else "zero"  # specialists never see a missing modality

    test_options_per_pattern = True

    def named_copies(self) -> Iterator[tuple[str, Method]]:
        yield from getattr(self, "specialists", {}).items()
        if getattr(self, "shared", None) is not None:
            yield SHARED, self.shared

    def copy_seed(self, name: str) -> int:
        """The run seed for the specialist of all modalities, a derived one for the others."""
        return self._seed if name != SHARED and len(self.patterns[name]) == len(self.modalities) else derive_seed(
            self._seed, "specialist", name)

    def copy_data(self, name: str, data: MMDataset) -> MMDataset:
        return data if name == SHARED else restrict(data, self.patterns[name])

    def copy_rows(self, name: str, stage: Stage, data: MMDataset) -> MMDataset | None:
        """Under natural missingness, the train rows that have all the pattern's modalities."""
        if not data.avail or name == SHARED:
            return stage.data
        return rows_with(stage.data if stage.data is not None else data.subset("train"), self.patterns[name])

    def copy_valid(self, name: str, valid: MMDataset) -> MMDataset | None:
        if name == SHARED:
            return valid
        try:
            return restrict(valid, self.patterns[name], needed="valid")
        except DataError:
            return None  # no valid row has the pattern: nothing to calibrate on

    # ------------------------------------------------------------------ shared or specialist, per pattern
    def test_options(self) -> dict[str, list[str]]:
        return {"source": ["specialist", SHARED]} if self.shared is not None else {}

    def set_test_options(self, source: str) -> None:
        self.use_shared.fill_(source == SHARED)

    def set_pattern_options(self, choice: dict[tuple[str, ...], dict[str, str]]) -> None:
        for i, key in enumerate(self.patterns):  # a pattern no valid row has keeps its specialist
            self.use_shared[i] = choice.get(self.patterns[key], {}).get("source") == SHARED

    def chosen(self) -> dict[str, str]:
        """Pattern -> "specialist" or "shared" (all "specialist" without a shared model)."""
        return {key: SHARED if flag else "specialist" for key, flag in zip(self.patterns, self.use_shared.tolist())}

    def predict_logits(self, batch: MMBatch) -> torch.Tensor:
        """Each row from the specialist of its available modalities (no modality: the prior)."""
        avail = batch.avail.bool()
        out = self.log_prior.to(avail.device).expand(len(avail), -1).clone()
        rows, inverse = torch.unique(avail.long(), dim=0, return_inverse=True)
        for r, row in enumerate(rows.tolist()):
            present = tuple(m for m, a in zip(self.modalities, row) if a)
            if not present:
                continue
            idx = (inverse == r).nonzero().squeeze(1)
            key = pattern_name(present)
            model = self.shared if self.use_shared[self._position[key]] else self.specialists[key]
            out[idx] = model.predict_logits(batch.index(idx)).float()
        return out

"""What the methods made of copies of another registered method share (`Ensemble`,
`Specialists`): the member checked when the config is made, the run seed handed on to every
copy, every copy's stages on the one Trainer (renamed ``<copy>-<stage>``, validated on their
own copy's predictions, and checkpointing their own copy only: ``Stage.state``), and each copy's
own calibration.

A subclass builds ``self.copies`` (name -> member) and says, per copy, its seed
(`copy_seed`), the dataset its stages are declared on (`copy_data`) and the rows it trains on
(`copy_rows`); the prediction is its own.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

from mmlab.config import refuse_seed_override
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError
from mmlab.methods.base import Method, Stage


def check_member(who: str, member: str, overrides: list[str], preset: str | None) -> None:
    """Fail when the config is made (before any job runs), not when the first job builds the
    copies: ``member`` registered and a single method, ``overrides`` a list of 'key=value'
    strings that apply to its config, no seed among them (the run seed reaches every copy)."""
    from mmlab.methods import method_class, method_config

    if not isinstance(member, str) or not member:
        raise ConfigError(f"{who}.member: expected a registered method name, got {member!r}")
    if getattr(method_class(member), "combines_copies", False):
        raise ConfigError(f"{who}.member: {member!r} itself combines copies of a method (an ensemble, or one per "
                          "pattern); expected a single method")
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"{who}.overrides: expected a list of 'key=value' strings, got {overrides!r}")
    refuse_seed_override(overrides, where=f"{who}.overrides")
    try:
        method_config(member, overrides, preset)
    except ConfigError as err:
        raise ConfigError(f"{who} (member {member!r}): {err}") from None


def refuse_unsupported(who: str, member: str, built: Method) -> None:
    """Copies of a method that reads token ids itself (CIDer) or chooses test-time options on
    valid (ADMC's K) are refused: the Trainer makes those choices for one method, not per copy."""
    if getattr(type(built), "reads_tokens", False):
        raise ConfigError(f"{who}.member: {member!r} reads token ids itself; copies of it are not supported")
    options = built.test_options()
    if options:
        raise ConfigError(f"{who}.member: {member!r} chooses test-time options on valid ({sorted(options)}); "
                          "copies of it are not supported")


class Copies(Method):
    """Base of the methods made of copies of one registered method (see module doc)."""

    combines_copies = True
    _seed = 0

    def named_copies(self) -> Iterator[tuple[str, Method]]:
        """(name, member) of every copy, in training order; none before they are built."""
        raise NotImplementedError

    def copy_seed(self, name: str) -> int:
        raise NotImplementedError

    def copy_data(self, name: str, data: MMDataset) -> MMDataset:
        """The dataset the copy's stages are declared on (default: the method's)."""
        return data

    def copy_rows(self, name: str, stage: Stage, data: MMDataset) -> MMDataset | None:
        """The rows the copy's stage trains on (default: the stage's own choice)."""
        return stage.data

    def copy_valid(self, name: str, valid: MMDataset) -> MMDataset | None:
        """The valid rows the copy calibrates on (None: it has none; default: all)."""
        return valid

    @property
    def seed(self) -> int:  # type: ignore[override]
        """The run seed; setting it gives every copy its own (`copy_seed`)."""
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        self._seed = int(value)
        for name, member in self.named_copies():  # none yet while the subclass builds them
            member.seed = self.copy_seed(name)

    def stages(self, data: MMDataset) -> list[Stage]:
        out: list[Stage] = []
        for name, member in self.named_copies():
            for stage in member.stages(self.copy_data(name, data)):
                check = stage.validate
                if check.kind == "classifier":
                    check = replace(check, logits=check.logits or member.predict_logits, fill=check.fill or member.fill)
                out.append(replace(stage, name=f"{name}-{stage.name}", validate=check,
                                   data=self.copy_rows(name, stage, data),
                                   state=stage.state if stage.state is not None else member))
        return out

    def calibrate(self, valid: MMDataset) -> dict | None:
        """Each copy's own valid-split calibration, if it has one."""
        chosen = {}
        for name, member in self.named_copies():
            rows = self.copy_valid(name, valid)
            if rows is not None and (c := member.calibrate(rows)) is not None:
                chosen[name] = c
        return chosen or None

    def completes(self) -> bool:
        return False

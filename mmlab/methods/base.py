"""The method contract: what every method (ADMC, the baselines, CM-ARR, CIDer) declares.

A method is an ``nn.Module`` that **declares** and never runs its own loops:

- ``stages(data)``: its training, a list of `Stage` s that the one `mmlab.train.Trainer` runs in
  order. A stage names its trainable modules, its loss (or a manual two-step ``step`` hook), its
  optimiser's parameter groups, training data precomputed from frozen parts (``features``,
  cached by the Trainer) and what to validate (a `Validation`, carried out by `mmlab.evaluate`);
- ``fill``: the fill policy the evaluator applies to missing inputs before calling it
  (``"zero"``, ``"mean"``, ``"noise"``; missingness is applied *outside* the model);
- ``predict_logits(batch)``: (B, C) class logits for a masked, filled batch whose ``avail`` /
  ``obs_mask`` say what is missing. It never sees ``batch.complete`` at evaluation;
- optionally ``calibrate(valid)``: test-time settings chosen on the validation split only, after
  training (CIDer's debiasing strength tau); the Trainer records the result in the run folder;
- optionally the **completion interface** (`Completion`): a method that generates a missing
  modality's features (ADMC, CM-ARR) exposes ``generate`` / ``real_features`` /
  ``feature_logits`` and `mmlab.evaluate.generation_table` measures what it generates.

The run seed reaches the method as ``method.seed`` (set by the Trainer and by `make_method`);
every generator a method draws from derives from it (`mmlab.utils.torch_generator`).

Nothing here imports the trainer or the evaluator (import-linter checks it, see pyproject.toml).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from mmlab.data.batch import MMBatch
from mmlab.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from mmlab.data.dataset import MMDataset

HIGHER_IS_BETTER = ("accuracy", "macro_recall", "f1_weighted", "acc2", "acc7")
LOWER_IS_BETTER = ("loss", "mae")
LR_SCHEDULES = ("constant", "mmin_linear")
OPTIMIZERS = ("adam", "adamw")
VALIDATE_ON = ("full", "six", "seven")


@dataclass
class TrainConfig:
    """Optimisation of one stage plus run-level fields.

    ``optimizer``: "adam" (the papers' default) or "adamw"; ``lr`` / ``weight_decay`` apply to
    every parameter group that does not set its own (`Stage.param_groups`).
    ``select_metric``: "macro_recall" (UA), "accuracy" (WA) or "loss"/"mae" (lower is better).
    ``lr_schedule``: "constant" or "mmin_linear" (constant for niter = epochs // 2 epochs, then
    linear decay, MMIN's LambdaLR). ``patience`` 0 turns early stopping off; ``grad_clip`` 0 is
    off. ``ema``: decay of an exponential moving average of the weights (`mmlab.nn.averaging`;
    0 = off); when on, validation, selection and the kept state use the averaged weights and
    training goes on from the live ones; ``ema_warmup`` is the c of the average's warm-up
    min(ema, n / (n + c)) at update n (9, TensorFlow's; a smaller c averages over a longer stretch
    of the run). ``checkpoint_seconds``: ``last.pt`` is written after an
    epoch once this many seconds have passed since the last write (0 = every epoch) and always
    when a stage ends. ``seed``,
    ``device``, ``progress`` and ``checkpoint_seconds`` are run-level: the Trainer's values win
    over a stage's own config.
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    patience: int = 5
    select_metric: str = "macro_recall"
    lr_schedule: str = "constant"
    grad_clip: float = 0.0
    ema: float = 0.0
    ema_warmup: int = 9
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    eval_batch_size: int = 256
    checkpoint_seconds: float = 30.0

    def __post_init__(self) -> None:
        def need(name: str, ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(f"TrainConfig.{name}: expected {what}, got {getattr(self, name)!r}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        need("epochs", is_int(self.epochs) and self.epochs >= 0, "a non-negative integer")
        need("batch_size", is_int(self.batch_size) and self.batch_size >= 1, "a positive integer")
        need("eval_batch_size", is_int(self.eval_batch_size) and self.eval_batch_size >= 1, "a positive integer")
        need("patience", is_int(self.patience) and self.patience >= 0, "a non-negative integer (0 = off)")
        need("seed", is_int(self.seed) and self.seed >= 0, "a non-negative integer")
        need("lr", is_num(self.lr) and self.lr > 0, "a positive number")
        need("weight_decay", is_num(self.weight_decay) and self.weight_decay >= 0, "a non-negative number")
        need("optimizer", self.optimizer in OPTIMIZERS, f"one of {list(OPTIMIZERS)}")
        need("grad_clip", is_num(self.grad_clip) and self.grad_clip >= 0, "a non-negative number (0 = off)")
        need("ema", is_num(self.ema) and 0 <= self.ema < 1, "a number in [0, 1) (0 = off)")
        need("ema_warmup", is_int(self.ema_warmup) and self.ema_warmup >= 1, "a positive integer")
        need("select_metric", self.select_metric in HIGHER_IS_BETTER + LOWER_IS_BETTER,
             f"one of {list(HIGHER_IS_BETTER + LOWER_IS_BETTER)}")
        need("lr_schedule", self.lr_schedule in LR_SCHEDULES, f"one of {list(LR_SCHEDULES)}")
        need("progress", isinstance(self.progress, bool), "true/false")
        need("checkpoint_seconds", is_num(self.checkpoint_seconds) and self.checkpoint_seconds >= 0,
             "a non-negative number of seconds (0 = every epoch)")

    def lr_factor(self, epoch: int) -> float:
        """LR multiplier for 0-based ``epoch`` (MMIN: 1 - max(0, e + 1 - niter) / (niter_decay + 1))."""
        if self.lr_schedule == "constant":
            return 1.0
        niter = self.epochs // 2
        return 1.0 - max(0, epoch + 1 - niter) / (self.epochs - niter + 1)


class FeatureBatch(dict):
    """A batch of a stage's cached features: ``name -> (B, ...)`` tensors plus ``y`` (labels)
    and ``index`` (row numbers in the stage's data). What `Stage.features` returns, batched."""

    @property
    def y(self) -> torch.Tensor:
        return self["y"]

    @property
    def size(self) -> int:
        return int(self["y"].shape[0])


@dataclass
class Validation:
    """What a stage validates after every epoch; `mmlab.evaluate.validate` carries it out on the
    valid split only.

    ``kind``:

    - ``"classifier"``: logits of ``logits`` (default: the method's ``predict_logits``) on the
      valid rows under ``patterns`` ("full": complete input; "six": every non-empty proper subset
      of the modalities; "seven": both), filled with ``fill`` (default: the method's policy);
      metrics accuracy, macro_recall, f1_weighted and CE ``loss``, averaged over the patterns;
    - ``"features"``: the same four metrics from ``logits(features)`` on the stage's cached valid
      features (`Stage.features`), e.g. an MF on completed tokens;
    - ``"errors"``: ``errors(features)`` returns ``{name: tensor of per-element errors}`` on the
      cached valid features; each metric is the mean over the whole split (e.g. a denoiser's
      ε-MSE as ``loss`` and ε-MAE as ``mae``).
    """

    kind: Literal["classifier", "features", "errors"] = "classifier"
    logits: Callable[..., torch.Tensor] | None = None
    patterns: str = "full"
    fill: Any = None
    errors: Callable[[FeatureBatch], dict[str, torch.Tensor]] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("classifier", "features", "errors"):
            raise ConfigError(f"Validation.kind: expected 'classifier', 'features' or 'errors', got {self.kind!r}")
        if self.patterns not in VALIDATE_ON:
            raise ConfigError(f"Validation.patterns: expected one of {list(VALIDATE_ON)}, got {self.patterns!r}")
        if self.kind == "features" and self.logits is None:
            raise ConfigError("Validation(kind='features') needs logits=fn(features) -> (B, C)")
        if self.kind == "errors" and self.errors is None:
            raise ConfigError("Validation(kind='errors') needs errors=fn(features) -> {name: errors}")


LossFn = Callable[[Any, np.random.Generator], "tuple[torch.Tensor, dict[str, float]]"]
StepFn = Callable[[Any, np.random.Generator, "list[torch.optim.Optimizer]"], "dict[str, float]"]
FeatureFn = Callable[[MMBatch, str, torch.Generator], "dict[str, torch.Tensor]"]


@dataclass
class Stage:
    """One training stage of a method, run by `mmlab.train.Trainer`.

    - ``modules``: the trainable parts (all must belong to the method); everything else is frozen
      during the stage and runs in eval mode. A stage may have no trainable parameter and no
      loss (then it validates once and only computes, e.g. statistics in ``on_end``).
    - ``loss(batch, rng) -> (loss, logs)``: the training loss on a train batch (on the device);
      draw the stage's missingness inside it with ``rng`` (`mmlab.missing.random_mask_batch`).
      The Trainer runs backward and one optimiser step.
    - ``step(batch, rng, optimizers) -> logs``: instead of ``loss``, manual optimisation (as
      Lightning's ``automatic_optimization = False``): the hook runs its own backward passes and
      optimiser steps (CIDer: a step on the complete input, then one on the masked input with
      the teacher's outputs detached) and returns floats to log, ``"loss"`` among them.
    - ``param_groups(params) -> groups``: the optimiser's parameter groups (torch's format, e.g.
      a pretrained text encoder at lr 5e-5 with weight decay beside the rest); every trainable
      parameter must be in exactly one group; default one group with the config's lr and
      weight decay.
    - ``features(batch, split, generator) -> {name: (B, ...)}``: train on features computed
      from frozen parts instead of raw rows. The Trainer computes them once per stage for the
      train rows (and the valid rows when ``validate`` reads them), caches them, and hands
      ``loss`` / ``step`` a `FeatureBatch`. ``generator`` is seeded from the run seed.
    - ``validate``: a `Validation`. ``config``: the stage's optimisation (defaults to the
      Trainer's). ``data``: the training rows (default: the train split). ``on_end()``: runs after
      the best state is loaded (also when a finished stage is skipped on resume, so keep it a
      function of the weights).
    - ``state``: the part of the method whose state the stage's checkpoints, best state and
      weight average hold (it must hold every module of ``modules``); default the whole method.
      A method of many copies names the copy, so that each stage's checkpoints hold one copy,
      not every copy (`zero_fill_pp` on `handwritten`, 63 stages: 6 MB a ``last.pt`` instead of
      118, and the best state cloned at each improvement is one copy's). Only for stages that
      change nothing outside it.
    """

    name: str
    modules: list[nn.Module]
    loss: LossFn | None = None
    validate: Validation | None = None
    config: TrainConfig | None = None
    data: "MMDataset | None" = None
    on_end: Callable[[], None] | None = None
    step: StepFn | None = None
    param_groups: Callable[[list[nn.Parameter]], list[dict[str, Any]]] | None = None
    features: FeatureFn | None = None
    state: nn.Module | None = None

    def __post_init__(self) -> None:
        if self.loss is not None and self.step is not None:
            raise ConfigError(f"stage {self.name!r}: expected exactly one of loss= or step=, got both")
        if self.validate is None:
            self.validate = Validation()
        if not isinstance(self.validate, Validation):
            raise ConfigError(f"stage {self.name!r}: validate expected a Validation, got {type(self.validate).__name__}")
        if self.validate.kind != "classifier" and self.features is None:
            raise ConfigError(f"stage {self.name!r}: Validation(kind={self.validate.kind!r}) reads cached features; "
                              "expected Stage.features")


@runtime_checkable
class Completion(Protocol):
    """The completion interface: a method that generates a missing modality's features.

    ``generate(batch, target, generator, **options)`` -> (B, D) features of ``target``
    generated from the modalities ``batch.avail`` marks available (``target`` is unavailable),
    in the space of ``real_features(batch, target)`` (B, D); ``feature_logits(target, feats)``
    classifies such features with the method's frozen unimodal head of ``target`` (ADMC Table 4).
    """

    def generate(self, batch: MMBatch, target: str, generator: torch.Generator, **options: Any) -> torch.Tensor: ...

    def real_features(self, batch: MMBatch, target: str) -> torch.Tensor: ...

    def feature_logits(self, target: str, feats: torch.Tensor) -> torch.Tensor: ...


class Method(nn.Module):
    """Base class: subclasses set ``name`` and ``fill`` and implement ``stages`` and
    ``predict_logits``; ``calibrate`` and the completion interface are optional."""

    name: str = "method"
    fill: str = "zero"
    seed: int = 0  # the run seed; set by the Trainer / make_method
    # True for a method that runs a text encoder on token ids itself (CIDer); every other method
    # gets a token modality as features of the shared frozen encoder (`mmlab.methods.text`)
    reads_tokens: bool = False
    # False for a method whose fit draws nothing at random (`pooled_linear`): every seed gives the
    # same model, so an ensemble of copies of it is refused
    uses_seed: bool = True

    def stages(self, data: "MMDataset") -> list[Stage]:
        """The training stages, in order."""
        raise NotImplementedError

    def predict_logits(self, batch: MMBatch) -> torch.Tensor:
        """(B, C) class logits for a masked, filled batch."""
        raise NotImplementedError

    def test_options(self) -> dict[str, list[Any]]:
        """Test-time settings to choose on the validation split after training: ``{name: [values]}``
        (e.g. ADMC's number of averaged completions K). The Trainer scores every combination with
        `mmlab.evaluate.validate_classifier` under ``test_options_patterns`` on valid, keeps the
        best (the first on a tie, so list the cheapest first) via `set_test_options`, and records
        every score in ``calibration.json``. Default: nothing to choose."""
        return {}

    test_options_patterns: str = "seven"
    # True: the Trainer chooses a combination of `test_options` for each availability pattern on
    # its own (`mmlab.evaluate.validate_per_pattern`) and applies them with `set_pattern_options`
    test_options_per_pattern: bool = False

    def set_test_options(self, **options: Any) -> None:
        """Apply one combination of `test_options` (the Trainer calls it)."""
        raise NotImplementedError

    def set_pattern_options(self, choice: dict[tuple[str, ...], dict[str, Any]]) -> None:
        """Apply a combination of `test_options` per availability pattern (``{available
        modalities: combination}``; the Trainer calls it when ``test_options_per_pattern``)."""
        raise NotImplementedError

    def calibrate(self, valid: "MMDataset") -> dict[str, Any] | None:
        """Choose test-time settings on the validation split only (after training). Returns what
        was chosen (recorded in the run folder's ``calibration.json``) or None (nothing to do)."""
        return None

    def completes(self) -> bool:
        """Whether this method generates missing features (the completion interface); variants
        of a completing method without a generator override it to say no."""
        return isinstance(self, Completion)

    def generation_options(self) -> dict[str, list[Any]]:
        """For methods with the completion interface: option grids the generation protocol
        sweeps (ADMC: ``{"start_step": [30, 50, 80]}``); default none."""
        return {}

    def config_dict(self) -> dict[str, Any]:
        """The method's resolved config as a plain dict (saved beside its checkpoints)."""
        cfg = getattr(self, "cfg", None)
        if cfg is None:
            return {}
        from mmlab.config import to_dict

        return to_dict(cfg)


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU when it has none)."""
    t = next(module.parameters(), None)
    if t is None:
        t = next(module.buffers(), None)
    return t.device if t is not None else torch.device("cpu")

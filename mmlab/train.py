"""The one `Trainer` every method uses: stages, early stopping, atomic checkpoints, resume.

A method declares its training as a list of `Stage` s (ADMC: ITFN -> ADN -> MF, spec §1.4;
§4.1 item 12). For each stage the Trainer

1. freezes everything of the method outside ``stage.modules`` (``requires_grad=False``; the
   method is put in ``eval()`` and only the stage's modules in ``train()``, so frozen parts run
   without dropout and keep their normalisation statistics);
2. runs Adam on the stage's trainable parameters for ``epochs`` epochs. Epoch ``e`` shuffles the
   stage data with an rng derived from ``(seed, stage index, e)`` and reseeds torch's global
   RNG from the same triple, so a resumed run is bit-identical to an uninterrupted one;
3. validates after every epoch (``stage.validate()``, under ``no_grad`` and ``eval()``), keeps
   the best state by ``select_metric`` and stops early after ``patience`` epochs without
   improvement; at the end the best state is loaded and ``stage.on_end()`` runs.

Layout of ``out_dir``::

    config.json                       resolved config, written once
    metrics.csv                       time,stage,epoch,split,metric,value (append-only)
    checkpoints/<stage>/last.pt       after the stage's first epoch, then at most every
                                      ``checkpoint_seconds`` (default 30), and at its end
                                      (``done: True``); it holds the best state so far too
    checkpoints/<stage>/best.pt       the stage's best state, written when the stage ends

Checkpoints are plain dicts loadable with ``torch.load(path, weights_only=True)``. Calling
`Trainer.fit` again on the same ``out_dir`` resumes: finished stages are skipped (their best
state is loaded and ``on_end`` re-run), an unfinished stage continues from its ``last.pt``;
epochs it recomputes were already in metrics.csv and are not written twice.

The Trainer never reads the test split: the method's ``stages`` receive the dataset without
its test rows.
"""

from __future__ import annotations

import contextvars
import csv
import hashlib
import io
import json
import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

import mmlab
from mmlab import metrics
from mmlab.config import to_dict
from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError, MMLabError
from mmlab.utils import atomic_write_bytes, atomic_write_text, resolve_device

if TYPE_CHECKING:  # pragma: no cover
    from mmlab.methods.base import Method

HIGHER_IS_BETTER = ("accuracy", "macro_recall", "f1_weighted", "acc2", "acc7")
LOWER_IS_BETTER = ("loss", "mae")
LR_SCHEDULES = ("constant", "mmin_linear")
CSV_HEADER = ["time", "stage", "epoch", "split", "metric", "value"]


class TrainingError(MMLabError, RuntimeError):
    """Training cannot go on (e.g. a NaN loss); the message names the stage and epoch."""


@dataclass
class TrainConfig:
    """Optimisation of one stage (Adam, spec §1.4) plus run-level fields.

    ``select_metric``: "macro_recall" (UA), "accuracy" (WA) or "loss" (lower is better).
    ``lr_schedule``: "constant" or "mmin_linear" (constant for niter = epochs // 2 epochs, then
    linear decay, spec §1.4 [rec]). ``patience`` 0 turns early stopping off; ``grad_clip`` 0 is
    off. ``checkpoint_seconds``: ``last.pt`` is written after an epoch once this many seconds
    have passed since the last write (0 = every epoch) and always when a stage ends, so a crash
    loses at most that much training; a paper-size ADMC checkpoint is 0.3 GB, so writing one
    every epoch dominated its training. ``seed``, ``device``, ``progress`` and
    ``checkpoint_seconds`` are run-level: the Trainer's values win over a stage's own config.
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 5
    select_metric: str = "macro_recall"
    lr_schedule: str = "constant"
    grad_clip: float = 0.0
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    eval_batch_size: int = 256
    checkpoint_seconds: float = 30.0

    def __post_init__(self) -> None:
        def need(name: str, ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(f"TrainConfig.{name}: expected {what}, got {getattr(self, name)!r}")

        is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        is_num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
        need("epochs", is_int(self.epochs) and self.epochs >= 0, "a non-negative integer")
        need("batch_size", is_int(self.batch_size) and self.batch_size >= 1, "a positive integer")
        need("eval_batch_size", is_int(self.eval_batch_size) and self.eval_batch_size >= 1, "a positive integer")
        need("patience", is_int(self.patience) and self.patience >= 0, "a non-negative integer (0 = off)")
        need("seed", is_int(self.seed) and self.seed >= 0, "a non-negative integer")
        need("lr", is_num(self.lr) and self.lr > 0, "a positive number")
        need("weight_decay", is_num(self.weight_decay) and self.weight_decay >= 0, "a non-negative number")
        need("grad_clip", is_num(self.grad_clip) and self.grad_clip >= 0, "a non-negative number (0 = off)")
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


LossFn = Callable[[MMBatch, np.random.Generator], "tuple[torch.Tensor, dict[str, float]]"]


@dataclass
class Stage:
    """One training stage of a method.

    ``modules``: the trainable parts (all must belong to the method); everything else is frozen
    during the stage. ``loss(batch, rng)``: the training loss on a train batch (already on the
    device) and extra floats to log; draw the stage's missingness inside it with `rng` (see
    `random_mask_batch`). ``validate()``: metrics on the valid split, including the select
    metric. ``config``: the stage's optimisation (defaults to the Trainer's). ``data``: the
    training rows (default: the train split). ``on_end()``: runs after the best state is loaded
    (also when a finished stage is skipped on resume, so keep it a function of the weights).
    """

    name: str
    modules: list[nn.Module]
    loss: LossFn
    validate: Callable[[], dict[str, float]]
    config: TrainConfig | None = None
    data: MMDataset | None = None
    on_end: Callable[[], None] | None = None


# --------------------------------------------------------------------------- helpers for methods
def random_mask_batch(batch: MMBatch, generator: Any, fill: Any, rng: np.random.Generator,
                      torch_gen: torch.Generator | None = None) -> MMBatch:
    """Draw masks for a train batch with the stage ``rng`` and apply them (`mmlab.missing`).

    ``generator`` is any mask generator (e.g. ``RandomPattern(p_full=1/7)``); ``fill`` a fill
    policy or its name ("zero", "noise"; "mean" needs ``make_fill("mean", train=...)``). The
    result keeps the complete features in ``batch.complete``.
    """
    from mmlab import missing

    pad = {m: batch.pad_mask[m].cpu().numpy() for m in batch.modalities}
    masks = generator(pad, batch.modalities, rng)
    if isinstance(fill, str):
        fill = missing.make_fill(fill)
    return missing.mask_batch(batch, masks, fill, generator=torch_gen)


_EVAL_BATCH = contextvars.ContextVar("mmlab_eval_batch_size", default=256)


VALIDATE_ON = ("full", "six", "seven")


@torch.no_grad()
def validate_classifier(method: "Method | Callable[[MMBatch], torch.Tensor]", data: MMDataset,
                        patterns: str = "full", batch_size: int | None = None, fill: Any = None,
                        device: str | torch.device | None = None) -> dict[str, float]:
    """Valid-split accuracy (WA), macro_recall (UA), f1_weighted and CE loss, averaged over
    availability conditions: the one validation every classifier stage uses.

    ``method``: a `Method` (its ``predict_logits`` and ``fill``) or a logits function of an
    `MMBatch` (e.g. MMIN's teacher). ``patterns``: "full" (complete input), "six" (every
    non-empty proper subset of the modalities, `mmlab.missing.all_patterns`; MMIN's selection)
    or "seven" (full + six). ``fill`` overrides ``method.fill`` (a policy name or object, e.g.
    ``make_fill("mean", train=...)``). Logits come from `mmlab.evaluate.predict`, the loop the
    test protocols use. Only valid-split rows are accepted: model selection never sees test.
    """
    from mmlab.evaluate import predict
    from mmlab.missing import FixedPattern, all_patterns, draw_masks, make_fill, pad_masks

    if len(data) == 0 or set(np.unique(data.split)) != {"valid"}:
        raise DataError(f"validate_classifier: expected rows of the 'valid' split only, got splits {sorted(set(data.split))}")
    if patterns not in VALIDATE_ON:
        raise ConfigError(f"validate_classifier: patterns expected one of {list(VALIDATE_ON)}, got {patterns!r}")
    if device is None:
        owner = method if isinstance(method, nn.Module) else getattr(method, "__self__", None)
        param = next(owner.parameters(), None) if isinstance(owner, nn.Module) else None
        device = param.device if param is not None else torch.device("cpu")
    fill = getattr(method, "fill", "zero") if fill is None else fill
    fill = make_fill(fill) if isinstance(fill, str) else fill
    six = [p.available for p in all_patterns(data.modalities)]
    conds = {"full": [None], "six": six, "seven": [None, *six]}[patterns]
    pad, y = pad_masks(data), torch.from_numpy(data.y.astype(np.int64))
    rows = []
    for cond in conds:
        masks = None if cond is None else draw_masks(FixedPattern(cond), pad, data.modalities, 0)
        lg = torch.from_numpy(predict(method, data, masks, batch_size or _EVAL_BATCH.get(), device, fill=fill))
        pred, c = lg.argmax(1).numpy(), lg.shape[1]
        rows.append((metrics.accuracy(data.y, pred), metrics.macro_recall(data.y, pred, c),
                     metrics.f1_weighted(data.y, pred, c), float(nn.functional.cross_entropy(lg, y))))
    return dict(zip(("accuracy", "macro_recall", "f1_weighted", "loss"), map(float, np.mean(rows, 0))))


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> None:
    """``torch.save`` into memory, then an atomic write (a crash never leaves a partial file)."""
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise DataError(f"{path}: cannot load checkpoint ({type(err).__name__}: {err})") from None


def _rng_states() -> dict[str, Any]:
    """Global RNG states as tensors and lists (no numpy objects, so weights_only loading works)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [py[0], list(py[1]), py[2]],
    }


def _set_rng_states(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"].cpu())
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in s["cuda"]])
    kind, keys, pos, has_gauss, cached = s["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate((s["python"][0], tuple(s["python"][1]), s["python"][2]))


RESUME_MAY_CHANGE = ("progress", "checkpoint_seconds")


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    """config.json without the fields a resume may change (``progress``, ``checkpoint_seconds``,
    the mmlab version)."""
    out = json.loads(json.dumps(cfg))
    out.pop("mmlab_version", None)
    for part in [out.get("train", {}), *out.get("stages", {}).values()]:
        for key in RESUME_MAY_CHANGE:
            part.pop(key, None)
    return out


def _diff(a: Any, b: Any, where: str = "") -> list[str]:
    """Dotted keys where two JSON-like configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{where}.{k}" if where else k)]
    return [] if a == b else [where or "<root>"]


def _clone_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _epoch_seeds(seed: int, stage: int, epoch: int) -> tuple[np.random.Generator, np.random.Generator, int]:
    """(shuffle rng, loss rng, torch seed) for one epoch, from (seed, stage index, epoch)."""
    ss = np.random.SeedSequence([seed, stage, epoch])
    a, b = ss.spawn(2)
    return np.random.default_rng(a), np.random.default_rng(b), int(ss.generate_state(1, np.uint64)[0])


# --------------------------------------------------------------------------- the trainer
@dataclass
class _StageState:
    epoch: int = 0  # completed epochs
    best_metric: float | None = None
    best_epoch: int = 0
    best_val: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    done: bool = False

    def summary(self) -> dict[str, Any]:
        return {"best_metric": self.best_metric, "best_epoch": self.best_epoch, "epochs_run": self.epoch,
                "val": dict(self.best_val)}


class Trainer:
    """Runs ``method.stages(data)`` in order into ``out_dir`` (see the module docstring).

    ``on_epoch_end(stage_name, epoch, metrics)`` is called after each epoch's checkpoint is
    written (1-based epoch); an exception raised there stops the run, which `fit` can resume.
    """

    def __init__(self, method: "Method", data: MMDataset, out_dir: str | Path, config: TrainConfig | None = None,
                 on_epoch_end: Callable[[str, int, dict[str, float]], None] | None = None):
        self.method, self.out_dir = method, Path(out_dir)
        self.config = config or TrainConfig()
        self.on_epoch_end = on_epoch_end
        self.device = resolve_device(self.config.device)
        # the test split never goes further than this line
        self.data = data.take(np.flatnonzero(data.split != "test"))
        for split in ("train", "valid"):
            if not (self.data.split == split).any():
                raise DataError(f"Trainer: dataset {data.name!r} has no {split!r} rows")

    # ------------------------------------------------------------------ public
    def fit(self) -> dict[str, dict[str, Any]]:
        """Train every stage (resuming where ``out_dir`` has checkpoints); per-stage summaries."""
        self.method.to(self.device)
        stages = self.method.stages(self.data)
        names = [s.name for s in stages]
        for s in stages:
            if not s.name or not all(c.isalnum() or c in "-_." for c in s.name) or names.count(s.name) > 1:
                raise ConfigError(f"Stage.name: expected unique names of letters, digits, '-', '_', '.', got {names}")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._write_config(stages)
        results = {}
        for i, stage in enumerate(stages):
            results[stage.name] = self._run_stage(i, stage)
        return results

    def stage_config(self, stage: Stage) -> TrainConfig:
        """The stage's config with the run-level fields (seed, device, progress, checkpoint_seconds)
        of the Trainer."""
        c = self.config
        return replace(stage.config or c, seed=c.seed, device=c.device, progress=c.progress,
                       checkpoint_seconds=c.checkpoint_seconds)

    # ------------------------------------------------------------------ config.json
    def _resolved_config(self, stages: list[Stage]) -> dict[str, Any]:
        tr = self.data.split_indices("train")
        fingerprint = hashlib.sha1("\n".join(self.data.ids[tr].tolist()).encode() + self.data.y[tr].tobytes()).hexdigest()
        return {
            "mmlab_version": mmlab.__version__,
            "method": {"name": self.method.name, "class": type(self.method).__name__, "config": self.method.config_dict()},
            "train": to_dict(self.config),
            "stages": {s.name: to_dict(self.stage_config(s)) for s in stages},
            "data": {"name": self.data.name, "modalities": list(self.data.modalities), "dims": self.data.dims,
                     "n_train": len(tr), "n_valid": int((self.data.split == "valid").sum()),
                     "train_sha1": fingerprint},
        }

    def _write_config(self, stages: list[Stage]) -> None:
        path = self.out_dir / "config.json"
        cfg = json.loads(json.dumps(self._resolved_config(stages)))
        if not path.exists():
            atomic_write_text(path, json.dumps(cfg, indent=2) + "\n")
            return
        old, new = _comparable(json.loads(path.read_text())), _comparable(cfg)
        if old != new:
            raise ConfigError(f"{path}: exists with a different config (differs in {', '.join(_diff(old, new))}); "
                              "use a new out_dir, or resume with the same config")

    # ------------------------------------------------------------------ metrics.csv
    def _log(self, stage: str, epoch: int, split: str, values: dict[str, float]) -> None:
        path = self.out_dir / "metrics.csv"
        new = not path.exists() or path.stat().st_size == 0
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(path, "a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(CSV_HEADER)
            for k, v in values.items():
                w.writerow([now, stage, epoch, split, k, repr(float(v))])
            fh.flush()

    def _logged_epochs(self, stage: str) -> int:
        """The last epoch of ``stage`` that metrics.csv holds (0 when none)."""
        path = self.out_dir / "metrics.csv"
        if not path.exists():
            return 0
        with open(path, newline="") as fh:
            epochs = [int(r["epoch"]) for r in csv.DictReader(fh) if r.get("stage") == stage]
        return max(epochs, default=0)

    # ------------------------------------------------------------------ one stage
    def _freeze(self, stage: Stage) -> tuple[list[nn.Parameter], dict[int, bool]]:
        own = {id(p): p.requires_grad for p in self.method.parameters()}
        params, seen = [], set()
        for mod in stage.modules:
            for p in mod.parameters():
                if id(p) not in own:
                    raise ConfigError(f"stage {stage.name!r}: Stage.modules holds a module that is not part of the method")
                if own[id(p)] and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        if not params:
            raise ConfigError(f"stage {stage.name!r}: Stage.modules has no trainable parameters")
        for p in self.method.parameters():
            p.requires_grad_(id(p) in seen)
        return params, own

    def _set_train_mode(self, stage: Stage) -> None:
        self.method.eval()
        for mod in stage.modules:
            mod.train()

    def _checkpoint(self, i: int, stage: Stage, cfg: TrainConfig, st: _StageState, opt: torch.optim.Optimizer) -> dict:
        return {
            "mmlab_version": mmlab.__version__, "stage": stage.name, "stage_index": i, "epoch": st.epoch,
            "model": self.method.state_dict(), "optimizer": opt.state_dict(), "config": to_dict(cfg),
            "best_metric": st.best_metric, "best_epoch": st.best_epoch, "best_val": st.best_val,
            "best_state": st.best_state, "bad_epochs": st.bad_epochs, "done": st.done, "rng": _rng_states(),
        }

    def _run_stage(self, i: int, stage: Stage) -> dict[str, Any]:
        cfg = self.stage_config(stage)
        ck_dir = self.out_dir / "checkpoints" / stage.name
        last, best = ck_dir / "last.pt", ck_dir / "best.pt"
        data = stage.data if stage.data is not None else self.data.subset("train")
        if len(data) == 0 or set(np.unique(data.split)) != {"train"}:
            raise DataError(f"stage {stage.name!r}: Stage.data must hold train-split rows only, "
                            f"got splits {sorted(set(data.split))}")
        st = _StageState()
        ckpt = load_checkpoint(last, self.device) if last.exists() else None
        if ckpt is not None and ckpt.get("stage") != stage.name:
            raise DataError(f"{last}: holds stage {ckpt.get('stage')!r}, expected {stage.name!r}")
        if ckpt is not None and ckpt.get("done"):
            self.method.load_state_dict(ckpt["best_state"])
            st = self._restore_state(ckpt)
            self._end_stage(i, stage)
            return st.summary()

        params, flags = self._freeze(stage)
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if ckpt is not None:
            self.method.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            st = self._restore_state(ckpt)
            _set_rng_states(ckpt["rng"])
        if st.best_state is None:
            st.best_state = _clone_state(self.method)
        ck_dir.mkdir(parents=True, exist_ok=True)
        higher = cfg.select_metric in HIGHER_IS_BETTER
        # epochs past the checkpoint that a crashed run already logged: training is deterministic,
        # so they are recomputed identically and not logged twice (metrics.csv stays append-only)
        logged = self._logged_epochs(stage.name)
        saved_at = -math.inf  # the first epoch of a (resumed) stage always writes last.pt
        token = _EVAL_BATCH.set(cfg.eval_batch_size)
        bar = tqdm(total=cfg.epochs, initial=st.epoch, desc=stage.name, disable=not cfg.progress)
        try:
            while st.epoch < cfg.epochs and not (cfg.patience and st.bad_epochs >= cfg.patience):
                train_logs = self._train_epoch(i, stage, cfg, data, opt, params, st.epoch)
                st.epoch += 1
                val = self._validate(stage, cfg, st.epoch)
                m = val[cfg.select_metric]
                if st.best_metric is None or (m > st.best_metric if higher else m < st.best_metric):
                    st.best_metric, st.best_epoch, st.best_val, st.bad_epochs = m, st.epoch, val, 0
                    st.best_state = _clone_state(self.method)
                else:
                    st.bad_epochs += 1
                if st.epoch > logged:
                    self._log(stage.name, st.epoch, "train", train_logs)
                    self._log(stage.name, st.epoch, "valid", val)
                if time.monotonic() - saved_at >= cfg.checkpoint_seconds:
                    save_checkpoint(last, self._checkpoint(i, stage, cfg, st, opt))
                    saved_at = time.monotonic()
                bar.set_postfix({"loss": f"{train_logs['loss']:.4f}", cfg.select_metric: f"{m:.4f}"}, refresh=False)
                bar.update(1)
                if self.on_epoch_end is not None:
                    self.on_epoch_end(stage.name, st.epoch, {**{f"train_{k}": v for k, v in train_logs.items()}, **val})
        finally:
            bar.close()
            _EVAL_BATCH.reset(token)
            for p in self.method.parameters():
                p.requires_grad_(flags[id(p)])
        self.method.load_state_dict(st.best_state)
        st.done = True
        # best.pt once per stage (the best state so far also travels in every last.pt)
        save_checkpoint(best, {"mmlab_version": mmlab.__version__, "stage": stage.name, "epoch": st.best_epoch or 0,
                               "model": st.best_state, "best_metric": st.best_metric, "val": st.best_val,
                               "config": to_dict(cfg)})
        save_checkpoint(last, self._checkpoint(i, stage, cfg, st, opt))
        self._end_stage(i, stage)
        return st.summary()

    def _train_epoch(self, i: int, stage: Stage, cfg: TrainConfig, data: MMDataset, opt: torch.optim.Optimizer,
                     params: list[nn.Parameter], epoch: int) -> dict[str, float]:
        shuffle_rng, loss_rng, torch_seed = _epoch_seeds(cfg.seed, i, epoch)
        torch.manual_seed(torch_seed)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * cfg.lr_factor(epoch)
        self._set_train_mode(stage)
        sums: dict[str, float] = {}
        n = 0
        for b, batch in enumerate(data.iter_batches(cfg.batch_size, shuffle=True, rng=shuffle_rng, device=self.device)):
            loss, logs = stage.loss(batch, loss_rng)
            if not torch.isfinite(loss.detach()).all():
                raise TrainingError(f"stage {stage.name!r}, epoch {epoch + 1}, batch {b}: the loss is {loss.item()} "
                                    "(lower the lr, set grad_clip, or check the inputs)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            k = batch.size
            n += k
            for name, v in {"loss": float(loss.detach()), **logs}.items():
                sums[name] = sums.get(name, 0.0) + float(v) * k
        return {**{name: v / max(n, 1) for name, v in sums.items()}, "lr": cfg.lr * cfg.lr_factor(epoch)}

    def _validate(self, stage: Stage, cfg: TrainConfig, epoch: int) -> dict[str, float]:
        self.method.eval()
        with torch.no_grad():
            val = {k: float(v) for k, v in stage.validate().items()}
        if cfg.select_metric not in val:
            raise ConfigError(f"stage {stage.name!r}: select_metric {cfg.select_metric!r} is not among the "
                              f"validation metrics {sorted(val)}")
        if not math.isfinite(val[cfg.select_metric]):
            raise TrainingError(f"stage {stage.name!r}, epoch {epoch}: validation {cfg.select_metric} is "
                                f"{val[cfg.select_metric]}")
        return val

    def _restore_state(self, ckpt: dict[str, Any]) -> _StageState:
        return _StageState(epoch=ckpt["epoch"], best_metric=ckpt["best_metric"], best_epoch=ckpt["best_epoch"],
                           best_val=dict(ckpt["best_val"]), best_state=ckpt["best_state"],
                           bad_epochs=ckpt["bad_epochs"], done=bool(ckpt["done"]))

    def _end_stage(self, i: int, stage: Stage) -> None:
        self.method.eval()
        if stage.on_end is not None:
            torch.manual_seed(_epoch_seeds(self.config.seed, i, 10**6)[2])
            stage.on_end()


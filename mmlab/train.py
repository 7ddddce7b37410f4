"""The one `Trainer` every method uses: stages, early stopping, atomic checkpoints, resume.

A method declares its training as a list of `Stage` s (ADMC: ITFN -> ADN -> MF, ADMC §3 and
Fig. 2). For each stage the Trainer

1. freezes everything of the method outside ``stage.modules`` (``requires_grad=False``; the
   method is put in ``eval()`` and only the stage's modules in ``train()``, so frozen parts run
   without dropout and keep their normalisation statistics);
2. builds Adam (or AdamW) over the stage's parameter groups and, when the stage declares
   ``features``, computes its training data once from the frozen parts (cached for the stage);
3. runs ``epochs`` epochs: one `train_step` per batch (the stage's loss -> backward -> step, or
   its own ``step`` hook for several steps per batch). Epoch ``e`` shuffles the stage data with
   an rng derived from ``(seed, stage index, e)`` and reseeds torch's global RNG from the same
   triple, so a resumed run is bit-identical to an uninterrupted one;
4. validates after every epoch by handing the stage's `Validation` declaration to
   `mmlab.evaluate.validate` (valid split only, ``no_grad``, ``eval()``), keeps the best state by
   ``select_metric`` and stops early after ``patience`` epochs without improvement; at the end
   the best state is loaded and ``stage.on_end()`` runs. With ``TrainConfig.ema`` > 0 an
   average of the weights (`mmlab.nn.averaging.WeightAverage`, updated after every step and
   saved in ``last.pt``) is what is validated and kept;
5. after the last stage, ``method.calibrate(valid)`` chooses test-time settings on the valid
   split; what it returns is written to ``calibration.json``.

The run seed reaches the method as ``method.seed``.

Layout of ``out_dir``::

    config.json                       resolved config, written once
    metrics.csv                       time,stage,epoch,split,metric,value (append-only)
    checkpoints/<stage>/last.pt       after the stage's first epoch, then at most every
                                      ``checkpoint_seconds`` (default 30), and at its end
                                      (``done: True``); it holds the best state so far too
    checkpoints/<stage>/best.pt       the stage's best state, written when the stage ends

Both hold the whole method's weights, or those of the stage's ``Stage.state`` (a copy of an
ensemble or a specialist) keyed within it; resuming then rebuilds the rest from the method's
constructor, so build it the same way (the run seed set first, as `mmlab.experiments` does).

Checkpoints are plain dicts loadable with ``torch.load(path, weights_only=True)``. Calling
`Trainer.fit` again on the same ``out_dir`` resumes: finished stages are skipped (their best
state is loaded and ``on_end`` re-run), an unfinished stage continues from its ``last.pt``;
epochs it recomputes were already in metrics.csv and are not written twice.

The Trainer never reads a test split (``test`` or any extra one such as ``test_ood``): the
method's ``stages`` and ``calibrate`` receive the dataset without them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import json
import math
import random
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

import mmlab
from mmlab.config import to_dict
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError, MMLabError
from mmlab.progress import QUIET_SECONDS, progress
from mmlab.evaluate import validate as run_validation
from mmlab.evaluate import validate_classifier, validate_per_pattern
from mmlab.missing import resolve_fill
from mmlab.nn.averaging import WeightAverage
from mmlab.methods.base import (HIGHER_IS_BETTER, LOWER_IS_BETTER, VALIDATE_ON, FeatureBatch, Method, Stage,
                                TrainConfig, Validation)
from mmlab.utils import (FolderLock, atomic_write_bytes, atomic_write_text, first_best, resolve_device, seed_sequence,
                         torch_generator)

CSV_HEADER = ["time", "stage", "epoch", "split", "metric", "value"]
__all__ = ["TrainConfig", "Stage", "Validation", "FeatureBatch", "Trainer", "TrainingError", "save_checkpoint",
           "load_checkpoint", "HIGHER_IS_BETTER", "LOWER_IS_BETTER", "VALIDATE_ON"]


class TrainingError(MMLabError, RuntimeError):
    """Training cannot go on (e.g. a NaN loss); the message names the stage and epoch."""


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


_ABSENT = object()  # a key one config has and the other lacks (even when its value is null)


def _diff(a: Any, b: Any, where: str = "") -> list[str]:
    """Dotted keys where two JSON-like configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b))
                for d in _diff(a.get(k, _ABSENT), b.get(k, _ABSENT), f"{where}.{k}" if where else k)]
    return [] if a == b else [where or "<root>"]


def _clone_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _epoch_seeds(seed: int, stage: int, epoch: int) -> tuple[np.random.Generator, np.random.Generator, int]:
    """(shuffle rng, loss rng, torch seed) for one epoch, from (seed, stage index, epoch)."""
    ss = seed_sequence(seed, stage, epoch)
    a, b = ss.spawn(2)
    return np.random.default_rng(a), np.random.default_rng(b), int(ss.generate_state(1, np.uint64)[0])


_WAY_OUT = "delete it and resume: the stage restarts from its first epoch (earlier stages are kept)"
_CKPT_TYPES = {"stage": str, "epoch": int, "model": dict, "optimizer": dict, "best_state": (dict, type(None)),
               "best_val": dict, "bad_epochs": int, "done": bool, "rng": dict, "best_epoch": int}


def _check_checkpoint(ckpt: Any, path: Path, stage: str) -> dict[str, Any]:
    """A ``last.pt`` has the keys and types the Trainer wrote; anything else is a `DataError`
    naming the file, what is wrong and the way out."""
    if not isinstance(ckpt, dict):
        raise DataError(f"{path}: damaged checkpoint (a {type(ckpt).__name__}, expected a dict); {_WAY_OUT}")
    for key, tp in _CKPT_TYPES.items():
        if key not in ckpt:
            raise DataError(f"{path}: damaged checkpoint (no {key!r}); {_WAY_OUT}")
        if not isinstance(ckpt[key], tp) or (tp is int and isinstance(ckpt[key], bool)):
            raise DataError(f"{path}: damaged checkpoint ({key!r} is a {type(ckpt[key]).__name__}); {_WAY_OUT}")
    if ckpt["stage"] != stage:
        raise DataError(f"{path}: holds stage {ckpt['stage']!r}, expected {stage!r}")
    return ckpt


def _load_state(method: nn.Module, state: dict[str, Any], path: Path) -> None:
    try:
        method.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:300]
        raise DataError(f"{path}: its weights do not fit this method ({first}); {_WAY_OUT}") from None


def _narrowed(ckpt: dict[str, Any], prefix: str, keys: set[str]) -> dict[str, Any]:
    """A checkpoint of a stage with ``Stage.state`` written before stages had it (its weights
    keyed over the whole method): the weights of the stage's part (``keys``), keyed within it."""
    def cut(state: Any) -> Any:
        if not isinstance(state, dict) or set(state) == keys or not all(prefix + k in state for k in keys):
            return state
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    out = {**ckpt, "model": cut(ckpt.get("model")), "best_state": cut(ckpt.get("best_state"))}
    if isinstance(ckpt.get("ema"), dict):
        out["ema"] = {**ckpt["ema"], "state": cut(ckpt["ema"].get("state"))}
    return out


def _checkpoint_epoch(path: Path) -> int:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        return 10**9 if ckpt.get("done") else int(ckpt.get("epoch", 0))
    except Exception:  # noqa: BLE001 - unreadable: treat as no checkpoint
        return 0


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

    def __init__(self, method: Method, data: MMDataset, out_dir: str | Path, config: TrainConfig | None = None,
                 on_epoch_end: Callable[[str, int, dict[str, float]], None] | None = None):
        self.method, self.out_dir = method, Path(out_dir)
        self.config = config or TrainConfig()
        self.on_epoch_end = on_epoch_end
        self.device = resolve_device(self.config.device)
        # no test split (``test`` or any extra one such as ``test_ood``) goes further than this line
        self.data = data.training_view()
        for split in ("train", "valid"):
            if not (self.data.split == split).any():
                raise DataError(f"Trainer: dataset {data.name!r} has no {split!r} rows")

    # ------------------------------------------------------------------ public
    def fit(self) -> dict[str, dict[str, Any]]:
        """Train every stage (resuming where ``out_dir`` has checkpoints), then let the method
        calibrate on the valid split; per-stage summaries (and ``"calibration"`` if any). One
        writer per run folder: a second `fit` on the same ``out_dir`` fails at once."""
        with FolderLock(self.out_dir):
            return self._fit()

    def _fit(self) -> dict[str, dict[str, Any]]:
        self.method.to(self.device)
        self.method.seed = self.config.seed
        stages = self.method.stages(self.data)
        names = [s.name for s in stages]
        for s in stages:
            if not s.name or not all(c.isalnum() or c in "-_." for c in s.name) or names.count(s.name) > 1:
                raise ConfigError(f"Stage.name: expected unique names of letters, digits, '-', '_', '.', got {names}")
        self._write_config(stages)
        self._repair_metrics(names)
        results: dict[str, dict[str, Any]] = {}
        for i, stage in enumerate(stages):
            results[stage.name] = self._run_stage(i, stage)
        calibration = self._calibrate()
        if calibration is not None:
            results["calibration"] = calibration
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
        try:
            old = _comparable(json.loads(path.read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, TypeError) as err:
            raise DataError(f"{path}: not an mmlab config.json ({type(err).__name__}); this folder holds something "
                            "else: use a new out_dir") from None
        new = _comparable(cfg)
        if old != new:
            raise ConfigError(f"{path}: exists with a different config (differs in {', '.join(_diff(old, new))}); "
                              "use a new out_dir, or resume with the same config")

    def _calibrate(self) -> dict[str, Any] | None:
        """Test-time settings chosen on the valid split after training: the grid of
        ``method.test_options()`` scored through `mmlab.evaluate`, then ``method.calibrate(valid)``;
        the choices go to ``calibration.json``."""
        self.method.eval()
        valid = self.data.subset("valid")
        with torch.no_grad():
            chosen = self._choose_test_options(valid)
            custom = self.method.calibrate(valid)
        if custom is not None:
            chosen = {**(chosen or {}), **custom}
        if chosen is not None:
            atomic_write_text(self.out_dir / "calibration.json", json.dumps(chosen, indent=2, default=float) + "\n")
        return chosen

    def _choose_test_options(self, valid: MMDataset) -> dict[str, Any] | None:
        grid = self.method.test_options()
        if not grid:
            return None
        names = list(grid)
        combos = [dict(zip(names, values)) for values in itertools.product(*grid.values())]
        if self.method.test_options_per_pattern:
            return self._choose_per_pattern(valid, combos)
        scores = []
        for combo in self._options_progress(combos):
            self.method.set_test_options(**combo)
            val = validate_classifier(self.method, valid, self.method.test_options_patterns,
                                      self.config.eval_batch_size, device=self.device)
            scores.append(val["accuracy"])
        best = first_best(scores)  # the cheapest when listed cheapest first
        self.method.set_test_options(**combos[best])
        return {"test_options": combos[best], "chosen_on": f"valid accuracy, {self.method.test_options_patterns}",
                "scores": [{**c, "accuracy": s} for c, s in zip(combos, scores)]}

    def _options_progress(self, combos: list[dict[str, Any]]) -> Any:
        """The test-option combinations, with progress when scoring them on valid takes a while."""
        return progress(combos, desc=f"{getattr(self.method, 'name', 'method')}: test-time options on valid",
                        disable=not self.config.progress,
                        delay=QUIET_SECONDS)

    def _fill(self) -> Any:
        """The method's fill policy for the per-pattern choice (a "mean" fill needs the train rows)."""
        return resolve_fill(self.method.fill, self.data.subset("train"))

    def _choose_per_pattern(self, valid: MMDataset, combos: list[dict[str, Any]]) -> dict[str, Any]:
        """Each availability pattern's own best combination on valid accuracy (the first on a tie)."""
        per, fill = [], self._fill()
        for combo in self._options_progress(combos):
            self.method.set_test_options(**combo)
            per.append(validate_per_pattern(self.method, valid, self.config.eval_batch_size, fill=fill,
                                            device=self.device))
        choice = {p: combos[first_best([s[p]["accuracy"] for s in per])] for p in per[0]}
        self.method.set_pattern_options(choice)
        return {"test_options_per_pattern": {"+".join(p): c for p, c in choice.items()},
                "chosen_on": "valid accuracy, each availability pattern on its own",
                "scores": [{**c, **{"+".join(p): v["accuracy"] for p, v in s.items()}} for c, s in zip(combos, per)]}

    # ------------------------------------------------------------------ metrics.csv
    def _log(self, stage: str, epoch: int, split: str, values: dict[str, float]) -> None:
        path = self.out_dir / "metrics.csv"
        new = not path.exists() or path.stat().st_size == 0
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        try:
            with open(path, "a", newline="") as fh:
                w = csv.writer(fh)
                if new:
                    w.writerow(CSV_HEADER)
                for k, v in values.items():
                    w.writerow([now, stage, epoch, split, k, repr(float(v))])
                fh.flush()
        except OSError as err:
            raise DataError(f"{path}: cannot append metrics ({err.strerror or err}); free space or fix permissions, "
                            "then resume (the checkpointed epochs are kept)") from None

    def _repair_metrics(self, stages: list[str]) -> None:
        """Check metrics.csv before resuming: a foreign file is refused; a torn last line (a crash
        while writing) is dropped with the rows of its epoch when that epoch will be recomputed
        (its stage's last.pt is older), so they are written again, complete."""
        path = self.out_dir / "metrics.csv"
        if not path.exists():
            return
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: cannot read it as mmlab's metrics.csv ({err}); use a new out_dir") from None
        lines = text.split("\n")
        if text and lines[0].strip() != ",".join(CSV_HEADER):
            raise DataError(f"{path}: not mmlab's metrics.csv (header {lines[0][:80]!r}, expected "
                            f"{','.join(CSV_HEADER)!r}); use a new out_dir")
        if not text or text.endswith("\n"):
            return
        rows = list(csv.reader(lines[1:-1]))
        if rows and len(rows[-1]) == len(CSV_HEADER) and rows[-1][1] in stages:
            stage, epoch = rows[-1][1], int(rows[-1][2])
            last = self.out_dir / "checkpoints" / stage / "last.pt"
            saved = _checkpoint_epoch(last) if last.exists() else 0
            if epoch > saved:
                rows = [r for r in rows if not (r[1] == stage and r[2] == str(epoch))]
        kept = "".join(",".join(r) + "\n" for r in rows)
        atomic_write_text(path, ",".join(CSV_HEADER) + "\n" + kept)
        warnings.warn(f"{path}: its last line was torn by a crash; repaired (the epoch is logged again)", stacklevel=3)

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
        for p in self.method.parameters():
            p.requires_grad_(id(p) in seen)
        return params, own

    def _averaged_names(self, stage: Stage, params: list[nn.Parameter]) -> set[str]:
        """``state_dict`` names (within the stage's `_scope`) of what its weight average averages:
        its trainable parameters and the buffers of its modules (e.g. normalisation statistics)."""
        mine = {id(p) for p in params} | {id(b) for mod in stage.modules for b in mod.buffers()}
        scope = self._scope(stage)
        return {n for n, t in itertools.chain(scope.named_parameters(remove_duplicate=False),
                                              scope.named_buffers(remove_duplicate=False)) if id(t) in mine}

    def _scope(self, stage: Stage) -> nn.Module:
        """What the stage's checkpoints, best state and weight average hold: ``Stage.state`` (a part
        of the method that holds every module of the stage) or the whole method."""
        if stage.state is None:
            return self.method
        if not any(stage.state is m for m in self.method.modules()):
            raise ConfigError(f"stage {stage.name!r}: Stage.state is not a part of the method")
        inside = {id(t) for t in itertools.chain(stage.state.parameters(), stage.state.buffers())}
        if any(id(t) not in inside for mod in stage.modules for t in itertools.chain(mod.parameters(), mod.buffers())):
            raise ConfigError(f"stage {stage.name!r}: Stage.state must hold every module of Stage.modules")
        return stage.state

    def _optimizer(self, stage: Stage, cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """Adam / AdamW over the stage's parameter groups (`Stage.param_groups`, default one group)."""
        groups = stage.param_groups(params) if stage.param_groups is not None else [{"params": params}]
        counted = [id(p) for g in groups for p in g["params"]]
        if sorted(counted) != sorted(id(p) for p in params) or len(set(counted)) != len(counted):
            raise ConfigError(f"stage {stage.name!r}: Stage.param_groups must hold every trainable parameter of the "
                              f"stage exactly once ({len(counted)} entries for {len(params)} parameters)")
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        return cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _set_train_mode(self, stage: Stage) -> None:
        self.method.eval()
        for mod in stage.modules:
            mod.train()

    def _checkpoint(self, i: int, stage: Stage, cfg: TrainConfig, st: _StageState,
                    opt: torch.optim.Optimizer | None, average: WeightAverage | None = None) -> dict:
        return {
            "mmlab_version": mmlab.__version__, "stage": stage.name, "stage_index": i, "epoch": st.epoch,
            "model": self._scope(stage).state_dict(), "optimizer": opt.state_dict() if opt is not None else {},
            "config": to_dict(cfg), "best_metric": st.best_metric, "best_epoch": st.best_epoch,
            "best_val": st.best_val, "best_state": st.best_state, "bad_epochs": st.bad_epochs, "done": st.done,
            "rng": _rng_states(), "ema": average.saved() if average is not None else None,
        }

    def _stage_rows(self, stage: Stage) -> MMDataset:
        data = stage.data if stage.data is not None else self.data.subset("train")
        if len(data) == 0 or set(np.unique(data.split)) != {"train"}:
            raise DataError(f"stage {stage.name!r}: Stage.data must hold train-split rows only, "
                            f"got splits {sorted(set(data.split))}")
        return data

    @torch.no_grad()
    def _features(self, i: int, stage: Stage, rows: MMDataset, split: str, cfg: TrainConfig) -> FeatureBatch:
        """``stage.features`` over ``rows`` in order (frozen parts, eval mode), cached for the stage.
        The generator derives from (seed, stage index, split), so a resumed stage gets the same."""
        self.method.eval()
        gen = torch_generator(cfg.seed, i, "features", split, device=self.device)
        batches = progress(rows.iter_batches(cfg.eval_batch_size, device=self.device),
                           total=math.ceil(len(rows) / cfg.eval_batch_size), desc=f"{stage.name}: {split} inputs",
                           disable=not cfg.progress, delay=QUIET_SECONDS)
        chunks = [stage.features(b, split, gen) for b in batches]
        out = FeatureBatch({k: torch.cat([c[k] for c in chunks]) for k in chunks[0]})
        n = len(rows)
        bad = [k for k, v in out.items() if v.shape[0] != n]
        if bad:
            raise DataError(f"stage {stage.name!r}: Stage.features returned {bad} with a first dimension other than "
                            f"the batch size")
        out["y"] = torch.as_tensor(rows.y.astype(np.int64), device=self.device)
        out["index"] = torch.arange(n, device=self.device)
        return out

    def _run_stage(self, i: int, stage: Stage) -> dict[str, Any]:
        cfg = self.stage_config(stage)
        ck_dir = self.out_dir / "checkpoints" / stage.name
        last, best = ck_dir / "last.pt", ck_dir / "best.pt"
        rows = self._stage_rows(stage)
        st = _StageState()
        ckpt = _check_checkpoint(load_checkpoint(last, self.device), last, stage.name) if last.exists() else None
        scope = self._scope(stage)
        if ckpt is not None and scope is not self.method:
            ckpt = _narrowed(ckpt, next(n for n, m in self.method.named_modules() if m is scope) + ".",
                             set(scope.state_dict()))
        if ckpt is not None and ckpt.get("done"):
            _load_state(scope, ckpt["best_state"], last)
            st = self._restore_state(ckpt)
            self._end_stage(i, stage)
            return st.summary()

        params, flags = self._freeze(stage)
        if params and stage.loss is None and stage.step is None:
            raise ConfigError(f"stage {stage.name!r}: has trainable parameters but neither loss= nor step=")
        opt = self._optimizer(stage, cfg, params) if params else None
        base_lrs = [g["lr"] for g in opt.param_groups] if opt is not None else []
        if ckpt is not None:
            _load_state(scope, ckpt["model"], last)
            try:
                if opt is not None:
                    opt.load_state_dict(ckpt["optimizer"])
                _set_rng_states(ckpt["rng"])
            except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
                raise DataError(f"{last}: damaged checkpoint ({type(err).__name__}: {err}); {_WAY_OUT}") from None
            st = self._restore_state(ckpt)
        if st.best_state is None:
            st.best_state = _clone_state(scope)
        average = None
        if cfg.ema > 0 and opt is not None:
            saved = ckpt.get("ema") if ckpt is not None else None
            try:
                average = WeightAverage(scope, cfg.ema, saved, averaged=self._averaged_names(stage, params),
                                        warmup=cfg.ema_warmup)
                live = scope.state_dict()
                if average.state is not None and (set(average.state) != set(live) or any(
                        v.shape != live[k].shape or v.dtype != live[k].dtype for k, v in average.state.items())):
                    raise KeyError("its weights are not this model's")
            except (KeyError, TypeError, AttributeError, ValueError) as err:
                raise DataError(f"{last}: damaged checkpoint (weight average: {err}); {_WAY_OUT}") from None
        ck_dir.mkdir(parents=True, exist_ok=True)
        feats = valid_feats = None
        if stage.features is not None:
            feats = self._features(i, stage, rows, "train", cfg)
            if stage.validate.kind != "classifier":
                valid_feats = self._features(i, stage, self.data.subset("valid"), "valid", cfg)
        higher = cfg.select_metric in HIGHER_IS_BETTER
        # epochs past the checkpoint that a crashed run already logged: training is deterministic,
        # so they are recomputed identically and not logged twice (metrics.csv stays append-only)
        logged = self._logged_epochs(stage.name)
        saved_at = -math.inf  # the first epoch of a (resumed) stage always writes last.pt
        epochs = cfg.epochs if params else min(cfg.epochs, 1)  # nothing to optimise: validate once
        bar = progress(total=epochs, initial=st.epoch, desc=stage.name, disable=not cfg.progress)
        try:
            while st.epoch < epochs and not (cfg.patience and st.bad_epochs >= cfg.patience):
                if opt is not None:
                    train_logs = self._train_epoch(i, stage, cfg, rows, feats, opt, base_lrs, params, st.epoch,
                                                   average)
                else:
                    train_logs = {}
                st.epoch += 1
                with average.swapped() if average is not None else contextlib.nullcontext():
                    val = self._validate(stage, cfg, st.epoch, valid_feats)
                    m = val[cfg.select_metric]
                    if st.best_metric is None or (m > st.best_metric if higher else m < st.best_metric):
                        st.best_metric, st.best_epoch, st.best_val, st.bad_epochs = m, st.epoch, val, 0
                        st.best_state = _clone_state(scope)
                    else:
                        st.bad_epochs += 1
                if st.epoch > logged:
                    if train_logs:
                        self._log(stage.name, st.epoch, "train", train_logs)
                    self._log(stage.name, st.epoch, "valid", val)
                if time.monotonic() - saved_at >= cfg.checkpoint_seconds:
                    save_checkpoint(last, self._checkpoint(i, stage, cfg, st, opt, average))
                    saved_at = time.monotonic()
                postfix = {cfg.select_metric: f"{m:.4f}"}
                if "loss" in train_logs:
                    postfix = {"loss": f"{train_logs['loss']:.4f}", **postfix}
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
                if self.on_epoch_end is not None:
                    self.on_epoch_end(stage.name, st.epoch, {**{f"train_{k}": v for k, v in train_logs.items()}, **val})
        finally:
            bar.close()
            for p in self.method.parameters():
                p.requires_grad_(flags[id(p)])
        scope.load_state_dict(st.best_state)
        st.done = True
        # best.pt once per stage (the best state so far also travels in every last.pt)
        save_checkpoint(best, {"mmlab_version": mmlab.__version__, "stage": stage.name, "epoch": st.best_epoch or 0,
                               "model": st.best_state, "best_metric": st.best_metric, "val": st.best_val,
                               "config": to_dict(cfg)})
        save_checkpoint(last, self._checkpoint(i, stage, cfg, st, opt, average))
        self._end_stage(i, stage)
        return st.summary()

    def _batches(self, rows: MMDataset, feats: FeatureBatch | None, cfg: TrainConfig, rng: np.random.Generator):
        """Shuffled train batches: `MMBatch` es of the stage rows, or `FeatureBatch` es of its cache."""
        if feats is None:
            yield from rows.iter_batches(cfg.batch_size, shuffle=True, rng=rng, device=self.device)
            return
        order = torch.as_tensor(rng.permutation(len(rows)), device=self.device)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            yield FeatureBatch({k: v[idx] for k, v in feats.items()})

    def train_step(self, stage: Stage, cfg: TrainConfig, batch: Any, rng: np.random.Generator,
                   opt: torch.optim.Optimizer, params: list[nn.Parameter], where: str = "") -> dict[str, float]:
        """One optimisation step on one batch: the stage's ``step`` hook, or loss -> backward ->
        (clip) -> step. Returns the floats to log (``"loss"`` among them)."""
        if stage.step is not None:
            logs = {k: float(v) for k, v in stage.step(batch, rng, [opt]).items()}
            if "loss" not in logs:
                raise ConfigError(f"stage {stage.name!r}: Stage.step must return a dict with a 'loss' entry")
            if not math.isfinite(logs["loss"]):
                raise TrainingError(f"stage {stage.name!r}{where}: the loss is {logs['loss']} "
                                    "(lower the lr, set grad_clip, or check the inputs)")
            return logs
        loss, logs = stage.loss(batch, rng)
        if not torch.isfinite(loss.detach()).all():
            raise TrainingError(f"stage {stage.name!r}{where}: the loss is {loss.item()} "
                                "(lower the lr, set grad_clip, or check the inputs)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        return {"loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}}

    def _train_epoch(self, i: int, stage: Stage, cfg: TrainConfig, rows: MMDataset, feats: FeatureBatch | None,
                     opt: torch.optim.Optimizer, base_lrs: list[float], params: list[nn.Parameter],
                     epoch: int, average: WeightAverage | None = None) -> dict[str, float]:
        shuffle_rng, loss_rng, torch_seed = _epoch_seeds(cfg.seed, i, epoch)
        torch.manual_seed(torch_seed)
        factor = cfg.lr_factor(epoch)
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * factor
        self._set_train_mode(stage)
        sums: dict[str, float] = {}
        n = 0
        for b, batch in enumerate(self._batches(rows, feats, cfg, shuffle_rng)):
            logs = self.train_step(stage, cfg, batch, loss_rng, opt, params, f", epoch {epoch + 1}, batch {b}")
            if average is not None:
                average.update()
            k = batch.size
            n += k
            for name, v in logs.items():
                sums[name] = sums.get(name, 0.0) + v * k
        return {**{name: v / max(n, 1) for name, v in sums.items()}, "lr": cfg.lr * factor}

    def _validate(self, stage: Stage, cfg: TrainConfig, epoch: int, valid_feats: FeatureBatch | None) -> dict[str, float]:
        self.method.eval()
        val = run_validation(self.method, stage.validate, self.data.subset("valid"), features=valid_feats,
                             batch_size=cfg.eval_batch_size, device=self.device)
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

"""Predictions under masks, the test protocols, validation and the metrics of a logits table
(`mmlab.evaluate`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from mmlab import metrics
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.methods.base import VALIDATE_ON, FeatureBatch, Method, Validation, module_device
from mmlab.metrics import auilc, classification_report
from mmlab.missing import (CPMViewMissing, FixedPattern, Full, Masks, all_patterns, draw_masks, make_protocol,
                           mask_batch, pad_masks, pattern_name, resolve_fill)
from mmlab.progress import QUIET_SECONDS
from mmlab.progress import progress as progress_bar
from mmlab.utils import torch_generator

METRICS = ("accuracy", "macro_recall", "f1_weighted")
KEYS = ("dataset", "method", "protocol", "condition")
NON_METRICS = ("split", "seed", "mask_seed", "n", "start_step", "source", "target")
DEFAULT_RATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
AVERAGE, AUILC = "Average", "AUILC"


class Predictor(Protocol):
    """What `evaluate` needs of a method (`mmlab.methods.base.Method` satisfies it)."""

    name: str
    fill: str

    def predict_logits(self, batch: Any) -> torch.Tensor: ...


# ----------------------------------------------------------------- prediction
def predict(
    method: Predictor | Callable[[Any], torch.Tensor],
    data: MMDataset,
    masks: Masks | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    seed: int = 0,
    train: MMDataset | None = None,
    fill: Callable | None = None,
    progress: bool = False,
    output: Callable[[Any], torch.Tensor] | None = None,
) -> np.ndarray:
    """(N, C) logits of ``method`` on every row of ``data`` under ``masks`` (None = complete input).

    ``method`` is a `Predictor` or a plain logits function of an `MMBatch` (used by validation).
    ``output`` replaces ``method.predict_logits`` by another function of the batch (e.g. a
    method's ``predict_regression``, (N,) or (N, 1)).

    Masks are applied batch by batch with the method's fill policy (``method.fill``; "mean"
    needs ``train``, a dataset whose train rows give the means; "noise" draws from a torch
    generator seeded with ``seed``). ``fill`` overrides the policy with a ready-made one. The
    method runs in eval mode under ``torch.no_grad()`` on ``batch.for_eval()``; its training
    mode is restored afterwards.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if masks is not None and len(masks) != len(data):
        raise DataError(f"masks: expected {len(data)} rows (one per sample of {data.name!r}), got {len(masks)}")
    if fill is None and masks is not None:
        fill = resolve_fill(getattr(method, "fill", "zero"), train)
    gen = torch_generator(seed, device=device)
    logits_fn = output or (method.predict_logits if hasattr(method, "predict_logits") else method)
    module = method if isinstance(method, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    out = []
    try:
        if module is not None:
            module.eval()
        starts = range(0, len(data), batch_size)
        with torch.no_grad():
            for start in progress_bar(starts, desc=f"predict {getattr(method, 'name', '')}", disable=not progress,
                                      leave=False):
                idx = np.arange(start, min(start + batch_size, len(data)))
                batch = data.batch(idx, device=device)
                if masks is not None:
                    batch = mask_batch(batch, masks.take(idx), fill, generator=gen)
                logits = logits_fn(batch.for_eval())
                if output is not None and isinstance(logits, torch.Tensor) and logits.dim() == 1:
                    logits = logits[:, None]
                if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != len(idx):
                    shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                    raise DataError(
                        f"{getattr(method, 'name', 'method')}.predict_logits: expected a ({len(idx)}, C) tensor, got {shape}"
                    )
                out.append(logits.detach().float().cpu().numpy())
    finally:
        if module is not None:
            module.train(was_training)
    return np.concatenate(out, axis=0)


# ----------------------------------------------------------------- conditions
@dataclass
class Condition:
    """One test condition: the protocol it belongs to, its label ("{AV}", "rate=0.3") and the
    mask generator. ``value`` is the swept number (rate, eta) for protocols with an AUILC row."""

    protocol: str
    label: str
    generator: Callable[..., Masks]
    value: float | None = None


def pattern_conditions(modalities: Sequence[str], include_full: bool = True) -> list[Condition]:
    """ADMC / CM-ARR fixed patterns (ADMC Tables 1-2, CM-ARR Table 2): ``full`` then
    {A},{V},{T},{AV},{AT},{VT} (available)."""
    conds = [Condition("pattern", "full", Full())] if include_full else []
    return conds + [Condition("pattern", pattern_name(p.available), p) for p in all_patterns(modalities)]


def rate_conditions(
    rates: Sequence[float] = DEFAULT_RATES, protocol: str = "rate_drop", **params: Any
) -> list[Condition]:
    """A missing-rate sweep (ADMC Table 3: 0-0.5 with ``rate_drop``; CIDer: 0-1 with ``rmfm``)."""
    return [
        Condition(protocol, f"rate={float(r):g}", make_protocol(protocol, rate=float(r), **params), float(r))
        for r in _sorted_grid(rates, "rates")
    ]


def eta_conditions(etas: Sequence[float] = DEFAULT_RATES, **params: Any) -> list[Condition]:
    """CPM-Nets view-missing sweep over η, at least one view kept per sample."""
    return [
        Condition("cpm", f"eta={float(e):g}", CPMViewMissing(eta=float(e), **params), float(e))
        for e in _sorted_grid(etas, "etas")
    ]


def _sorted_grid(values: Sequence[float], name: str) -> list[float]:
    try:
        vals = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a list of numbers, got {values!r}") from None
    if not vals or any(b <= a for a, b in zip(vals, vals[1:])):
        raise ConfigError(f"{name}: expected a non-empty, strictly increasing list, got {vals}")
    return vals


# ----------------------------------------------------------------- evaluation
def evaluate(
    method: Predictor,
    data: MMDataset,
    split: str | None = "test",
    conditions: Sequence[Condition] | None = None,
    seed: int = 1111,
    train: MMDataset | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    mask_seed: int | None = None,
    extra_metrics: Mapping[str, Callable[[np.ndarray, np.ndarray], float]] | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One row per condition: dataset, method, protocol, condition, seed, mask_seed, n and the metrics.

    - ``split=None`` evaluates ``data`` as given; ``conditions`` default to `pattern_conditions`.
    - Masks come from ``mask_seed`` (default ``seed``): fix it to keep the test masks constant
      across training seeds, as MMSA / CIDer do with 1111.
    - ``train`` feeds the mean fill; by default the train rows of ``data`` itself.
    - ``extra_metrics`` maps a column name to ``fn(logits, y)``, e.g. CIDer's
      ``lambda s, y: acc2_non0(s, y)``.

    Summary rows: protocol "pattern" gets an ``Average`` row, the mean over its fixed patterns
    (``full`` excluded: ADMC's "Average" of the six). A swept protocol (conditions with a
    ``value``, two or more) gets an ``AUILC`` row holding, in each metric column, CIDer's Eq. 31
    trapezoid area of that metric over the swept grid, not divided by the grid's span (over
    rates 0-1 it is on the metric's scale, over 0-0.5 it is half that). Summary rows have
    ``n`` = the split size.
    """
    part = data if split is None else data.subset(split)
    conditions = pattern_conditions(data.modalities) if conditions is None else list(conditions)
    if not conditions:
        raise ConfigError("conditions: expected at least one condition")
    labels = [(c.protocol, c.label) for c in conditions]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"conditions: duplicate (protocol, label) pairs in {labels}")
    fill_name = getattr(method, "fill", "zero")
    fill = resolve_fill(fill_name, train if train is not None or fill_name != "mean" else data)
    mseed = seed if mask_seed is None else mask_seed
    pad = pad_masks(part)
    y = part.y
    base = {"dataset": data.name, "method": getattr(method, "name", type(method).__name__)}
    regression = part.y_reg is not None and callable(getattr(method, "predict_regression", None))
    rows = []
    desc = f"evaluate {base['method']} on {split or 'all'} ({', '.join(dict.fromkeys(c.protocol for c in conditions))})"
    for cond in progress_bar(conditions, desc=desc, disable=not progress, delay=QUIET_SECONDS):
        masks = draw_masks(cond.generator, pad, part.modalities, mseed, tokens=part.token_modalities)
        logits = predict(method, part, masks, batch_size, device, seed=mseed, fill=fill)
        row = {**base, "protocol": cond.protocol, "condition": cond.label, "split": split or "all", "seed": seed,
               "mask_seed": mseed, "n": len(y)}
        row.update(classification_report(y, logits.argmax(1), part.n_classes))
        if regression:  # MMSA / CIDer regression metrics on y_reg
            scores = predict(method, part, masks, batch_size, device, seed=mseed, fill=fill,
                             output=method.predict_regression)[:, 0]
            row.update(metrics.regression_report(part.y_reg, scores))
        for col, fn in (extra_metrics or {}).items():
            row[col] = float(fn(logits, y))
        rows.append(row)
    return rows + _summary_rows(rows, conditions)


# ----------------------------------------------------------------- validation (training)
@torch.no_grad()
def validate_classifier(method: Predictor | Callable[[Any], torch.Tensor], data: MMDataset, patterns: str = "full",
                        batch_size: int = 256, fill: Any = None,
                        device: str | torch.device | None = None) -> dict[str, float]:
    """Valid-split accuracy (WA), macro_recall (UA), f1_weighted and CE loss, averaged over
    availability conditions: "full" (complete input), "six" (every non-empty proper subset of
    the modalities; MMIN's selection) or "seven" (both). ``method``: a `Method` or a logits
    function of an `MMBatch` (e.g. MMIN's teacher). ``fill`` overrides ``method.fill`` (a policy
    name or object). Only valid-split rows are accepted: model selection never sees a test split.
    """
    _check_valid_rows(data)
    if patterns not in VALIDATE_ON:
        raise ConfigError(f"validate: patterns expected one of {list(VALIDATE_ON)}, got {patterns!r}")
    six = [p.available for p in all_patterns(data.modalities)]
    conds = {"full": [None], "six": six, "seven": [None, *six]}[patterns]
    rows = list(_pattern_scores(method, data, conds, batch_size, fill, device).values())
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


@torch.no_grad()
def validate_per_pattern(method: Predictor | Callable[[Any], torch.Tensor], data: MMDataset, batch_size: int = 256,
                         fill: Any = None, device: str | torch.device | None = None
                         ) -> dict[tuple[str, ...], dict[str, float]]:
    """`validate_classifier`'s scores for each availability pattern on its own, full input
    included: ``{available modalities: scores}`` (full input: all of ``data.modalities``).
    Under natural missingness (``MMDataset.avail``) a pattern is scored on the valid rows that
    natively have all of its modalities, so that no score mixes in another pattern's rows; a
    pattern no valid row has is left out."""
    _check_valid_rows(data)
    out = {}
    for cond in [None, *(p.available for p in all_patterns(data.modalities))]:
        have = data.has_all(data.modalities if cond is None else cond)
        if have.any():
            rows = data if have.all() else data.take(np.flatnonzero(have))
            out.update(_pattern_scores(method, rows, [cond], batch_size, fill, device))
    return out


def _check_valid_rows(data: MMDataset) -> None:
    if len(data) == 0 or set(np.unique(data.split)) != {"valid"}:
        raise DataError(f"validate: expected rows of the 'valid' split only, got splits {sorted(set(data.split))}")


def _pattern_scores(method, data: MMDataset, conds: list, batch_size: int, fill: Any,
                    device: str | torch.device | None) -> dict[tuple[str, ...], dict[str, float]]:
    """Scores on the valid rows under each pattern of ``conds`` (None = full input)."""
    if device is None:
        owner = method if isinstance(method, torch.nn.Module) else getattr(method, "__self__", None)
        device = module_device(owner) if isinstance(owner, torch.nn.Module) else torch.device("cpu")
    fill = resolve_fill(getattr(method, "fill", "zero") if fill is None else fill, None)
    pad = pad_masks(data)
    out = {}
    for cond in conds:
        masks = None if cond is None else draw_masks(FixedPattern(cond), pad, data.modalities, 0)
        logits = predict(method, data, masks, batch_size, device, fill=fill)
        out[tuple(data.modalities) if cond is None else tuple(cond)] = classifier_scores(logits, data.y, data.n_classes)
    return out


def classifier_scores(logits: np.ndarray | torch.Tensor, y: np.ndarray, n_classes: int) -> dict[str, float]:
    """accuracy (WA), macro_recall (UA), f1_weighted and mean CE ``loss`` of (N, C) logits."""
    lg = torch.as_tensor(logits).float().cpu()
    pred = lg.argmax(1).numpy()
    return {"accuracy": metrics.accuracy(y, pred), "macro_recall": metrics.macro_recall(y, pred, n_classes),
            "f1_weighted": metrics.f1_weighted(y, pred, n_classes),
            "loss": float(F.cross_entropy(lg, torch.as_tensor(y, dtype=torch.int64)))}


@torch.no_grad()
def validate(method: Method, validation: Validation, valid: MMDataset, features: FeatureBatch | None = None,
             batch_size: int = 256, device: str | torch.device | None = None) -> dict[str, float]:
    """Carry out a stage's `Validation` declaration on the valid split (what the Trainer calls
    after every epoch). ``features``: the stage's cached valid features, for the ``"features"``
    and ``"errors"`` kinds."""
    if validation.kind == "classifier":
        target = validation.logits if validation.logits is not None else method
        fill = validation.fill if validation.fill is not None else getattr(method, "fill", "zero")
        return validate_classifier(target, valid, validation.patterns, batch_size, fill=fill, device=device)
    if features is None:
        raise ConfigError(f"validate: Validation(kind={validation.kind!r}) needs the stage's cached valid features")
    n = features.size
    chunks = [FeatureBatch({k: v[i:i + batch_size] for k, v in features.items()}) for i in range(0, n, batch_size)]
    if validation.kind == "features":
        logits = torch.cat([validation.logits(c) for c in chunks])
        return classifier_scores(logits, features.y.cpu().numpy(), int(logits.shape[1]))
    parts: dict[str, list[torch.Tensor]] = {}
    for c in chunks:
        for k, v in validation.errors(c).items():
            parts.setdefault(k, []).append(v.detach().float().reshape(-1))
    return {k: float(torch.cat(v).mean()) if sum(len(t) for t in v) else math.nan for k, v in parts.items()}


def _metric_cols(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in KEYS and k not in NON_METRICS and k not in cols and _is_number(v):
                cols.append(k)
    return cols


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _summary_rows(rows: list[dict[str, Any]], conditions: Sequence[Condition]) -> list[dict[str, Any]]:
    cols = _metric_cols(rows)
    out = []
    for protocol in dict.fromkeys(c.protocol for c in conditions):
        pairs = [(c, r) for c, r in zip(conditions, rows) if c.protocol == protocol]
        template = {k: v for k, v in pairs[0][1].items() if k not in cols}
        if protocol == "pattern":
            fixed = [r for c, r in pairs if isinstance(c.generator, FixedPattern)]
            if fixed:
                out.append({**template, "condition": AVERAGE, **{k: float(np.mean([r[k] for r in fixed])) for k in cols}})
        swept = [(c.value, r) for c, r in pairs if c.value is not None]
        if len(swept) >= 2 and len(swept) == len(pairs):
            swept.sort(key=lambda t: t[0])
            grid = [v for v, _ in swept]
            out.append({**template, "condition": AUILC, **{k: auilc([r[k] for _, r in swept], grid) for k in cols}})
    return out



"""The only place that scores: seeded test masks, the method's fill policy, metrics.

Everything that turns a method and masks into numbers lives here: `predict` (logits under
masks), `validate` (what a training stage declares, on the valid split), `evaluate` (every test
protocol: patterns, rates, eta, frame-level sweeps), `oracle_table` (the Bayes oracle),
`generation_table` (what a completing method generates, ADMC Table 4), `inference_throughput`
(the benchmark's timed inference), multi-seed aggregation and the results files.

    rows = evaluate(method, data, conditions=pattern_conditions(data.modalities), seed=1111)
    rows += evaluate(method, data, conditions=rate_conditions(), seed=1111)
    write_results(rows, "runs/compare")

Masks are drawn once per condition over the whole split with
``draw_masks(cond.generator, pad_masks(split), modalities, seed)``, so every method compared
with the same seed sees the same masks (CIDer's code, too, draws its test masks once, with seed
1111). Models receive
``batch.for_eval()``: masked, filled features without the complete originals.

A "method" is anything with ``.name``, ``.fill`` and ``.predict_logits(batch) -> (B, C)``,
an `mmlab.methods.base.Method` or, e.g., a wrapper around a dataset's Bayes oracle.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import itertools
import time
import warnings

import numpy as np
import torch
from torch.nn import functional as F

from mmlab import metrics
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.methods.base import VALIDATE_ON, FeatureBatch, Method, Validation, module_device
from mmlab.methods.oracle import oracle_of
from mmlab.metrics import auilc, classification_report
from mmlab.missing import (
    CPMViewMissing,
    FixedPattern,
    Full,
    Masks,
    all_patterns,
    draw_masks,
    resolve_fill,
    make_protocol,
    mask_batch,
    pad_masks,
    pattern_name,
)
from mmlab.progress import progress as progress_bar
from mmlab.tables import markdown_table, mean_std_cell, records_csv_text
from mmlab.utils import atomic_write_text, numpy_rng, torch_generator

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
    for cond in progress_bar(conditions, desc=f"evaluate {base['method']}", disable=not progress):
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
    if len(data) == 0 or set(np.unique(data.split)) != {"valid"}:
        raise DataError(f"validate: expected rows of the 'valid' split only, got splits {sorted(set(data.split))}")
    if patterns not in VALIDATE_ON:
        raise ConfigError(f"validate: patterns expected one of {list(VALIDATE_ON)}, got {patterns!r}")
    if device is None:
        owner = method if isinstance(method, torch.nn.Module) else getattr(method, "__self__", None)
        device = module_device(owner) if isinstance(owner, torch.nn.Module) else torch.device("cpu")
    fill = resolve_fill(getattr(method, "fill", "zero") if fill is None else fill, None)
    six = [p.available for p in all_patterns(data.modalities)]
    conds = {"full": [None], "six": six, "seven": [None, *six]}[patterns]
    pad = pad_masks(data)
    rows = []
    for cond in conds:
        masks = None if cond is None else draw_masks(FixedPattern(cond), pad, data.modalities, 0)
        logits = predict(method, data, masks, batch_size, device, fill=fill)
        rows.append(classifier_scores(logits, data.y, data.n_classes))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


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


# ----------------------------------------------------------------- oracle
def oracle_table(data: MMDataset, split: str = "test", patterns: Sequence[Sequence[str]] | None = None) -> list[dict]:
    """The Bayes oracle on ``split`` for full input and every availability pattern (or
    ``patterns``): condition, accuracy, macro_recall and ``expected_accuracy`` (the mean posterior
    of the predicted class). Needs a dataset with a known generative model (`synthetic`)."""
    oracle = oracle_of(data)
    mods = tuple(data.modalities)
    if patterns is None:
        conds = pattern_conditions(mods)
    else:
        conds = [Condition("pattern", "full", Full()) if tuple(p) == mods else
                 Condition("pattern", pattern_name(tuple(p)), FixedPattern(tuple(p))) for p in patterns]
    expected = {"expected_accuracy": lambda logits, y: float(np.exp(logits.max(1).astype(np.float64)).mean())}
    rows = evaluate(oracle, data, split=split, conditions=conds, seed=0, extra_metrics=expected)
    return [{"condition": r["condition"], "accuracy": r["accuracy"], "macro_recall": r["macro_recall"],
             "expected_accuracy": r["expected_accuracy"]} for r in rows if r["condition"] != AVERAGE]


# ----------------------------------------------------------------- generation (ADMC Table 4)
EXACT = "exact_conditional"


@torch.no_grad()
def generation_table(method: Method, data: MMDataset, split: str = "test", seed: int = 1111,
                     sources: str = "auto", include_real: bool = True, batch_size: int = 256,
                     device: str | torch.device | None = None, k: int = 4) -> list[dict]:
    """What a completing method generates (ADMC Table 4, any method with the completion
    interface `mmlab.methods.base.Completion`): for every target modality and source set, the
    target is made unavailable (the same seeded masks for every method), ``method.generate``
    fills it from the sources ``k`` times, and the generated features go through the method's
    frozen unimodal head of the target (``feature_logits``): condition ``"VT->A"`` scores one
    generated sample, ``"VT->A mean"`` the mean of the ``k``. Swept over
    ``method.generation_options()`` (a sweep of several values adds ``"@n=50"``-style tags).

    On a dataset with a known generative model (`synthetic`), method ``exact_conditional`` rows
    do the same with target frames drawn from their exact conditional law given the observed
    frames and encoded by the same frozen encoder (``real_features``): the best a generator can
    do. The method's rows then carry ``mean_error`` (RMS over feature dimensions of the mean of
    its ``k`` samples minus the mean of ``k`` exact ones, averaged over samples) and
    ``variance_ratio`` (the spread of its ``k`` samples over the spread of the ``k`` exact ones).

    ``sources``: "all" = every non-empty subset of the other modalities; "paper" = all the
    others and each single one (Table 4's 9 rows for A, V, T); "auto" = "all" for up to three
    modalities, else "paper". ``include_real`` adds the real features of each target ("real->T").
    """
    if not method.completes():
        raise ConfigError(f"{method.name}: the generation protocol needs a method with the completion interface")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"generation_table: k expected a positive integer, got {k!r}")
    part = data.subset(split)
    mods = tuple(part.modalities)
    device = module_device(method) if device is None else torch.device(device)
    mode = sources if sources != "auto" else ("all" if len(mods) <= 3 else "paper")
    if mode not in ("all", "paper"):
        raise ConfigError(f"sources: expected 'auto', 'all' or 'paper', got {sources!r}")
    options = method.generation_options()
    grid = [dict(zip(options, vals)) for vals in itertools.product(*options.values())] or [{}]
    tagged = [name for name, values in options.items() if len(values) > 1]
    sep = "" if all(len(m) == 1 for m in mods) else ","
    fill = resolve_fill(method.fill, part)
    pad = pad_masks(part)
    exact_model = part.info.get("oracle") if hasattr(part.info.get("oracle"), "sample_conditional_frames") else None
    base = {"dataset": data.name, "protocol": "generation", "split": split, "seed": seed, "n": len(part)}

    def scored(target: str, feats: torch.Tensor) -> dict[str, float]:
        logits = method.feature_logits(target, feats).float().cpu()
        return classification_report(part.y, logits.argmax(1).numpy(), part.n_classes)

    def collect(fn: Callable[[Any], torch.Tensor], masks: Masks | None, fill_seed: int) -> torch.Tensor:
        gen_fill, out = torch_generator(fill_seed, device=device), []
        for start in range(0, len(part), batch_size):
            idx = np.arange(start, min(start + batch_size, len(part)))
            batch = part.batch(idx, device=device)
            if masks is not None:
                batch = mask_batch(batch, masks.take(idx), fill, generator=gen_fill)
            out.append(fn(batch, idx))
        return torch.cat(out)

    def exact_draws(target: str, masks: Masks, draw_seed: int) -> torch.Tensor:
        """(k, N, D) real_features of target frames drawn from the exact conditional law."""
        rng = numpy_rng(draw_seed, "exact", target)
        obs = {m: masks.obs[m] for m in mods}
        draws = []
        for _ in range(k):
            frames = exact_model.sample_conditional_frames(part.feats, obs, target, part.lengths[target], rng)

            def encode(batch: Any, idx: np.ndarray, frames: np.ndarray = frames) -> torch.Tensor:
                x = torch.from_numpy(frames[idx, : batch.feats[target].shape[1]]).to(batch.feats[target])
                return method.real_features(replace(batch, feats={**batch.feats, target: x}), target)

            draws.append(collect(encode, None, seed))
        return torch.stack(draws)

    def summary(draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean over draws (N, D), per-sample variance summed over dimensions (N,))."""
        return draws.mean(0), draws.var(0, unbiased=True).sum(-1) if len(draws) > 1 else torch.zeros(draws.shape[1])

    method.eval()
    rows = []
    for target in mods:
        others = [m for m in mods if m != target]
        if mode == "all":
            srcs = [c for k_ in range(len(others), 0, -1) for c in itertools.combinations(others, k_)]
        else:
            srcs = [tuple(others)] + [(m,) for m in others if len(others) > 1]
        if include_real:
            real = collect(lambda b, idx: method.real_features(b.for_eval(), target), None, seed)
            rows.append({**base, "method": method.name, "condition": f"real->{target}", "source": target,
                         "target": target, **{name: 0 for name in options}, **scored(target, real)})
        for src in srcs:
            masks = draw_masks(FixedPattern(src), pad, mods, seed)
            name = f"{sep.join(src)}->{target}"
            exact = None
            if exact_model is not None:
                exact = exact_draws(target, masks, seed)
                for label, feats in ((name, exact[0]), (f"{name} mean", exact.mean(0))):
                    rows.append({**base, "method": EXACT, "condition": label, "source": sep.join(src),
                                 "target": target, **scored(target, feats)})
            for opt in grid:
                gen = torch_generator(seed, "generation", target, sep.join(src), repr(sorted(opt.items())),
                                      device=device)
                draws = torch.stack([collect(lambda b, idx: method.generate(b.for_eval(), target, gen, **opt), masks,
                                             seed) for _ in range(k)])
                tag = ",".join(f"{'n' if o == 'start_step' else o}={opt[o]}" for o in tagged)
                label = name + (f"@{tag}" if tag else "")
                extra: dict[str, float] = {}
                if exact is not None:
                    (gm, gv), (em, ev) = summary(draws.float().cpu()), summary(exact.float().cpu())
                    extra = {"mean_error": float((gm - em).pow(2).mean(-1).sqrt().mean()),
                             "variance_ratio": float(gv.mean() / ev.mean()) if float(ev.mean()) > 0 else math.nan}
                for cond, feats in ((label, draws[0]), (f"{label} mean", draws.mean(0))):
                    rows.append({**base, "method": method.name, "condition": cond, "source": sep.join(src),
                                 "target": target, **opt, **scored(target, feats), **extra})
    return rows


# ----------------------------------------------------------------- inference throughput (bench)
@torch.no_grad()
def inference_throughput(method: Method, data: MMDataset, masks: Masks, batch_size: int, n_batches: int,
                         device: str | torch.device = "cpu", seed: int = 0) -> float:
    """Samples per second of ``method.predict_logits`` on masked, filled batches of ``data`` (rows
    cycled), timed around the model call only, after one warm-up batch. The same batch path as
    `predict`."""
    dev = torch.device(device)
    fill = resolve_fill(method.fill, data)
    gen = torch_generator(seed, device=dev)
    method.eval()
    samples, seconds = 0, 0.0
    for k in range(n_batches + 1):  # the first batch is a warm-up
        idx = (np.arange(batch_size) + k * batch_size) % len(data)
        batch = mask_batch(data.batch(idx, device=dev), masks.take(idx), fill, generator=gen).for_eval()
        _sync(dev)
        t = time.perf_counter()
        method.predict_logits(batch)
        _sync(dev)
        if k > 0:
            seconds += time.perf_counter() - t
            samples += len(idx)
    return samples / seconds if seconds > 0 else math.nan


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


# ----------------------------------------------------------------- aggregation
def aggregate(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds per (dataset, method, protocol, condition), in first-seen order.

    Columns: the four keys (and ``split`` when results hold an extra test split),
    ``<metric>_mean``, ``<metric>_std`` and ``n_seeds`` (rows in the group). The std is the
    population std (``np.std``, ddof = 0) as in MMSA's result tables,
    so a single seed has std 0.
    """
    if not rows:
        raise DataError("aggregate: got no rows")
    for i, r in enumerate(rows):
        missing = [k for k in KEYS if k not in r]
        if missing:
            raise DataError(f"aggregate: row {i} has no {missing} (expected keys {list(KEYS)})")
    cols = _metric_cols(rows)
    keys = _group_keys(rows)
    _warn_dropped(rows, cols, keys)
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k, "test") for k in keys), []).append(r)
    out = []
    for key, members in groups.items():
        agg: dict[str, Any] = dict(zip(keys, key))
        for c in cols:
            vals = np.array([float(r[c]) for r in members if c in r and _is_number(r[c])])
            agg[f"{c}_mean"] = float(vals.mean()) if len(vals) else math.nan
            agg[f"{c}_std"] = float(vals.std()) if len(vals) else math.nan
        agg["n_seeds"] = len(members)
        out.append(agg)
    return out


def _warn_dropped(rows: Sequence[Mapping[str, Any]], cols: list[str], keys: list[str]) -> None:
    """Settings are never silently ignored: name the columns (or cells) that are not numbers and
    so stay out of the mean ± std tables."""
    dropped = sorted({k for r in rows for k in r if k not in keys and k not in NON_METRICS and k not in cols})
    odd = sorted({c for r in rows for c in cols if c in r and not _is_number(r[c])})
    if dropped or odd:
        what = ([f"column(s) {dropped} hold no numbers"] if dropped else []) + (
            [f"column(s) {odd} hold some non-numeric cells"] if odd else [])
        warnings.warn(f"aggregate: {'; '.join(what)}; left out of the mean ± std tables", stacklevel=3)


def _group_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The four keys, plus ``split`` when any row names one other than "test" (an extra test
    split such as ``test_ood``); rows without a split are on "test"."""
    return [*KEYS, "split"] if any(r.get("split", "test") != "test" for r in rows) else list(KEYS)


# ----------------------------------------------------------------- files
CSV_NAME, MD_NAME = "results.csv", "results.md"


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    first = [k for k in (*KEYS, *NON_METRICS) if any(k in r for r in rows)]
    rest = [k for r in rows for k in r if k not in first]
    return first + list(dict.fromkeys(rest))


def _parse(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``results.csv`` written by `write_results` (numbers parsed back)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DataError(f"{path}: cannot read results file ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a UTF-8 text file (byte {err.start}); expected a results.csv written by "
                        "mmlab") from None
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as err:
        raise DataError(f"{path}: malformed CSV ({err})") from None
    if rows and any(k not in rows[0] for k in KEYS):
        raise DataError(f"{path}: expected columns {list(KEYS)}, got {list(rows[0])}")
    return [{k: v if k in KEYS else _parse(v) for k, v in r.items() if v != ""} for r in rows]


def results_markdown(rows: Sequence[Mapping[str, Any]], scale: float = 100.0, digits: int = 2) -> str:
    """A Markdown table of `aggregate` (mean ± std, ×100 by default) with one row per group."""
    agg = aggregate(rows)
    cols = [c[: -len("_mean")] for c in agg[0] if c.endswith("_mean")]
    keys = _group_keys(rows)
    head = [*keys, *cols, "n_seeds"]
    fmt = lambda a, c: mean_std_cell(a[c + "_mean"], a[c + "_std"], a["n_seeds"], scale, digits)  # noqa: E731
    cells = [[str(a[k]) for k in keys] + [fmt(a, c) for c in cols] + [str(a["n_seeds"])] for a in agg]
    return markdown_table(head, cells) + "\n"


def write_results(rows: Sequence[Mapping[str, Any]], out_dir: str | Path, append: bool = False) -> dict[str, Path]:
    """Write ``results.csv`` (one row per dataset, method, protocol, condition, seed) and
    ``results.md`` (aggregated mean ± std over seeds) into ``out_dir``.

    Existing results are never overwritten (`DataError` naming the file) unless ``append``,
    which adds ``rows`` to the rows already in ``results.csv`` and rewrites both files.
    """
    if not rows:
        raise DataError("write_results: got no rows")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / CSV_NAME, out / MD_NAME
    old: list[dict[str, Any]] = []
    if not append:
        for p in (csv_path, md_path):
            if p.exists():
                raise DataError(f"{p}: results file exists; pass append=True or choose another folder")
    elif csv_path.exists():
        old = read_results(csv_path)
    everything = [*old, *[dict(r) for r in rows]]
    cols = _columns(everything)
    cells = [{k: (repr(float(v)) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()} for r in everything]
    atomic_write_text(csv_path, records_csv_text(cells, cols))
    atomic_write_text(md_path, results_markdown(everything))
    return {"csv": csv_path, "md": md_path}

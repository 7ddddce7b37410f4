"""The one way every method is evaluated: seeded test masks, the method's fill policy, metrics.

    rows = evaluate(method, data, conditions=pattern_conditions(data.modalities), seed=1111)
    rows += evaluate(method, data, conditions=rate_conditions(), seed=1111)
    write_results(rows, "runs/compare")

Masks are drawn once per condition over the whole split with
``draw_masks(cond.generator, pad_masks(split), modalities, seed)``, so every method compared
with the same seed sees the same masks (spec §4.1 item 10, §4.4). Models receive
``batch.for_eval()``: masked, filled features without the complete originals.

A "method" is anything with ``.name``, ``.fill`` and ``.predict_logits(batch) -> (B, C)``,
an `mmlab.methods.base.Method` or, e.g., a wrapper around a dataset's Bayes oracle.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.metrics import auilc, classification_report
from mmlab.missing import (
    CPMViewMissing,
    FixedPattern,
    Full,
    Masks,
    all_patterns,
    draw_masks,
    make_fill,
    make_protocol,
    mask_batch,
    pad_masks,
    pattern_name,
)
from mmlab.utils import atomic_write_text, torch_generator

METRICS = ("accuracy", "macro_recall", "f1_weighted")
KEYS = ("dataset", "method", "protocol", "condition")
NON_METRICS = ("seed", "mask_seed", "n", "start_step")
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
) -> np.ndarray:
    """(N, C) logits of ``method`` on every row of ``data`` under ``masks`` (None = complete input).

    ``method`` is a `Predictor` or a plain logits function of an `MMBatch` (used by validation).

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
        fill = make_fill(getattr(method, "fill", "zero"), train)
    gen = torch_generator(seed, device)
    logits_fn = method.predict_logits if hasattr(method, "predict_logits") else method
    module = method if isinstance(method, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    out = []
    try:
        if module is not None:
            module.eval()
        starts = range(0, len(data), batch_size)
        with torch.no_grad():
            for start in tqdm(starts, desc=f"predict {getattr(method, 'name', '')}", disable=not progress, leave=False):
                idx = np.arange(start, min(start + batch_size, len(data)))
                batch = data.batch(idx, device=device)
                if masks is not None:
                    batch = mask_batch(batch, masks.take(idx), fill, generator=gen)
                logits = logits_fn(batch.for_eval())
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
    """ADMC / CM-ARR fixed patterns (§1.5): ``full`` then {A},{V},{T},{AV},{AT},{VT} (available)."""
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
    fill = make_fill(fill_name, train if train is not None or fill_name != "mean" else data)
    mseed = seed if mask_seed is None else mask_seed
    pad = pad_masks(part)
    y = part.y
    base = {"dataset": data.name, "method": getattr(method, "name", type(method).__name__)}
    rows = []
    for cond in tqdm(conditions, desc=f"evaluate {base['method']}", disable=not progress):
        masks = draw_masks(cond.generator, pad, part.modalities, mseed)
        logits = predict(method, part, masks, batch_size, device, seed=mseed, fill=fill)
        row = {**base, "protocol": cond.protocol, "condition": cond.label, "seed": seed, "mask_seed": mseed, "n": len(y)}
        row.update(classification_report(y, logits.argmax(1), part.n_classes))
        for col, fn in (extra_metrics or {}).items():
            row[col] = float(fn(logits, y))
        rows.append(row)
    return rows + _summary_rows(rows, conditions)


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

    Columns: the four keys, ``<metric>_mean``, ``<metric>_std`` and ``n_seeds`` (rows in the
    group). The std is the population std (``np.std``, ddof = 0) as in MMSA's result tables,
    so a single seed has std 0.
    """
    if not rows:
        raise DataError("aggregate: got no rows")
    for i, r in enumerate(rows):
        missing = [k for k in KEYS if k not in r]
        if missing:
            raise DataError(f"aggregate: row {i} has no {missing} (expected keys {list(KEYS)})")
    cols = _metric_cols(rows)
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in KEYS), []).append(r)
    out = []
    for key, members in groups.items():
        agg: dict[str, Any] = dict(zip(KEYS, key))
        for c in cols:
            vals = np.array([float(r[c]) for r in members if c in r and _is_number(r[c])])
            agg[f"{c}_mean"] = float(vals.mean()) if len(vals) else math.nan
            agg[f"{c}_std"] = float(vals.std()) if len(vals) else math.nan
        agg["n_seeds"] = len(members)
        out.append(agg)
    return out


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
        text = path.read_text()
    except OSError as err:
        raise DataError(f"{path}: cannot read results file ({err.strerror})") from None
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and any(k not in rows[0] for k in KEYS):
        raise DataError(f"{path}: expected columns {list(KEYS)}, got {list(rows[0])}")
    return [{k: v if k in KEYS else _parse(v) for k, v in r.items() if v != ""} for r in rows]


def results_markdown(rows: Sequence[Mapping[str, Any]], scale: float = 100.0, digits: int = 2) -> str:
    """A Markdown table of `aggregate` (mean ± std, ×100 by default) with one row per group."""
    agg = aggregate(rows)
    cols = [c[: -len("_mean")] for c in agg[0] if c.endswith("_mean")]
    head = [*KEYS, *cols, "n_seeds"]
    fmt = lambda a, c: f"{a[c + '_mean'] * scale:.{digits}f} ± {a[c + '_std'] * scale:.{digits}f}"  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in agg:
        cells = [str(a[k]) for k in KEYS] + [fmt(a, c) for c in cols] + [str(a["n_seeds"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for r in everything:
        writer.writerow({k: (repr(float(v)) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()})
    atomic_write_text(csv_path, buf.getvalue())
    atomic_write_text(md_path, results_markdown(everything))
    return {"csv": csv_path, "md": md_path}

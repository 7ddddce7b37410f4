"""Multi-seed aggregation and the results files ``results.csv`` / ``results.md``
(`mmlab.evaluate`)."""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mmlab.errors import DataError
from mmlab.tables import markdown_table, mean_std_cell, records_csv_text
from mmlab.utils import atomic_write_text
from mmlab.evaluate.scoring import KEYS, NON_METRICS, _is_number, _metric_cols


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
        groups.setdefault(tuple(split_of(r) if k == "split" else r.get(k) for k in keys), []).append(r)
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


def split_of(row: Mapping[str, Any]) -> str:
    """The test split a result row is on: its ``split``, or "test" when it names none."""
    return str(row.get("split") or "test")


def _group_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The four keys, plus ``split`` when any row names one other than "test" (an extra test
    split such as ``test_ood``); rows without a split are on "test"."""
    return [*KEYS, "split"] if any(split_of(r) != "test" for r in rows) else list(KEYS)


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
    if text and not text.endswith(("\n", "\r")):  # mmlab ends every file with a line end: a cut copy or crash
        raise DataError(f"{path}: the last line has no line end, so the file may be cut short (a copy or write "
                        "that stopped?); if its last row is complete, end it with a newline")
    try:
        reader = csv.DictReader(io.StringIO(text))
        rows = list(reader)
    except csv.Error as err:
        raise DataError(f"{path}: malformed CSV ({err})") from None
    if rows and any(k not in rows[0] for k in KEYS):
        raise DataError(f"{path}: expected columns {list(KEYS)}, got {list(rows[0])}")
    for i, r in enumerate(rows):  # a torn or hand-edited line: fields missing (None) or extra (key None)
        if None in r or None in r.values():
            got = len([v for k, v in r.items() if k is not None and v is not None]) + len(r.get(None) or [])
            raise DataError(f"{path}: line {i + 2} has {got} fields, expected {len(reader.fieldnames or [])} "
                            "(a torn or hand-edited line?)")
    return [{k: v if k in KEYS else _parse(v) for k, v in r.items() if v != ""} for r in rows]


# metrics that are not fractions: printed as they are, never x100
UNSCALED = ("mean_error", "variance_ratio", "mae", "corr")


def metric_scale(metric: str, scale: float) -> float:
    """The factor a table prints ``metric`` with: ``scale`` for fractions, 1 for `UNSCALED` ones."""
    return 1.0 if metric in UNSCALED else scale


def results_markdown(rows: Sequence[Mapping[str, Any]], scale: float = 100.0, digits: int = 2) -> str:
    """A Markdown table of `aggregate` (mean ± std, fractions ×100 by default, `UNSCALED` metrics
    as they are) with one row per group."""
    agg = aggregate(rows)
    cols = [c[: -len("_mean")] for c in agg[0] if c.endswith("_mean")]
    keys = _group_keys(rows)
    head = [*keys, *cols, "n_seeds"]
    fmt = lambda a, c: mean_std_cell(a[c + "_mean"], a[c + "_std"], a["n_seeds"],  # noqa: E731
                                     metric_scale(c, scale), digits)
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


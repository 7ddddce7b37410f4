"""Reports of `compare` runs: one CSV per dataset in MMSA's style, Markdown, one offline HTML page.

    paths = build_report(["runs/cmp_a", "runs/cmp_b"], "reports/today")

Input: ``results.csv`` files written by `mmlab.evaluate.write_results` (rows: dataset, method,
protocol, condition, seed, metrics), or compare / sweep folders whose jobs are not all finished:
their finished jobs' rows (`mmlab.executors.gather`), the missing jobs named in the report.
Output, never overwriting a file:

- ``<dataset>.csv``: rows method x (protocol, condition), each metric cell "mean ± std" over
  seeds, x100 with one decimal (population std, as MMSA; thuiar/MMSA writes one CSV per dataset);
- ``report.md``: per dataset and protocol, wide tables (methods x conditions) per metric and,
  on `synthetic`, the accuracy gap to the Bayes oracle (rows with method ``bayes_oracle``);
- ``report.html``: the same tables plus plotly charts (accuracy against the missing rate per
  method for swept protocols, grouped bars per availability pattern, the gap to the oracle),
  with plotly.js inlined once so the page works offline.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any, Sequence

from mmlab.errors import DataError
from mmlab.evaluate import AUILC, AVERAGE, KEYS, METRICS, aggregate, metric_scale, read_results, split_of
from mmlab.executors import gather, has_plan
from mmlab.executors import missing_jobs as ex_missing_jobs
from mmlab.tables import csv_text, html_table, markdown_table, mean_std_cell
from mmlab.utils import atomic_write_text

ORACLE = "bayes_oracle"
SWEPT = re.compile(r"^\s*[A-Za-z_]+\s*=\s*([-+0-9.eE]+)\s*$")  # "rate=0.3", "eta=0.1"


# --------------------------------------------------------------------------- reading
def result_sources(d: str | Path) -> list[Path]:
    """The ``results.csv`` files or ``jobs/`` folders that a result folder stands for: the rows of
    its jobs when it has ``jobs/plan.json`` (a compare or sweep, finished or not: results.csv is
    derived from them); else its results.csv; else those of its subfolders (a suite's root)."""
    path = Path(d)
    if path.is_file():
        return [path]
    if has_plan(path / "jobs"):
        return [path / "jobs"]
    if (path / "results.csv").is_file():
        return [path / "results.csv"]
    subs = sorted(s for s in path.iterdir() if s.is_dir()) if path.is_dir() else []
    for folder in (path, *subs):
        if (folder / "results.csv").exists() and not (folder / "results.csv").is_file():
            raise DataError(f"{folder / 'results.csv'}: exists but is not a file; expected the results.csv mmlab "
                            "writes")
    found = [src for s in subs if (s / "results.csv").is_file() or has_plan(s / "jobs") for src in result_sources(s)]
    if not found:
        raise DataError(f"{path}: no results file (expected a folder with results.csv, a compare or sweep folder "
                        "with jobs/, or the file itself)")
    return found


def missing_jobs(result_dirs: Sequence[str | Path]) -> list[str]:
    """The jobs of the compare / sweep folders among ``result_dirs`` that have no rows yet."""
    dirs = [result_dirs] if isinstance(result_dirs, (str, Path)) else result_dirs
    return [m for d in dirs for src in result_sources(d) if src.is_dir() for m in ex_missing_jobs(src)]


def load_results(result_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Rows of every ``results.csv`` (a folder holding one, or the file itself); of a compare or
    sweep folder, the rows of its finished jobs (`missing_jobs` lists the others).

    The same (dataset, method, protocol, condition, test split, seed) in two files is kept once when the
    values agree (the oracle rows of several `compare` runs) and is a `DataError` otherwise.
    """
    if isinstance(result_dirs, (str, Path)):
        result_dirs = [result_dirs]
    if not result_dirs:
        raise DataError("build_report: result_dirs is empty; expected folders holding results.csv")
    rows, seen = [], {}
    for path in (src for d in result_dirs for src in result_sources(d)):
        for r in (gather(path)[0] if path.is_dir() else read_results(path)):
            key = (*(r.get(k) for k in KEYS), split_of(r), r.get("seed"))
            if key in seen:
                other, where = seen[key]
                differs = any(_differs(r.get(c), other.get(c)) for c in METRICS)
                if where == path and (differs or r.get("seed") is None):  # e.g. several seeds, no seed column
                    why = " (with no seed to tell the rows of several seeds apart)" if r.get("seed") is None else ""
                    raise DataError(f"{path}: result {dict(zip((*KEYS, 'split', 'seed'), key))} appears twice"
                                    f"{why}; expected one row per dataset, method, protocol, condition, split and "
                                    "seed")
                if differs:
                    raise DataError(f"{path}: result {dict(zip((*KEYS, 'split', 'seed'), key))} is also in {where} with "
                                    "different values; report these runs separately")
                continue
            seen[key] = (r, path)
            rows.append(r)
    if not rows:
        raise DataError(f"build_report: no result rows in {[str(d) for d in result_dirs]}")
    return rows


MAX_LISTED = 20  # NaN results named in a report; the rest are counted


def not_a_number(rows: Sequence[dict[str, Any]]) -> list[str]:
    """'dataset / method / protocol / condition / seed N: metric' for every NaN metric cell: a
    group's mean over seeds is NaN when one seed's is, so the report says which."""
    return [f"{' / '.join(str(r.get(k)) for k in KEYS)} / seed {r.get('seed')}: {c}"
            for r in rows for c in METRICS if isinstance(r.get(c), float) and math.isnan(r[c])]


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return not (math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b)))
    return a != b


# --------------------------------------------------------------------------- tables
def _metrics(agg: list[dict[str, Any]]) -> list[str]:
    found = [c[: -len("_mean")] for a in agg for c in a if c.endswith("_mean")]
    found = list(dict.fromkeys(found))
    return [m for m in METRICS if m in found] + [m for m in found if m not in METRICS]


def _cell(a: dict[str, Any] | None, metric: str, scale: float, digits: int) -> str:
    """"mean ± std", fractions x ``scale``, the `UNSCALED` metrics (errors, ratios) as they are."""
    if a is None or f"{metric}_mean" not in a or math.isnan(a[f"{metric}_mean"]):
        return "-"
    return mean_std_cell(a[metric + "_mean"], a[metric + "_std"], a["n_seeds"], metric_scale(metric, scale), digits)


def _order(values: list[str]) -> list[str]:
    """First-seen order with the oracle last."""
    uniq = list(dict.fromkeys(values))
    return [v for v in uniq if v != ORACLE] + [v for v in uniq if v == ORACLE]


def dataset_table(agg: list[dict[str, Any]], scale: float = 100.0, digits: int = 1) -> tuple[list[str], list[list[str]]]:
    """MMSA-style long table of one dataset: (header, rows) with "mean ± std" metric cells."""
    metrics = _metrics(agg)
    header = ["method", "protocol", "condition", *metrics, "n_seeds"]
    body = []
    for method in _order([a["method"] for a in agg]):
        for a in (a for a in agg if a["method"] == method):
            body.append([method, a["protocol"], a["condition"], *(_cell(a, m, scale, digits) for m in metrics),
                         str(a["n_seeds"])])
    return header, body


def wide_table(agg: list[dict[str, Any]], protocol: str, metric: str, scale: float = 100.0,
               digits: int = 1) -> tuple[list[str], list[list[str]]]:
    """Methods x conditions of one protocol (like ADMC Table 1): "mean ± std" cells."""
    part = [a for a in agg if a["protocol"] == protocol]
    conds = list(dict.fromkeys(a["condition"] for a in part))
    look = {(a["method"], a["condition"]): a for a in part}
    rows = [[m, *(_cell(look.get((m, c)), metric, scale, digits) for c in conds)]
            for m in _order([a["method"] for a in part])]
    return ["method", *conds], rows


def oracle_gap(agg: list[dict[str, Any]], protocol: str, metric: str = "accuracy",
               scale: float = 100.0) -> tuple[list[str], list[list[float]], list[str]] | None:
    """(conditions, gaps, methods): mean ``metric`` of each method minus the Bayes oracle's, per
    condition (points x ``scale``); None when the protocol has no oracle rows. AUILC rows skipped."""
    part = [a for a in agg if a["protocol"] == protocol and a["condition"] != AUILC]
    ref = {a["condition"]: a[f"{metric}_mean"] for a in part if a["method"] == ORACLE and f"{metric}_mean" in a}
    if not ref:
        return None
    conds = [c for c in dict.fromkeys(a["condition"] for a in part) if c in ref]
    methods = [m for m in _order([a["method"] for a in part]) if m != ORACLE]
    look = {(a["method"], a["condition"]): a.get(f"{metric}_mean", math.nan) for a in part}
    gaps = [[(look.get((m, c), math.nan) - ref[c]) * scale for c in conds] for m in methods]
    return conds, gaps, methods


_markdown, _html_table = markdown_table, html_table


def _fmt_gap(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:+.1f}"


# --------------------------------------------------------------------------- figures
def _swept(agg: list[dict[str, Any]], protocol: str) -> bool:
    conds = {a["condition"] for a in agg if a["protocol"] == protocol} - {AUILC, AVERAGE}
    return len(conds) >= 2 and all(SWEPT.match(c) for c in conds)


def figures(agg: list[dict[str, Any]], dataset: str, metric: str = "accuracy", scale: float = 100.0) -> list:
    """Plotly figures of one dataset: per protocol a line chart against the swept value (rate,
    eta) or grouped bars per condition, and the gap to the Bayes oracle when it is present."""
    import plotly.graph_objects as go

    figs = []
    for protocol in dict.fromkeys(a["protocol"] for a in agg):
        part = [a for a in agg if a["protocol"] == protocol and f"{metric}_mean" in a
                and not math.isnan(a[f"{metric}_mean"])]  # a NaN mean has no point to draw (named above)
        if not part:
            continue
        methods = _order([a["method"] for a in part])
        fig = go.Figure()
        if _swept(agg, protocol):
            for m in methods:
                pts = sorted((float(SWEPT.match(a["condition"]).group(1)), a) for a in part
                             if a["method"] == m and SWEPT.match(a["condition"]))
                fig.add_trace(go.Scatter(
                    x=[x for x, _ in pts], y=[a[f"{metric}_mean"] * scale for _, a in pts], name=m, mode="lines+markers",
                    error_y={"type": "data", "array": [a[f"{metric}_std"] * scale for _, a in pts]},
                    line={"dash": "dash"} if m == ORACLE else None))
            xname = SWEPT.match(next(a["condition"] for a in part if SWEPT.match(a["condition"]))).group(0).split("=")[0]
            fig.update_layout(xaxis_title=f"missing {xname.strip()}")
        else:
            conds = [c for c in dict.fromkeys(a["condition"] for a in part) if c != AUILC]
            look = {(a["method"], a["condition"]): a for a in part}
            for m in methods:
                cells = [look.get((m, c)) for c in conds]
                fig.add_trace(go.Bar(
                    x=conds, y=[a[f"{metric}_mean"] * scale if a else None for a in cells], name=m,
                    error_y={"type": "data", "array": [a[f"{metric}_std"] * scale if a else 0 for a in cells]}))
            fig.update_layout(barmode="group", xaxis_title="available modalities")
        fig.update_layout(title=f"{dataset}: {metric} ({protocol})", yaxis_title=f"{metric} x{scale:g}",
                          template="plotly_white", height=420)
        figs.append(fig)
        gap = oracle_gap(agg, protocol, metric, scale)
        if gap is not None and gap[2]:
            conds, gaps, gm = gap
            g = go.Figure([go.Bar(x=conds, y=row, name=m) for m, row in zip(gm, gaps)])
            g.update_layout(title=f"{dataset}: {metric} minus the Bayes oracle ({protocol})", barmode="group",
                            yaxis_title="points (negative = below the oracle)", template="plotly_white", height=420)
            figs.append(g)
    return figs


# --------------------------------------------------------------------------- the report
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._") or "dataset"


def build_report(result_dirs: Sequence[str | Path], out: str | Path, scale: float = 100.0,
                 digits: int = 1, rows: Sequence[dict[str, Any]] | None = None) -> list[Path]:
    """Write ``<dataset>.csv`` per dataset, ``report.md`` and ``report.html`` into ``out``; rows of an
    extra test split are a dataset of their own, ``<dataset> (<split>)``.

    ``rows``: those `load_results` read from ``result_dirs`` already (read again when None).
    ``out`` is created when missing; an existing file of the same name is never overwritten
    (`DataError` naming it: choose a new folder). Returns the written paths.
    """

    rows = [dict(r, dataset=f"{r['dataset']} ({split_of(r)})") if split_of(r) != "test" else r
            for r in (load_results(result_dirs) if rows is None else rows)]  # test_ood: a section of its own
    out = Path(out)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    names = {d: _safe(d) for d in datasets}
    if len(set(names.values())) != len(names):
        raise DataError(f"build_report: dataset names {datasets} collide as file names {list(names.values())}")
    targets = {d: out / f"{names[d]}.csv" for d in datasets}
    md_path, html_path = out / "report.md", out / "report.html"
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; expected a folder for the report")
    for p in [*targets.values(), md_path, html_path]:
        if p.exists():
            raise DataError(f"{p}: exists; reports never overwrite files, choose a new --out folder")
    out.mkdir(parents=True, exist_ok=True)

    md = ["# Results", "", f"Sources: {', '.join(str(Path(d)) for d in result_dirs)}. "
          f"Cells: mean ± std over seeds, x{scale:g}."]
    body, written = [], []
    missing = missing_jobs(result_dirs)
    if missing:
        md += ["", f"**Partial results: {len(missing)} job(s) have no rows yet** (run the same command again):", "",
               *(f"- {m}" for m in missing)]
        body.append(f"<p><b>Partial results: {len(missing)} job(s) have no rows yet</b> (run the same command "
                    "again):</p><ul>" + "".join(f"<li>{html.escape(m)}</li>" for m in missing) + "</ul>")
    bad = not_a_number(rows)
    if bad:
        head = (f"{len(bad)} result(s) are not a number (a diverged or failed run?); the cells whose mean over "
                "seeds they enter show '-'")
        md += ["", f"**{head}:**", "", *(f"- {b}" for b in bad[:MAX_LISTED])]
        body.append(f"<p><b>{html.escape(head)}:</b></p><ul>"
                    + "".join(f"<li>{html.escape(b)}</li>" for b in bad[:MAX_LISTED]) + "</ul>")
        if len(bad) > MAX_LISTED:
            md.append(f"- ... and {len(bad) - MAX_LISTED} more")
            body.append(f"<p>... and {len(bad) - MAX_LISTED} more</p>")
    first_fig = True
    for d in datasets:
        agg = aggregate([r for r in rows if r["dataset"] == d])
        header, long_rows = dataset_table(agg, scale, digits)
        atomic_write_text(targets[d], csv_text(header, long_rows))
        written.append(targets[d])
        seeds = sorted({r.get("seed") for r in rows if r["dataset"] == d}, key=str)
        single = all(a["n_seeds"] == 1 for a in agg)  # then cells are plain means, said once here
        note = " One seed: cells are single runs, with no spread to show." if single else ""
        md += ["", f"## {d}", "", f"Seeds: {', '.join(map(str, seeds))}.{note}"]
        body.append(f"<h2>{html.escape(d)}</h2><p>Seeds: {html.escape(', '.join(map(str, seeds)))}.{note}</p>")
        for protocol in dict.fromkeys(a["protocol"] for a in agg):
            md += ["", f"### {protocol}"]
            body.append(f"<h3>{html.escape(protocol)}</h3>")
            for metric in _metrics(agg):
                h, r = wide_table(agg, protocol, metric, scale, digits)
                if single:
                    r = [[c.replace(" (1 seed)", "") for c in row] for row in r]
                md += ["", f"**{metric}**", "", _markdown(h, r)]
                body.append(f"<h4>{html.escape(metric)}</h4>" + _html_table(h, r))
            gap = oracle_gap(agg, protocol, "accuracy", scale)
            if gap is not None and gap[2]:
                conds, gaps, gm = gap
                h, r = ["method", *conds], [[m, *map(_fmt_gap, g)] for m, g in zip(gm, gaps)]
                md += ["", "**accuracy gap to the Bayes oracle (points)**", "", _markdown(h, r)]
                body.append("<h4>accuracy gap to the Bayes oracle (points)</h4>" + _html_table(h, r))
        for fig in figures(agg, d, "accuracy", scale):
            body.append(fig.to_html(full_html=False, include_plotlyjs=first_fig))
            first_fig = False
    atomic_write_text(md_path, "\n".join(md).rstrip() + "\n")
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>mmlab report</title><style>{style}</style>"
            f"</head><body><h1>mmlab report</h1><p>Cells: mean ± std over seeds, x{scale:g}.</p>"
            + "\n".join(body) + "</body></html>\n")
    atomic_write_text(html_path, page)
    return [*written, md_path, html_path]

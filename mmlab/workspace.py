"""Run the ordered notebooks with papermill into a fresh ``runs/<timestamp>/`` folder.

``mmlab run`` calls `run_notebooks`. Each ``notebooks/NN_*.ipynb`` is executed in order with
an explicit kernel, an execution timeout and ``interactive=False``; overrides reach only the
notebooks whose ``parameters`` cell declares them. A notebook records what it measured with a
`NotebookRecorder` (scalars, small tables, plotly figures) into ``<out_dir>/metrics/`` and
``<out_dir>/figures/``; after the last notebook, `build_html_report` turns those records into
one self-contained ``report.html`` (plotly.js inlined once, works offline).

Layout of a run folder::

    notebooks/NN_name.ipynb      executed copies (kept even when a later notebook fails)
    metrics/NN_name.json         what each notebook recorded
    figures/NN_name/*.json       its figures (plotly JSON)
    models/                      models trained by one notebook and reused by the next
    summary.json                 per-notebook status, seconds and parameters
    report.html                  one page: every notebook's metrics, tables and figures
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mmlab.errors import ConfigError, MMLabError
from mmlab.utils import atomic_write_text, new_run_dir

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
OUT_PARAMS = ("out_dir", "metrics_dir")  # a notebook may name its output folder either way


# ------------------------------------------------------------------------------ recording
def _jsonable(value: Any) -> Any:
    """numpy / torch scalars and arrays -> plain Python for ``json.dumps``."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy / torch
        return _jsonable(value.tolist())
    if isinstance(value, float) and value != value:  # NaN -> null (valid JSON)
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@dataclass
class NotebookRecorder:
    """What one notebook hands to the run: scalars, tables and figures.

    ``out_dir=None`` (a notebook opened by hand) records into a temporary folder.
    """

    name: str
    out_dir: str | os.PathLike | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict]] = field(default_factory=dict)
    figures: list[dict[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.out_dir is None:
            self.out_dir = tempfile.mkdtemp(prefix="mmlab-notebook-")
        self.out_dir = Path(self.out_dir)

    @property
    def metrics_path(self) -> Path:
        return Path(self.out_dir) / "metrics" / f"{self.name}.json"

    def log(self, **values: Any) -> None:
        """Record scalars (e.g. ``accuracy=0.71``); saved at once."""
        self.metrics.update(_jsonable(values))
        self.save()

    def table(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record a small table (a list of row dicts); saved at once."""
        self.tables[name] = _jsonable([dict(r) for r in rows])
        self.save()

    def figure(self, fig: Any, name: str, caption: str = "") -> Any:
        """Save a plotly figure as JSON for the run report and return it (to display)."""
        folder = Path(self.out_dir) / "figures" / self.name
        folder.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "figure"
        path = folder / f"{len(self.figures):02d}_{slug}.json"
        atomic_write_text(path, fig.to_json())
        self.figures.append({"name": name, "caption": caption, "path": str(path.relative_to(self.out_dir))})
        self.save()
        return fig

    def show(self, fig: Any, name: str, caption: str = "") -> None:
        """`figure` plus display in the notebook."""
        from IPython.display import display

        display(self.figure(fig, name, caption))

    def save(self) -> Path:
        """Write ``metrics/<name>.json`` atomically."""
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "notebook": self.name,
            "metrics": self.metrics,
            "tables": self.tables,
            "figures": self.figures,
            "seconds": round(time.time() - self.started, 2),
        }
        atomic_write_text(self.metrics_path, json.dumps(record, indent=1))
        return self.metrics_path


def setup_notebook(threads: int | None = 1, seed: int | None = None, renderer: str = "plotly_mimetype") -> None:
    """First cell of every notebook: CPU threads, seeds and the plotly renderer.

    ``threads`` caps torch's intra-op threads and numba's (UMAP): on a small shared CPU,
    several busy-waiting thread pools slow small models down by one to two orders of
    magnitude, so the CPU defaults use 1. ``None`` leaves the libraries' defaults.
    Static figures render as plotly MIME bundles (JupyterLab draws them; the run report
    re-draws them from the recorded JSON)."""
    import plotly.io as pio
    import torch

    if threads is not None:
        os.environ.setdefault("NUMBA_NUM_THREADS", str(int(threads)))  # read when numba is first imported
        torch.set_num_threads(int(threads))
        if "numba" in sys.modules:
            import numba

            numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
    if seed is not None:
        from mmlab.utils import seed_everything

        seed_everything(int(seed))
    pio.renderers.default = renderer


def cache_dir(out_dir: str | os.PathLike | None = None) -> Path:
    """Where notebooks keep trained models for the next notebook: ``<out_dir>/models`` inside
    a run, else ``$MMLAB_CACHE`` or ``~/.cache/mmlab``."""
    if out_dir is not None:
        path = Path(out_dir) / "models"
    else:
        path = Path(os.environ.get("MMLAB_CACHE") or Path.home() / ".cache" / "mmlab")
    path.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------------ parameters
def list_notebooks(notebooks_dir: str | os.PathLike) -> list[Path]:
    """``NN_*.ipynb`` files of a folder, in name order."""
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise ConfigError(f"notebooks: {folder} is not a folder")
    found = sorted(p for p in folder.glob(NOTEBOOK_GLOB) if p.is_file())
    if not found:
        raise ConfigError(f"notebooks: no {NOTEBOOK_GLOB} files in {folder}")
    return found


def declared_parameters(path: str | os.PathLike) -> dict[str, str]:
    """``{name: default source}`` of a notebook's ``parameters`` cell (empty if it has none)."""
    import papermill as pm

    return {k: v["default"] for k, v in pm.inspect_notebook(str(path)).items()}


def coerce_parameter(value: Any, default_source: str) -> Any:
    """A CLI string -> the type its declaration implies (YAML-parsed, like ``papermill -p``);
    a parameter declared as a string literal keeps the raw text."""
    if not isinstance(value, str):
        return value
    if default_source.strip()[:1] in ("'", '"'):
        return value
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def parameters_for(path: Path, params: Mapping[str, Any], out_dir: Path) -> dict[str, Any]:
    """The overrides one notebook receives: only names its parameters cell declares, plus
    ``interactive=False`` and the run folder as ``out_dir`` / ``metrics_dir``."""
    declared = declared_parameters(path)
    chosen: dict[str, Any] = {}
    if "interactive" in declared:
        chosen["interactive"] = False
    for name in OUT_PARAMS:
        if name in declared:
            chosen[name] = str(out_dir)
    for name, value in params.items():
        if name in declared:
            chosen[name] = coerce_parameter(value, declared[name])
    return chosen


# ------------------------------------------------------------------------------ failures
def _failing_cell(executed: Path, original: Path) -> tuple[int | None, str]:
    """(index in the original notebook, first source line) of the first cell with an error."""
    import nbformat

    try:
        nb = nbformat.read(str(executed), as_version=4)
    except Exception:  # noqa: BLE001 - the output notebook may not exist
        return None, ""
    cells = [
        c for c in nb.cells
        if not set(c.metadata.get("tags", [])) & {"injected-parameters", "papermill-error-cell-tag"}
    ]
    for i, c in enumerate(cells):
        if any(o.get("output_type") == "error" for o in c.get("outputs", [])):
            return i, (c.source.strip().splitlines() or [""])[0]
    for i, c in enumerate(cells):  # killed mid-cell: the one papermill marked as running
        if c.metadata.get("papermill", {}).get("status") == "running":
            return i, (c.source.strip().splitlines() or [""])[0]
    return None, ""


def _error_for(nb_path: Path, executed: Path, err: BaseException) -> MMLabError:
    index, first = _failing_cell(executed, nb_path)
    where = f"cell {index}" if index is not None else "a cell"
    what = getattr(err, "ename", None)
    detail = f"{what}: {getattr(err, 'evalue', '')}" if what else f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return MMLabError(
        f"notebook {nb_path.name} failed in {where} ({first!r}): {detail.strip()}; "
        f"the executed notebook is {executed}"
    )


# ------------------------------------------------------------------------------ the run
def run_notebooks(
    notebooks_dir: str | os.PathLike = "notebooks",
    runs_root: str | os.PathLike = "runs",
    params: Mapping[str, Any] | None = None,
    timeout: int = 900,
    kernel: str = "python3",
    select: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Execute ``NN_*.ipynb`` in order into a new run folder and return its path.

    ``params``: overrides (strings are YAML-parsed like ``papermill -p``), each passed only to
    the notebooks that declare it; a name no notebook declares raises `ConfigError` before
    anything runs. ``timeout``: per-cell seconds. ``select``: run only notebooks whose name
    starts with one of these prefixes (e.g. ``["00", "04"]``). A failing notebook stops the
    run with an `MMLabError` naming the notebook and cell; earlier results stay on disk.
    """
    import papermill as pm

    say = log or (lambda s: print(s, flush=True))
    params = dict(params or {})
    notebooks = list_notebooks(notebooks_dir)
    declared = {p: declared_parameters(p) for p in notebooks}
    for p, d in declared.items():
        if not d:
            raise ConfigError(f"notebook {p.name} has no cell tagged 'parameters'")
    if select:
        notebooks = [p for p in notebooks if any(p.name.startswith(s) for s in select)]
        if not notebooks:
            raise ConfigError(f"select: no notebook in {notebooks_dir} starts with any of {list(select)}")
    unknown = sorted(set(params) - set().union(*declared.values()))
    if unknown:
        raise ConfigError(f"parameter(s) {unknown} are declared by no notebook in {notebooks_dir}")
    if not isinstance(timeout, int) or timeout < 1:
        raise ConfigError(f"timeout: expected a positive number of seconds, got {timeout!r}")

    run_dir = new_run_dir(runs_root)
    (run_dir / "notebooks").mkdir()
    summary: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "kernel": kernel,
                               "timeout": timeout, "params": _jsonable(params), "notebooks": []}
    say(f"mmlab run: {len(notebooks)} notebook(s) into {run_dir}")
    t_run = time.time()
    try:
        for k, nb in enumerate(notebooks, 1):
            chosen = parameters_for(nb, params, run_dir)
            executed = run_dir / "notebooks" / nb.name
            entry = {"notebook": nb.stem, "parameters": _jsonable(chosen), "status": "running"}
            summary["notebooks"].append(entry)
            say(f"[{k}/{len(notebooks)}] {nb.stem} ...")
            t0 = time.time()
            try:
                pm.execute_notebook(
                    str(nb), str(executed), parameters=chosen, kernel_name=kernel,
                    execution_timeout=timeout, progress_bar=False, log_output=False, cwd=str(nb.parent),
                )
            except Exception as err:  # noqa: BLE001 - papermill, nbclient and kernel errors alike
                entry.update(status="failed", seconds=round(time.time() - t0, 1))
                error = _error_for(nb, executed, err)
                entry["error"] = str(error)
                say(f"[{k}/{len(notebooks)}] {nb.stem} FAILED after {entry['seconds']} s")
                raise error from None
            entry.update(status="ok", seconds=round(time.time() - t0, 1))
            say(f"[{k}/{len(notebooks)}] {nb.stem} done in {entry['seconds']} s")
    finally:
        summary["seconds"] = round(time.time() - t_run, 1)
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
        report = build_html_report(run_dir, summary)
        say(f"report: {report}")
    return run_dir


# ------------------------------------------------------------------------------ the report
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
.ok{color:#1a7f37} .failed{color:#cf222e} .muted{color:#666;font-size:.9em} figure{margin:1em 0}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return html.escape(json.dumps(v)[:200])
    return html.escape(str(v))


def _html_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p class='muted'>(empty)</p>"
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    from mmlab.tables import html_table

    return html_table(cols, [[_fmt(r.get(c, "")) for c in cols] for r in rows], escape_cells=False)


def _notebook_title(path: Path) -> str:
    """The first markdown heading of an executed notebook (or its file name)."""
    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:  # noqa: BLE001
        return path.stem
    for c in nb.cells:
        if c.cell_type == "markdown":
            for line in c.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return path.stem


def build_html_report(run_dir: str | os.PathLike, summary: Mapping[str, Any] | None = None) -> Path:
    """One self-contained ``report.html`` from ``summary.json``, ``metrics/`` and ``figures/``."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    run_dir = Path(run_dir)
    if summary is None:
        summary = json.loads((run_dir / "summary.json").read_text())
    parts = [f"<h1>mmlab run {html.escape(run_dir.name)}</h1>",
             f"<p class='muted'>kernel {html.escape(str(summary.get('kernel')))}, "
             f"{summary.get('seconds', '?')} s in all, overrides {html.escape(json.dumps(summary.get('params', {})))}</p>"]
    overview = [{"notebook": e["notebook"], "status": e["status"], "seconds": e.get("seconds", "")}
                for e in summary.get("notebooks", [])]
    parts.append(_html_table(overview))
    for e in summary.get("notebooks", []):
        name = e["notebook"]
        title = _notebook_title(run_dir / "notebooks" / f"{name}.ipynb")
        cls = "ok" if e["status"] == "ok" else "failed"
        parts.append(f"<h2 id='{html.escape(name)}'>{html.escape(name)}: {html.escape(title)}</h2>")
        parts.append(f"<p><span class='{cls}'>{html.escape(e['status'])}</span> "
                     f"<span class='muted'>{e.get('seconds', '')} s; executed notebook: "
                     f"<a href='notebooks/{html.escape(name)}.ipynb'>notebooks/{html.escape(name)}.ipynb</a></span></p>")
        if e.get("error"):
            parts.append(f"<pre>{html.escape(e['error'])}</pre>")
        if e.get("parameters"):
            parts.append("<p class='muted'>parameters: " + html.escape(json.dumps(e["parameters"])) + "</p>")
        mpath = run_dir / "metrics" / f"{name}.json"
        if not mpath.exists():
            continue
        rec = json.loads(mpath.read_text())
        if rec.get("metrics"):
            parts.append(_html_table([{"metric": k, "value": v} for k, v in rec["metrics"].items()]))
        for tname, rows in rec.get("tables", {}).items():
            parts.append(f"<h3>{html.escape(tname)}</h3>" + _html_table(rows))
        for f in rec.get("figures", []):
            try:
                fig = pio.from_json((run_dir / f["path"]).read_text())
            except Exception as err:  # noqa: BLE001 - one broken figure must not lose the report
                parts.append(f"<p class='failed'>figure {html.escape(f['name'])}: {html.escape(str(err))}</p>")
                continue
            div = pio.to_html(fig, include_plotlyjs=False, full_html=False, config={"responsive": True})
            cap = f"<figcaption class='muted'>{html.escape(f.get('caption') or f['name'])}</figcaption>"
            parts.append(f"<figure>{div}{cap}</figure>")
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>mmlab run "
        f"{html.escape(run_dir.name)}</title><style>{_CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        + "\n".join(parts) + "</body></html>"
    )
    out = run_dir / "report.html"
    atomic_write_text(out, page)
    return out


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - `python -m mmlab.workspace`
    """``python -m mmlab.workspace [notebooks_dir] [runs_root]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    print(run_notebooks(*(args[:2] or ["notebooks", "runs"])))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Run the ordered notebooks with papermill into a fresh ``runs/<timestamp>/`` folder.

``mmlab run`` calls `run_notebooks`. Each ``notebooks/NN_*.ipynb`` is executed in order with
an explicit kernel, an execution timeout and ``interactive=False``; overrides reach only the
notebooks whose ``parameters`` cell declares them. A notebook records what it measured with a
`NotebookRecorder` (scalars, small tables, plotly figures) into ``<out_dir>/metrics/`` and
``<out_dir>/figures/``; after the last notebook, `build_html_report` turns those records into
one self-contained ``report.html`` (plotly.js inlined once, works offline).

Paths: the run folder is made absolute once, before papermill sees it (papermill runs each
notebook from the notebooks' folder, so a relative ``out_dir`` would land under ``notebooks/``);
a relative ``runs_root`` is relative to the caller's working directory, and the default notebooks
folder is the repository's ``notebooks/`` wherever the command is started from.

Layout of a run folder::

    notebooks/NN_name.ipynb      executed copies (kept even when a later notebook fails)
    metrics/NN_name.json         what each notebook recorded
    figures/NN_name/*.json       its figures (plotly JSON)
    models/                      models trained by one notebook and reused by the next
    summary.json                 per-notebook status, seconds and parameters
    report.html                  one page: a summary, then every notebook's metrics, tables and figures
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


def _absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute against the current directory (``~`` expanded, symlinks kept)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def default_notebooks_dir() -> Path:
    """The repository's ``notebooks/`` folder (next to the ``mmlab`` package), whatever the
    current directory; ``./notebooks`` only when mmlab is installed without its repository."""
    repo = Path(__file__).resolve().parents[1] / "notebooks"
    if repo.is_dir() or not (Path.cwd() / "notebooks").is_dir():
        return repo
    return Path.cwd() / "notebooks"


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

    ``out_dir=None`` (a notebook opened by hand) records into a temporary folder; a relative
    ``out_dir`` is made absolute at once (against the kernel's working directory). Tables and
    figures take an optional human ``caption`` for the run report (default: a figure's title; for
    a table, `CAPTIONS` or the title of the table figure that repeats it; else the record name in
    words, see `caption_from_name`).
    """

    name: str
    out_dir: str | os.PathLike | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict]] = field(default_factory=dict)
    table_captions: dict[str, str] = field(default_factory=dict)
    figures: list[dict[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.out_dir is None:
            self.out_dir = tempfile.mkdtemp(prefix="mmlab-notebook-")
        self.out_dir = _absolute(self.out_dir)

    @property
    def metrics_path(self) -> Path:
        return Path(self.out_dir) / "metrics" / f"{self.name}.json"

    def log(self, **values: Any) -> None:
        """Record scalars (e.g. ``accuracy=0.71``); saved at once."""
        self.metrics.update(_jsonable(values))
        self.save()

    def table(self, name: str, rows: Sequence[Mapping[str, Any]], caption: str = "") -> None:
        """Record a small table (a list of row dicts) with an optional caption; saved at once."""
        self.tables[name] = _jsonable([dict(r) for r in rows])
        if caption:
            self.table_captions[name] = str(caption)
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
            "table_captions": self.table_captions,
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
        path = _absolute(out_dir) / "models"
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
    ``interactive=False`` and the run folder, absolute, as ``out_dir`` / ``metrics_dir``."""
    declared = declared_parameters(path)
    chosen: dict[str, Any] = {}
    if "interactive" in declared:
        chosen["interactive"] = False
    for name in OUT_PARAMS:
        if name in declared:
            chosen[name] = str(_absolute(out_dir))
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
    notebooks_dir: str | os.PathLike | None = None,
    runs_root: str | os.PathLike = "runs",
    params: Mapping[str, Any] | None = None,
    timeout: int = 900,
    kernel: str = "python3",
    select: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
    executor: str = "inline",
    slurm: Any = None,
) -> Path:
    """Execute ``NN_*.ipynb`` in order into a new run folder and return its (absolute) path.

    ``notebooks_dir``: default `default_notebooks_dir` (the repository's ``notebooks/``).
    ``runs_root``: relative to the current directory; the run folder is made absolute before
    any notebook sees it, so every notebook writes there and nothing lands beside the notebooks.
    ``params``: overrides (strings are YAML-parsed like ``papermill -p``), each passed only to
    the notebooks that declare it; a name no notebook declares raises `ConfigError` before
    anything runs. ``timeout``: per-cell seconds. ``select``: run only notebooks whose name
    starts with one of these prefixes (e.g. ``["00", "04"]``). A failing notebook stops the
    run with an `MMLabError` naming the notebook and cell; earlier results stay on disk.
    ``executor``: "inline" (papermill in this process), or "local" / "slurm" to run each notebook
    as one job (`mmlab.executors.run_call`; ``slurm``: its `SlurmOptions`), still in order, the
    job's logs in ``<run>/jobs/NN_name/``.
    """
    import papermill as pm

    from mmlab.executors import check_executor, run_call

    check_executor(executor)

    say = log or (lambda s: print(s, flush=True))
    params = dict(params or {})
    notebooks_dir = _absolute(default_notebooks_dir() if notebooks_dir is None else notebooks_dir)
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

    run_dir = new_run_dir(_absolute(runs_root))
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
                run_call(pm.execute_notebook, (str(nb), str(executed)), dict(
                    parameters=chosen, kernel_name=kernel,
                    execution_timeout=timeout, progress_bar=False, log_output=False, cwd=str(nb.parent),
                    # the kernel's "running over TCP without encryption" warning (a local kernel
                    # on loopback) would otherwise print once per notebook
                    extra_arguments=["--IPKernelApp.log_level=ERROR"],
                ), executor=executor, folder=run_dir / "jobs" / nb.stem, slurm=slurm)
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
table{border-collapse:collapse;margin:.3em 0 .6em;font-size:.9em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
.ok{color:#1a7f37} .failed{color:#cf222e} .muted{color:#666;font-size:.9em} figure{margin:1.2em 0}
figcaption{font-size:.95em;margin:.3em 0}
.box{border:1px solid #cf222e;background:#fff5f5;padding:.5em 1em;margin:1em 0}
pre{white-space:pre-wrap;font-size:.85em}
"""

#: Captions of the record names the shipped notebooks use without a ``caption=``.
CAPTIONS: dict[str, str] = {
    "bayes_oracle": "Bayes oracle per available-modality condition (test split): the best any method can do",
    "patterns": "Per available-modality condition: the model against the Bayes oracle on the same masks",
    "mmcr_patterns": "MMCR accuracy and macro recall per condition against the Bayes oracle",
    "table4": "ADMC Table 4 on this dataset: accuracy on generated features",
    "step_sweep": "Accuracy on generated features for each diffusion start step n",
    "realised_rates": "Realised missingness per protocol and nominal rate",
    "itfn": "Unimodal ITFN heads against the Bayes oracle (test split)",
    "feature_stats": "ITFN feature statistics (test split)",
    "oracle_table": "Bayes oracle on the test split",
}
_CAPTION_PATTERNS = ((re.compile(r"accuracy_(?P<p>[A-Za-z_]+)"), "Accuracy per method and condition, protocol {p} "
                      "(mean ± std over seeds, ×100)"),)
_WORDS = {"itfn": "ITFN", "adn": "ADN", "admc": "ADMC", "mmcr": "MMCR", "mmer": "MMER", "rmfm": "RMFM",
          "umap": "UMAP", "tsne": "t-SNE", "auilc": "AUILC", "mae": "MAE", "mse": "MSE", "fig": "Fig."}


def caption_from_name(name: str) -> str:
    """A record name in words: ``"table4"`` -> ``"Table 4"``, ``"rate_drop_0_5"`` -> ``"Rate drop 0.5"``,
    ``"itfn_accuracy_A"`` -> ``"ITFN accuracy A"``."""
    text = re.sub(r"(?<=\d)_(?=\d)", ".", str(name))
    text = re.sub(r"(?<=[A-Za-z])(?=\d)", " ", text)
    words = [_WORDS.get(w.lower(), w) for w in re.split(r"[_\s]+", text) if w]
    if not words:
        return str(name)
    words[0] = words[0][:1].upper() + words[0][1:]
    return " ".join(words)


def _known_caption(name: str) -> str:
    if name in CAPTIONS:
        return CAPTIONS[name]
    for pattern, text in _CAPTION_PATTERNS:
        m = pattern.fullmatch(name)
        if m:
            return text.format(**{k: v.replace("_", " ") for k, v in m.groupdict().items()})
    return ""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return html.escape(json.dumps(v)[:200])
    return html.escape(str(v))


def _html_table(rows: Sequence[Mapping[str, Any]], cols: Sequence[str] | None = None) -> str:
    """Row dicts as HTML through `mmlab.tables.html_table` (cells formatted and escaped here)."""
    if not rows:
        return "<p class='muted'>(empty)</p>"
    if cols is None:
        cols = list(dict.fromkeys(c for r in rows for c in r))
    from mmlab.tables import html_table

    return html_table(cols, [[_fmt(r.get(c, "")) for c in cols] for r in rows], escape_cells=False)


def _constant_columns(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """(columns that vary, {column: value} of those equal in every row) for tables of 3+ rows."""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    if len(rows) < 3:
        return cols, {}
    same = {c: rows[0].get(c) for c in cols if all(r.get(c) == rows[0].get(c) for r in rows)}
    keep = [c for c in cols if c not in same]
    return (keep, same) if len(keep) >= 2 else (cols, {})


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


def _figure_title(fig: Any) -> str:
    try:
        return str(fig.layout.title.text or "")
    except AttributeError:
        return ""


def _table_of_figure(fig: Any) -> tuple[list[str], list[list[Any]]] | None:
    """(header, rows) of a figure made only of one plotly table (``viz.table_figure``), else None."""
    traces = list(fig.data)
    if len(traces) != 1 or traces[0].type != "table":
        return None
    try:
        header = [str(h) for h in (traces[0].header.values or [])]
        columns = [list(c) for c in (traces[0].cells.values or [])]
    except TypeError:  # e.g. a binary-encoded column: leave the figure as it is
        return None
    n = max((len(c) for c in columns), default=0)
    return header, [[c[i] if i < len(c) else "" for c in columns] for i in range(n)]


def oracle_headlines(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Pairs (a measured number, the Bayes oracle's number for the same thing) among a notebook's
    scalars, matched by name: ``reference_average`` / ``oracle_average``, ``itfn_accuracy_A`` /
    ``oracle_accuracy_A``, ``view_accuracy`` / ``view_oracle_accuracy``, ``rate_drop_0_5_accuracy``
    / ``rate_drop_0_5_oracle``, ``average_accuracy_admc`` / ``average_accuracy_bayes_oracle``."""
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    oracles = {k: [t for t in k.split("_") if t not in ("oracle", "bayes")] for k in numbers if "oracle" in k.split("_")}
    rows = []
    for key, val in numbers.items():
        tok = key.split("_")
        if key in oracles or "gap" in tok:
            continue
        best = None  # the most specific oracle name whose words (less "oracle") all occur in order in the key
        for okey, base in oracles.items():
            it = iter(tok)
            if base and len(tok) - len(base) <= 2 and all(t in it for t in base):
                if best is None or len(base) > len(oracles[best]):
                    best = okey
        if best is not None:
            rows.append({"measure": caption_from_name(key), "key": key, "value": val, "oracle": numbers[best],
                         "oracle_key": best, "gap": numbers[best] - val})
    return rows


def _caption(kind: str, number: int, text: str, note: str = "") -> str:
    extra = f" <span class='muted'>{note}</span>" if note else ""
    return f"<figcaption><b>{kind} {number}.</b> {html.escape(text)}{extra}</figcaption>"


def build_html_report(run_dir: str | os.PathLike, summary: Mapping[str, Any] | None = None) -> Path:
    """One self-contained ``report.html`` from ``summary.json``, ``metrics/`` and ``figures/``.

    The page opens with a summary (each notebook with its status and seconds, the failure if
    one failed, the recorded numbers next to the Bayes oracle's), then one section per notebook:
    its scalars, its tables (each once, as HTML, with a caption) and its figures (plotly,
    captioned). A figure that only holds a table is shown as that table, or dropped when the
    notebook recorded the same table. plotly.js is inlined once, only when there is a figure."""
    import plotly.io as pio

    run_dir = Path(run_dir)
    if summary is None:
        summary = json.loads((run_dir / "summary.json").read_text())
    entries = list(summary.get("notebooks", []))
    counters = {"Table": 0, "Figure": 0}

    def numbered(kind: str) -> int:
        counters[kind] += 1
        return counters[kind]

    records: dict[str, dict] = {}
    for e in entries:
        mpath = run_dir / "metrics" / f"{e['notebook']}.json"
        if mpath.exists():
            try:
                records[e["notebook"]] = json.loads(mpath.read_text())
            except ValueError:
                records[e["notebook"]] = {}
    titles = {e["notebook"]: _notebook_title(run_dir / "notebooks" / f"{e['notebook']}.ipynb") for e in entries}

    # ---- the notebooks' sections (built first: the summary counts what they hold)
    sections: list[str] = []
    counts: dict[str, tuple[int, int]] = {}
    n_plots = 0
    for e in entries:
        name = e["notebook"]
        rec = records.get(name, {})
        cls = "ok" if e["status"] == "ok" else "failed"
        part = [f"<h2 id='{html.escape(name)}'>{html.escape(titles[name])}</h2>",
                f"<p><span class='{cls}'>{html.escape(e['status'])}</span> "
                f"<span class='muted'>{e.get('seconds', '')} s; executed notebook: "
                f"<a href='notebooks/{html.escape(name)}.ipynb'>notebooks/{html.escape(name)}.ipynb</a></span></p>"]
        if e.get("error"):
            part.append(f"<pre class='failed'>{html.escape(e['error'])}</pre>")
        if e.get("parameters"):
            part.append("<p class='muted'>parameters: " + html.escape(json.dumps(e["parameters"])) + "</p>")
        if rec.get("metrics"):
            part.append(_metrics_table(rec["metrics"]))
        tables = dict(rec.get("tables", {}))
        # figures first: a table-only figure lends its title to the table it repeats
        twin_titles: dict[str, str] = {}
        figures: list[tuple[dict, Any, tuple | None]] = []
        for f in rec.get("figures", []):
            try:
                fig = pio.from_json((run_dir / f["path"]).read_text())
            except Exception as err:  # noqa: BLE001 - one broken figure must not lose the report
                figures.append((f, err, None))
                continue
            cells = _table_of_figure(fig)
            if cells is not None:
                header, body = cells
                twin = next((t for t, rows in tables.items() if t not in twin_titles and len(rows) == len(body)
                             and set(header) <= set(dict.fromkeys(c for r in rows for c in r))), None)
                if twin is not None:
                    twin_titles[twin] = _figure_title(fig)
                    continue
            figures.append((f, fig, cells))
        shown = [0, 0]
        for tname, rows in tables.items():
            text = (rec.get("table_captions", {}).get(tname) or _known_caption(tname) or twin_titles.get(tname)
                    or caption_from_name(tname))
            cols, same = _constant_columns(rows)
            note = ("same in every row: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in same.items())) if same else ""
            part.append(f"<figure>{_caption('Table', numbered('Table'), text, note)}{_html_table(rows, cols)}</figure>")
            shown[0] += 1
        for f, fig, cells in figures:
            if isinstance(fig, Exception):
                part.append(f"<p class='failed'>figure {html.escape(f['name'])}: {html.escape(str(fig))}</p>")
                continue
            title = _figure_title(fig)
            text = f.get("caption") or title or _known_caption(f["name"]) or caption_from_name(f["name"])
            if cells is not None:  # a table drawn as a figure: show it as a table
                header, body = cells
                part.append(f"<figure>{_caption('Table', numbered('Table'), text)}"
                            f"{_html_table([dict(zip(header, r)) for r in body], header)}</figure>")
                shown[0] += 1
                continue
            if title and text == title:  # the caption says it: no second title inside the plot
                fig.update_layout(title_text="")
            div = pio.to_html(fig, include_plotlyjs=False, full_html=False, default_height="450px",
                              config={"responsive": True, "displaylogo": False})
            part.append(f"<figure>{div}{_caption('Figure', numbered('Figure'), text)}</figure>")
            shown[1] += 1
            n_plots += 1
        counts[name] = (shown[0], shown[1])
        sections.append("\n".join(part))

    # ---- the summary
    failed = [e for e in entries if e["status"] != "ok"]
    ok = len(entries) - len(failed)
    head = [f"<h1>mmlab run {html.escape(run_dir.name)}</h1>",
            f"<p class='muted'>started {html.escape(str(summary.get('started', '?')))}, kernel "
            f"{html.escape(str(summary.get('kernel')))}, {summary.get('seconds', '?')} s in all, overrides "
            f"{html.escape(json.dumps(summary.get('params', {})))}; folder {html.escape(str(run_dir.resolve()))}</p>",
            "<h2 id='summary'>Summary</h2>"]
    if failed:
        for e in failed:
            head.append(f"<div class='box'><b class='failed'>{html.escape(e['notebook'])} "
                        f"{html.escape(e['status'])}</b>"
                        f" after {e.get('seconds', '?')} s; the run stopped there (later notebooks did not run). "
                        f"<a href='notebooks/{html.escape(e['notebook'])}.ipynb'>executed notebook</a>"
                        + (f"<pre>{html.escape(e['error'])}</pre>" if e.get("error") else "") + "</div>")
    head.append(f"<p>{ok} of {len(entries)} notebook(s) ran successfully in {summary.get('seconds', '?')} s.</p>")
    overview = [{"notebook": f"<a href='#{html.escape(e['notebook'])}'>{html.escape(e['notebook'])}</a>",
                 "what": html.escape(titles[e["notebook"]]),
                 "status": f"<span class='{'ok' if e['status'] == 'ok' else 'failed'}'>"
                           f"{html.escape(e['status'])}</span>",
                 "seconds": _fmt(e.get("seconds", "")),
                 "tables": counts.get(e["notebook"], (0, 0))[0], "figures": counts.get(e["notebook"], (0, 0))[1]}
                for e in entries]
    head.append(_raw_table(overview))
    headlines = [{"notebook": f"<a href='#{html.escape(n)}'>{html.escape(n)}</a>",
                  "measure": f"<span title='{html.escape(h['key'])}'>{html.escape(h['measure'])}</span>",
                  "value": _fmt(h["value"]), "Bayes oracle": _fmt(h["oracle"]), "gap to the oracle": _fmt(h["gap"])}
                 for n, rec in records.items() for h in oracle_headlines(rec.get("metrics", {}))]
    if headlines:
        head.append("<h3>Against the Bayes oracle</h3><p class='muted'>numbers the notebooks recorded next to the "
                    "oracle's on the same samples (gap = oracle - value)</p>" + _raw_table(headlines))

    script = ""
    if n_plots:
        from plotly.offline import get_plotlyjs

        script = f"<script type='text/javascript'>{get_plotlyjs()}</script>"
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>mmlab run "
        f"{html.escape(run_dir.name)}</title><style>{_CSS}</style>{script}</head><body>"
        + "\n".join(head + sections) + "</body></html>"
    )
    out = run_dir / "report.html"
    atomic_write_text(out, page)
    return out


def _raw_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Row dicts whose cells are already HTML."""
    from mmlab.tables import html_table

    cols = list(dict.fromkeys(c for r in rows for c in r))
    return html_table(cols, [[r.get(c, "") for c in cols] for r in rows], escape_cells=False)


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    return _raw_table([{"measure": f"<span title='{html.escape(k)}'>{html.escape(caption_from_name(k))}</span>",
                        "value": _fmt(v)} for k, v in metrics.items()])


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - `python -m mmlab.workspace`
    """``python -m mmlab.workspace [notebooks_dir] [runs_root]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    print(run_notebooks(*(args[:2] or [None, "runs"])))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

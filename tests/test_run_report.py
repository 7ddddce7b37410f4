"""`mmlab run` the way the README says: ``bin/mmlab run`` (relative default ``--out runs``), from the
repository root and from any other directory. Every notebook writes into the one absolute run
folder (nothing under ``notebooks/``) and ``report.html`` holds every notebook's tables and figures,
each once and captioned, after a summary.

For speed the runs execute two tiny notebooks written here (a few seconds each) that call the same
`mmlab.workspace` helpers as the real notebooks (``setup_notebook``, ``NotebookRecorder`` with
``table`` / ``show`` / ``figure`` / ``log``, ``cache_dir``); that the default notebooks folder is
the repository's own is checked against the real one without executing it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from mmlab import workspace
from mmlab.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]

PARAMS = "n = 3\ninteractive = True\nout_dir = None"
ALPHA = [
    """import plotly.graph_objects as go
from mmlab import workspace

workspace.setup_notebook(threads=1, seed=0)
rec = workspace.NotebookRecorder("00_alpha", out_dir)
print("recording into", rec.out_dir)""",
    """rows = [{"condition": c, "accuracy": 0.5 + 0.1 * i} for i, c in enumerate(["alpha-full", "alpha-A", "alpha-V"][:n])]
rec.table("oracle_rows", rows)  # shown as a table AND as a plotly table figure, like viz.table_figure
rec.show(go.Figure(go.Table(header=dict(values=["condition", "accuracy"]),
                            cells=dict(values=[[r["condition"] for r in rows], [f"{r['accuracy']:.3f}" for r in rows]])))
         .update_layout(title="Twin table title"), "oracle_table")
rec.table("gaps", [{"condition": "alpha-full", "gap": 0.1}], caption="Gaps with a human caption")
rec.show(go.Figure(go.Bar(x=[r["condition"] for r in rows], y=[r["accuracy"] for r in rows]))
         .update_layout(title="Alpha accuracy per condition"), "accuracy_bars")""",
    """model = workspace.cache_dir(out_dir) / "alpha-model.txt"
model.write_text("trained")
print("model saved in", model)
rec.log(model_accuracy=0.7, oracle_accuracy=0.8, steps=n)""",
]
BETA = [
    """import plotly.graph_objects as go
from mmlab.workspace import NotebookRecorder, cache_dir

rec = NotebookRecorder("01_beta", out_dir)
assert (cache_dir(out_dir) / "alpha-model.txt").read_text() == "trained"  # the model of the notebook before
rows = [{"dataset": "beta-data", "start_step": s, "accuracy": 0.3 + s / 1000} for s in (0, 50, 100)]
rec.table("table4", rows)
rec.figure(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), "fig3_panels")
rec.figure(go.Figure(go.Table(header=dict(values=["k", "v"]), cells=dict(values=[["beta-k"], ["beta-v"]]))),
           "lonely_table")
rec.log(view_accuracy=0.6, view_oracle_accuracy=0.65)""",
]


def _notebook(path: Path, title: str, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}"), params] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A repository-like folder whose ``notebooks/`` holds the two tiny notebooks; `mmlab run`'s
    default notebooks folder points there."""
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    _notebook(root / "notebooks" / "00_alpha.ipynb", "00 · Alpha", ALPHA)
    _notebook(root / "notebooks" / "01_beta.ipynb", "01 · Beta", BETA)
    monkeypatch.setattr(workspace, "default_notebooks_dir", lambda: root / "notebooks")
    return root


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _run(project: Path, cwd: Path, monkeypatch, capsys) -> Path:
    before = _files(project / "notebooks")
    monkeypatch.chdir(cwd)
    assert main(["run", "--timeout", "120"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    (run,) = (cwd / "runs").iterdir()  # the relative default --out is relative to the current directory
    assert f"run folder: {run}" in out
    assert _files(project / "notebooks") == before, "the run wrote under notebooks/"
    return run


def _check_run(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    assert [(e["notebook"], e["status"]) for e in summary["notebooks"]] == [("00_alpha", "ok"), ("01_beta", "ok")]
    for e in summary["notebooks"]:
        assert e["parameters"]["out_dir"] == str(run) and Path(e["parameters"]["out_dir"]).is_absolute()
    assert (run / "models" / "alpha-model.txt").read_text() == "trained"
    for name, n_figures in (("00_alpha", 2), ("01_beta", 2)):
        record = json.loads((run / "metrics" / f"{name}.json").read_text())
        assert len(record["figures"]) == n_figures and all((run / f["path"]).exists() for f in record["figures"])
    # what the executed notebook printed exists from anywhere
    nb = nbformat.read(run / "notebooks" / "00_alpha.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    paths = re.findall(r"(?:recording into|model saved in) (\S+)", printed)
    assert len(paths) == 2 and all(Path(p).is_absolute() and Path(p).exists() for p in paths), printed
    assert Path(paths[0]) == run

    page = (run / "report.html").read_text()
    # the summary first: what ran with seconds, and the numbers next to the oracle's
    assert page.index("id='summary'") < page.index("id='00_alpha'") < page.index("id='01_beta'")
    summary_html = page[page.index("id='summary'"):page.index("id='00_alpha'")]
    assert "2 of 2 notebook(s) ran successfully" in summary_html and "Against the Bayes oracle" in summary_html
    assert "Model accuracy" in summary_html and "View accuracy" in summary_html
    assert "<td>0.8</td>" in summary_html and "<td>0.65</td>" in summary_html
    for e in summary["notebooks"]:
        assert f"<td>{e['seconds']:.4g}</td>" in summary_html
    # every table once, as HTML, with a human caption; every figure with one
    captions = [(k, t.strip()) for k, t in re.findall(r"<figcaption><b>(Table|Figure) \d+\.</b> ([^<]+)", page)]
    assert captions == [("Table", "Twin table title"), ("Table", "Gaps with a human caption"),
                        ("Figure", "Alpha accuracy per condition"),
                        ("Table", "ADMC Table 4 on this dataset: accuracy on generated features"),
                        ("Figure", "Fig. 3 panels"), ("Table", "Lonely table")]
    assert page.count("<td>alpha-V</td>") == 1  # the twin plotly table is not drawn again
    assert "<td>beta-k</td><td>beta-v</td>" in page  # a table-only figure becomes an HTML table
    assert "same in every row: dataset = beta-data" in page  # constant columns go to the caption
    assert page.count("class=\"plotly-graph-div\"") == 2  # only real plots are plotly figures
    # light and offline: plotly.js inlined once, no CDN
    from plotly.offline import get_plotlyjs

    assert page.count(get_plotlyjs()[:40]) == 1
    assert not re.search(r"<script[^>]+src=", page)


def test_run_from_the_repository_root(project, monkeypatch, capsys):
    run = _run(project, project, monkeypatch, capsys)
    assert run.parent == project / "runs"
    _check_run(run)


def test_run_from_another_directory(project, tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = _run(project, elsewhere, monkeypatch, capsys)
    assert not (project / "runs").exists()
    _check_run(run)


def test_default_notebooks_folder_is_the_repository_one_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert build_parser().parse_args(["run"]).notebooks is None  # the CLI leaves the choice to run_notebooks
    assert workspace.default_notebooks_dir() == ROOT / "notebooks"
    assert [p.parent for p in workspace.list_notebooks(workspace.default_notebooks_dir())][0] == ROOT / "notebooks"
    # a relative run folder reaches the notebooks absolute (they run from the notebooks' folder)
    nb = workspace.list_notebooks(ROOT / "notebooks")[0]
    got = workspace.parameters_for(nb, {}, Path("runs") / "x")
    assert got["out_dir"] == str(tmp_path / "runs" / "x")
    assert workspace.NotebookRecorder("x", "rel").out_dir == tmp_path / "rel"


def test_report_of_a_failed_run_says_so_first(tmp_path):
    run = tmp_path / "run"
    rec = workspace.NotebookRecorder("00_ok", run)
    rec.log(reference_average=0.6, oracle_average=0.8, gap_to_oracle=0.2)
    summary = {"kernel": "python3", "seconds": 3.0, "params": {}, "notebooks": [
        {"notebook": "00_ok", "status": "ok", "seconds": 1.0},
        {"notebook": "01_bad", "status": "failed", "seconds": 2.0,
         "error": "notebook 01_bad.ipynb failed in cell 3 ('raise ValueError'): ValueError: boom"}]}
    page = workspace.build_html_report(run, summary).read_text()
    summary_html = page[page.index("id='summary'"):page.index("id='00_ok'")]
    assert "01_bad failed" in summary_html and "ValueError: boom" in summary_html
    assert "1 of 2 notebook(s) ran successfully" in summary_html
    assert "Reference average" in summary_html and "<td>0.8</td>" in summary_html
    assert "plotly.js" not in page and len(page) < 20_000  # no figure, no plotly.js


def test_captions_from_record_names():
    assert workspace.caption_from_name("table4") == "Table 4"
    assert workspace.caption_from_name("oracle_table") == "Oracle table"
    assert workspace.caption_from_name("rate_drop_0_5_accuracy") == "Rate drop 0.5 accuracy"
    assert workspace.caption_from_name("itfn_accuracy_A") == "ITFN accuracy A"
    assert workspace.caption_from_name("fig3_panels") == "Fig. 3 panels"
    pairs = {(h["key"], h["oracle_key"]) for h in workspace.oracle_headlines(
        {"reference_average": 0.5, "oracle_average": 0.6, "gap_to_oracle": 0.1, "itfn_accuracy_A": 0.4,
         "itfn_accuracy_V": 0.3, "oracle_accuracy_A": 0.5, "oracle_accuracy_V": 0.45,
         "average_accuracy_admc": 0.5, "average_accuracy_bayes_oracle": 0.6, "best_start_step": 0})}
    assert pairs == {("reference_average", "oracle_average"), ("itfn_accuracy_A", "oracle_accuracy_A"),
                     ("itfn_accuracy_V", "oracle_accuracy_V"), ("average_accuracy_admc", "average_accuracy_bayes_oracle")}

"""The notebooks: committed stripped, regenerated from tools/make_notebooks.py, executed.

Execution strategy (CI budget ~8 min on 2 cores for this file plus test_browser.py):

1. papermill regression: `mmlab.workspace.run_notebooks` executes every notebook once, in
   order, into one run folder with the FAST parameters below (tiny preset, 1-5 epochs) and
   ``interactive=False``; each notebook's metrics JSON must exist and lie in its range, and the
   run's report.html must be self-contained.
2. nbval: ``pytest --nbval-lax`` runs on papermill-parametrised copies (``prepare_only``) of
   the notebooks with the same FAST parameters but ``interactive=True``, so the widget wiring
   runs in a real kernel too; it shares the run folder, so the models trained in step 1 are
   reloaded, not retrained. The committed defaults are not executed here (they take ~1-2 min
   per notebook); `mmlab run` executes them.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mmlab.errors import ConfigError, MMLabError
from mmlab.workspace import coerce_parameter, declared_parameters, list_notebooks, parameters_for, run_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = [p.stem for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))]
EXPECTED = ["00_quickstart", "01_data_and_missingness", "02_encoders_itfn", "03_diffusion_completion",
            "04_missingness_explorer", "05_diffusion_step_explorer", "90_benchmark_report"]

FAST = {
    "preset": "tiny",
    "epochs": 2,
    "n_samples": 100,
    "sweep_steps": [0, 30, 80],
    "admc_overrides": {"itfn.train.epochs": 2, "adn.train.epochs": 5, "mf.train.epochs": 2,
                       "mf.scenarios": "full", "mmer": False},
    "overrides": {"reference.train.epochs": 2, "admc.itfn.train.epochs": 2, "admc.adn.train.epochs": 5,
                  "admc.mf.train.epochs": 2, "admc.mf.scenarios": "full", "admc.mmer": False},
}
TIMEOUT = 300  # per cell

# metric -> (low, high); accuracies of 2-epoch models on `tiny` only need to beat a broken pipeline
ACC = (0.2, 1.0)
ORACLE = (0.4, 0.95)
RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "00_quickstart": {"reference_average": ACC, "oracle_average": ORACLE, "gap_to_oracle": (-0.05, 0.5)},
    "01_data_and_missingness": {"oracle_full": ORACLE, "oracle_single_mean": ORACLE, "oracle_rate_drop_0_5": ORACLE,
                                "rmfm_missing_frames_0_5": (0.4, 0.6)},
    "02_encoders_itfn": {**{f"itfn_accuracy_{m}": ACC for m in "AVT"}, **{f"oracle_accuracy_{m}": ORACLE for m in "AVT"}},
    "03_diffusion_completion": {"admc_average": ACC, "oracle_average": ORACLE, "table4_mean_accuracy_n50": (0.0, 1.0)},
    "04_missingness_explorer": {"view_accuracy": ACC, "view_oracle_accuracy": ORACLE, "view_gap": (-0.05, 0.6),
                                "rate_drop_0_5_accuracy": ACC, "rate_drop_0_5_oracle": ORACLE},
    "05_diffusion_step_explorer": {"generated_accuracy_default": (0.0, 1.0), "real_accuracy": ACC,
                                   "best_start_step": (0, 80), "best_generated_accuracy": (0.0, 1.0),
                                   "distance_default": (0.0, 1e3)},
    "90_benchmark_report": {"average_accuracy_reference": ACC, "average_accuracy_admc": ACC,
                            "average_accuracy_bayes_oracle": ORACLE},
}


# ------------------------------------------------------------------------------ static checks
def test_the_ordered_notebooks_exist():
    assert NAMES == EXPECTED


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_stripped(name):
    """nbstripout-equivalent: no outputs, no execution counts, no widget state, one
    ``parameters`` cell that papermill parses completely, kernelspec python3."""
    path = NOTEBOOKS / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernelspec must be python3"
    assert "widgets" not in nb.metadata, f"{path.name}: carries widget state (metadata.widgets)"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{path.name}: cell {i} has outputs (strip them: nbstripout)"
            assert cell.get("execution_count") is None, f"{path.name}: cell {i} has an execution count"
        for key in ("collapsed", "scrolled", "ExecuteTime", "execution"):
            assert key not in cell.metadata, f"{path.name}: cell {i} metadata carries {key!r}"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected exactly one cell tagged 'parameters', found {len(tagged)}"
    assigned = re.findall(r"^(\w+)\s*=", tagged[0].source, flags=re.M)
    assert assigned and list(declared_parameters(path)) == assigned, (
        f"{path.name}: papermill parses {list(declared_parameters(path))} of {assigned} "
        "(a parameter line may hold only one '=')")
    assert {"interactive", "out_dir", "preset", "device"} <= set(assigned)


def test_notebooks_match_their_generator():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "make_notebooks.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_gitattributes_strip_notebooks():
    text = (ROOT / ".gitattributes").read_text()
    assert re.search(r"^\*\.ipynb\s+.*filter=nbstripout", text, flags=re.M)


# ------------------------------------------------------------------------------ workspace unit tests
def _tiny_notebook(path: Path, cells: list[str], params: str = "x = 1\ninteractive = True\nout_dir = None") -> Path:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny"), p] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_parameters_reach_only_the_notebooks_that_declare_them(tmp_path):
    nb = _tiny_notebook(tmp_path / "00_a.ipynb", [], params='x = 1\nname = "a"\ninteractive = True\nout_dir = None')
    got = parameters_for(nb, {"x": "3", "name": "007", "other": "1"}, tmp_path / "run")
    assert got == {"interactive": False, "out_dir": str(tmp_path / "run"), "x": 3, "name": "007"}
    assert coerce_parameter("[1, 2]", "[]") == [1, 2] and coerce_parameter("yes", "'a'") == "yes"


def test_run_notebooks_stops_at_a_failing_cell_and_keeps_earlier_results(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    record = ("from mmlab.workspace import NotebookRecorder\n"
              "rec = NotebookRecorder('{name}', out_dir)\nrec.log(x=x)")
    _tiny_notebook(nbs / "00_ok.ipynb", [record.format(name="00_ok")])
    _tiny_notebook(nbs / "01_bad.ipynb", ["y = 2", "raise ValueError('boom')\n# second line", "print('never')"])
    _tiny_notebook(nbs / "02_after.ipynb", ["print('not reached')"])
    lines: list[str] = []
    with pytest.raises(MMLabError) as err:
        run_notebooks(nbs, tmp_path / "runs", {"x": "5"}, timeout=60, log=lines.append)
    msg = str(err.value)
    assert "01_bad.ipynb" in msg and "cell 3" in msg and "raise ValueError('boom')" in msg and "boom" in msg
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "metrics" / "00_ok.json").read_text())["metrics"] == {"x": 5}
    assert (run / "notebooks" / "01_bad.ipynb").exists() and not (run / "notebooks" / "02_after.ipynb").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert [e["status"] for e in summary["notebooks"]] == ["ok", "failed"]
    assert (run / "report.html").exists()
    assert any("00_ok done" in line for line in lines) and any("01_bad FAILED" in line for line in lines)
    # a second run never overwrites the first
    with pytest.raises(MMLabError):
        run_notebooks(nbs, tmp_path / "runs", {}, timeout=60, log=lines.append)
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_run_notebooks_rejects_unknown_parameters_before_running(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _tiny_notebook(nbs / "00_a.ipynb", [])
    with pytest.raises(ConfigError, match="typo"):
        run_notebooks(nbs, tmp_path / "runs", {"typo": "1"})
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError):
        list_notebooks(tmp_path / "missing")


# ------------------------------------------------------------------------------ papermill regression
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    lines: list[str] = []
    out = run_notebooks(NOTEBOOKS, tmp_path_factory.mktemp("runs"), FAST, timeout=TIMEOUT, log=lines.append)
    print("\n".join(lines))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_notebook_metrics_lie_in_range(run_dir, name):
    assert (run_dir / "notebooks" / f"{name}.ipynb").exists()
    record = json.loads((run_dir / "metrics" / f"{name}.json").read_text())
    metrics = record["metrics"]
    for key, (lo, hi) in RANGES[name].items():
        assert key in metrics, f"{name}: metric {key!r} missing (have {sorted(metrics)})"
        v = metrics[key]
        assert isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi, f"{name}: {key}={v} not in [{lo}, {hi}]"
    assert record["figures"], f"{name}: recorded no figure"
    for f in record["figures"]:
        assert (run_dir / f["path"]).exists()


def test_oracle_beats_the_models(run_dir):
    m = {n: json.loads((run_dir / "metrics" / f"{n}.json").read_text())["metrics"] for n in NAMES}
    assert m["01_data_and_missingness"]["oracle_full"] > m["01_data_and_missingness"]["oracle_single_mean"]
    assert m["00_quickstart"]["oracle_average"] >= m["00_quickstart"]["reference_average"] - 0.05
    assert m["90_benchmark_report"]["average_accuracy_reference"] == pytest.approx(m["00_quickstart"]["reference_average"])


def test_run_report_is_one_self_contained_page(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [e["notebook"] for e in summary["notebooks"]] == NAMES
    assert all(e["status"] == "ok" for e in summary["notebooks"])
    assert summary["notebooks"][0]["parameters"]["interactive"] is False
    page = (run_dir / "report.html").read_text()
    assert "Plotly" in page and len(page) > 1_000_000  # plotly.js inlined
    assert not re.search(r"<script[^>]+src=[\"']https?:", page)  # no CDN: works offline
    assert page.count("plotly-graph-div") >= 7
    for name in NAMES:
        assert f"id='{name}'" in page


# ------------------------------------------------------------------------------ nbval
def test_nbval_lax_on_parametrised_copies(run_dir, tmp_path):
    import papermill as pm

    copies = tmp_path / "nbval"
    copies.mkdir()
    for path in list_notebooks(NOTEBOOKS):
        params = {k: v for k, v in FAST.items() if k in declared_parameters(path)}
        params.update(interactive=True, out_dir=str(run_dir))  # widgets in a real kernel; reuse trained models
        pm.execute_notebook(str(path), str(copies / path.name), parameters=params, prepare_only=True,
                            kernel_name="python3", progress_bar=False)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", str(copies), "-p", "no:cacheprovider", "-q",
           f"--nbval-cell-timeout={TIMEOUT}", "--nbval-kernel-name=python3", "-o", "addopts="]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=copies, env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert re.search(r"\d+ passed", out.stdout) and "failed" not in out.stdout.splitlines()[-1]
    shutil.rmtree(copies, ignore_errors=True)

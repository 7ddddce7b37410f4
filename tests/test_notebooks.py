"""The notebooks: one percent-format source each, committed stripped, executed.

Sources: ``notebooks/NN_name.py`` (jupytext percent format, what linters and reviewers read) is
the source of truth; ``notebooks/NN_name.ipynb`` beside it is generated from it with outputs
stripped by ``tools/sync_notebooks.py``. Both carry the jupytext pairing ``ipynb,py:percent``.

Execution strategy (CI budget ~8 min on 2 cores for this file plus test_browser.py):

1. papermill regression: `mmlab.workspace.run_notebooks` executes every notebook once, in
   order, into one run folder with the FAST parameters below (tiny preset, 2-5 epochs) and
   ``interactive=False``; each notebook's metrics JSON must exist and lie in its bounds, and
   the run's report.html must be self-contained. The bounds come from the data, not from
   constants: a trained model must beat always predicting the test split's majority class by
   ``MARGIN`` and may not beat the Bayes oracle on the same samples by more than ``TOL``;
   numbers the oracle itself produced must equal `oracle_table` exactly.
2. nbval: ``pytest --nbval-lax`` runs on papermill-parametrised copies (``prepare_only``) of
   the notebooks with the same FAST parameters but ``interactive=True``, so the widget wiring
   runs in a real kernel too; it shares the run folder, so the models trained in step 1 are
   reloaded, not retrained. The committed defaults are not executed here (they take ~1-2 min
   per notebook); `mmlab run` executes them.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest

from mmlab.data import load_dataset
from mmlab.errors import ConfigError, MMLabError
from mmlab.workspace import coerce_parameter, declared_parameters, list_notebooks, parameters_for, run_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = [p.stem for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))]
EXPECTED = ["00_quickstart", "01_feature_extraction", "02_data_and_missingness", "03_encoders_itfn", "04_diffusion_completion",
            "05_missingness_explorer", "06_diffusion_step_explorer", "07_cmarr", "08_cider", "90_benchmark_report"]

FAST = {
    "preset": "tiny",
    "epochs": 4,  # the reference model: 2 epochs left it 1.5 points above the lower bound on {AV}
    "n_samples": 100,
    "sweep_steps": [0, 30, 80],
    "admc_overrides": {"itfn.train.epochs": 2, "adn.train.epochs": 5, "mf.train.epochs": 2,
                       "mf.scenarios": "full", "mmer": False},
    "cmarr_overrides": {"train.epochs": 3, "train.batch_size": 32, "probe.epochs": 5},
    "cider_overrides": {"train.epochs": 1},  # 08 on the tiny synthetic_text (all 300 train rows): ~30 s
    "max_eval": 100,
    "eval_rates": [0.0, 0.5, 1.0],
    "overrides": {"reference.train.epochs": 4, "admc.itfn.train.epochs": 2, "admc.adn.train.epochs": 5,
                  "admc.mf.train.epochs": 2, "admc.mf.scenarios": "full", "admc.mmer": False},
}
TIMEOUT = 300  # per cell

MARGIN = 0.05  # a trained model must beat always predicting the majority class by this much
TOL = 0.05  # and may beat the Bayes oracle on the same samples by at most this much (finite-sample luck)
EXACT = 1e-9  # numbers the oracle itself produced must equal `oracle_table`


def _oracle_table():
    """`oracle_table` wherever it lives (it may move from `mmlab.data.synthetic` to `mmlab.evaluate`)."""
    try:
        from mmlab.evaluate import oracle_table
    except ImportError:
        from mmlab.data.synthetic import oracle_table
    return oracle_table


@dataclass
class Reference:
    """What a model can be measured against on the (first ``n`` rows of the) FAST test split."""

    majority: float  # accuracy of always predicting the most frequent test class
    oracle: dict[str, float]  # Bayes accuracy per condition: "full", "{A}", ..., "{VT}"
    modalities: tuple[str, ...]

    @property
    def average(self) -> float:  # the six-pattern "Average" column (ADMC Tables 1-2)
        return float(np.mean([v for c, v in self.oracle.items() if c != "full"]))

    def single(self, m: str) -> float:
        return self.oracle["{" + m + "}"]

    def without(self, m: str) -> float:  # Bayes accuracy from every modality but m
        return self.oracle["{" + "".join(x for x in self.modalities if x != m) + "}"]

    def learned(self, oracle: float) -> tuple[float, float]:
        """Bounds of a trained model's accuracy whose Bayes-optimal counterpart is ``oracle``."""
        assert oracle - self.majority > 2 * MARGIN, "the test data leaves no room between the majority class and the oracle"
        return (self.majority + MARGIN, oracle + TOL)


def _reference(n: int | None = None) -> Reference:
    data = load_dataset("synthetic", preset=FAST["preset"])
    if n is not None:  # the first n test rows, as `explore.diffusion_state(n_samples=n)` takes them
        data = data.subset("test").take(np.arange(min(n, int((data.split == "test").sum()))))
    y = data.subset("test").y
    rows = _oracle_table()(data, split="test")
    return Reference(majority=float(np.bincount(y).max() / len(y)),
                     oracle={r["condition"]: float(r["accuracy"]) for r in rows}, modalities=tuple(data.modalities))


def _exact(v: float) -> tuple[float, float]:
    return (v - EXACT, v + EXACT)


def _default(name: str, parameter: str):
    return ast.literal_eval(declared_parameters(NOTEBOOKS / f"{name}.ipynb")[parameter])


def expected_ranges(name: str, ref: Reference, metrics: dict) -> dict[str, tuple[float, float]]:
    """metric -> (low, high) for one notebook's recorded metrics, from the data of this run."""
    o, mods = ref.oracle, ref.modalities
    patterns = [v for c, v in o.items() if c != "full"]
    if name == "00_quickstart":
        return {"reference_average": ref.learned(ref.average), "oracle_average": _exact(ref.average),
                "gap_to_oracle": (-TOL, ref.average - ref.majority - MARGIN)}
    if name == "01_feature_extraction":
        # the synthetic raw sample set at FAST size: 4 classes x SAMPLE_SIZES["tiny"]; every modality alone above
        # chance is checked at the default size (data_cards/raw_sample.md), not on the tiny test split
        from mmlab.extract.views import SAMPLE_SIZES

        n = 4 * SAMPLE_SIZES[FAST["preset"]]
        return {"samples": (n, n), "dim_A": (120, 120), "dim_T": (384, 384), "dim_V": (304, 304),
                **{f"available_{m}": (n // 2, n) for m in "ATV"},
                **{f"zero_fill_accuracy_{m}": (0.0, 1.0) for m in "ATV"}, "zero_fill_average": (0.0, 1.0)}
    if name == "02_data_and_missingness":
        # ADMC's rate drop at r = 0.5: every sample keeps all modalities or loses one or two
        return {"oracle_full": _exact(o["full"]), "oracle_single_mean": _exact(float(np.mean([ref.single(m) for m in mods]))),
                "oracle_rate_drop_0_5": (min(patterns) - TOL, o["full"] + TOL), "rmfm_missing_frames_0_5": (0.4, 0.6)}
    if name == "03_encoders_itfn":
        return {**{f"itfn_accuracy_{m}": ref.learned(ref.single(m)) for m in mods},
                **{f"oracle_accuracy_{m}": _exact(ref.single(m)) for m in mods}}
    if name == "04_diffusion_completion":
        # Table 4: features generated from the other modalities classify at chance today (README), so
        # only the upper bound binds: a unimodal head on generated features cannot beat the Bayes
        # accuracy of the modalities they were generated from.
        return {"admc_average": ref.learned(ref.average), "oracle_average": _exact(ref.average),
                "table4_mean_accuracy_n50": (0.0, float(np.mean([ref.without(m) for m in mods])) + TOL)}
    if name == "05_missingness_explorer":
        condition = _default(name, "value")
        assert _default(name, "protocol") == "fixed" and condition in o, "the bounds assume a fixed pattern"
        return {"view_accuracy": ref.learned(o[condition]), "view_oracle_accuracy": _exact(o[condition]),
                "view_gap": (-TOL, o[condition] - ref.majority - MARGIN),
                "rate_drop_0_5_oracle": (min(patterns) - TOL, o["full"] + TOL),
                "rate_drop_0_5_accuracy": ref.learned(metrics.get("rate_drop_0_5_oracle", o["full"]))}
    if name == "06_diffusion_step_explorer":
        sub = _reference(FAST["n_samples"])  # the explorer encodes the first n_samples test rows
        m = _default(name, "modality") or mods[-1]
        return {"real_accuracy": sub.learned(sub.single(m)),
                "generated_accuracy_default": (0.0, sub.without(m) + TOL),
                "best_generated_accuracy": (0.0, sub.without(m) + TOL),
                "best_start_step": (min(FAST["sweep_steps"]), max(FAST["sweep_steps"])),
                "distance_default": (1e-6, 1e3)}
    if name == "07_cmarr":
        # a frozen probe on one modality's features cannot beat that modality's Bayes accuracy, nor on
        # features reconstructed (or drawn exactly) from the others the Bayes accuracy of the others;
        # untrained, a sample's modalities are as far apart as two samples' (ratio ~1), and UDCL aligns them
        t = _default(name, "target")
        return {"real_accuracy": (0.0, ref.single(t) + TOL), "generated_accuracy": (0.0, ref.without(t) + TOL),
                "exact_accuracy": (0.0, ref.without(t) + TOL), "alignment_ratio_before": (0.8, 1.2),
                "alignment_ratio_after": (1e-6, metrics.get("alignment_ratio_before", 1.2))}
    if name == "08_cider":
        # on the tiny synthetic_text: the Bayes oracle's AUILC on the notebook's masks is exact and bounds the
        # model's; Eq. 27 on raw counts keeps every word seen in train (unequal classes), on rates a strict subset;
        # the tau sweep reproduces the Trainer's choice on valid, and the best test_ood tau is an upper bound
        from mmlab import explore
        from mmlab.methods.cider import CIDerConfig

        text = load_dataset("synthetic_text", preset=FAST["preset"])
        rows = explore.rate_curves(None, text, explore.CIDER_PROTOCOLS, FAST["eval_rates"], max_eval=FAST["max_eval"],
                                   seed=_default(name, "seed"))
        area = {f"{r['protocol']}_{r['split']}": r["accuracy"] for r in rows if r["condition"] == "AUILC"}
        seen = int((explore.class_counts(text).sum(0) > 0).sum())
        valid_oracle = float(np.mean([r["accuracy"] for r in _oracle_table()(text, split="valid")]))
        grid = CIDerConfig().tau_grid
        epochs = FAST["cider_overrides"]["train.epochs"]
        return {"edges_kept": (1.0, 1.0), "rmfm_realised_0_5": (0.4, 0.6), "loss_identity_error": (0.0, 1e-5),
                "epochs": (epochs, epochs), "words_seen": (seen, seen), "kept_raw": (seen, seen),
                "kept_method": (1, seen - 1), "cf_changed_share": (1e-9, 1.0), "cf_changed_share_raw": (0.0, 0.0),
                "tau_chosen": (min(grid), max(grid)), "tau_argmax_valid_agrees": (1.0, 1.0),
                "oracle_valid_seven": _exact(valid_oracle), "valid_at_chosen": (0.0, valid_oracle + TOL),
                "test_ood_best": (metrics.get("test_ood_at_chosen", 0.0), 1.0),
                **{f"oracle_auilc_{k}": _exact(v) for k, v in area.items()},
                **{f"auilc_{k}": (0.0, v + TOL) for k, v in area.items()}}
    if name == "90_benchmark_report":
        return {"average_accuracy_reference": ref.learned(ref.average), "average_accuracy_admc": ref.learned(ref.average),
                "average_accuracy_bayes_oracle": _exact(ref.average)}
    raise AssertionError(f"no expected ranges for notebook {name}")


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


def _cells(nb) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_pairs_are_in_sync(name):
    """The .ipynb users open and its percent-format source have the same cells (type, source,
    tags) and both declare the jupytext pairing, so JupyterLab keeps them in sync."""
    py, ipynb = NOTEBOOKS / f"{name}.py", NOTEBOOKS / f"{name}.ipynb"
    assert py.exists(), f"{ipynb.name} has no percent-format source {py.name} (jupytext --set-formats ipynb,py:percent)"
    text_nb, json_nb = jupytext.read(py, fmt="py:percent"), jupytext.read(ipynb)
    for path, nb in ((py, text_nb), (ipynb, json_nb)):
        assert nb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent", f"{path.name}: no jupytext pairing"
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernelspec must be python3"
    a, b = _cells(text_nb), _cells(json_nb)
    assert len(a) == len(b), f"{name}: {py.name} has {len(a)} cells, {ipynb.name} {len(b)} (run tools/sync_notebooks.py)"
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == y, f"{name}: cell {i} differs between {py.name} and {ipynb.name} (run tools/sync_notebooks.py)"
    assert re.search(r'^# %% tags=\["parameters"\]$', py.read_text(), flags=re.M), f"{py.name}: no papermill parameters cell"


def test_every_source_has_its_notebook():
    assert sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.py")) == NAMES


def test_sync_tool_agrees_and_regenerates_byte_stable(tmp_path):
    """``tools/sync_notebooks.py --check`` passes on the committed pairs, and regenerating a copy
    of the sources gives notebooks with the same cells as the committed ones."""
    tool = [sys.executable, str(ROOT / "tools" / "sync_notebooks.py")]
    out = subprocess.run(tool + ["--check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    for name in NAMES:
        shutil.copy(NOTEBOOKS / f"{name}.py", tmp_path / f"{name}.py")
    out = subprocess.run(tool + ["--dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    for name in NAMES:
        assert _cells(jupytext.read(tmp_path / f"{name}.ipynb")) == _cells(jupytext.read(NOTEBOOKS / f"{name}.ipynb"))
    first = {n: (tmp_path / f"{n}.ipynb").read_bytes() for n in NAMES}
    subprocess.run(tool + ["--dir", str(tmp_path)], capture_output=True, text=True, timeout=120, check=True)
    assert {n: (tmp_path / f"{n}.ipynb").read_bytes() for n in NAMES} == first


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


@pytest.fixture(scope="module")
def reference() -> Reference:
    return _reference()


def test_bounds_leave_no_room_for_a_broken_model(reference):
    """A constant predictor or a shuffled-label model cannot pass the lower bound, and the oracle
    rows of the FAST data are ordered as the benchmark needs (pairs beat singles, full beats pairs)."""
    lo, hi = reference.learned(reference.average)
    assert reference.majority < lo < hi <= 1.0
    singles = [reference.single(m) for m in reference.modalities]
    pairs = [reference.without(m) for m in reference.modalities]  # three modalities: "all but one" are the pairs
    assert reference.oracle["full"] > max(pairs) and min(pairs) > max(singles)
    assert min(singles) - reference.majority > 2 * MARGIN


@pytest.mark.parametrize("name", NAMES)
def test_notebook_metrics_lie_in_range(run_dir, reference, name):
    assert (run_dir / "notebooks" / f"{name}.ipynb").exists()
    record = json.loads((run_dir / "metrics" / f"{name}.json").read_text())
    metrics = record["metrics"]
    for key, (lo, hi) in expected_ranges(name, reference, metrics).items():
        assert key in metrics, f"{name}: metric {key!r} missing (have {sorted(metrics)})"
        v = metrics[key]
        assert isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi, f"{name}: {key}={v} not in [{lo}, {hi}]"
    assert record["figures"], f"{name}: recorded no figure"
    for f in record["figures"]:
        assert (run_dir / f["path"]).exists()


def test_oracle_beats_the_models(run_dir):
    """The notebooks agree with one another: the same model trained by a notebook and by
    `compare` scores the same, every method meets the same masks, and the oracle is on top."""
    m = {n: json.loads((run_dir / "metrics" / f"{n}.json").read_text())["metrics"] for n in NAMES}
    quick, data, report = m["00_quickstart"], m["02_data_and_missingness"], m["90_benchmark_report"]
    assert data["oracle_full"] > data["oracle_single_mean"]
    assert quick["oracle_average"] >= quick["reference_average"] - TOL
    assert quick["gap_to_oracle"] == pytest.approx(quick["oracle_average"] - quick["reference_average"])
    assert report["average_accuracy_reference"] == pytest.approx(quick["reference_average"])
    assert report["average_accuracy_admc"] == pytest.approx(m["04_diffusion_completion"]["admc_average"])
    assert report["average_accuracy_bayes_oracle"] == pytest.approx(quick["oracle_average"])
    # same seed, same rate-drop masks for the oracle alone (02) and beside the model (05)
    assert m["05_missingness_explorer"]["rate_drop_0_5_oracle"] == pytest.approx(data["oracle_rate_drop_0_5"])


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

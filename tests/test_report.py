"""mmlab.report: MMSA-style per-dataset CSVs, Markdown, one offline HTML page, no overwriting."""

from __future__ import annotations

import csv

import pytest

from mmlab.errors import DataError
from mmlab.report import build_report, load_results, oracle_gap
from mmlab.evaluate import aggregate

HEADER = "dataset,method,protocol,condition,seed,mask_seed,n,accuracy,macro_recall,f1_weighted\n"


def write(folder, lines: list[str]):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.csv").write_text(HEADER + "\n".join(lines) + "\n")
    return folder


def rows_for(method: str, seed: int, base: float, dataset: str = "synthetic") -> list[str]:
    out = []
    for k, cond in enumerate(["full", "{A}", "{V}", "{T}", "{AV}", "{AT}", "{VT}", "Average"]):
        a = base - 0.02 * k
        out.append(f"{dataset},{method},pattern,{cond},{seed},{seed},100,{a},{a - 0.01},{a - 0.02}")
    for k, r in enumerate([0.0, 0.1, 0.2, 0.3]):
        a = base - 0.05 * k
        out.append(f"{dataset},{method},rate_drop,rate={r:g},{seed},{seed},100,{a},{a - 0.01},{a - 0.02}")
    out.append(f"{dataset},{method},rate_drop,AUILC,{seed},{seed},100,0.2,0.19,0.18")
    return out


@pytest.fixture
def two_runs(tmp_path):
    a = write(tmp_path / "a", rows_for("zero_fill", 1111, 0.80) + rows_for("zero_fill", 1112, 0.78)
              + rows_for("bayes_oracle", 1111, 0.85) + rows_for("bayes_oracle", 1112, 0.85))
    b = write(tmp_path / "b", rows_for("mmin", 1111, 0.82) + rows_for("bayes_oracle", 1111, 0.85)
              + rows_for("mmin", 1, 0.5, dataset="handwritten"))
    return a, b


def test_report_files_and_cells(two_runs, tmp_path):
    out = tmp_path / "report"
    paths = build_report(list(two_runs), out)
    names = sorted(p.name for p in paths)
    assert names == ["handwritten.csv", "report.html", "report.md", "synthetic.csv"]
    table = list(csv.reader((out / "synthetic.csv").open()))
    assert table[0] == ["method", "protocol", "condition", "accuracy", "macro_recall", "f1_weighted", "n_seeds"]
    cells = {(r[0], r[1], r[2]): r for r in table[1:]}
    # zero_fill full: seeds 0.80 and 0.78 -> 79.0 ± 1.0 (population std), x100 one decimal
    assert cells[("zero_fill", "pattern", "full")][3] == "79.0 ± 1.0"
    assert cells[("zero_fill", "pattern", "full")][6] == "2"
    # the oracle rows repeated in both folders (same seed, same values) count once
    assert cells[("bayes_oracle", "pattern", "full")][6] == "2"
    assert cells[("mmin", "rate_drop", "rate=0.3")][3] == "67.0 (1 seed)"  # no "± 0.0" for one seed
    assert table[-1][0] == "bayes_oracle"  # the oracle is listed last
    hw = list(csv.reader((out / "handwritten.csv").open()))
    assert {r[0] for r in hw[1:]} == {"mmin"}


def test_markdown_and_oracle_gap(two_runs, tmp_path):
    build_report(list(two_runs), tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## synthetic" in md and "## handwritten" in md and "### pattern" in md and "### rate_drop" in md
    assert "| method | full | {A} |" in md
    assert "accuracy gap to the Bayes oracle" in md
    # mmin full 0.82 vs oracle 0.85 -> -3.0 points
    agg = aggregate(load_results(list(two_runs)))
    conds, gaps, methods = oracle_gap([a for a in agg if a["dataset"] == "synthetic"], "pattern")
    assert gaps[methods.index("mmin")][conds.index("full")] == pytest.approx(-3.0)
    assert gaps[methods.index("zero_fill")][conds.index("full")] == pytest.approx(-6.0)


def test_html_is_self_contained(two_runs, tmp_path):
    build_report(list(two_runs), tmp_path / "r")
    page = (tmp_path / "r" / "report.html").read_text()
    assert page.count("plotly.js v") == 1  # the library is inlined exactly once
    assert "<script src=\"https://cdn" not in page  # plotly inlined, works offline
    assert page.count('class="plotly-graph-div"') >= 4  # bars, rate lines, two gap charts
    assert "minus the Bayes oracle" in page and "missing rate" in page


def test_never_overwrites(two_runs, tmp_path):
    out = tmp_path / "r"
    build_report([two_runs[0]], out)
    with pytest.raises(DataError, match="synthetic.csv"):
        build_report([two_runs[0]], out)


def test_bad_inputs(tmp_path, two_runs):
    with pytest.raises(DataError, match="no results file"):
        build_report([tmp_path / "nowhere"], tmp_path / "r")
    clash = write(tmp_path / "c", [r.replace(",0.8,", ",0.1,") for r in rows_for("zero_fill", 1111, 0.80)])
    with pytest.raises(DataError, match="different values"):
        build_report([two_runs[0], clash], tmp_path / "r2")
    # a results.csv file may be given directly
    paths = build_report([two_runs[1] / "results.csv"], tmp_path / "r3")
    assert (tmp_path / "r3" / "synthetic.csv") in paths


def test_extra_test_splits_are_different_results(tmp_path):
    """A row of `test_ood` is not a duplicate of the same condition on `test` (it was: equal values
    dropped it, different values raised), and the same split in two folders still counts once."""
    header = HEADER.replace("seed,mask_seed", "split,seed,mask_seed")
    lines = ["synthetic_text,cider,pattern,full,test,1111,1111,100,0.8,0.8,0.8",
             "synthetic_text,cider,pattern,full,test_ood,1111,1111,100,0.7,0.7,0.7",
             "synthetic_text,zero_fill,pattern,full,test,1111,1111,100,0.6,0.6,0.6",
             "synthetic_text,zero_fill,pattern,full,test_ood,1111,1111,100,0.6,0.6,0.6"]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.csv").write_text(header + "\n".join(lines) + "\n")
    rows = load_results([tmp_path / "a", tmp_path / "b"])
    assert sorted((r["method"], r["split"], r["accuracy"]) for r in rows) == [
        ("cider", "test", 0.8), ("cider", "test_ood", 0.7), ("zero_fill", "test", 0.6), ("zero_fill", "test_ood", 0.6)]
    paths = build_report([tmp_path / "a"], tmp_path / "r")
    assert sorted(p.name for p in paths if p.suffix == ".csv") == ["synthetic_text.csv", "synthetic_text_test_ood.csv"]
    ood = list(csv.reader((tmp_path / "r" / "synthetic_text_test_ood.csv").open()))
    assert {(r[0], r[3]) for r in ood[1:]} == {("cider", "70.0 (1 seed)"), ("zero_fill", "60.0 (1 seed)")}
    assert "## synthetic_text (test_ood)" in (tmp_path / "r" / "report.md").read_text()


def test_report_prints_errors_and_ratios_unscaled(tmp_path):
    """A generation row's feature-space error and variance ratio are not fractions: no x100."""
    header = "dataset,method,protocol,condition,seed,n,accuracy,mean_error,variance_ratio\n"
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "results.csv").write_text(header + "synthetic,admc,generation,VT->A,1,100,0.5,0.25,1.5\n"
                                                "synthetic,admc,generation,VT->A,2,100,0.7,0.75,0.5\n")
    build_report([tmp_path / "g"], tmp_path / "r")
    table = list(csv.reader((tmp_path / "r" / "synthetic.csv").open()))
    cells = dict(zip(table[0], table[1]))
    assert cells["accuracy"] == "60.0 ± 10.0" and cells["mean_error"] == "0.5 ± 0.2" and cells["variance_ratio"] == "1.0 ± 0.5"

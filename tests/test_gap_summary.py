"""tools/gap_summary.py: the per-method table of docs/gap_to_oracle.md §17 is what the tool prints
from the stored rows with the command the section gives, and the tool refuses folders without
the references it measures against."""

from __future__ import annotations

import re
import runpy
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = runpy.run_path(str(ROOT / "tools" / "gap_summary.py"))
DOC = ROOT / "docs" / "gap_to_oracle.md"


def _command() -> tuple[list[Path], list[Path]]:
    """The --start and --now folders of the section's bash block, with $D expanded."""
    text = DOC.read_text()
    block = re.search(r"```bash\nD=(\S+)\n(\.venv/bin/python tools/gap_summary\.py.*?)```", text, re.S)
    assert block, "docs/gap_to_oracle.md: no gap_summary command found"
    words = shlex.split(block.group(2).replace("\\\n", " ").replace("$D", block.group(1)))
    start, now = words.index("--start"), words.index("--now")
    return [ROOT / w for w in words[start + 1:now]], [ROOT / w for w in words[now + 1:]]


def test_the_documented_table_is_what_the_tool_prints():
    start, now = _command()
    text = DOC.read_text()
    shown = re.search(r"<!-- gap-summary -->\n(.*?)<!-- /gap-summary -->", text, re.S).group(1)
    printed = TOOL["summary"](start, now) + "\n"
    assert shown == printed
    rows = {line.split(" | ")[0].strip("| "): line for line in printed.splitlines()[2:]}
    assert "pooled_linear (reference)" in rows and "cra" in rows
    # a learned method's distance to the oracle is the oracle's average minus its own
    cells = rows["cra"].strip("|").split(" | ")
    avg, under = float(cells[2].split(" ± ")[0]), float(cells[3])
    oracle = avg + under
    assert 66.5 < oracle < 67.2


def test_folders_without_the_references_are_refused(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "results.csv").write_text("dataset,method,protocol,condition,split,seed,accuracy\n"
                                       "synthetic,m,pattern,Average,test,1,0.6\n")
    with pytest.raises(SystemExit, match="bayes_oracle"):
        TOOL["summary"]([plain], [plain])
    (tmp_path / "empty").mkdir()  # a typo'd or empty folder is named, not skipped
    with pytest.raises(SystemExit, match="empty: no results file"):
        TOOL["main"](["--start", str(plain), "--now", str(tmp_path / "empty")])
    torn = tmp_path / "torn"
    torn.mkdir()
    (torn / "results.csv").write_text("dataset,method,protocol,condition,split,seed,accuracy\nsynthetic,m\n")
    with pytest.raises(SystemExit, match="line 2 has 2 fields"):
        TOOL["main"](["--start", str(torn), "--now", str(torn)])
    with pytest.raises(SystemExit, match="not a folder"):
        TOOL["main"](["--start", str(tmp_path / "absent"), "--now", str(tmp_path)])


def test_the_ten_seed_table_is_what_its_script_prints(capsys):
    """docs/gap_to_oracle.md §18.4 / §19.2: the README's seeds and five fresh ones, read from stored rows."""
    runpy.run_path(str(ROOT / "docs" / "results" / "fresh_seeds" / "ten_seeds.py"), run_name="__main__")
    printed = capsys.readouterr().out
    shown = re.search(r"<!-- ten-seeds -->\n(.*?)<!-- /ten-seeds -->", DOC.read_text(), re.S).group(1)
    assert shown == printed
    rows = {line.split(" | ")[0].strip("| "): line.strip("|").split(" | ") for line in printed.splitlines()[2:]}
    assert set(rows) == {"cra_x3", "ae_x3", "zero_fill_pp", "cra", "ae", "zero_fill", "mean_fill", "dicmor", "mmin",
                         "cmarr", "admc", "admc_wo_adn", "admc_wo_itfn", "admc_cond"}
    for cells in rows.values():  # ten seeds: the mean of the two halves, the oracle minus it
        first, fresh, ten = (float(c.split(" ± ")[0]) for c in cells[1:4])
        assert abs((first + fresh) / 2 - ten) < 0.011 and 66.5 < ten + float(cells[4]) < 67.2


def test_the_ten_seed_options_table_is_what_its_script_prints(capsys):
    """docs/gap_to_oracle.md §19.1: four options of the training stage against the default on ten
    seeds, read from the stored per-seed valid values, with the rule's verdict per option."""
    script = runpy.run_path(str(ROOT / "docs" / "results" / "gap_diagnostics" / "ten_seed_options" / "ten_seeds.py"))
    script["main"]([])
    printed = capsys.readouterr().out
    shown = re.search(r"<!-- ten-seed-options -->\n(.*?)<!-- /ten-seed-options -->", DOC.read_text(), re.S).group(1)
    assert shown == printed
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in printed.splitlines()[2:] if line.startswith("| --")]
    by_option: dict[str, dict[str, list[str]]] = {}
    for cells in rows:
        by_option.setdefault(cells[0], {})[cells[1]] = cells
    assert len(by_option) == 5
    for option, cells in by_option.items():  # the verdict follows from the per-method and pooled differences
        assert set(cells) == {"ae", "cra", "zero_fill", "pooled"} and cells["pooled"][2] == "30", option
        mean, se = (float(x.strip("()")) for x in cells["pooled"][5].split())
        positive = all(float(cells[m][5].split()[0]) > 0 for m in ("ae", "cra", "zero_fill"))
        assert cells["pooled"][6] == ("adopt" if positive and mean > 2 * se else "keep the default"), option

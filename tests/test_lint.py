"""ruff over the package, the tests, the notebooks' percent-format sources, tools and benchmarks.

The rules live in pyproject.toml (``[tool.ruff]``); run ``.venv/bin/ruff check`` to see the same
report, ``--fix`` to apply ruff's safe fixes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["mmlab", "tests", "notebooks", "tools", "benchmarks"]


def test_ruff_passes():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *PATHS],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"ruff check {' '.join(PATHS)} (exit {out.returncode}):\n{out.stdout}{out.stderr}"


def test_ruff_reads_the_notebook_sources_not_the_generated_notebooks():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--show-files", "notebooks"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    linted = {Path(line.strip()).name for line in out.stdout.splitlines() if line.strip()}
    sources = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py")}
    assert sources and sources <= linted, f"ruff skips notebook sources: {sorted(sources - linted)}"
    assert not any(name.endswith(".ipynb") for name in linted)

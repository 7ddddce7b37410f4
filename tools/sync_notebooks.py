"""Regenerate the notebooks users open (``notebooks/NN_*.ipynb``) from their sources.

Each notebook has one source of truth: ``notebooks/NN_name.py``, a jupytext percent-format
script (``# %%`` code cells, ``# %% [markdown]`` cells, ``# %% tags=["parameters"]`` for the
papermill cell) that linters and reviewers read. The ``.ipynb`` beside it is generated with
outputs stripped; both carry the jupytext pairing ``formats: ipynb,py:percent``, so editing
either one in JupyterLab (with jupytext installed) keeps the other in sync.

    .venv/bin/python tools/sync_notebooks.py          # rewrite every notebooks/NN_*.ipynb from its .py
    .venv/bin/python tools/sync_notebooks.py --check  # exit 1 if a pair differs or an .ipynb is not stripped

After editing an ``.ipynb`` outside JupyterLab, ``.venv/bin/jupytext --sync notebooks/NN_name.ipynb``
writes the change back to the ``.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
GLOB = "[0-9][0-9]_*"
FORMATS = "ipynb,py:percent"
LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3"}


def sources(folder: Path = NOTEBOOKS) -> list[Path]:
    """The percent-format sources ``NN_*.py`` of a folder, in name order."""
    return sorted(folder.glob(f"{GLOB}.py"))


def build(py: Path) -> nbformat.NotebookNode:
    """The stripped notebook of one ``.py`` source (deterministic: cell ids ``NN-ii``)."""
    nb = jupytext.read(py, fmt="py:percent")
    formats = nb.metadata.get("jupytext", {}).get("formats")
    if formats != FORMATS:
        raise SystemExit(f"{py}: expected the jupytext pairing 'formats: {FORMATS}' in its header, got {formats!r}")
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        raise SystemExit(f"{py}: expected kernelspec python3 in its header")
    nb.metadata = nbformat.from_dict({
        "jupytext": {"formats": FORMATS},
        "kernelspec": dict(nb.metadata["kernelspec"]),
        "language_info": dict(LANGUAGE_INFO),
    })
    for i, cell in enumerate(nb.cells):
        cell.id = f"{py.stem[:2]}-{i:02d}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.validate(nb)
    return nb


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    """What a pair must agree on: (type, source, tags) of every cell."""
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def problems(folder: Path = NOTEBOOKS) -> list[str]:
    """Why the committed pairs of ``folder`` are not in sync (empty when they are)."""
    found = []
    py_names = {p.stem for p in sources(folder)}
    for ipynb in sorted(folder.glob(f"{GLOB}.ipynb")):
        if ipynb.stem not in py_names:
            found.append(f"{ipynb.name}: no {ipynb.stem}.py source beside it")
    for py in sources(folder):
        ipynb = py.with_suffix(".ipynb")
        if not ipynb.exists():
            found.append(f"{py.name}: no {ipynb.name} generated from it")
            continue
        nb = jupytext.read(ipynb)
        if cells(nb) != cells(build(py)):
            found.append(f"{ipynb.name}: cells differ from {py.name}")
        if nb.metadata.get("jupytext", {}).get("formats") != FORMATS:
            found.append(f"{ipynb.name}: metadata lacks the jupytext pairing 'formats: {FORMATS}'")
        if any(c.get("outputs") or c.get("execution_count") is not None for c in nb.cells if c.cell_type == "code"):
            found.append(f"{ipynb.name}: has outputs or execution counts")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when a pair is out of sync")
    ap.add_argument("--dir", type=Path, default=NOTEBOOKS, help="notebook folder (default: notebooks/)")
    args = ap.parse_args(argv)
    if args.check:
        found = problems(args.dir)
        if found:
            print("out of sync (edit the .py, then run tools/sync_notebooks.py):\n  " + "\n  ".join(found))
            return 1
        return 0
    written = 0
    for py in sources(args.dir):
        ipynb = py.with_suffix(".ipynb")
        text = nbformat.writes(build(py)) + "\n"
        if not ipynb.exists() or ipynb.read_text() != text:
            ipynb.write_text(text)
            written += 1
    print(f"{written} of {len(sources(args.dir))} notebooks rewritten in {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every reference a user reads points to something the user can open.

Users have this repository and the published papers, not the team's private notes. So the text
users read (README.md, docs/, data_cards/, the notebook sources, benchmarks/ and mmlab/: the
whole file text, which covers docstrings and comments) must not cite

(a) private documents: the implementation spec ("spec §1.3", ``spec.md``), the paper texts and
    notes folders (``papers/``, ``reference/``, ``../shared``), the peer-code notes, the
    Handwritten anchors note, the offline-data and ecosystem notes;
(b) a repository path that does not exist: every backticked or markdown-linked path whose first
    component is a top-level folder of this repository (``mmlab/``, ``docs/``, ...) must exist.
    Paths under other folders (``runs/<ts>/``, ``cmp_full/...``, ``.venv/...``, ``my.npz``) are
    outputs or placeholders and are not checked; a ``<...>``, ``{...}``, ``$VAR``, ``...`` or
    ``NN`` (a notebook's number) placeholder ends the checked part, and a ``*`` is a glob that
    must match something;
(c) the ADMC choice labels (A1-A18) outside ``mmlab/methods/admc.py``, where the list lives,
    unless the reader is told where it is: a Python file must name ``mmlab/methods/admc.py``
    somewhere, a Markdown paragraph (or table row) in that paragraph; the CIDer and CM-ARR labels
    of the private spec (B1-B21, C1-C13) are not defined anywhere in the repository.

Cite a paper by title, arXiv id or venue/year, and section/equation/table instead (README.md,
"Papers"), or a document in this repository.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = ("mmlab", "docs", "data_cards", "notebooks", "tests", "benchmarks", "tools", "bin", ".ci")
ADMC = "mmlab/methods/admc.py"

PRIVATE = [  # (pattern, what it cites)
    (r"\bspec\s*§", "the private implementation spec"),
    (r"\bspec\s+A\d", "an ambiguity of the private implementation spec"),
    (r"spec\.md", "the private implementation spec"),
    (r"(?<![\w/.-])papers/", "the private paper-text folder"),
    (r"(?<![\w/.-])reference/(?!seed)", "the private notes folder"),
    (r"\.\./shared|/work/shared", "the private shared folder"),
    (r"peer[ -]notes|peer-code-notes", "the private peer-code notes"),
    (r"handwritten-anchors", "the private Handwritten anchors note"),
    (r"offline-data\.md", "the private offline-data note"),
    (r"ecosystem\.md", "the private ecosystem note"),
    # the spec's section numbers passed off as the papers': ADMC has no §1.x (§1 is its
    # introduction), CIDer numbers its sections in Roman (§III-A)
    (r"\bADMC (?:Tables? [\d-]+ )?§1\.\d", "a section ADMC does not have (the private spec's numbering)"),
    (r"\bCIDer (?:Table \w+ )?§\d", "a section CIDer does not have (the private spec's numbering)"),
]
ADMC_LABEL = re.compile(r"\bA(?:1[0-8]|[1-9])\b")
# a paper's ambiguity labels are defined in its method file's module docstring
LABEL_HOMES = {"B": "mmlab/methods/cider.py", "C": "mmlab/methods/cmarr.py"}
OTHER_LABEL = re.compile(r"(?:spec |choice |\(|, |/)(B(?:2[01]|1\d|[1-9])|C(?:1[0-4]|[1-9]))\b")
EXTS = (".md", ".py", ".ipynb", ".npz", ".csv", ".json", ".yml", ".yaml", ".toml", ".txt", ".html", ".png")
BACKTICKS = re.compile(r"`{1,2}([^`\n]+?)`{1,2}")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def user_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder, pattern in (("docs", "*.md"), ("data_cards", "*.md"), ("benchmarks", "*.py"),
                            ("mmlab", "*.py"), ("mmlab", "*.md")):
        files += sorted((ROOT / folder).rglob(pattern))
    files += sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    return [f for f in files if f.is_file()]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def lines(path: Path):
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        yield i, line


def path_candidates(text: str) -> list[str]:
    """Tokens of a backticked span that look like repository paths."""
    out = []
    for token in text.split():
        token = token.strip("'\"()[],;:")
        token = re.sub(r"::.*$|:\d+(?::\d+)?$", "", token)  # pytest node ids, line numbers
        if "/" in token or token.endswith(EXTS):
            out.append(token)
    return out


def checked_part(token: str) -> str | None:
    """The part of ``token`` to check, or None when it is not a repository path."""
    if re.match(r"[a-z+]+://", token) or token.startswith(("#", "~", "/", "$")):
        return None
    token = token.split("#")[0]
    while token.startswith("./"):
        token = token[2:]
    if token.split("/")[0] not in TOP:
        return None
    m = re.search(r"<|\{|\$|\.\.\.|…|(?<![A-Za-z])NN(?![a-z])", token)
    if m:  # a placeholder: check the folder before it
        token = token[:m.start()].rsplit("/", 1)[0] if "/" in token[:m.start()] else ""
    return token.rstrip("/") or None


def exists(part: str, base: Path = ROOT) -> bool:
    if "*" in part:
        return any(base.glob(part))
    return (base / part).exists()


def paragraph_of(text: str) -> list[str]:
    """For each line of a Markdown text, the paragraph it belongs to (blank-line separated)."""
    out, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.strip():
            block.append(line)
            continue
        out += ["\n".join(block)] * len(block) + [""]
        block = []
    return out


def test_no_reference_to_private_documents():
    bad = []
    for path in user_files():
        for i, line in lines(path):
            for pattern, what in PRIVATE:
                if re.search(pattern, line, flags=re.IGNORECASE):
                    bad.append(f"{rel(path)}:{i}: cites {what}: {line.strip()[:120]}")
    assert not bad, "references users cannot open:\n" + "\n".join(bad)


def test_repository_paths_exist():
    bad = []
    for path in user_files():
        for i, line in lines(path):
            for span in BACKTICKS.findall(line):
                for token in path_candidates(span):
                    part = checked_part(token)
                    if part and not exists(part):
                        bad.append(f"{rel(path)}:{i}: `{token}` does not exist")
            if path.suffix == ".md":
                for target in MD_LINK.findall(line):
                    if re.match(r"[a-z+]+://|#|mailto:", target):
                        continue
                    target = target.split("#")[0]
                    if target and not exists(target, path.parent):
                        bad.append(f"{rel(path)}:{i}: link ({target}) does not exist")
    assert not bad, "repository paths that do not exist:\n" + "\n".join(bad)


def test_ambiguity_labels_point_to_their_list():
    bad = []
    for path in user_files():
        name = rel(path)
        text = path.read_text(encoding="utf-8")
        paragraphs = paragraph_of(text) if path.suffix == ".md" else None
        for i, line in lines(path):
            context = paragraphs[i - 1] if paragraphs else text
            if name != ADMC and ADMC not in context and ADMC_LABEL.search(line):
                bad.append(f"{name}:{i}: ADMC choice {ADMC_LABEL.search(line).group()} without "
                           f"naming {ADMC}: {line.strip()[:100]}")
            for m in OTHER_LABEL.finditer(line):
                label, home = m.group(1), LABEL_HOMES[m.group(1)[0]]
                if name != home and home not in context:
                    bad.append(f"{name}:{i}: label {label} without naming {home}, where it is defined: "
                               f"{line.strip()[:100]}")
                elif label not in _defined(home):
                    bad.append(f"{name}:{i}: label {label} is not defined in {home}'s docstring: {line.strip()[:100]}")
    assert not bad, "ambiguity labels a user cannot look up:\n" + "\n".join(bad)


def _defined(home: str) -> set[str]:
    """Labels a method file defines: those named in its module docstring (its list of choices)."""
    path = ROOT / home
    if not path.exists():
        return set()
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return set(re.findall(r"\b[ABC]\d{1,2}\b", doc))


@pytest.mark.parametrize("token, part", [
    ("mmlab/methods/admc.py", "mmlab/methods/admc.py"),
    ("docs/results/full_comparison/", "docs/results/full_comparison"),
    ("cmp_full/<dataset>/jobs/", None),
    ("runs/<timestamp>/", None),
    (".venv/bin/mmlab", None),
    ("my.npz", None),
    ("mmlab/data/<name>.py", "mmlab/data"),
    ("https://github.com/x/y", None),
    ("tests/test_x.py::test_y", "tests/test_x.py"),
    ("notebooks/NN_name.ipynb", "notebooks"),
])
def test_checked_part(token, part):
    assert checked_part(re.sub(r"::.*$", "", token)) == part

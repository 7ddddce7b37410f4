"""The project's own files install what it needs, and only that.

- pyproject.toml and environment.yml declare the same packages with the same version specs
  (where environment.yml pins a version instead, the pin satisfies pyproject's spec and is the
  one bin/bootstrap installs);
- every third-party package that mmlab/ or a notebook imports is declared (a module-level
  import in the main dependencies, so ``pip install mmlab`` imports every module; an import
  inside a function in the main dependencies or the ``notebooks`` extra);
- nothing in the main dependencies goes unused by mmlab/, and every package of an extra is
  imported or has a stated reason to be there;
- packages that only tests and tools import are in the ``dev`` extra;
- CI runs the README's test command.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# import name -> distribution, for distributions not installed here (installed ones are read from
# importlib.metadata.packages_distributions()).
IMPORT_TO_DIST = {"sklearn": "scikit-learn", "yaml": "pyyaml", "umap": "umap-learn", "IPython": "ipython",
                  "PIL": "pillow", "skimage": "scikit-image", "cv2": "opencv-python"}
# imported, but provided by a declared package that requires it (checked against its metadata)
PROVIDED_BY = {
    "ipython": "ipykernel",  # the Jupyter kernel the notebooks run in
    "numba": "umap-learn",  # workspace.setup_notebook caps numba's threads only when UMAP already imported it
}
# declared, but never imported: what each is for
RUNTIME_ONLY = {
    "nbclient": "papermill's executor (mmlab run)",
    "ipykernel": "the python3 kernel the notebooks run in",
    "jupyterlab": "opens the notebooks and their widgets",
    "anywidget": "plotly's go.FigureWidget (the explorers' figures) is an anywidget; plotly does not require it",
    "nbval": "pytest --nbval-lax (tests/test_notebooks.py)",
    "nbstripout": "the git filter named in .gitattributes",
    "ruff": "tests/test_lint.py runs python -m ruff",
    "import-linter": "the import contracts in pyproject.toml",
    "pytest": "the test runner",
    "pytest-xdist": "bin/test runs the suite on several processes (pytest -n)",
    "zuko": "tests/test_flow.py cross-checks mmlab.nn.flow against it through pytest.importorskip",
}


# ------------------------------------------------------------------------------ helpers
def _norm(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse(req: str) -> tuple[str, tuple[str, ...]]:
    """``"scikit-learn >= 1.4"`` -> ``("scikit-learn", (">=1.4",))`` (extras and markers are not used here)."""
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?", req)
    assert m, f"cannot parse requirement {req!r}"
    specs = tuple(sorted(s.replace(" ", "") for s in m.group(3).split(",") if s.strip()))
    return _norm(m.group(1)), specs


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text.split("+")[0]))


def _satisfies(version: str, spec: str) -> bool:
    op, target = re.fullmatch(r"(>=|<=|==|!=|>|<|~=)(.+)", spec).groups()
    v, t = _version(version), _version(target)
    n = max(len(v), len(t))
    v, t = v + (0,) * (n - len(v)), t + (0,) * (n - len(t))
    if op == "~=":
        return v >= t and v[: len(_version(target)) - 1] == t[: len(_version(target)) - 1]
    return {">=": v >= t, "<=": v <= t, "==": v == t, "!=": v != t, ">": v > t, "<": v < t}[op]


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _declared() -> dict[str, dict[str, tuple[str, ...]]]:
    """{"main" | extra: {distribution: specs}}"""
    project = _project()
    groups = {"main": project["dependencies"], **project["optional-dependencies"]}
    return {g: dict(_parse(r) for r in reqs) for g, reqs in groups.items()}


def _bootstrap_extras() -> list[str]:
    text = (ROOT / "bin" / "bootstrap").read_text()
    m = re.search(r'install\s+(?:-\S+\s+)*-e\s+"\$here\[([^\]]+)\]"', text)
    assert m, "bin/bootstrap: no 'pip install -e \"$here[...]\"' line"
    return [e.strip() for e in m.group(1).split(",")]


def _imports(paths: list[Path]) -> dict[str, list[tuple[str, bool]]]:
    """Top-level third-party import names -> [(file:line, inside a function)] over ``paths``."""
    local = {p.stem for folder in ("tests", "tools") for p in (ROOT / folder).glob("*.py")}  # sibling modules
    local |= {"mmlab", "tests", "__future__"}
    found: dict[str, list[tuple[str, bool]]] = {}

    def visit(node: ast.AST, where: Path, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    found.setdefault(top, []).append((f"{where.relative_to(ROOT)}:{child.lineno}", inner))
            visit(child, where, inner)

    for path in paths:
        visit(ast.parse(path.read_text(), filename=str(path)), path, False)
    return found


def _dist(import_name: str) -> str:
    installed = importlib.metadata.packages_distributions().get(import_name)
    if installed:
        return _norm(installed[0])
    return _norm(IMPORT_TO_DIST.get(import_name, import_name))


def _requires(dist: str) -> set[str]:
    try:
        reqs = importlib.metadata.requires(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return set()
    return {_parse(r)[0] for r in reqs if "extra ==" not in r}


def _package_files() -> list[Path]:
    return sorted((ROOT / "mmlab").rglob("*.py"))


def _notebook_files() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def _test_files() -> list[Path]:
    return sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "tools").glob("*.py"))


# ------------------------------------------------------------------------------ tests
def test_environment_yml_mirrors_pyproject():
    """Every package bin/bootstrap installs (main + its extras) is in environment.yml with the same
    spec, and nothing else is; a pinned version (torch) satisfies pyproject and equals bootstrap's pin."""
    declared = _declared()
    extras = _bootstrap_extras()
    assert set(extras) == set(declared) - {"main"}, f"bin/bootstrap installs extras {extras}, pyproject has {sorted(declared)}"
    wanted: dict[str, tuple[str, ...]] = {}
    for group in ["main", *extras]:
        for name, specs in declared[group].items():
            assert name not in wanted, f"{name} is declared twice in pyproject.toml"
            wanted[name] = specs
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    env_specs = dict(_parse(p) for p in pip if not p.startswith("-"))  # not pip options (-e ., --extra-index-url)
    assert any(p.replace(" ", "") in ("-e.", "-e./") for p in pip), "environment.yml must install mmlab itself (-e .)"
    assert set(env_specs) == set(wanted), f"only in environment.yml: {sorted(set(env_specs) - set(wanted))}; " \
                                          f"only in pyproject.toml: {sorted(set(wanted) - set(env_specs))}"
    bootstrap = (ROOT / "bin" / "bootstrap").read_text()
    for name, specs in wanted.items():
        if env_specs[name] == specs:
            continue
        pins = [s for s in env_specs[name] if s.startswith("==")]
        assert len(pins) == 1 == len(env_specs[name]), f"{name}: pyproject {specs} vs environment.yml {env_specs[name]}"
        version = pins[0][2:]
        assert all(_satisfies(version, s) for s in specs), f"{name}: environment.yml pins {version}, pyproject wants {specs}"
        assert re.search(rf"{re.escape(name)}=={re.escape(version)}\b", bootstrap), (
            f"{name}: environment.yml pins {version} but bin/bootstrap does not install that version")
    python = [str(d) for d in env["dependencies"] if str(d).startswith("python")]
    assert python and all(_satisfies(p.split("=", 1)[1], _project()["requires-python"]) for p in python)


def test_requirement_parsing():
    assert _parse("scikit_learn >= 1.4, <2") == ("scikit-learn", ("<2", ">=1.4"))
    assert _parse("plotly[express]>=6.0; python_version>='3.11'") == ("plotly", (">=6.0",))
    assert _satisfies("2.13.0", ">=2.4") and not _satisfies("2.3.1", ">=2.4") and _satisfies("2.13.0+cpu", "==2.13")
    assert _satisfies("3.11", ">=3.11") and not _satisfies("3.10", ">=3.11")


def test_every_import_of_mmlab_and_the_notebooks_is_declared():
    declared = _declared()
    main, available = set(declared["main"]), set(declared["main"]) | set(declared["notebooks"])
    missing = []
    for name, sites in sorted(_imports(_package_files() + _notebook_files()).items()):
        dist = _dist(name)
        eager = [where for where, deferred in sites if not deferred and where.startswith("mmlab")]
        if eager and dist not in main:
            missing.append(f"{name} ({dist}) is imported at module level ({eager[0]}) but is not a main dependency")
        elif dist not in available and PROVIDED_BY.get(dist) not in available:
            missing.append(f"{name} ({dist}) is imported ({sites[0][0]}) but declared nowhere")
    assert not missing, "\n".join(missing)


def test_packages_said_to_be_provided_are_required_by_their_provider():
    for dist, provider in PROVIDED_BY.items():
        if _requires(provider):  # installed here: its metadata must name the package
            assert dist in _requires(provider), f"{provider} does not require {dist}: declare {dist} itself"


def test_main_dependencies_are_all_used_by_mmlab():
    used = {_dist(name) for name in _imports(_package_files())}
    unused = sorted(set(_declared()["main"]) - used)
    assert not unused, f"main dependencies that mmlab/ never imports: {unused} (drop them or move them to an extra)"


def test_every_package_of_an_extra_is_imported_or_has_a_reason():
    imported = {_dist(name) for name in _imports(_package_files() + _notebook_files() + _test_files())}
    for group, deps in _declared().items():
        if group == "main":
            continue
        idle = sorted(d for d in deps if d not in imported and d not in RUNTIME_ONLY)
        assert not idle, f"[{group}] declares {idle}, imported nowhere and not in RUNTIME_ONLY"


def test_test_only_packages_are_in_dev():
    declared = _declared()
    product = {_dist(name) for name in _imports(_package_files() + _notebook_files())}
    product |= {PROVIDED_BY[d] for d in product if d in PROVIDED_BY}
    wrong = []
    for name, sites in sorted(_imports(_test_files()).items()):
        dist = _dist(name)
        if dist in product:
            continue  # declared by the test above
        if dist not in declared["dev"]:
            where = [g for g, deps in declared.items() if dist in deps] or ["nowhere"]
            wrong.append(f"{name} ({dist}, {sites[0][0]}) is only used by tests/tools but declared in {where[0]}")
    assert not wrong, "\n".join(wrong)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bin/test" in readme and "bin/mmlab run" in readme
    assert re.search(r"^bin/test\s*$", ci, re.M), "CI must call exactly the README's test command"


def test_console_script_declared():
    assert _project()["scripts"]["mmlab"] == "mmlab.cli:main"

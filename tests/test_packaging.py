"""The project's own files install what it needs: pyproject and environment.yml agree; CI runs the README's test command."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _spec(req: str) -> str:
    return req.replace(" ", "").lower().replace("_", "-")


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("notebooks", "dev"):
        wanted += project["optional-dependencies"][extra]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pip = [p for p in pip if not p.startswith("-e")]
    env_specs = {_name(p): _spec(p) for p in pip}
    py_specs = {_name(p): _spec(p) for p in wanted}
    assert set(env_specs) == set(py_specs), (set(env_specs) ^ set(py_specs))
    for name, spec in py_specs.items():
        if name == "torch":  # environment.yml pins the CPU build the bootstrap installs
            assert env_specs[name] == "torch==2.13.0"
        else:
            assert env_specs[name] == spec, f"{name}: pyproject {spec} vs environment.yml {env_specs[name]}"
    assert any("python=3.11" in str(d) for d in env["dependencies"])


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bin/test" in readme and "bin/mmlab run" in readme
    assert re.search(r"^bin/test\s*$", ci, re.M), "CI must call exactly the README's test command"


def test_console_script_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["mmlab"] == "mmlab.cli:main"

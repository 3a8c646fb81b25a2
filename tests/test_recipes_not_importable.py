"""Recipes are shell scripts and configs that use the ``waveflow`` command: not a Python package,
never shipped in the wheel, never imported by the library."""

from __future__ import annotations

import ast
import re
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_recipes_hold_no_python():
    recipes = REPO / "recipes"
    assert recipes.is_dir()
    python_files = sorted(p.relative_to(REPO) for p in recipes.rglob("*.py"))
    assert python_files == []  # in particular no __init__.py: nothing to import


def test_recipes_are_not_packaged():
    pyproject = (REPO / "pyproject.toml").read_text()
    section = pyproject.split("[tool.setuptools.packages.find]", 1)[1].split("\n[", 1)[0]
    patterns = re.findall(r'"([^"]+)"', re.search(r"include\s*=\s*\[(.*?)\]", section, re.S).group(1))
    assert patterns and not any(fnmatch("recipes", pattern) for pattern in patterns)


def test_waveflow_never_imports_recipes():
    offenders = []
    for path in sorted((REPO / "waveflow").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "recipes"]
    assert offenders == []

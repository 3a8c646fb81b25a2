"""Declared dependencies match the code: the core imports only core packages, librosa is an `eval`
(and `dev`) extra used only by evaluation, capped below 1.0 with the installed version inside the
cap; optional packages sit in the extra that needs them; README and .ci/run install torch
consistently and state the supported Pythons."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
requirements = pytest.importorskip("packaging.requirements", reason="needs the 'packaging' package")

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "waveflow"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# import name -> distribution name, where they differ
DISTRIBUTION = {"yaml": "pyyaml"}


def _requirements(entries: list[str]) -> dict[str, requirements.Requirement]:
    parsed = [requirements.Requirement(entry) for entry in entries]
    return {r.name.lower(): r for r in parsed}


CORE = _requirements(PROJECT["dependencies"])
EXTRAS = {name: _requirements(entries) for name, entries in PROJECT["optional-dependencies"].items()}


def _imports(path: Path, *, module_level_only: bool) -> set[str]:
    """Top-level names of third-party packages imported by ``path`` (at import time, or anywhere)."""
    tree = ast.parse(path.read_text())
    if module_level_only:
        nodes = []
        for node in tree.body:
            if isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports never run
                continue
            nodes.extend(node.body if isinstance(node, ast.Try) else [node])
    else:
        nodes = list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name != "waveflow"}


def test_importing_any_module_needs_only_core_packages():
    declared = set(CORE)
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in _imports(path, module_level_only=True):
            assert DISTRIBUTION.get(name, name).lower() in declared, f"{path} imports {name} at import time"


def test_librosa_is_an_eval_extra_used_only_by_evaluation():
    assert "librosa" not in CORE
    for extra in ("eval", "dev"):  # evaluate's F0 and Griffin-Lim; the parity tests
        assert {str(s) for s in EXTRAS[extra]["librosa"].specifier} == {">=0.10", "<1"}
    users = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "librosa" in _imports(path, module_level_only=False)
    )
    assert users == ["cli/evaluate.py", "eval/f0.py", "eval/griffin_lim.py"]


def test_installed_librosa_is_inside_the_declared_range():
    """A librosa 1.x installed by hand (or a resolver ignoring the cap) fails here, not in a user's run."""
    installed = metadata.version("librosa")
    specifier = EXTRAS["eval"]["librosa"].specifier
    assert specifier.contains(installed), f"librosa {installed} is outside {specifier}"
    assert not specifier.contains("1.0.0")


@pytest.mark.parametrize(
    ("package", "extra"),
    [
        ("pesq", "eval"),
        ("pystoi", "eval"),
        ("onnx", "export"),
        ("onnxruntime", "export"),  # runs the exported graph (waveflow.infer.export.OnnxVocoder)
        ("matplotlib", "plot"),
        ("tensorboard", "train"),
    ],
)
def test_optional_packages_are_declared_in_their_extra(package, extra):
    assert package in EXTRAS[extra] and package not in CORE


def test_readme_and_ci_install_torch_consistently():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    setup = readme.split("```bash", 1)[1].split("```", 1)[0]
    first = setup.strip().splitlines()[0]
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in first  # CPU build anywhere
    ci_torch = [line for line in ci.splitlines() if re.match(r"python -m pip install .*torch==", line)]
    assert ci_torch == ["python -m pip install --quiet torch==2.13.0"]
    assert "`python -m pip install torch==2.13.0`" in readme  # the line CI uses, explained in the README
    extras = re.search(r'pip install --quiet -e "\.\[([a-z,]+)\]"', ci).group(1)
    assert f'python -m pip install -e ".[{extras}]"' in setup


def test_readme_states_the_supported_pythons():
    readme = (REPO / "README.md").read_text()
    assert PROJECT["requires-python"] == ">=3.10"
    assert (
        f'`requires-python = "{PROJECT["requires-python"]}"`' in readme and "Python 3.10 or newer" in readme
    )

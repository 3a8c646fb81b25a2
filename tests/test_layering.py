"""Import hygiene: the dependency direction of DESIGN.md §2, checked statically and in a fresh interpreter.

Layers (a module may import from its own layer or lower ones):
  0  config, errors, devices, latent, presets, flows, nn, audio.features
  1  model, losses
  2  checkpoint, safe_load, pretrained, interop, data, audio.io, audio (package)
  3  train, infer, eval
  4  cli, __main__
``flows`` never imports ``nn``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "waveflow"

LAYERS = [
    ("config", 0),
    ("errors", 0),
    ("fileio", 0),
    ("devices", 0),
    ("latent", 0),
    ("presets", 0),
    ("flows", 0),
    ("nn", 0),
    ("audio.features", 0),
    ("audio.stft", 0),
    ("model", 1),
    ("losses", 1),
    ("checkpoint", 2),
    ("safe_load", 2),
    ("pretrained", 2),
    ("interop", 2),
    ("data", 2),
    ("audio", 2),
    ("train", 3),
    ("infer", 3),
    ("eval", 3),
    ("cli", 4),
    ("__main__", 4),
]


def layer_of(module: str) -> int:
    """Layer of a dotted module name relative to the package (longest matching prefix wins)."""
    best, best_len = None, -1
    for prefix, layer in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
            best, best_len = layer, len(prefix)
    if best is None:
        raise AssertionError(f"waveflow.{module} is not assigned a layer in tests/test_layering.py")
    return best


def package_modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            out[".".join(parts)] = path
    return out


def imported_waveflow_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == "waveflow" or not name.startswith("waveflow."):
                continue
            found.add(name.removeprefix("waveflow."))
    return found


def test_every_module_imports_only_its_layer_or_below():
    modules = package_modules()
    violations = []
    for name, path in sorted(modules.items()):
        own = layer_of(name)
        for target in imported_waveflow_modules(path):
            # `from waveflow.flows import X` names a symbol, not a module: judge the module part.
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target not in modules:
                continue
            if layer_of(target) > own:
                violations.append(f"{name} (layer {own}) imports {target} (layer {layer_of(target)})")
            if name.startswith("flows") and (target == "nn" or target.startswith("nn.")):
                violations.append(f"{name} imports {target}: flows/ must not know the conditioner")
    assert not violations, "\n".join(violations)


def test_package_never_imports_recipes():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "recipes":
                raise AssertionError(f"{path} imports from recipes/")
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "recipes" for a in node.names):
                raise AssertionError(f"{path} imports recipes/")


FORBIDDEN_FOR_MODEL = [
    "soundfile",
    "tensorboard",
    "torch.utils.tensorboard",
    "onnx",
    "onnxruntime",
    "librosa",
    "waveflow.train",
    "waveflow.infer",
    "waveflow.cli",
    "waveflow.eval",
    "waveflow.data",
    "waveflow.checkpoint",
    "waveflow.interop",
    "waveflow.audio.io",
]


def test_importing_the_model_stays_light():
    code = (
        "import sys, json; import waveflow.model, waveflow.losses, waveflow.presets; "
        f"print(json.dumps(sorted(m for m in {FORBIDDEN_FOR_MODEL!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_the_static_check_sees_a_violation(tmp_path):
    """The AST scan must notice an upward import (guards against a vacuous layering test)."""
    bad = tmp_path / "bad.py"
    bad.write_text("from waveflow.train import loop\nimport waveflow.cli\n")
    assert imported_waveflow_modules(bad) == {"train", "train.loop", "cli"}
    assert layer_of("train.loop") > layer_of("model")

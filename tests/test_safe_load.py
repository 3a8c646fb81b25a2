"""One checkpoint reader (issue 11.3): ``waveflow.safe_load`` reads every file; ``interop.nvidia`` only maps keys.

The layout is checked statically (``nvidia.py`` defines none of the reader's names and imports no
unpickling or decompression module), and at run time: ``waveflow.checkpoint`` reads a waveflow
checkpoint and an NVIDIA fixture with every ``torch.load`` made by ``waveflow.safe_load``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import perturbed_model
from waveflow import checkpoint, presets, safe_load
from waveflow.interop import nvidia

PACKAGE = Path(__file__).resolve().parents[1] / "waveflow"


def _defined(path: Path) -> set[str]:
    """The names a module defines at its top level (functions, classes, assignments; not imports)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_nvidia_module_defines_none_of_the_readers_names():
    reader = _defined(PACKAGE / "safe_load.py")
    assert {"CheckpointSource", "StandIn", "load_any", "check_finite", "UnsafeCheckpointError"} <= reader
    duplicated = reader & _defined(PACKAGE / "interop" / "nvidia.py")
    assert not duplicated, f"interop/nvidia.py defines the safe reader's {sorted(duplicated)}"


def test_nvidia_module_does_no_unpickling_or_decompression_itself():
    imported = _imported_modules(PACKAGE / "interop" / "nvidia.py")
    assert not imported & {"pickle", "_compat_pickle", "lzma", "zipfile", "zlib"}, sorted(imported)


def test_moved_names_are_still_importable_from_interop():
    for name in ("UnsafeCheckpointError", "StandIn", "XZ_MAGIC", "restricted_pickle_module"):
        assert getattr(nvidia, name) is getattr(safe_load, name), name
    from waveflow.interop import UnsafeCheckpointError

    assert UnsafeCheckpointError is safe_load.UnsafeCheckpointError


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """Every ``torch.load`` call, by the module that made it; and the safe reader's entry points, by name."""
    calls: list[str] = []
    real_load = torch.load

    def spy_load(*args, **kwargs):
        calls.append(f"torch.load from {sys._getframe(1).f_globals['__name__']}")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy_load)
    for name in ("load_weights_only", "load_restricted"):
        real = getattr(safe_load, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(safe_load, name, spy)
    return calls


def test_waveflow_checkpoints_are_read_through_safe_load(tmp_path, loads):
    model = perturbed_model(presets.waveglow_tiny().replace(n_mels=8), seed=2, std=0.02)
    path = checkpoint.save_checkpoint(tmp_path / "m.pt", model, presets.hifigan_mel().replace(n_mels=8))
    checkpoint.load_checkpoint(path)
    assert loads.count("load_weights_only") == 2  # a meta-device preview, then the tensors
    loads.clear()
    loaded, _ = checkpoint.load_model(path)
    assert loads.count("load_weights_only") == 2
    assert {c for c in loads if c.startswith("torch.load")} == {"torch.load from waveflow.safe_load"}
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


@pytest.mark.fixtures
def test_nvidia_files_are_read_through_safe_load(nvidia_fixtures: Path, loads):
    ckpt = checkpoint.read_checkpoint(nvidia_fixtures / "waveglow_orig_checkpoint.pt.xz")
    assert ckpt.source_format == "nvidia-original"
    # Weights-only refuses the pickled glow.WaveGlow (on the preview); the allow list reads it twice.
    assert loads.count("load_weights_only") == 1 and loads.count("load_restricted") == 2
    assert {c for c in loads if c.startswith("torch.load")} == {"torch.load from waveflow.safe_load"}
    model = ckpt.build_model(fold_weight_norm=True)
    assert not any(".parametrizations." in k for k in model.state_dict())

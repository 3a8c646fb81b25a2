"""Loading a checkpoint never runs code from the file.

Each crafted file holds an object whose unpickling creates a marker file. A control load with a
plain ``torch.load(weights_only=False)`` proves the payload really executes; every waveflow load
path must refuse the file with a clear error and leave the marker uncreated.
"""

from __future__ import annotations

import io
import lzma
import pathlib
import pickle

import pytest
import torch

from tests.helpers import Payload
from waveflow import checkpoint, cli, errors
from waveflow.interop import nvidia


def _waveflow_like(evil):
    return {
        "format": "waveflow",
        "format_version": 1,
        "waveflow_version": "0.1.0",
        "config": {},
        "state_dict": {"upsample.conv.weight": evil},
        "weight_norm_folded": False,
        "training_state": None,
        "metadata": {},
    }


SHAPES = {
    "waveflow": (_waveflow_like, {}),
    "nvidia-original": (lambda evil: {"model": evil, "iteration": 1}, {}),
    "dle": (lambda evil: {"epoch": 1, "config": {}, "state_dict": evil}, {}),
    "legacy-format": (lambda evil: {"model": evil}, {"_use_new_zipfile_serialization": False}),
}


def _write(tmp_path: pathlib.Path, shape: str, marker: pathlib.Path, xz: bool, tag: str) -> pathlib.Path:
    build, kwargs = SHAPES[shape]
    buf = io.BytesIO()
    torch.save(build(Payload(marker)), buf, **kwargs)
    data = lzma.compress(buf.getvalue()) if xz else buf.getvalue()
    path = tmp_path / f"{tag}-{shape}.pt{'.xz' if xz else ''}"
    path.write_bytes(data)
    return path


def _plain_torch_load(path: pathlib.Path):
    data = path.read_bytes()
    if data.startswith(nvidia.XZ_MAGIC):
        data = lzma.decompress(data)
    return torch.load(io.BytesIO(data), weights_only=False)


def _load_checkpoint(path):
    checkpoint.load_checkpoint(path)


def _load_model(path):
    checkpoint.load_model(path)


def _load_nvidia(path):
    nvidia.load_nvidia_checkpoint(path)


LOADERS = {
    "load_checkpoint": _load_checkpoint,
    "load_model": _load_model,
    "load_nvidia_checkpoint": _load_nvidia,
    "waveflow convert": None,
}


@pytest.mark.parametrize("xz", [False, True], ids=["plain", "xz"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("loader", LOADERS)
def test_malicious_checkpoint_is_refused(tmp_path, capsys, loader, shape, xz):
    control_marker = tmp_path / "control-ran"
    control = _write(tmp_path, shape, control_marker, xz, "control")
    _plain_torch_load(control)
    assert control_marker.exists(), "the payload must execute under a plain torch.load (control)"

    marker = tmp_path / "payload-ran"
    path = _write(tmp_path, shape, marker, xz, "evil")
    if loader == "waveflow convert":
        out = tmp_path / "out.pt"
        assert cli.main(["convert", str(path), str(out)]) == errors.EXIT_CHECKPOINT
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0, err
        assert "refusing to load 'builtins.getattr'" in err
        assert not marker.exists() and not out.exists()
        return
    with pytest.raises(ValueError) as info:
        LOADERS[loader](path)
    assert not marker.exists()
    # Every loader names the global the pickle asks for (load_checkpoint too, after its
    # weights-only load refused the file) and never calls the file corrupt.
    assert isinstance(info.value, nvidia.UnsafeCheckpointError)
    assert isinstance(info.value, errors.CheckpointError)
    assert "refusing to load 'builtins.getattr'" in str(info.value)
    assert str(path) in str(info.value) and "corrupt" not in str(info.value)


@pytest.mark.parametrize(
    "module, name",
    [
        ("posix", "system"),
        ("os", "system"),
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("subprocess", "Popen"),
        ("torch", "load"),
        ("torch.serialization", "load"),
        ("torch.storage", "_load_from_bytes"),
        ("torch._utils", "_rebuild_from_type"),
        ("glow", "system"),
        ("glow", "torch"),
        ("evil.glow.x", "WaveGlow"),
        ("numpy.core.multiarray", "_reconstruct"),
    ],
)
def test_allow_list_refuses_everything_else(module, name):
    unpickler = nvidia.restricted_pickle_module("file.pt").Unpickler(io.BytesIO(b""))
    # os.system is pickled as posix.system: the message says both
    shown = f"'os.{name}' \\(pickled as {module}.{name}\\)" if module == "posix" else f"'{module}.{name}'"
    with pytest.raises(nvidia.UnsafeCheckpointError, match=f"refusing to load {shown} from file.pt"):
        unpickler.find_class(module, name)


@pytest.mark.parametrize(
    "module, name",
    [
        ("glow", "WaveGlow"),
        ("glow_old", "WN"),
        ("waveglow.glow", "Invertible1x1Conv"),
        ("torch.nn.modules.conv", "Conv1d"),
    ],
)
def test_allowed_classes_become_inert_stand_ins(module, name):
    unpickler = nvidia.restricted_pickle_module("file.pt").Unpickler(io.BytesIO(b""))
    cls = unpickler.find_class(module, name)
    assert issubclass(cls, nvidia.StandIn) and cls.nvidia_class == f"{module}.{name}"
    obj = cls.__new__(cls)
    obj.__setstate__({"__class__": int, "forward": "x", "_parameters": {}})
    assert type(obj) is cls and obj.forward == "x"  # state is stored, never interpreted


def test_plain_load_function_is_restricted_too(tmp_path):
    """torch's legacy loader reads its header with ``pickle_module.load``: that must be guarded as well."""
    marker = tmp_path / "payload-ran"
    with pytest.raises(nvidia.UnsafeCheckpointError):
        nvidia.restricted_pickle_module("file.pt").load(io.BytesIO(pickle.dumps(Payload(marker), protocol=2)))
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    for load in (_load_nvidia, _load_model, _load_checkpoint):
        with pytest.raises(ValueError, match="TorchScript"):
            load(path)

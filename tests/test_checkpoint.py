"""Self-describing checkpoints: round trips, atomic writes, clear errors."""

from __future__ import annotations

import io
import lzma
import os
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import perturbed_model
from waveflow import checkpoint, presets
from waveflow.checkpoint import FORMAT_VERSION, load_checkpoint, load_model, save_checkpoint
from waveflow.config import MelConfig, VocoderConfig
from waveflow.errors import CheckpointError
from waveflow.model import WaveGlow

N_MELS = 16
MEL = presets.hifigan_mel().replace(n_mels=N_MELS)  # not the default: the file must remember it


@pytest.fixture
def model() -> WaveGlow:
    return perturbed_model(presets.waveglow_tiny().replace(n_mels=N_MELS), seed=1, std=0.05)  # no identities


def _inputs(m: WaveGlow):
    g = torch.Generator().manual_seed(5)
    mel = torch.randn(2, N_MELS, 3, generator=g)
    audio = 0.1 * torch.randn(2, 3 * m.hop_length, generator=g)
    return audio, mel


def _outputs(m: WaveGlow):
    audio, mel = _inputs(m)
    with torch.no_grad():
        z, logdet = m(audio, mel)
        sample = m.infer(mel, sigma=0.7, generator=torch.Generator().manual_seed(9))
    return z, logdet, sample


def _assert_same_outputs(a: WaveGlow, b: WaveGlow) -> None:
    for x, y in zip(_outputs(a), _outputs(b)):
        assert torch.equal(x, y)


def test_round_trip_gives_identical_outputs(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.pt", model, MEL, metadata={"note": "hello", "epoch": 3})
    assert path == tmp_path / "m.pt"
    ckpt = load_checkpoint(path)
    assert ckpt.config == VocoderConfig(model=model.config, mel=MEL)
    assert ckpt.format_version == FORMAT_VERSION
    assert ckpt.metadata == {"note": "hello", "epoch": 3}
    assert ckpt.training_state is None and not ckpt.weight_norm_folded and ckpt.path == path
    loaded, config = load_model(path)
    assert config.mel == MEL and not loaded.training
    _assert_same_outputs(loaded, model)
    _assert_same_outputs(ckpt.build_model(), model)


def test_file_holds_only_plain_data(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.pt", model, MEL)
    raw = torch.load(path, weights_only=True)  # no pickled classes inside
    assert raw["format"] == "waveflow"
    assert raw["config"] == VocoderConfig(model=model.config, mel=MEL).to_dict()


def test_training_state_round_trip(tmp_path, model):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    audio, mel = _inputs(model)
    model.train()
    loss = model.nll(audio, mel).mean()
    loss.backward()
    opt.step()
    state = {
        "step": 17,
        "optimizer": opt.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
        "losses": [1.5, 1.25],
    }
    path = save_checkpoint(tmp_path / "m.pt", model, MEL, training_state=state)
    back = load_checkpoint(path).training_state
    assert back["step"] == 17 and back["losses"] == [1.5, 1.25]
    assert torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    assert back["rng"]["python"] == state["rng"]["python"]
    restored, original = random.Random(), random.Random()
    restored.setstate(back["rng"]["python"])  # raises unless it is still a valid state (a tuple)
    original.setstate(state["rng"]["python"])
    assert [restored.random() for _ in range(3)] == [original.random() for _ in range(3)]
    opt2 = torch.optim.Adam(WaveGlow(model.config).parameters(), lr=1e-3)
    opt2.load_state_dict(back["optimizer"])
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(opt2.state_dict()["state"][0][k], v)


def test_unloadable_training_state_is_refused_before_writing(tmp_path, model):
    path = tmp_path / "m.pt"
    with pytest.raises(ValueError, match=r"training_state\['rng'\]\['numpy'\]\[1\] is a numpy.ndarray"):
        legacy_state = np.random.get_state()  # noqa: NPY002  (a tuple holding an ndarray: the point)
        save_checkpoint(path, model, MEL, training_state={"rng": {"numpy": legacy_state}})
    assert list(tmp_path.iterdir()) == []


def test_mel_must_match_the_model(tmp_path, model):
    with pytest.raises(ValueError, match="n_mels"):
        save_checkpoint(tmp_path / "m.pt", model, MelConfig())  # 80 mels for a 16-mel model
    assert list(tmp_path.iterdir()) == []


def test_folded_weight_norm_round_trip(tmp_path, model):
    expected = _outputs(model)
    model.remove_weight_norm()
    path = save_checkpoint(tmp_path / "m.pt", model, MEL)
    assert load_checkpoint(path).weight_norm_folded
    loaded, _ = load_model(path)
    assert not any("parametrizations" in k for k in loaded.state_dict())
    for x, y in zip(_outputs(loaded), expected):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def test_load_model_can_fold_weight_norm(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.pt", model, MEL)
    loaded, _ = load_model(path, fold_weight_norm=True)
    assert not any("parametrizations" in k for k in loaded.state_dict())
    for x, y in zip(_outputs(loaded), _outputs(model)):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def test_xz_compressed_checkpoint_loads(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.pt", model, MEL)
    xz = tmp_path / "m.pt.xz"
    xz.write_bytes(lzma.compress(path.read_bytes()))
    _assert_same_outputs(load_model(xz)[0], model)
    assert load_checkpoint(xz).config.mel == MEL


def test_mel_config_override_is_refused_for_waveflow_files(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.pt", model, MEL)
    with pytest.raises(ValueError, match="its own mel settings"):
        load_model(path, mel_config=MEL)


# -- atomic writes -------------------------------------------------------------------------------
def _failing_save(obj, f, *args, **kwargs):
    f.write(b"PK\x03\x04 partial data")
    raise OSError("disk full (simulated)")


@pytest.mark.parametrize("where", ["torch.save", "os.replace"])
def test_failed_write_leaves_old_file_and_no_temp(tmp_path, model, monkeypatch, where):
    path = save_checkpoint(tmp_path / "m.pt", model, MEL, metadata={"version": "old"})
    before = path.read_bytes()
    if where == "torch.save":
        monkeypatch.setattr(torch, "save", _failing_save)
    else:

        def failing_replace(src, dst):
            raise OSError("rename failed (simulated)")

        monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, model, MEL, metadata={"version": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    assert load_checkpoint(path).metadata == {"version": "old"}


def test_overwrite_replaces_the_file(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.pt", model, MEL, metadata={"version": "old"})
    save_checkpoint(path, model, MEL, metadata={"version": "new"})
    assert load_checkpoint(path).metadata == {"version": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_missing_directory(tmp_path, model):
    with pytest.raises(FileNotFoundError, match="nope"):
        save_checkpoint(tmp_path / "nope" / "m.pt", model, MEL)


# -- errors on load ------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights")
    with pytest.raises(ValueError, match="notes.pt is not a PyTorch checkpoint file"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file(tmp_path, model, keep):
    path = save_checkpoint(tmp_path / "m.pt", model, MEL)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    for load in (load_checkpoint, load_model):
        with pytest.raises(
            CheckpointError,
            match=r"m\.pt is not a readable PyTorch checkpoint: the file is corrupt or truncated",
        ):
            load(path)


def _payload(model, **changes):
    raw = {
        "format": "waveflow",
        "format_version": FORMAT_VERSION,
        "waveflow_version": "0.1.0",
        "config": VocoderConfig(model=model.config, mel=MEL).to_dict(),
        "state_dict": model.state_dict(),
        "weight_norm_folded": False,
        "training_state": None,
        "metadata": {},
    }
    raw.update(changes)
    return raw


def test_newer_format_version(tmp_path, model):
    path = tmp_path / "future.pt"
    torch.save(_payload(model, format_version=FORMAT_VERSION + 1, waveflow_version="9.0"), path)
    with pytest.raises(
        ValueError, match=rf"format {FORMAT_VERSION + 1} \(written by waveflow 9.0\).*Upgrade"
    ):
        load_checkpoint(path)


def test_config_with_unknown_key(tmp_path, model):
    config = VocoderConfig(model=model.config, mel=MEL).to_dict()
    config["model"]["n_wheels"] = 4
    path = tmp_path / "odd.pt"
    torch.save(_payload(model, config=config), path)
    with pytest.raises(ValueError, match=r"odd.pt: invalid config: .*n_wheels"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_config(tmp_path, model):
    state = dict(model.state_dict())
    state.pop("upsample.conv.bias")
    path = tmp_path / "bad.pt"
    torch.save(_payload(model, state_dict=state), path)
    with pytest.raises(
        ValueError, match=r"bad.pt: the weights do not fit the stored config.*upsample.conv.bias"
    ):
        load_model(path)


def test_other_torch_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a waveflow checkpoint"):
        load_checkpoint(path)


def test_cuda_saved_checkpoint_loads_with_map_location(tmp_path, model, monkeypatch):
    """A checkpoint written on a GPU names CUDA storages; the default map_location brings it to the CPU."""
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    path = save_checkpoint(tmp_path / "gpu.pt", model, MEL)
    monkeypatch.undo()
    with zipfile.ZipFile(path) as zf:
        pickled = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    assert b"cuda:0" in pickled
    ckpt = load_checkpoint(path)
    assert all(t.device.type == "cpu" for t in ckpt.state_dict.values())
    _assert_same_outputs(load_model(path)[0], model)


def test_nvidia_files_are_pointed_to_convert(nvidia_fixtures: Path):
    for name in ("waveglow_orig_checkpoint.pt.xz", "waveglow_dle_hub_checkpoint.pt.xz"):
        with pytest.raises(ValueError, match=r"NVIDIA.*waveflow convert .*load_model"):
            load_checkpoint(nvidia_fixtures / name)


def test_load_model_reads_nvidia_files_with_tacotron2_mel(nvidia_fixtures: Path):
    model, config = load_model(nvidia_fixtures / "waveglow_dle_hub_checkpoint.pt.xz")
    assert config.mel == presets.tacotron2_mel() and not model.training
    _, config = load_model(
        nvidia_fixtures / "waveglow_dle_hub_checkpoint.pt.xz", mel_config=presets.espnet_mel()
    )
    assert config.mel == presets.espnet_mel()
    with pytest.raises(ValueError, match="mel_config does not fit"):
        load_model(nvidia_fixtures / "waveglow_dle_hub_checkpoint.pt.xz", mel_config=MEL)


def test_atomic_save_of_arbitrary_payload(tmp_path):
    path = checkpoint.atomic_torch_save({"x": torch.arange(3)}, tmp_path / "x.pt")
    assert torch.equal(torch.load(io.BytesIO(path.read_bytes()), weights_only=True)["x"], torch.arange(3))

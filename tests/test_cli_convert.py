"""``waveflow convert``: NVIDIA checkpoints in, waveflow checkpoints out, same outputs."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from waveflow import cli, presets
from waveflow.checkpoint import load_checkpoint, load_model, save_checkpoint
from waveflow.model import WaveGlow

pytestmark = pytest.mark.fixtures

CHECKPOINTS = {
    "original": "waveglow_orig_checkpoint.pt.xz",
    "dle": "waveglow_dle_hub_checkpoint.pt.xz",
}


@functools.cache
def _reference(folder: Path) -> dict[str, torch.Tensor]:
    with np.load(folder / "waveglow_io.npz") as npz:
        return {k: torch.from_numpy(npz[k]) for k in ("audio", "mel", "z", "nown_z")}


def _z(model: WaveGlow, ref: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(ref["audio"], ref["mel"])[0]


@pytest.mark.parametrize("fmt", CHECKPOINTS)
def test_convert_then_load_reproduces_nvidia(nvidia_fixtures, tmp_path, capsys, fmt):
    out = tmp_path / "converted.pt"
    assert cli.main(["convert", str(nvidia_fixtures / CHECKPOINTS[fmt]), str(out)]) == 0
    printed = capsys.readouterr().out
    assert ("nvidia-original" if fmt == "original" else "nvidia-dle") in printed
    assert "7,734,248 parameters" in printed and str(out) in printed

    ckpt = load_checkpoint(out)
    assert ckpt.config.mel == presets.tacotron2_mel()
    assert ckpt.metadata["source_format"] == ("nvidia-original" if fmt == "original" else "nvidia-dle")
    model, _ = load_model(out)
    ref = _reference(nvidia_fixtures)
    z = _z(model, ref)
    assert (z - ref["z"]).abs().max() <= 1e-5


def test_convert_options(nvidia_fixtures, tmp_path):
    out = tmp_path / "folded.pt"
    src = nvidia_fixtures / CHECKPOINTS["dle"]
    assert cli.main(["convert", str(src), str(out), "--mel-preset", "hifigan", "--fold-weight-norm"]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.config.mel == presets.hifigan_mel()
    assert ckpt.weight_norm_folded
    assert not any("parametrizations" in k for k in ckpt.state_dict)
    model, _ = load_model(out)
    ref = _reference(nvidia_fixtures)
    assert (_z(model, ref) - ref["nown_z"]).abs().max() <= 1e-5


def test_convert_errors(nvidia_fixtures, tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    assert cli.main(["convert", str(missing), str(tmp_path / "out.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err

    same = tmp_path / "same.pt"
    same.write_bytes((nvidia_fixtures / CHECKPOINTS["dle"]).read_bytes())
    assert cli.main(["convert", str(same), str(same)]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()


def test_convert_strips_a_training_checkpoint_to_its_model(tmp_path, capsys):
    """A waveflow training checkpoint keeps model, mel, step and CPU time; the optimizer goes."""

    model = WaveGlow(presets.compact_tiny())
    training_state = {"trainer": {"step": 12}, "optimizer": {"state": {}, "param_groups": []}}
    ours = save_checkpoint(
        tmp_path / "ours.pt", model, presets.tacotron2_mel(), training_state=training_state,
        metadata={"cpu_seconds": 3.5, "experiment": {"x": 1}},
    )  # fmt: skip
    out = tmp_path / "model.pt"
    assert cli.main(["convert", str(ours), str(out), "--fold-weight-norm"]) == 0
    assert "training step 12" in capsys.readouterr().out
    stripped = load_checkpoint(out)
    assert stripped.training_state is None and stripped.weight_norm_folded
    assert stripped.metadata["training_step"] == 12 and stripped.metadata["cpu_seconds"] == 3.5
    a, b = model.eval(), stripped.build_model()
    mel, z = torch.randn(1, 80, 3), torch.randn(1, 16, 48)
    with torch.no_grad():
        torch.testing.assert_close(b.decode(z, mel), a.decode(z, mel), atol=1e-5, rtol=0)

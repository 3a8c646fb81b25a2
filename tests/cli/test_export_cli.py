"""``waveflow export`` and ``waveflow synthesize --onnx``.

An ONNX file exported on the command line, run by ``synthesize --onnx`` on onnxruntime, writes the
same WAV files as ``synthesize`` with the checkpoint and the same seed: within one 16-bit step plus
the export's float parity (1e-4, as tests/infer/test_export.py holds the API to), with the denoiser
too and with a TTS front end's mels; a TorchScript export matches the checkpoint within 1e-4.
Unknown formats, missing packages, unexportable checkpoints and unusable ONNX files end with one
line and the documented exit code.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.cli.conftest import speech_mel
from waveflow import cli
from waveflow.infer.export import OnnxVocoder
from waveflow.infer.vocoder import Vocoder

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

# Float parity of the exported graph (the API's export tests use the same), plus one 16-bit step
# for the WAV quantisation of two floats that straddle a rounding boundary.
FLOAT_TOL = 1e-4
WAV_TOL = FLOAT_TOL + 1 / 32768


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    """The tiny checkpoint exported by the CLI, once for the module."""
    out = tmp_path_factory.mktemp("export") / "sub" / "tiny.onnx"  # the folder is created
    assert cli.main(["-q", "export", str(checkpoint), str(out)]) == 0
    return out


def _mels(folder, lengths=(2000, 5000, 3300)):
    folder.mkdir()
    for i, n in enumerate(lengths):
        np.save(folder / f"m{i}.npy", speech_mel(n, seed=i))
    return folder


def _read(folder):
    return {p.stem: sf.read(p, dtype="float64")[0] for p in sorted(folder.glob("*.wav"))}


def test_exported_onnx_synthesizes_what_the_checkpoint_does(checkpoint, exported, tmp_path):
    mels = _mels(tmp_path / "mels")
    common = [str(mels), "--seed", "4", "--batch-size", "2", "-q"]
    for extra, name in (([], "plain"), (["--denoiser-strength", "0.05"], "denoised")):
        torch_out, onnx_out = tmp_path / f"torch_{name}", tmp_path / f"onnx_{name}"
        assert cli.main(["synthesize", str(checkpoint), *common, *extra, "-o", str(torch_out)]) == 0
        assert cli.main(["synthesize", "--onnx", str(exported), *common, *extra, "-o", str(onnx_out)]) == 0
        expected, actual = _read(torch_out), _read(onnx_out)
        assert sorted(expected) == sorted(actual) == ["m0", "m1", "m2"]
        for stem, audio in expected.items():
            assert actual[stem].shape == audio.shape
            assert audio.std() > 0.05  # real audio, not silence
            np.testing.assert_allclose(actual[stem], audio, atol=WAV_TOL, rtol=0, err_msg=f"{name} {stem}")
    # The denoiser changed the audio in both paths alike (it was not a no-op).
    plain, denoised = _read(tmp_path / "onnx_plain"), _read(tmp_path / "onnx_denoised")
    assert np.abs(plain["m1"] - denoised["m1"]).max() > 1e-3


def test_onnx_vocoder_matches_the_torch_vocoder_in_float(checkpoint, exported):
    torch_vocoder = Vocoder.from_checkpoint(checkpoint)
    onnx_vocoder = OnnxVocoder(exported, threads=1)
    assert (onnx_vocoder.sample_rate, onnx_vocoder.hop_length, onnx_vocoder.n_mels) == (16000, 128, 40)
    assert onnx_vocoder.mel_config == torch_vocoder.mel_config
    mel = torch.stack([torch.from_numpy(speech_mel(4000, seed=s)) for s in (7, 8)])
    lengths = torch.tensor([mel.shape[2], mel.shape[2] - 9])  # a padded batch
    expected, expected_lengths = torch_vocoder(mel, lengths, generator=torch.Generator().manual_seed(5))
    actual, actual_lengths = onnx_vocoder(mel, lengths, generator=torch.Generator().manual_seed(5))
    assert torch.equal(actual_lengths, expected_lengths)
    torch.testing.assert_close(actual, expected, atol=FLOAT_TOL, rtol=0)
    assert torch.count_nonzero(actual[1, int(actual_lengths[1]) :]) == 0


@pytest.mark.filterwarnings("ignore:.*torch.jit.load.*:DeprecationWarning")
def test_export_torchscript(checkpoint, tmp_path):
    out = tmp_path / "tiny.pt"
    assert cli.main(["-q", "export", str(checkpoint), str(out)]) == 0
    extra = {"waveflow.json": ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra["waveflow.json"])
    assert meta["vocoder"]["mel"]["sample_rate"] == 16000 and meta["n_group"] == 4
    vocoder = Vocoder.from_checkpoint(checkpoint, engine="plain")
    mel = torch.from_numpy(speech_mel(3000, seed=3))[None]
    z = 0.6 * torch.randn(1, 4, mel.shape[2] * 32, generator=torch.Generator().manual_seed(1))
    expected, _ = vocoder(mel, z=z)
    with torch.no_grad():
        actual = scripted(mel, z)
    torch.testing.assert_close(actual, expected, atol=FLOAT_TOL, rtol=0)
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed


def _one_error_line(capsys, command):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"waveflow {command}: error:"), err
    return err[0]


def test_export_errors(checkpoint, tmp_path, capsys, monkeypatch):
    ckpt = str(checkpoint)
    cases = [  # (argv, exit code, part of the message)
        (["export", ckpt, str(tmp_path / "x.bin")], 2, "unknown export format '.bin'"),
        (["export", ckpt, str(tmp_path / "x")], 2, "'(no suffix)'"),
        (["export", ckpt, str(tmp_path / "x.pt"), "--opset", "13"], 2, "--opset apply to ONNX export only"),
        (["export", ckpt, str(tmp_path / "x.onnx"), "--opset", "9"], 2, "--opset must be >= 13"),
        (
            ["export", ckpt, str(tmp_path / "x.onnx"), "--example-frames", "0"],
            2,
            "--example-frames must be >= 1",
        ),
        (["export", str(tmp_path / "missing.pt"), str(tmp_path / "x.onnx")], 2, "checkpoint not found"),
        (["export", ckpt, str(tmp_path)], 2, "unknown export format"),
        (["export", "default", str(tmp_path / "x.onnx")], 2, "compact family cannot be exported"),
    ]
    (tmp_path / "folder.onnx").mkdir()
    cases.append((["export", ckpt, str(tmp_path / "folder.onnx")], 4, "is a folder"))
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    cases.append(
        (["export", str(tmp_path / "junk.pt"), str(tmp_path / "x.onnx")], 3, "is not a PyTorch checkpoint")
    )
    for argv, code, expected in cases:
        assert cli.main(argv) == code, argv
        assert expected in _one_error_line(capsys, "export"), argv
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the package were not installed
    assert cli.main(["export", ckpt, str(tmp_path / "x.onnx")]) == 2
    assert "pip install onnx (or waveflow[export])" in _one_error_line(capsys, "export")
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".onnx", ".tmp") and p.is_file()]


def test_synthesize_onnx_errors(checkpoint, exported, tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "m.npy", speech_mel(2000))
    mel, out = str(tmp_path / "m.npy"), str(tmp_path / "out")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07 not a model" * 10)
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["mel"], ["audio"])],
        "foreign",
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, None)],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "foreign.onnx"))
    cases = [
        (["--onnx", str(tmp_path / "missing.onnx"), mel], 2, "ONNX file not found"),
        (["--onnx", str(tmp_path / "junk.onnx"), mel], 3, "cannot load ONNX model"),
        (["--onnx", str(tmp_path / "foreign.onnx"), mel], 3, "has no waveflow metadata"),
        (["--onnx", str(exported), mel, "--precision", "bf16"], 2, "drop --precision"),
        (
            ["--onnx", str(exported), mel, "--engine", "plain", "--device", "cuda"],
            2,
            "drop --engine, --device",
        ),
        ([mel, "--stats", mel], 2, "--stats needs --mel-from"),
        ([], 2, "missing CKPT"),
    ]
    for argv, code, expected in cases:
        assert cli.main(["synthesize", *argv, "-o", out]) == code, argv
        assert expected in _one_error_line(capsys, "synthesize"), argv
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert cli.main(["synthesize", "--onnx", str(exported), mel, "-o", out]) == 2
    assert "needs onnxruntime" in _one_error_line(capsys, "synthesize")

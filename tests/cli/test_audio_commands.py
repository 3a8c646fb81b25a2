"""``resynthesize``, ``extract-mels``, ``inspect``, ``encode``/``decode``: outputs, values, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.cli.conftest import MEL, SAMPLE_RATE, mel_of, tiny_model, write_speech_wav
from tests.helpers import one_error_line
from waveflow import cli, presets
from waveflow.audio.features import MelSpectrogram
from waveflow.audio.io import load_audio
from waveflow.infer.vocoder import Vocoder


# -- resynthesize ---------------------------------------------------------------------------------
def test_resynthesize_keeps_the_duration_and_follows_the_python_api(checkpoint, tmp_path):
    write_speech_wav(tmp_path / "in.wav", 7000)
    out = tmp_path / "sub" / "out.wav"
    assert cli.main(["resynthesize", str(checkpoint), str(tmp_path / "in.wav"), str(out), "--seed", "4"]) == 0
    written, sample_rate = load_audio(out)
    assert sample_rate == SAMPLE_RATE and written.shape == (7000,)
    vocoder = Vocoder.from_checkpoint(checkpoint)
    recorded, _ = load_audio(tmp_path / "in.wav")
    expected, _ = vocoder(vocoder.mel(recorded, SAMPLE_RATE), generator=torch.Generator().manual_seed(4))
    assert np.abs(written - expected[0, :7000].numpy().clip(-1, 1)).max() <= 1 / 32768


def test_resynthesize_resamples_with_a_notice(checkpoint, tmp_path, capsys):
    write_speech_wav(tmp_path / "in.wav", 22050, sample_rate=22050)
    assert cli.main(["resynthesize", str(checkpoint), str(tmp_path / "in.wav"), str(tmp_path / "o.wav")]) == 0
    assert "22050 Hz; resampling to the checkpoint's 16000 Hz" in capsys.readouterr().err
    assert sf.info(tmp_path / "o.wav").frames == 16000 and sf.info(tmp_path / "o.wav").samplerate == 16000


def test_resynthesize_refuses_non_audio(checkpoint, tmp_path, capsys):
    (tmp_path / "text.wav").write_text("hello")
    assert (
        cli.main(["resynthesize", str(checkpoint), str(tmp_path / "text.wav"), str(tmp_path / "o.wav")]) == 2
    )
    assert "is not a readable audio file" in one_error_line(capsys, "resynthesize")
    assert not (tmp_path / "o.wav").exists()
    assert (
        cli.main(["resynthesize", str(checkpoint), str(tmp_path / "none.wav"), str(tmp_path / "o.wav")]) == 2
    )
    assert "not found" in one_error_line(capsys, "resynthesize")


# -- extract-mels ----------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["tacotron2", "hifigan", "espnet"])
def test_extract_mels_with_a_preset_equals_the_front_end(tmp_path, preset):
    config = getattr(presets, f"{preset}_mel")()
    write_speech_wav(tmp_path / "a.wav", 9000, sample_rate=config.sample_rate)
    out = tmp_path / "mels"
    assert cli.main(["extract-mels", "--preset", preset, str(tmp_path / "a.wav"), "-o", str(out)]) == 0
    mel = np.load(out / "a.npy")
    audio, _ = load_audio(tmp_path / "a.wav")
    expected = MelSpectrogram.from_config(config)(torch.from_numpy(audio)).numpy()
    assert mel.dtype == np.float32 and mel.shape == expected.shape == (80, expected.shape[1])
    np.testing.assert_array_equal(mel, expected)


def test_extract_mels_with_a_checkpoint_filelist_pt_and_time_first(checkpoint, tmp_path):
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for i, n in enumerate((5000, 6100)):
        write_speech_wav(wavs / f"u{i}.wav", n, seed=i)
    (tmp_path / "test.txt").write_text("wavs/u0.wav|first sentence\nwavs/u1.wav|second one\n")
    out = tmp_path / "mels"
    argv = [
        "extract-mels",
        "--checkpoint",
        str(checkpoint),
        "--filelist",
        str(tmp_path / "test.txt"),
        "-o",
        str(out),
    ]
    assert cli.main([*argv, "--format", "pt", "--time-first"]) == 0
    for i in range(2):
        audio, _ = load_audio(wavs / f"u{i}.wav")
        stored = torch.load(out / f"u{i}.pt", weights_only=True)
        assert stored.dtype == torch.float32
        np.testing.assert_array_equal(stored.numpy(), mel_of(audio).T)  # (frames, n_mels)


def test_extract_mels_resamples_and_reports_bad_files(checkpoint, tmp_path, capsys):
    write_speech_wav(tmp_path / "fast.wav", 22050, sample_rate=22050)
    write_speech_wav(tmp_path / "ok.wav", 4000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    out = tmp_path / "mels"
    assert cli.main(["extract-mels", "--checkpoint", str(checkpoint), str(tmp_path), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "resampling 22050 Hz input to 16000 Hz" in err
    assert "1 of 3 file(s) failed" in err and "broken.wav" in err
    assert sorted(p.name for p in out.iterdir()) == ["fast.npy", "ok.npy"]
    resampled, _ = load_audio(tmp_path / "fast.wav", SAMPLE_RATE)
    np.testing.assert_array_equal(np.load(out / "fast.npy"), mel_of(resampled))
    # A single non-audio input is an input error: one line, exit code 2.
    assert (
        cli.main(["extract-mels", "--preset", "tacotron2", str(tmp_path / "broken.wav"), "-o", str(out)]) == 2
    )
    assert "broken.wav" in one_error_line(capsys, "extract-mels")


# -- inspect -------------------------------------------------------------------------------------------
def test_inspect_text_and_json(checkpoint, capsys):
    model = tiny_model()
    total = sum(p.numel() for p in model.parameters())
    gains = sum(p.numel() for n, p in model.named_parameters() if n.endswith("original0"))
    assert cli.main(["inspect", str(checkpoint)]) == 0
    text = capsys.readouterr().out
    assert "waveflow checkpoint, format 1" in text
    assert f"{total - gains:,} without weight-norm gains ({total:,} stored" in text
    assert "16000 Hz" in text and "step 7" in text and "purpose: cli tests" in text
    assert f"receptive     {model.receptive_field:,} samples" in text

    assert cli.main(["inspect", str(checkpoint), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "waveflow" and info["training_step"] == 7
    assert info["parameters"] == {
        "without_weight_norm": total - gains,
        "with_weight_norm": total,
        "weight_norm_folded": False,
    }
    assert info["config"]["mel"] == MEL.to_dict() and info["sample_rate"] == SAMPLE_RATE
    assert info["receptive_field_samples"] == model.receptive_field
    assert info["metadata"] == {"purpose": "cli tests"}


def test_inspect_nvidia_checkpoint(nvidia_fixtures, capsys):
    assert cli.main(["inspect", str(nvidia_fixtures / "waveglow_orig_checkpoint.pt.xz"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "nvidia-original" and info["training_step"] == 2000
    # The fixture README: 7,734,248 parameters as registered (g and v).
    assert info["parameters"]["with_weight_norm"] == 7_734_248
    assert "assumed tacotron2" in info["mel_source"]


def test_inspect_errors(tmp_path, capsys):
    assert cli.main(["inspect", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in one_error_line(capsys, "inspect")
    (tmp_path / "x.pt").write_text("just text")
    assert cli.main(["inspect", str(tmp_path / "x.pt")]) == 3  # a bad checkpoint
    assert "not a PyTorch checkpoint" in one_error_line(capsys, "inspect")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    assert cli.main(["inspect", str(tmp_path / "other.pt")]) == 3
    one_error_line(capsys, "inspect")


# -- encode / decode -------------------------------------------------------------------------------------
def test_encode_decode_round_trip(checkpoint, tmp_path):
    write_speech_wav(tmp_path / "in.wav", 9001)
    assert cli.main(["encode", str(checkpoint), str(tmp_path / "in.wav"), str(tmp_path / "z.npz")]) == 0
    with np.load(tmp_path / "z.npz", allow_pickle=False) as data:
        frames = data["mel"].shape[1]
        assert data["mel"].shape == (40, 9001 // 128 + 1)
        assert data["z"].shape == (4, frames * 128 // 4)
        assert int(data["num_samples"]) == 9001 and int(data["sample_rate"]) == SAMPLE_RATE
        assert json.loads(str(data["metadata"]))["source"] == str(tmp_path / "in.wav")
        z = data["z"]
    assert 0.1 < z.std() < 10  # a latent, not the audio itself (the model is not an identity)
    argv = [
        "decode",
        str(checkpoint),
        str(tmp_path / "z.npz"),
        str(tmp_path / "out.wav"),
        "--raw",
        str(tmp_path / "a.npy"),
    ]
    assert cli.main(argv) == 0
    original, _ = load_audio(tmp_path / "in.wav")
    raw = np.load(tmp_path / "a.npy")
    assert raw.shape == original.shape
    assert np.abs(raw - original).max() <= 1e-4
    np.testing.assert_array_equal(load_audio(tmp_path / "out.wav")[0], original)  # same 16-bit grid


def test_decode_errors(checkpoint, tmp_path, capsys):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    assert cli.main(["decode", str(checkpoint), str(tmp_path / "other.npz"), str(tmp_path / "o.wav")]) == 2
    assert "was it written by `waveflow encode`" in one_error_line(capsys, "decode")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    assert cli.main(["decode", str(checkpoint), str(tmp_path / "junk.npz"), str(tmp_path / "o.wav")]) == 2
    assert "not a readable .npz" in one_error_line(capsys, "decode")
    assert not (tmp_path / "o.wav").exists()

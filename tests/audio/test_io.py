"""Audio files: round trip, resampling, downmix, 16-bit conversion, atomic writes, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.helpers import speech_like
from waveflow.audio import io as audio_io
from waveflow.audio.io import list_audio_files, load_audio, to_pcm16, write_wav


def test_round_trip(tmp_path):
    audio = speech_like(5000)
    path = tmp_path / "x.wav"
    assert write_wav(path, audio, 22050) == 0
    loaded, sample_rate = load_audio(path)
    assert sample_rate == 22050
    assert loaded.dtype == np.float32 and loaded.shape == (5000,)
    # Rounding to the 16-bit grid moves each sample by at most half a step.
    assert np.abs(loaded - audio).max() <= 0.5 / 32768 + 1e-9
    info = sf.info(path)
    assert (info.subtype, info.channels, info.frames) == ("PCM_16", 1, 5000)


def test_round_trip_is_exact_on_the_int16_grid(tmp_path):
    pcm = np.array([-32768, -1, 0, 1, 12345, 32767], dtype=np.int16)
    write_wav(tmp_path / "grid.wav", pcm / 32768.0, 16000)
    loaded, _ = load_audio(tmp_path / "grid.wav")
    np.testing.assert_array_equal(loaded, pcm / np.float32(32768))


def test_to_pcm16_clips_and_rounds():
    audio = np.array([0.0, 1.0, -1.0, 0.5, 1.5, -2.0, 0.4 / 32768, 0.6 / 32768, -0.6 / 32768])
    expected = np.array([0, 32767, -32768, 16384, 32767, -32768, 0, 1, -1], dtype=np.int16)
    out = to_pcm16(audio)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(to_pcm16(torch.from_numpy(audio)), expected)


def test_write_wav_counts_clipped_samples(tmp_path):
    audio = np.zeros(1000, dtype=np.float32)
    audio[[10, 20, 30]] = [1.2, -3.0, 1.0001]
    audio[40] = 1.0  # full scale is not clipping
    assert write_wav(tmp_path / "c.wav", audio, 22050) == 3
    pcm, _ = sf.read(tmp_path / "c.wav", dtype="int16")
    np.testing.assert_array_equal(pcm[[10, 20, 30, 40]], [32767, -32768, 32767, 32767])


def test_write_wav_accepts_torch_and_batch_of_one(tmp_path):
    audio = torch.from_numpy(speech_like(3000))[None]  # (1, T)
    write_wav(tmp_path / "t.wav", audio, 22050)
    loaded, _ = load_audio(tmp_path / "t.wav")
    assert np.abs(loaded - audio[0].numpy()).max() <= 0.5 / 32768 + 1e-9
    with pytest.raises(ValueError, match=r"\(2, 3000\)"):
        write_wav(tmp_path / "u.wav", torch.zeros(2, 3000), 22050)
    with pytest.raises(ValueError, match="NaN"):
        write_wav(tmp_path / "v.wav", np.array([0.0, np.nan]), 22050)
    with pytest.raises(ValueError, match="sample_rate"):
        write_wav(tmp_path / "w.wav", np.zeros(10), 0)


def test_resampling_keeps_frequency(tmp_path):
    t = np.arange(16000) / 16000
    write_wav(tmp_path / "sine.wav", 0.5 * np.sin(2 * np.pi * 440.0 * t), 16000)
    audio, sample_rate = load_audio(tmp_path / "sine.wav", 22050)
    assert sample_rate == 22050
    assert abs(len(audio) - 22050) <= 1
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    peak_hz = np.argmax(spectrum) * 22050 / len(audio)
    assert abs(peak_hz - 440.0) < 2.0
    assert abs(np.abs(audio).max() - 0.5) < 0.01


def test_resample_off_names_both_rates(tmp_path):
    write_wav(tmp_path / "a.wav", np.zeros(1600), 16000)
    with pytest.raises(ValueError, match=r"16000.*22050"):
        load_audio(tmp_path / "a.wav", 22050, resample=False)
    audio, sample_rate = load_audio(tmp_path / "a.wav", 16000, resample=False)
    assert sample_rate == 16000 and audio.shape == (1600,)


def test_stereo_is_averaged(tmp_path):
    left, right = speech_like(2000, seed=1), speech_like(2000, seed=2)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 22050, subtype="FLOAT")
    audio, _ = load_audio(tmp_path / "st.wav")
    assert audio.shape == (2000,)
    np.testing.assert_allclose(audio, (left + right) / 2, rtol=0, atol=1e-7)


def test_atomic_write_leaves_only_the_target(tmp_path):
    target = tmp_path / "out.wav"
    write_wav(target, speech_like(1000), 22050)
    write_wav(target, speech_like(2000), 22050)  # overwrite in place
    assert sorted(os.listdir(tmp_path)) == ["out.wav"]
    assert sf.info(target).frames == 2000
    assert (target.stat().st_mode & 0o777) == 0o644


def test_failed_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.wav"
    write_wav(target, speech_like(1000), 22050)
    before = target.read_bytes()

    def broken_write(handle, *args, **kwargs):
        handle.write(b"RIFF partial")
        raise OSError("disk full")

    monkeypatch.setattr(audio_io.sf, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_wav(target, speech_like(3000), 22050)
    assert sorted(os.listdir(tmp_path)) == ["out.wav"]
    assert target.read_bytes() == before


def test_write_into_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        write_wav(tmp_path / "nope" / "x.wav", np.zeros(10), 22050)


def test_read_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 10)
    with pytest.raises(ValueError, match="notes.wav.*not a readable audio file"):
        load_audio(text)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.wav is empty"):
        load_audio(empty)
    sf.write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), 22050, subtype="PCM_16")
    with pytest.raises(ValueError, match="zero.wav contains no samples"):
        load_audio(tmp_path / "zero.wav")
    with pytest.raises(ValueError, match="directory"):
        load_audio(tmp_path)
    write_wav(tmp_path / "ok.wav", np.zeros(100), 22050)
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(tmp_path / "ok.wav", -5)


def test_list_audio_files(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.wav", "a.FLAC", "sub/c.wav", "readme.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert list_audio_files(tmp_path) == [tmp_path / "a.FLAC", tmp_path / "b.wav", tmp_path / "sub" / "c.wav"]
    with pytest.raises(FileNotFoundError):
        list_audio_files(tmp_path / "absent")

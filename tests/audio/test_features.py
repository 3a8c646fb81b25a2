"""Mel front end: NVIDIA fixture parity, librosa/torchaudio parity per preset, shapes and errors."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import torch

from tests.helpers import speech_like
from waveflow import presets
from waveflow.audio import stft as stft_ops
from waveflow.audio.features import MelSpectrogram, convert_log_base, mel_filterbank
from waveflow.config import MelConfig


@pytest.fixture
def mel_fixture(nvidia_fixtures):
    return np.load(nvidia_fixtures / "mel_frontend.npz")


# -- NVIDIA TacotronSTFT ------------------------------------------------------------------------
@pytest.mark.fixtures
def test_tacotron2_preset_reproduces_nvidia_mel(mel_fixture):
    mel = MelSpectrogram.from_config(presets.tacotron2_mel())(torch.from_numpy(mel_fixture["waveform"]))
    expected = torch.from_numpy(mel_fixture["mel"])
    assert mel.shape == expected.shape == (80, 87)
    assert mel.dtype == torch.float32
    # NVIDIA uses a conv STFT, we use an FFT; the fixture README measured 2.4e-5 for librosa's FFT.
    assert (mel - expected).abs().max().item() < 1e-4
    # Entries on NVIDIA's floor (the trailing digital silence) must be on ours as well.
    floor = math.log(1e-5)
    assert torch.equal(expected == np.float32(floor), mel == np.float32(floor))


@pytest.mark.fixtures
def test_stft_magnitude_matches_nvidia(mel_fixture):
    audio = torch.from_numpy(mel_fixture["waveform"])[None]  # (1, T)
    window = stft_ops.hann_window(1024, 1024)
    magnitude, _ = stft_ops.to_polar(stft_ops.stft(audio, window, 256))
    expected = torch.from_numpy(mel_fixture["stft_magnitude"])
    assert magnitude.shape == (1, *expected.shape)
    # README: FFT vs conv magnitudes agree to 1.4e-6 of the largest value.
    assert (magnitude[0] - expected).abs().max().item() < 1e-5 * expected.abs().max().item()


@pytest.mark.fixtures
def test_mel_basis_is_bit_exact(mel_fixture):
    basis = mel_filterbank(22050, 1024, 80, 0.0, 8000.0)
    assert basis.dtype == np.float64
    np.testing.assert_array_equal(basis.astype(np.float32), mel_fixture["mel_basis"])
    np.testing.assert_array_equal(MelSpectrogram().filterbank.numpy(), mel_fixture["mel_basis"])


def test_window_equals_scipy_periodic_hann():
    signal = pytest.importorskip("scipy.signal")
    expected = librosa.util.pad_center(signal.get_window("hann", 800, fftbins=True), size=1024)
    window = stft_ops.hann_window(800, 1024, dtype=torch.float64)
    np.testing.assert_allclose(window.numpy(), expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(stft_ops.hann_window(800, 1024).numpy(), expected.astype(np.float32))


# -- filterbank ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sample_rate", "n_fft", "n_mels", "f_min", "f_max", "mel_scale", "norm"),
    [
        (22050, 1024, 80, 0.0, 8000.0, "slaney", "slaney"),
        (22050, 1024, 80, 80.0, 7600.0, "slaney", "slaney"),
        (16000, 512, 40, 20.0, None, "slaney", "slaney"),
        (44100, 2048, 128, 0.0, None, "slaney", "none"),
        (22050, 1024, 80, 0.0, 8000.0, "htk", "slaney"),
        (24000, 1024, 100, 0.0, None, "htk", "none"),
        (8000, 256, 20, 300.0, 3400.0, "htk", "none"),
    ],
)
def test_filterbank_matches_librosa(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, norm):
    expected = librosa.filters.mel(
        sr=sample_rate,
        n_fft=n_fft,
        n_mels=n_mels,
        fmin=f_min,
        fmax=f_max,
        htk=mel_scale == "htk",
        norm="slaney" if norm == "slaney" else None,
        dtype=np.float64,
    )
    ours = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, norm)
    assert ours.shape == (n_mels, n_fft // 2 + 1)
    if mel_scale == "slaney":
        np.testing.assert_array_equal(ours.astype(np.float32), expected.astype(np.float32))
    else:
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-15)


def test_filterbank_rejects_bad_band():
    with pytest.raises(ValueError, match="f_max=12000"):
        mel_filterbank(22050, 1024, 80, 0.0, 12000.0)
    with pytest.raises(ValueError, match="mel_scale"):
        mel_filterbank(22050, 1024, 80, 0.0, 8000.0, mel_scale="bark")


# -- other conventions against librosa recipes ---------------------------------------------------
def test_hifigan_preset_matches_librosa_recipe():
    audio = speech_like(8000)
    cfg = presets.hifigan_mel()
    pad = (cfg.n_fft - cfg.hop_length) // 2
    spec = librosa.stft(
        np.pad(audio, (pad, pad), mode="reflect"),
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window="hann",
        center=False,
    )
    magnitude = np.sqrt(np.abs(spec) ** 2 + 1e-9)
    basis = librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.f_min, fmax=cfg.f_max
    )
    expected = np.log(np.maximum(basis @ magnitude, 1e-5))

    mel = MelSpectrogram.from_config(cfg)(torch.from_numpy(audio)).numpy()
    assert mel.shape == expected.shape == (80, 8000 // 256)
    np.testing.assert_allclose(mel, expected, rtol=0, atol=1e-4)


def test_espnet_preset_matches_librosa_recipe():
    audio = speech_like(8000)
    cfg = presets.espnet_mel()
    power = librosa.feature.melspectrogram(
        y=audio,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=1.0,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
    )
    expected = np.log10(np.maximum(power, 1e-10))
    mel = MelSpectrogram.from_config(cfg)(torch.from_numpy(audio)).numpy()
    assert mel.shape == expected.shape == (80, 8000 // 256 + 1)
    np.testing.assert_allclose(mel, expected, rtol=0, atol=1e-4)


def test_power_two_matches_librosa():
    audio = speech_like(4000)
    expected = np.log(
        np.maximum(
            librosa.feature.melspectrogram(
                y=audio,
                sr=16000,
                n_fft=512,
                hop_length=128,
                win_length=400,
                pad_mode="reflect",
                power=2.0,
                n_mels=40,
                fmin=0.0,
                fmax=None,
                htk=True,
                norm=None,
            ),
            1e-5,
        )
    )
    module = MelSpectrogram(
        sample_rate=16000,
        n_fft=512,
        win_length=400,
        hop_length=128,
        n_mels=40,
        f_max=None,
        power=2.0,
        mel_scale="htk",
        norm="none",
    )
    mel = module(torch.from_numpy(audio)).numpy()
    assert mel.shape == expected.shape == (40, 4000 // 128 + 1)
    # Power spans a wide range: compare linear values with float32 FFT noise relative to the peak.
    power, expected_power = np.exp(mel), np.exp(expected)
    np.testing.assert_allclose(power, expected_power, rtol=1e-4, atol=1e-6 * expected_power.max())


def test_torchaudio_parity():
    torchaudio = pytest.importorskip("torchaudio")
    audio = torch.from_numpy(speech_like(6000))
    reference = (
        torchaudio.transforms.MelSpectrogram(
            sample_rate=22050,
            n_fft=1024,
            win_length=1024,
            hop_length=256,
            f_min=0.0,
            f_max=8000.0,
            n_mels=80,
            power=1.0,
            center=True,
            pad_mode="reflect",
            norm="slaney",
            mel_scale="slaney",
        )(audio)
        .clamp(min=1e-5)
        .log()
    )
    mel = MelSpectrogram()(audio)
    assert mel.shape == reference.shape
    assert (mel - reference).abs().max().item() < 1e-4


# -- shapes, batching, dtypes ---------------------------------------------------------------------
def test_batched_equals_one_by_one():
    module = MelSpectrogram()
    audio = torch.stack([torch.from_numpy(speech_like(5000, seed=s)) for s in range(3)])  # (3, T)
    batched = module(audio)
    assert batched.shape == (3, 80, 5000 // 256 + 1)
    for i in range(3):
        torch.testing.assert_close(batched[i], module(audio[i]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("num_samples", [600, 1024, 2560, 2561, 5119])
@pytest.mark.parametrize("center", [True, False])
def test_frame_counts(num_samples, center):
    module = MelSpectrogram(center=center)
    expected = num_samples // 256 + (1 if center else 0)
    assert module.num_frames(num_samples) == expected
    mel = module(torch.from_numpy(speech_like(num_samples)))
    assert mel.shape == (80, expected)


def test_float64_input_gives_float64_close_to_float32():
    module = MelSpectrogram()
    audio = torch.from_numpy(speech_like(4000))
    mel64 = module(audio.double())
    assert mel64.dtype == torch.float64
    assert (mel64 - module(audio).double()).abs().max().item() < 1e-4


def test_autocast_keeps_float32():
    module = MelSpectrogram()
    audio = torch.from_numpy(speech_like(3000))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mel = module(audio)
    assert mel.dtype == torch.float32
    torch.testing.assert_close(mel, module(audio), rtol=0, atol=0)


def test_buffers_are_in_state_dict_and_no_parameters():
    module = MelSpectrogram()
    assert set(module.state_dict()) == {"window", "filterbank"}
    assert list(module.parameters()) == []
    assert module.window.shape == (1024,)
    assert module.filterbank.shape == (80, 513)


@pytest.mark.parametrize("builder", [presets.tacotron2_mel, presets.hifigan_mel, presets.espnet_mel])
def test_config_round_trip(builder):
    cfg = builder()
    assert MelSpectrogram.from_config(cfg).config == cfg


def test_keyword_defaults_equal_config_defaults():
    assert MelSpectrogram().config == MelConfig()


def test_convert_log_base_is_exact_factor():
    audio = torch.from_numpy(speech_like(4000))
    ln = MelSpectrogram(log="ln", log_floor=1e-10)(audio)
    log10 = MelSpectrogram(log="log10", log_floor=1e-10)(audio)
    torch.testing.assert_close(convert_log_base(ln, "ln", "log10"), log10, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(convert_log_base(log10, "log10", "ln"), ln, rtol=1e-6, atol=1e-6)
    assert convert_log_base(ln, "ln", "ln") is ln
    with pytest.raises(ValueError, match="db"):
        convert_log_base(ln, "ln", "db")


# -- errors -------------------------------------------------------------------------------------
def test_errors_name_the_problem():
    module = MelSpectrogram()
    with pytest.raises(ValueError, match=r"\(2, 1, 3000\)"):
        module(torch.zeros(2, 1, 3000))
    with pytest.raises(ValueError, match="512"):
        module(torch.zeros(400))
    with pytest.raises(ValueError, match="384"):
        MelSpectrogram(center=False)(torch.zeros(300))
    bad = torch.zeros(3000)
    bad[5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        module(bad)
    with pytest.raises(ValueError, match="int16"):
        module(torch.zeros(3000, dtype=torch.int16))
    with pytest.raises(ValueError, match="win_length"):
        MelSpectrogram(n_fft=512, win_length=1024)
    with pytest.raises(ValueError, match="log"):
        MelSpectrogram(log="db")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="f_max=16000"):
        MelSpectrogram(f_max=16000.0)


def test_constant_padding_allows_short_input():
    module = MelSpectrogram(pad_mode="constant")
    assert module(torch.zeros(100)).shape == (80, 1)


# -- STFT helpers used by the denoiser ------------------------------------------------------------
def test_stft_istft_round_trip_any_length():
    window = stft_ops.hann_window(1024, 1024)
    for num_samples in (3000, 6144):
        audio = torch.from_numpy(speech_like(num_samples))[None]  # (1, T)
        magnitude, phase = stft_ops.to_polar(stft_ops.stft(audio, window, 256))
        assert magnitude.shape == (1, 513, num_samples // 256 + 1)
        restored = stft_ops.istft(stft_ops.from_polar(magnitude, phase), window, 256, num_samples)
        assert restored.shape == audio.shape
        assert (restored - audio).abs().max().item() < 1e-5

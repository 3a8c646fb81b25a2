"""Mel conventions: each toolkit's convention is recognised on mels made from speech-like audio
with the mel presets, correct mels raise no warning, and the converters are exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.helpers import speech_like
from waveflow import presets
from waveflow.audio.features import MelSpectrogram
from waveflow.config import MelConfig
from waveflow.infer import mel_guard

SR = 22050


def utterance(seed: int = 0, seconds: float = 1.0, gain: float = 1.0, silence: float = 0.2) -> torch.Tensor:
    """Speech-like audio with leading and trailing digital silence, as TTS corpora have."""
    pad = np.zeros(int(silence * SR), np.float32)
    return torch.from_numpy(np.concatenate([pad, gain * speech_like(int(seconds * SR), SR, seed), pad]))


def mel_of(config: MelConfig, audio: torch.Tensor) -> torch.Tensor:
    return MelSpectrogram.from_config(config)(audio)


def espnet_stats() -> tuple[torch.Tensor, torch.Tensor]:
    """Global mean/scale per bin over a small 'training set' (other utterances than the test one)."""
    frames = torch.cat([mel_of(presets.espnet_mel(), utterance(seed)) for seed in (11, 12, 13)], dim=1)
    return frames.mean(dim=1), frames.std(dim=1, unbiased=False)


def coqui_db(audio: torch.Tensor) -> torch.Tensor:
    """Coqui's default: 20 * log10(max(x, 1e-5)) - ref_level_db (20), full band."""
    log10 = mel_of(presets.tacotron2_mel().replace(f_max=None, log="log10", log_floor=1e-5), audio)
    return 20.0 * log10 - 20.0


def coqui_normalized(audio: torch.Tensor) -> torch.Tensor:
    """Coqui's symmetric range normalisation of the dB mel (min_level_db -100, max_norm 4), clipped."""
    return (8.0 * (coqui_db(audio) + 100.0) / 100.0 - 4.0).clamp(-4.0, 4.0)


def make(convention: str, audio: torch.Tensor) -> torch.Tensor:
    if convention == "tacotron2":
        return mel_of(presets.tacotron2_mel(), audio)
    if convention == "hifigan":
        return mel_of(presets.hifigan_mel(), audio)
    if convention == "espnet":
        return mel_of(presets.espnet_mel(), audio)
    if convention == "espnet-normalized":
        return mel_guard.normalize(mel_of(presets.espnet_mel(), audio), *espnet_stats())
    if convention == "coqui-ln":  # Coqui's LJSpeech TTS recipes: ln with a 1e-8 floor
        return mel_of(presets.tacotron2_mel().replace(log_floor=1e-8), audio)
    if convention == "coqui-db":
        return coqui_db(audio)
    if convention == "coqui-normalized":
        return coqui_normalized(audio)
    if convention == "linear":
        return mel_of(presets.tacotron2_mel(), audio).exp()
    raise AssertionError(convention)


# convention -> (kind, log, floor) recognised, and words the warning for a Tacotron2 vocoder must contain
EXPECTED = {
    "tacotron2": (("log", "ln", 1e-5), []),
    "hifigan": (("log", "ln", 1e-5), []),
    "espnet": (("log", "log10", 1e-10), ["log10 with floor 1e-10", "ESPnet", "convert_log_mel"]),
    "espnet-normalized": (("mvn", None, None), ["mean/variance-normalised", "denormalize"]),
    "coqui-ln": (("log", "ln", 1e-8), ["natural log with floor 1e-08", "Coqui", "convert_log_mel"]),
    "coqui-db": (("db", None, None), ["decibels", "db_to_log"]),
    "coqui-normalized": (("coqui_range", None, None), ["[-4, 4]", "coqui_denormalize"]),
    "linear": (("linear", None, None), ["linear", "log-mel is required"]),
}


@pytest.mark.parametrize("convention", sorted(EXPECTED))
def test_each_convention_is_recognised(convention):
    mel = make(convention, utterance())
    (kind, log, floor), words = EXPECTED[convention]
    diagnosis = mel_guard.guess_mel_convention(mel)
    assert (diagnosis.kind, diagnosis.log, diagnosis.floor) == (kind, log, floor), diagnosis.description
    warnings = mel_guard.check_mel_statistics(mel, presets.tacotron2_mel())
    if not words:
        assert warnings == []
    else:
        assert len(warnings) == 1
        for word in words:
            assert word in warnings[0]
        assert "natural log with floor 1e-05 (silence at -11.51)" in warnings[0]  # what the vocoder wants


@pytest.mark.parametrize(
    "audio",
    [
        utterance(seed=1, silence=0.0),  # no silence: no floor visible
        utterance(seed=2, gain=0.05),  # quiet
        utterance(seed=3, seconds=0.1, silence=0.0),  # a few frames
        utterance(seed=4, seconds=3.0, silence=0.5),
    ],
    ids=["no-silence", "quiet", "short", "long"],
)
def test_correct_mels_raise_no_warning(audio):
    assert (
        mel_guard.check_mel_statistics(mel_of(presets.tacotron2_mel(), audio), presets.tacotron2_mel()) == []
    )
    assert mel_guard.check_mel_statistics(mel_of(presets.espnet_mel(), audio), presets.espnet_mel()) == []


def test_a_tts_like_mel_that_undershoots_the_floor_is_accepted():
    """Predicted mels are not clamped: they wobble around the floor and dip slightly below it."""
    mel = make("tacotron2", utterance())
    predicted = mel + 0.15 * torch.randn(mel.shape, generator=torch.Generator().manual_seed(0))
    assert mel_guard.check_mel_statistics(predicted, presets.tacotron2_mel()) == []


def test_natural_log_given_to_a_log10_vocoder_is_named():
    warnings = mel_guard.check_mel_statistics(make("tacotron2", utterance()), presets.espnet_mel())
    assert len(warnings) == 1 and "natural log with floor 1e-05" in warnings[0]
    assert "log10 with floor 1e-10" in warnings[0]


def test_log10_without_silence_is_suspected_from_its_range():
    mel = mel_of(presets.espnet_mel().replace(f_min=0.0, f_max=8000.0), utterance(seconds=2.0, silence=0.0))
    warnings = mel_guard.check_mel_statistics(mel, presets.tacotron2_mel())
    assert len(warnings) == 1 and "log10" in warnings[0]


# -- converters -------------------------------------------------------------------------------------------
def test_log10_mel_converts_exactly_to_the_tacotron2_convention():
    """Same band and STFT, different log base and floor: the conversion is exact."""
    audio = utterance()
    log10_mel = mel_of(presets.tacotron2_mel().replace(log="log10", log_floor=1e-10), audio)
    converted = mel_guard.convert_log_mel(log10_mel, "log10", 1e-10, presets.tacotron2_mel())
    torch.testing.assert_close(converted, mel_of(presets.tacotron2_mel(), audio), atol=1e-4, rtol=0)
    back = mel_guard.convert_log_mel(converted, "ln", 1e-5, presets.tacotron2_mel().replace(log="log10"))
    torch.testing.assert_close(back, log10_mel.clamp(min=-5.0), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="cannot lower the floor from 1e-05 to 1e-10"):
        mel_guard.convert_log_mel(converted, "ln", 1e-5, presets.espnet_mel())
    with pytest.raises(ValueError, match="from_log"):
        mel_guard.convert_log_mel(converted, "log2", 1e-5, presets.tacotron2_mel())


def test_normalize_and_denormalize_are_inverse():
    mel = make("espnet", utterance())
    mean, scale = espnet_stats()
    normalized = mel_guard.normalize(mel, mean.numpy(), scale.numpy())
    torch.testing.assert_close(mel_guard.denormalize(normalized, mean, scale), mel, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="mean has 3 values but the mel has 80 bins"):
        mel_guard.denormalize(mel, torch.zeros(3), scale)
    with pytest.raises(ValueError, match="scale must be positive"):
        mel_guard.denormalize(mel, mean, torch.zeros(80))


def test_load_mvn_stats_formats(tmp_path):
    # (frames, n_mels), the layout ESPnet collects statistics in
    frames = np.random.default_rng(0).normal(-3.0, 2.0, size=(500, 80))
    mean, std = frames.mean(axis=0), frames.std(axis=0)
    espnet = tmp_path / "feats_stats.npz"
    np.savez(espnet, count=np.array(500), sum=frames.sum(axis=0), sum_square=(frames**2).sum(axis=0))
    pwg = tmp_path / "stats.npy"
    np.save(pwg, np.stack([mean, std]))
    plain = tmp_path / "stats.npz"
    np.savez(plain, mean=mean, scale=std)
    for path in (espnet, pwg, plain):
        loaded_mean, loaded_scale = mel_guard.load_mvn_stats(path)
        np.testing.assert_allclose(loaded_mean, mean, atol=1e-9)
        np.testing.assert_allclose(loaded_scale, std, atol=1e-9)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 80)))
    with pytest.raises(ValueError, match=r"expected \(2, n_mels\)"):
        mel_guard.load_mvn_stats(bad)
    text = tmp_path / "stats.txt"
    text.write_text("0 1")
    with pytest.raises(ValueError, match="unknown statistics format '.txt'"):
        mel_guard.load_mvn_stats(text)
    with pytest.raises(FileNotFoundError):
        mel_guard.load_mvn_stats(tmp_path / "missing.npz")


def test_decibels_and_coqui_normalisation_convert_exactly():
    audio = utterance()
    ln_mel = mel_of(presets.tacotron2_mel().replace(f_max=None), audio)
    db = coqui_db(audio)
    torch.testing.assert_close(mel_guard.db_to_log(db, "ln", ref_level_db=20.0), ln_mel, atol=1e-4, rtol=0)
    normalized = coqui_normalized(audio)
    inside = (normalized > -4.0) & (normalized < 4.0)
    restored = mel_guard.coqui_denormalize(normalized)
    torch.testing.assert_close(restored[inside], db[inside], atol=1e-4, rtol=0)
    assert inside.float().mean() > 0.5
    with pytest.raises(ValueError, match="max_norm"):
        mel_guard.coqui_denormalize(normalized, max_norm=0.0)


def test_shape_hints():
    cfg = presets.tacotron2_mel()
    assert "time-major" in mel_guard.describe_n_mels_mismatch((200, 80), cfg)
    assert "time-major" in mel_guard.describe_n_mels_mismatch((2, 200, 80), cfg)
    assert "linear-frequency spectrogram" in mel_guard.describe_n_mels_mismatch((513, 200), cfg)
    message = mel_guard.describe_n_mels_mismatch((100, 200), cfg)
    assert "100-bin mel" in message and "n_mels=80" in message


def test_statistics_of_large_mels_are_subsampled():
    mel = torch.full((80, 20_000), -11.5129)  # 1.6 M values: above torch.quantile's comfortable size
    mel[:, ::2] = -2.0
    stats = mel_guard.mel_statistics(mel)
    assert stats.num_values == 1_600_000 and stats.floor == pytest.approx(math.log(1e-5), abs=1e-3)
    with pytest.raises(ValueError, match="NaN"):
        mel_guard.mel_statistics(torch.tensor([float("nan")]))

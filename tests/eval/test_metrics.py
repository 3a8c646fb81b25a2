"""Objective metrics: identities, monotonicity in noise, pitch arithmetic, optional-package fallback."""

from __future__ import annotations

import builtins
import math

import numpy as np
import pytest
import torch

from tests.helpers import speech_like
from waveflow.audio.features import MelSpectrogram
from waveflow.eval import f0, metrics
from waveflow.presets import tacotron2_mel

SR = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speech_like(SR, sample_rate=SR).astype(np.float64)


def _noise(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n) * 0.1


def test_mrstft_is_zero_for_identical_signals_and_grows_with_noise(speech):
    assert metrics.multi_resolution_stft_distance(speech, speech) == (0.0, 0.0, 0.0)
    noise = _noise(speech.size)
    distances = [
        metrics.multi_resolution_stft_distance(speech, speech + a * noise).total for a in (0.01, 0.1, 1.0)
    ]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_mrstft_spectral_convergence_matches_its_definition(speech):
    """One resolution, recomputed independently with numpy's FFT."""
    estimate = speech + _noise(speech.size)
    n_fft, hop = 512, 128
    result = metrics.multi_resolution_stft_distance(speech, estimate, resolutions=((n_fft, hop, n_fft),))

    def magnitude(x):
        padded = np.pad(x, n_fft // 2, mode="reflect")
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
        frames = np.stack([padded[i : i + n_fft] * window for i in range(0, padded.size - n_fft + 1, hop)])
        return np.sqrt(np.maximum(np.abs(np.fft.rfft(frames, axis=1)) ** 2, 1e-7))

    ref, est = magnitude(speech), magnitude(estimate)
    assert result.spectral_convergence == pytest.approx(
        np.linalg.norm(ref - est) / np.linalg.norm(ref), rel=1e-6
    )
    assert result.log_magnitude_l1 == pytest.approx(np.mean(np.abs(np.log(ref) - np.log(est))), rel=1e-6)


def test_mel_l1_is_zero_for_identical_signals_grows_with_noise_and_uses_the_tacotron2_mel(speech):
    assert metrics.mel_l1(speech, speech, SR) == 0.0
    noise = _noise(speech.size)
    values = [metrics.mel_l1(speech, speech + a * noise, SR) for a in (0.01, 0.1, 1.0)]
    assert 0 < values[0] < values[1] < values[2]
    front_end = MelSpectrogram.from_config(tacotron2_mel().replace(sample_rate=SR))
    expected = (
        (front_end(torch.tensor(speech).float()) - front_end(torch.tensor(speech + noise).float()))
        .abs()
        .mean()
    )
    assert metrics.mel_l1(speech, speech + noise, SR) == pytest.approx(float(expected), rel=1e-6)


def _sine(freq: float, seconds: float = 1.0, sample_rate: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return 0.5 * np.sin(2 * np.pi * freq * t)


@pytest.mark.parametrize("detune_cents", [37.0, 100.0])
def test_f0_rmse_of_a_detuned_sine_is_the_detuning_in_cents(detune_cents):
    reference = _sine(220.0)
    estimate = _sine(220.0 * 2 ** (detune_cents / 1200))
    result = f0.f0_metrics(reference, estimate, 22050)
    # pYIN reports pitch on a 10-cent grid: each track is within 5 cents of the truth.
    assert result.rmse_cents == pytest.approx(detune_cents, abs=10.0)
    assert result.voicing_error == 0.0
    assert result.num_voiced_both > 0.9 * len(f0.track_f0(reference, 22050).f0)


def test_voicing_error_of_speech_against_silence_is_its_voiced_fraction(speech):
    track = f0.track_f0(speech, SR)
    voiced_fraction = float(np.mean(track.voiced))
    assert voiced_fraction > 0.5  # speech_like is mostly voiced
    result = f0.f0_metrics(speech, np.zeros_like(speech), SR)
    assert result.voicing_error == pytest.approx(voiced_fraction)
    assert math.isnan(result.rmse_cents) and result.num_voiced_both == 0
    same = f0.f0_metrics(speech, speech, SR)
    assert same.voicing_error == 0.0 and same.rmse_cents == 0.0


def test_pesq_and_stoi_rank_a_copy_above_noise(speech):
    noise = np.random.default_rng(3).standard_normal(speech.size) * 0.3
    assert metrics.pesq_wb(speech, speech, SR) > 4.0
    assert metrics.pesq_wb(speech, noise, SR) < 1.5
    assert metrics.stoi(speech, speech, SR) > 0.99
    assert metrics.stoi(speech, noise, SR) < 0.5


def test_pesq_resamples_other_rates():
    audio = speech_like(22050, sample_rate=22050).astype(np.float64)
    assert metrics.pesq_wb(audio, audio, 22050) > 4.0


def test_missing_optional_packages_give_nan_and_a_warning(monkeypatch, speech):
    real_import = builtins.__import__

    def no_eval_packages(name, *args, **kwargs):
        if name.split(".")[0] in ("pesq", "pystoi"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_eval_packages)
    with pytest.warns(metrics.MetricUnavailableWarning, match="pesq"):
        assert math.isnan(metrics.pesq_wb(speech, speech, SR))
    with pytest.warns(metrics.MetricUnavailableWarning, match="pystoi"):
        assert math.isnan(metrics.stoi(speech, speech, SR))


def test_metrics_refuse_unaligned_or_bad_input(speech):
    with pytest.raises(ValueError, match="align"):
        metrics.mel_l1(speech, speech[:-10], SR)
    with pytest.raises(ValueError, match="NaN"):
        metrics.multi_resolution_stft_distance(speech, np.full_like(speech, np.nan))
    ref, est = metrics.align(speech, speech[:-10])
    assert ref.shape == est.shape == (speech.size - 10,)


def test_compute_metrics_keys_match_the_csv_columns(speech):
    values = metrics.compute_metrics(speech, speech, SR)
    assert tuple(values) == metrics.METRIC_NAMES
    assert values["mrstft"] == 0.0 and values["voicing_error"] == 0.0


def test_segment_bounds_cover_the_signal_and_merge_a_short_tail():
    assert metrics.segment_bounds(100, 40) == [(0, 40), (40, 80), (80, 100)]  # a tail of half a segment stays
    assert metrics.segment_bounds(95, 40) == [(0, 40), (40, 95)]  # tail of 15 joins its predecessor
    assert metrics.segment_bounds(130, 40) == [(0, 40), (40, 80), (80, 130)]
    assert metrics.segment_bounds(30, 40) == [(0, 30)]
    for n, seg in [(1000, 7), (999, 100), (5, 5)]:
        bounds = metrics.segment_bounds(n, seg)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(b == c for (_, b), (c, _) in zip(bounds, bounds[1:]))


def test_long_pairs_are_scored_in_segments_as_the_length_weighted_mean(speech):
    """Short pairs are scored whole (the default changes nothing); a long pair is the weighted mean
    of its segments' scores, so memory is bounded by the segment, not the recording."""
    noisy = speech + _noise(speech.size)
    whole = metrics.compute_metrics(speech, noisy, SR, segment_seconds=None)
    assert metrics.compute_metrics(speech, noisy, SR) == whole  # 1 s < 30 s: whole
    seg = 0.45  # seconds: segments of 7200 and 8800 samples (the 1600-sample tail joins the second)
    bounds = metrics.segment_bounds(speech.size, int(seg * SR))
    assert bounds == [(0, 7200), (7200, 16000)]
    parts = [metrics.compute_metrics(speech[a:b], noisy[a:b], SR, segment_seconds=None) for a, b in bounds]
    segmented = metrics.compute_metrics(speech, noisy, SR, segment_seconds=seg)
    for name, value in segmented.items():
        expected = (parts[0][name] * 7200 + parts[1][name] * 8800) / 16000
        if math.isfinite(expected):
            assert value == pytest.approx(expected, rel=1e-9), name
    assert segmented["stoi"] != whole["stoi"]  # really computed per segment

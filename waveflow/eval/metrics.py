"""Objective metrics between a reference recording and an estimate of it (vocoded speech).

Every metric is a plain function of two float arrays ``(T,)`` of equal length at one sample rate;
:func:`align` trims a pair to the shorter length first (a vocoder returns ``frames * hop_length``
samples, usually a little more than the recording it was computed from).

* :func:`pesq_wb` - wideband PESQ (ITU-T P.862.2, package ``pesq``), both signals resampled to
  16 kHz; MOS-LQO scale, about 1.0 (bad) to 4.64 (identical).
* :func:`stoi` - short-time objective intelligibility (package ``pystoi``), 0..1.
* :func:`multi_resolution_stft_distance` - spectral convergence ``||S_r - S_e||_F / ||S_r||_F`` plus
  the mean absolute difference of log magnitudes ``|ln S_r - ln S_e|``, each averaged over three STFT
  resolutions (``MRSTFT_RESOLUTIONS``, the ParallelWaveGAN set at 22.05/24 kHz:
  n_fft / hop / window = 1024/120/600, 2048/240/1200, 512/50/240), periodic Hann windows, centred
  reflect-padded frames, magnitude ``sqrt(max(re^2 + im^2, 1e-7))``. 0 for identical signals.
* :func:`mel_l1` - mean absolute difference of natural-log mel spectrograms in the Tacotron2
  convention (80 Slaney mels, 0-8 kHz, n_fft 1024, hop 256, floor 1e-5) at the signals' rate.
* F0 RMSE in cents and the voicing decision error, in :mod:`waveflow.eval.f0`.

``pesq`` and ``pystoi`` are optional (``pip install waveflow[eval]``): without them the metric is NaN
and a :class:`MetricUnavailableWarning` says so (Python shows a warning once per call site).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import torch

from waveflow.audio.features import MelSpectrogram
from waveflow.eval.f0 import f0_metrics
from waveflow.losses import STFT_RESOLUTIONS, stft_distance_terms
from waveflow.presets import tacotron2_mel

PESQ_SAMPLE_RATE = 16000
# (n_fft, hop_length, win_length)
MRSTFT_RESOLUTIONS = STFT_RESOLUTIONS
_MEL_F_MAX = 8000.0
# Pairs longer than this are scored in segments (memory bounded on long recordings).
SEGMENT_SECONDS = 30.0


class MetricUnavailableWarning(UserWarning):
    """An optional metric could not be computed (package missing, or the signal is unsuitable)."""


class STFTDistance(NamedTuple):
    total: float  # spectral_convergence + log_magnitude_l1
    spectral_convergence: float
    log_magnitude_l1: float


def _as_signal(name: str, audio: np.ndarray) -> np.ndarray:
    array = np.asarray(audio, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be (T,), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return array


def _pair(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference, estimate = _as_signal("reference", reference), _as_signal("estimate", estimate)
    if reference.shape != estimate.shape:
        raise ValueError(
            f"reference has {reference.size} samples but estimate has {estimate.size}; align them first"
        )
    return reference, estimate


def align(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trim both ``(T,)`` signals to the shorter length."""
    num_samples = min(len(reference), len(estimate))
    return reference[:num_samples], estimate[:num_samples]


def _resample(audio: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    if sample_rate == target_rate:
        return audio
    import soxr

    return soxr.resample(audio, sample_rate, target_rate, quality="HQ")


def pesq_wb(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Wideband PESQ of ``estimate`` against ``reference`` (both resampled to 16 kHz); NaN if unavailable."""
    reference, estimate = _pair(reference, estimate)
    try:
        from pesq import PesqError, pesq
    except ImportError:
        warnings.warn(
            "PESQ needs the 'pesq' package (pip install pesq); reporting NaN",
            MetricUnavailableWarning,
            stacklevel=2,
        )
        return float("nan")
    ref16 = _resample(reference, sample_rate, PESQ_SAMPLE_RATE)
    est16 = _resample(estimate, sample_rate, PESQ_SAMPLE_RATE)
    try:
        return float(pesq(PESQ_SAMPLE_RATE, ref16, est16, "wb"))
    except PesqError as exc:
        # e.g. no utterance detected in a silent or very short reference
        warnings.warn(
            f"PESQ failed ({type(exc).__name__}: {exc}); reporting NaN",
            MetricUnavailableWarning,
            stacklevel=2,
        )
        return float("nan")


def stoi(reference: np.ndarray, estimate: np.ndarray, sample_rate: int, *, extended: bool = False) -> float:
    """STOI (or extended STOI) of ``estimate`` against ``reference``; NaN if ``pystoi`` is missing."""
    reference, estimate = _pair(reference, estimate)
    try:
        from pystoi import stoi as _stoi
    except ImportError:
        warnings.warn(
            "STOI needs the 'pystoi' package (pip install pystoi); reporting NaN",
            MetricUnavailableWarning,
            stacklevel=2,
        )
        return float("nan")
    return float(_stoi(reference, estimate, sample_rate, extended=extended))


def multi_resolution_stft_distance(
    reference: np.ndarray,
    estimate: np.ndarray,
    resolutions: tuple[tuple[int, int, int], ...] = MRSTFT_RESOLUTIONS,
) -> STFTDistance:
    """Spectral convergence + log-magnitude L1, averaged over ``resolutions`` (n_fft, hop, win).

    The same arithmetic as the auxiliary training loss (:func:`waveflow.losses.stft_distance_terms`).
    """
    reference, estimate = _pair(reference, estimate)
    with torch.no_grad():
        sc_t, lm_t = stft_distance_terms(torch.from_numpy(estimate), torch.from_numpy(reference), resolutions)
    sc, lm = float(sc_t), float(lm_t)
    return STFTDistance(total=sc + lm, spectral_convergence=sc, log_magnitude_l1=lm)


def _mel_front_end(sample_rate: int) -> MelSpectrogram:
    config = tacotron2_mel().replace(sample_rate=sample_rate, f_max=min(_MEL_F_MAX, sample_rate / 2))
    return MelSpectrogram.from_config(config)


def mel_l1(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Mean ``|ln mel_r - ln mel_e|`` in the Tacotron2 convention (0-8 kHz) at ``sample_rate``."""
    reference, estimate = _pair(reference, estimate)
    front_end = _mel_front_end(sample_rate)
    ref = front_end(torch.from_numpy(reference).float())  # (n_mels, frames)
    est = front_end(torch.from_numpy(estimate).float())
    return float((ref - est).abs().mean())


def compute_metrics(
    reference: np.ndarray,
    estimate: np.ndarray,
    sample_rate: int,
    *,
    segment_seconds: float | None = SEGMENT_SECONDS,
) -> dict[str, float]:
    """All metrics for one aligned pair, keyed as in ``evaluate``'s ``metrics.csv``.

    Pairs longer than ``segment_seconds`` are scored in consecutive segments of that length (the
    last one takes the remainder, merged into its predecessor when shorter than half a segment)
    and each metric is the length-weighted mean over the segments where it is finite: memory stays
    bounded on long recordings (pYIN, PESQ and the STFTs of a 10-minute pair need several GB).
    Shorter pairs, every usual utterance, are scored whole. ``None``: always whole.
    """
    reference, estimate = _pair(reference, estimate)
    if segment_seconds is not None:
        if not segment_seconds > 0:
            raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
        bounds = segment_bounds(reference.shape[0], int(segment_seconds * sample_rate))
        if len(bounds) > 1:
            parts = [_metrics_whole(reference[a:b], estimate[a:b], sample_rate) for a, b in bounds]
            weights = [b - a for a, b in bounds]
            return {name: _weighted_mean([p[name] for p in parts], weights) for name in parts[0]}
    return _metrics_whole(reference, estimate, sample_rate)


def segment_bounds(num_samples: int, segment: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``num_samples`` in pieces of ``segment`` samples; a last piece
    shorter than ``segment / 2`` joins the one before it."""
    if segment < 1:
        raise ValueError(f"segment must be >= 1 sample, got {segment}")
    starts = list(range(0, num_samples, segment))
    if len(starts) > 1 and num_samples - starts[-1] < segment / 2:
        starts.pop()
    return [(a, starts[i + 1] if i + 1 < len(starts) else num_samples) for i, a in enumerate(starts)]


def _weighted_mean(values: list[float], weights: list[int]) -> float:
    pairs = [(v, w) for v, w in zip(values, weights) if math.isfinite(v)]
    if not pairs:
        return float("nan")
    return float(sum(v * w for v, w in pairs) / sum(w for _, w in pairs))


def _metrics_whole(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> dict[str, float]:
    stft = multi_resolution_stft_distance(reference, estimate)
    pitch = f0_metrics(reference, estimate, sample_rate)
    return {
        "pesq_wb": pesq_wb(reference, estimate, sample_rate),
        "stoi": stoi(reference, estimate, sample_rate),
        "mrstft": stft.total,
        "spectral_convergence": stft.spectral_convergence,
        "log_stft_l1": stft.log_magnitude_l1,
        "mel_l1": mel_l1(reference, estimate, sample_rate),
        "f0_rmse_cents": pitch.rmse_cents,
        "voicing_error": pitch.voicing_error,
    }


METRIC_NAMES: tuple[str, ...] = (
    "pesq_wb",
    "stoi",
    "mrstft",
    "spectral_convergence",
    "log_stft_l1",
    "mel_l1",
    "f0_rmse_cents",
    "voicing_error",
)


def finite_mean(values: list[float]) -> tuple[float, int]:
    """Mean over the finite values and how many there were (NaN, 0 when none)."""
    finite = [v for v in values if math.isfinite(v)]
    return (float(np.mean(finite)) if finite else float("nan")), len(finite)

"""Pitch (F0) tracking with probabilistic YIN and the two pitch metrics built on it.

* **F0 RMSE in cents** over the frames that both signals call voiced:
  ``sqrt(mean((1200 * log2(f0_estimate / f0_reference)) ** 2))``. Cents (1/100 of a semitone) make
  the error independent of the speaker's register: 100 cents is one semitone at any pitch.
* **Voicing decision error**: the fraction of all frames where the two signals disagree on voiced
  vs unvoiced (0 = identical decisions, 1 = always opposite).

Both signals are tracked with :func:`librosa.pyin` under the same settings: 65.4-1046.5 Hz (C2-C6,
covering speech and most singing), a frame of about 40 ms rounded up to a power of two (1024
samples at 16 and 22.05 kHz) and a hop of a quarter frame. pYIN reports pitches on a grid of 0.1
semitone (10 cents), so a single frame's pitch is exact to within +-5 cents.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

F0_MIN_HZ = 65.40639  # C2
F0_MAX_HZ = 1046.5023  # C6
_FRAME_SECONDS = 0.04


class F0Track(NamedTuple):
    """Per-frame pitch: ``f0`` (frames,) in Hz (NaN where unvoiced) and ``voiced`` (frames,) bool."""

    f0: np.ndarray
    voiced: np.ndarray


class F0Metrics(NamedTuple):
    rmse_cents: float  # NaN when no frame is voiced in both signals
    voicing_error: float  # fraction of frames with different voiced/unvoiced decisions
    num_voiced_both: int


def frame_length_for(sample_rate: int) -> int:
    """pYIN frame length: ~40 ms rounded up to a power of two (enough for two periods of C2)."""
    return 2 ** math.ceil(math.log2(_FRAME_SECONDS * sample_rate))


def track_f0(audio: np.ndarray, sample_rate: int) -> F0Track:
    """Run pYIN on ``audio`` (T,) float -> :class:`F0Track` with ``1 + T // hop`` frames."""
    import librosa

    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise ValueError(f"audio must be (T,), got shape {audio.shape}")
    frame_length = frame_length_for(sample_rate)
    f0, voiced, _ = librosa.pyin(
        audio,
        fmin=F0_MIN_HZ,
        fmax=F0_MAX_HZ,
        sr=sample_rate,
        frame_length=frame_length,
        hop_length=frame_length // 4,
    )
    return F0Track(f0=f0, voiced=voiced.astype(bool))


def compare_f0(reference: F0Track, estimate: F0Track) -> F0Metrics:
    """F0 RMSE (cents) on frames voiced in both, and the voicing decision error rate."""
    num_frames = min(len(reference.f0), len(estimate.f0))
    if num_frames == 0:
        raise ValueError("no pitch frames to compare")
    ref_voiced, est_voiced = reference.voiced[:num_frames], estimate.voiced[:num_frames]
    both = ref_voiced & est_voiced
    voicing_error = float(np.mean(ref_voiced != est_voiced))
    if not both.any():
        return F0Metrics(float("nan"), voicing_error, 0)
    cents = 1200.0 * np.log2(estimate.f0[:num_frames][both] / reference.f0[:num_frames][both])
    return F0Metrics(float(np.sqrt(np.mean(cents**2))), voicing_error, int(both.sum()))


def f0_metrics(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> F0Metrics:
    """Track both signals ``(T,)`` at ``sample_rate`` and compare them (see the module docstring)."""
    return compare_f0(track_f0(reference, sample_rate), track_f0(estimate, sample_rate))

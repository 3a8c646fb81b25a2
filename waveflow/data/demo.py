"""A small synthetic corpus in LJSpeech format, for smoke runs and tests (``waveflow demo-corpus``).

Each utterance alternates, like speech, between

* voiced segments: a harmonic source whose pitch glides and wobbles, with every harmonic weighted
  by the magnitude response of three formant resonators that move from vowel to vowel;
* unvoiced segments: white noise shaped by a smooth high-pass band, like a fricative;
* pauses: background noise about 60 dB below full scale, never exact digital zeros (a flow fitted
  to exact zeros drives its log-scales to -inf).

The corpus is ``OUTDIR/metadata.csv`` (``id|text|normalized text``) and ``OUTDIR/wavs/DEMO-0001.wav``
..., 22,050 Hz 16-bit mono, a deterministic function of the seed. It has the statistics of speech
that matter to a vocoder (harmonics, formants, noise, silences) and nothing else; it is not speech.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from waveflow.audio.io import write_wav
from waveflow.data.ljspeech import LJSPEECH_SAMPLE_RATE

# First three formants (Hz) of a few vowels (Peterson & Barney averages, male speakers).
_VOWELS = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}
_BANDWIDTHS = (90.0, 110.0, 170.0)  # Hz, per formant
_FORMANT_GAINS = (1.0, 0.6, 0.3)
_NOISE_FLOOR = 3e-4  # std of the background noise, about -70 dB re full scale (10 LSB of 16 bits)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average under a Hann window of ``width`` samples (same length, edges held)."""
    if width < 3:
        return x
    kernel = np.hanning(width)
    kernel /= kernel.sum()
    padded = np.pad(x, (width // 2, width - 1 - width // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _resonator_gain(freq: np.ndarray, centre: np.ndarray, bandwidth: float) -> np.ndarray:
    """|H(f)| of a two-pole resonator at ``centre`` Hz with ``bandwidth`` Hz, normalised to 1 at 0 Hz."""
    ratio = freq / centre
    return 1.0 / np.sqrt((1.0 - ratio**2) ** 2 + (freq * bandwidth / centre**2) ** 2)


def _plan_segments(
    rng: np.random.Generator, num_samples: int, sample_rate: int
) -> list[tuple[str, int, int]]:
    """``(kind, start, stop)`` segments covering the utterance: pause, then speech, then pause."""
    edge = int(rng.uniform(0.08, 0.15) * sample_rate)
    segments = [("pause", 0, edge)]
    position, end = edge, num_samples - edge
    durations = {"voiced": (0.12, 0.35), "unvoiced": (0.05, 0.14), "pause": (0.06, 0.18)}
    previous = "pause"
    while position < end:
        choices = ["voiced", "unvoiced"] if previous == "pause" else ["voiced", "unvoiced", "pause"]
        weights = np.array([0.6, 0.4] if previous == "pause" else [0.5, 0.25, 0.25])
        if previous == "voiced":
            weights[0] = 0.2  # vowels rarely follow vowels without a consonant or a pause
        kind = str(rng.choice(choices, p=weights / weights.sum()))
        low, high = durations[kind]
        stop = min(end, position + int(rng.uniform(low, high) * sample_rate))
        segments.append((kind, position, stop))
        position, previous = stop, kind
    segments.append(("pause", end, num_samples))
    return segments


def synthesize_utterance(seed: int, num_samples: int, sample_rate: int = LJSPEECH_SAMPLE_RATE) -> np.ndarray:
    """One speech-like signal ``(num_samples,)`` float32, peak between 0.5 and 0.8; pure function of the args."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    segments = _plan_segments(rng, num_samples, sample_rate)

    # Pitch: a base, a slow declination over the utterance and a wobble (intonation).
    base = rng.uniform(100.0, 220.0)
    duration = num_samples / sample_rate
    f0 = (
        base
        * (1.0 - 0.15 * t / duration)
        * (1.0 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t + rng.uniform(0, 2 * np.pi)))
    )
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate

    # Formant targets per voiced segment, smoothed into trajectories (~40 ms transitions).
    formants = np.empty((3, num_samples))
    current = _VOWELS[str(rng.choice(list(_VOWELS)))]
    voiced_env = np.zeros(num_samples)
    unvoiced_env = np.zeros(num_samples)
    for kind, start, stop in segments:
        n = stop - start
        if n <= 0:
            continue
        shape = np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 0.6  # rises and falls to ~0: no clicks
        if kind == "voiced":
            current = _VOWELS[str(rng.choice(list(_VOWELS)))]
            voiced_env[start:stop] = rng.uniform(0.6, 1.0) * shape
        elif kind == "unvoiced":
            unvoiced_env[start:stop] = rng.uniform(0.3, 0.6) * shape
        formants[:, start:stop] = np.asarray(current)[:, None]
    transition = int(0.04 * sample_rate)
    formants = np.stack([_smooth(track, transition) for track in formants])

    # Voiced: harmonics up to 0.45 * sample_rate, each weighted by the formant filter at its frequency.
    # Pitch and formants move slowly, so the weights are computed every 32 samples and interpolated.
    coarse = np.arange(0, num_samples, 32)
    voiced = np.zeros(num_samples)
    for k in range(1, int(0.45 * sample_rate / f0.min()) + 1):
        freq = k * f0[coarse]
        gain = sum(
            g * _resonator_gain(freq, formants[i, coarse], _BANDWIDTHS[i])
            for i, g in enumerate(_FORMANT_GAINS)
        )
        gain = np.where(freq < 0.45 * sample_rate, gain / k, 0.0)  # 1/k: the glottal source's spectral tilt
        voiced += np.interp(np.arange(num_samples), coarse, gain) * np.sin(k * phase)
    voiced /= np.abs(voiced).max() + 1e-12

    # Unvoiced: white noise through a smooth high-pass band (a fricative), in the frequency domain.
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples, 1 / sample_rate)
    cutoff = rng.uniform(2000.0, 4500.0)
    spectrum *= 1.0 / (1.0 + np.exp(-(freqs - cutoff) / 300.0))
    unvoiced = np.fft.irfft(spectrum, n=num_samples)
    unvoiced /= np.abs(unvoiced).max() + 1e-12

    speech = voiced * voiced_env + unvoiced * unvoiced_env
    speech *= rng.uniform(0.5, 0.8) / (np.abs(speech).max() + 1e-12)
    signal = speech + _NOISE_FLOOR * rng.standard_normal(num_samples)
    return np.clip(signal, -1.0, 1.0).astype(np.float32)


def build_demo_corpus(
    outdir: str | os.PathLike[str],
    *,
    num_utterances: int = 24,
    seconds: float = 2.0,
    seed: int = 1234,
    sample_rate: int = LJSPEECH_SAMPLE_RATE,
) -> Path:
    """Write the demo corpus to ``outdir`` (which must not exist, or be empty) and return it.

    Utterance ``i`` (``DEMO-0001`` ...) is ``synthesize_utterance((seed, i))``, so the corpus is the
    same on every machine. The files are written to a temporary folder beside ``outdir`` that is
    renamed into place at the end: an error leaves no partial corpus.
    """
    outdir = Path(outdir)
    if (
        isinstance(num_utterances, bool)
        or not isinstance(num_utterances, int)
        or not 1 <= num_utterances <= 9999
    ):
        raise ValueError(f"num_utterances must be an integer in [1, 9999], got {num_utterances!r}")
    if not 0.5 <= seconds <= 60.0:
        raise ValueError(f"seconds must be in [0.5, 60], got {seconds}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if outdir.exists() and (not outdir.is_dir() or any(outdir.iterdir())):
        raise ValueError(f"{outdir} already exists and is not an empty folder")
    outdir.parent.mkdir(parents=True, exist_ok=True)
    num_samples = int(round(seconds * sample_rate))
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        (staging / "wavs").mkdir()
        lines = []
        for index in range(1, num_utterances + 1):
            utt_id = f"DEMO-{index:04d}"
            audio = synthesize_utterance(_utterance_seed(seed, index), num_samples, sample_rate)
            write_wav(staging / "wavs" / f"{utt_id}.wav", audio, sample_rate)
            text = f"Synthetic demo utterance {index}, a speech-like signal."
            lines.append(f"{utt_id}|{text}|{text}\n")
        (staging / "metadata.csv").write_text("".join(lines), encoding="utf-8")
        os.chmod(staging, 0o755)
        if outdir.exists():
            outdir.rmdir()  # empty (checked above)
        os.replace(staging, outdir)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
        raise
    return outdir


def _utterance_seed(seed: int, index: int) -> int:
    # One integer per (seed, utterance) from NumPy's seed hashing, so nearby seeds give unrelated corpora.
    return int(np.random.SeedSequence((seed, index)).generate_state(1)[0])

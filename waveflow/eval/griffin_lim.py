"""Griffin-Lim baseline: invert a log-mel spectrogram without a neural vocoder.

The mel is undone step by step in the convention it was computed in (a :class:`MelConfig`):

1. undo the log (``exp`` for ``ln``, ``10 **`` for ``log10``); bins sitting at the log floor carried
   no information (the true value was anywhere below the floor), so they become 0;
2. undo the mel filterbank with :func:`librosa.feature.inverse.mel_to_stft` (non-negative least
   squares against the same Slaney/HTK filters), which gives an STFT magnitude (or power);
3. estimate a phase with :func:`librosa.griffinlim` (``n_iter`` iterations, momentum 0.99, random
   initial phase from a fixed ``random_state`` so the baseline is reproducible).

The result has ``frames * hop_length`` samples, like the vocoder's output. For the uncentred
(HiFi-GAN) convention, frame ``t`` is centred on sample ``t * hop + hop / 2`` rather than
``t * hop``; the centred inverse is shifted by ``hop // 2`` samples to line up.
"""

from __future__ import annotations

import numpy as np

from waveflow.config import MelConfig

DEFAULT_N_ITER = 32
# About 30 s at 22.05 kHz with hop 256: longer mels are inverted piece by piece.
MAX_FRAMES = 2560


def griffin_lim(
    mel: np.ndarray,
    mel_config: MelConfig,
    *,
    n_iter: int = DEFAULT_N_ITER,
    random_state: int = 0,
    max_frames: int | None = MAX_FRAMES,
) -> np.ndarray:
    """Log-mel ``(n_mels, frames)`` in ``mel_config``'s convention -> audio ``(frames * hop_length,)`` float32.

    Mels longer than ``max_frames`` are inverted in consecutive pieces of that many frames (each
    piece's audio is its frames' hops, so the pieces join end to end): memory stays bounded on long
    recordings, at the price of a seam every ``max_frames`` frames. ``None``: always whole.
    """
    mel = np.asarray(mel, dtype=np.float64)
    if max_frames is not None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        if mel.ndim == 2 and mel.shape[1] > max_frames:
            pieces = [
                griffin_lim(
                    mel[:, a : a + max_frames],
                    mel_config,
                    n_iter=n_iter,
                    random_state=random_state,
                    max_frames=None,
                )
                for a in range(0, mel.shape[1], max_frames)
            ]
            return np.concatenate(pieces)
    import librosa

    cfg = mel_config
    if mel.ndim != 2 or mel.shape[0] != cfg.n_mels:
        raise ValueError(f"mel must be (n_mels={cfg.n_mels}, frames), got shape {mel.shape}")
    if mel.shape[1] < 1:
        raise ValueError("mel has no frames")
    if not np.isfinite(mel).all():
        raise ValueError("mel contains NaN or Inf")
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")

    linear = np.exp(mel) if cfg.log == "ln" else np.power(10.0, mel)
    # Values within rounding of the floor were clamped there by the front end: treat them as silence.
    linear[linear <= cfg.log_floor * (1 + 1e-4)] = 0.0
    magnitude = librosa.feature.inverse.mel_to_stft(
        linear,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        power=cfg.power,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
        htk=cfg.mel_scale == "htk",
        norm="slaney" if cfg.norm == "slaney" else None,
    )  # (n_fft // 2 + 1, frames), magnitude
    num_frames = mel.shape[1]
    num_samples = num_frames * cfg.hop_length
    audio = librosa.griffinlim(
        magnitude,
        n_iter=n_iter,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        n_fft=cfg.n_fft,
        window="hann",
        center=True,
        pad_mode=cfg.pad_mode,
        random_state=random_state,
    )  # ((frames - 1) * hop_length,): the last frame's centre is the last sample
    # Uncentred frames are centred half a hop later; then zero-pad to frames * hop_length samples.
    shift = 0 if cfg.center else cfg.hop_length // 2
    audio = np.concatenate([np.zeros(shift), audio])[:num_samples]
    audio = np.pad(audio, (0, num_samples - audio.size))
    return audio.astype(np.float32)

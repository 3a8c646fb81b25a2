"""Audio -> log-mel spectrogram, as a tensor-to-tensor ``nn.Module``.

One class, :class:`MelSpectrogram`, covers the conventions vocoders are trained on; the presets in
:mod:`waveflow.presets` fill in the numbers:

* ``tacotron2_mel()``: NVIDIA Tacotron2/WaveGlow ``TacotronSTFT``: centred STFT, magnitude, Slaney mel,
  ``ln(max(x, 1e-5))``. Reproduces NVIDIA's mels to about 2e-5 (their conv STFT vs our FFT).
* ``hifigan_mel()``: jik876/hifi-gan: uncentred STFT with ``(n_fft - hop) / 2`` reflect padding,
  ``sqrt(re^2 + im^2 + 1e-9)``.
* ``espnet_mel()``: ESPnet2 / ParallelWaveGAN: 80-7600 Hz, ``log10(max(x, 1e-10))`` (before their
  global mean/variance normalisation, which is not part of the front end).

The mel filterbank is computed here in float64 (no librosa at run time); cast to float32 it equals
``librosa.filters.mel(..., dtype=np.float64)`` bit for bit for the Slaney scale.

This module is in the bottom layer: it imports torch, numpy and :mod:`waveflow.config` only.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from waveflow.audio.stft import hann_window, stft_dtype
from waveflow.config import MelConfig

MelScale = Literal["slaney", "htk"]
LogBase = Literal["ln", "log10"]

# Slaney's Auditory Toolbox mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above
# (a factor 6.4 every 27 mels).
_SLANEY_HZ_PER_MEL = 200.0 / 3
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(frequencies: np.ndarray, mel_scale: MelScale = "slaney") -> np.ndarray:
    """Hz -> mel (float64), on the Slaney or the HTK (``2595 log10(1 + f / 700)``) scale."""
    f = np.asarray(frequencies, dtype=np.float64)
    if mel_scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    if mel_scale != "slaney":
        raise ValueError(f"mel_scale must be 'slaney' or 'htk', got {mel_scale!r}")
    linear = f / _SLANEY_HZ_PER_MEL
    # np.maximum keeps log() away from 0 Hz; those entries take the linear branch anyway.
    logarithmic = (
        _SLANEY_BREAK_MEL + np.log(np.maximum(f, _SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    )
    return np.where(f >= _SLANEY_BREAK_HZ, logarithmic, linear)


def mel_to_hz(mels: np.ndarray, mel_scale: MelScale = "slaney") -> np.ndarray:
    """Mel -> Hz (float64), the inverse of :func:`hz_to_mel`."""
    m = np.asarray(mels, dtype=np.float64)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    if mel_scale != "slaney":
        raise ValueError(f"mel_scale must be 'slaney' or 'htk', got {mel_scale!r}")
    linear = _SLANEY_HZ_PER_MEL * m
    logarithmic = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (m - _SLANEY_BREAK_MEL))
    return np.where(m >= _SLANEY_BREAK_MEL, logarithmic, linear)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    mel_scale: MelScale = "slaney",
    norm: Literal["slaney", "none"] = "slaney",
) -> np.ndarray:
    """Triangular mel filters, float64 ``(n_mels, n_fft // 2 + 1)``; apply as ``filters @ spectrum``.

    ``n_mels + 2`` edge frequencies are spaced evenly on the mel scale between ``f_min`` and ``f_max``
    (``None``: Nyquist). Filter ``i`` rises linearly (in Hz) from edge ``i`` to edge ``i + 1`` and falls
    to edge ``i + 2``. ``norm='slaney'`` scales each filter by ``2 / (edge[i + 2] - edge[i])`` so that
    every filter has the same area; ``'none'`` leaves peaks at 1.
    """
    nyquist = sample_rate / 2
    f_max = nyquist if f_max is None else f_max
    if sample_rate <= 0 or n_fft <= 0 or n_mels <= 0:
        raise ValueError(
            f"sample_rate, n_fft and n_mels must be positive, got {sample_rate}, {n_fft}, {n_mels}"
        )
    if not 0 <= f_min < f_max <= nyquist:
        raise ValueError(
            f"need 0 <= f_min < f_max <= sample_rate / 2 = {nyquist}, got f_min={f_min}, f_max={f_max}"
        )
    if norm not in ("slaney", "none"):
        raise ValueError(f"norm must be 'slaney' or 'none', got {norm!r}")

    bin_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)  # (n_fft // 2 + 1,)
    edges_mel = np.linspace(hz_to_mel(f_min, mel_scale), hz_to_mel(f_max, mel_scale), n_mels + 2)
    edges_hz = mel_to_hz(edges_mel, mel_scale)  # (n_mels + 2,)
    widths = np.diff(edges_hz)  # (n_mels + 1,)

    left, right = edges_hz[:-2, None], edges_hz[2:, None]  # (n_mels, 1)
    rising = (bin_hz - left) / widths[:-1, None]  # (n_mels, n_bins)
    falling = (right - bin_hz) / widths[1:, None]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        filters *= 2.0 / (right - left)
    return filters


def convert_log_base(mel: Tensor, from_log: LogBase, to_log: LogBase) -> Tensor:
    """Re-express a log-mel in another log base: ``ln x = log10 x * ln 10`` (exact up to rounding).

    Only the base can be converted; a different floor, band or filterbank cannot.
    """
    for name, value in (("from_log", from_log), ("to_log", to_log)):
        if value not in ("ln", "log10"):
            raise ValueError(f"{name} must be 'ln' or 'log10', got {value!r}")
    if from_log == to_log:
        return mel
    return mel * math.log(10.0) if from_log == "log10" else mel / math.log(10.0)


class MelSpectrogram(nn.Module):
    """``audio (T,) or (B, T)`` in [-1, 1] -> log-mel ``(n_mels, frames)`` or ``(B, n_mels, frames)``.

    Steps: pad (centred: ``n_fft // 2`` per side; uncentred: ``(n_fft - hop_length) // 2`` per side, as
    HiFi-GAN), STFT with a periodic Hann window of ``win_length`` zero-padded to ``n_fft``, magnitude
    ``sqrt(re^2 + im^2 + magnitude_eps)`` (``power=1``) or power ``re^2 + im^2 + magnitude_eps``
    (``power=2``), mel filterbank, then ``ln`` or ``log10`` of ``max(x, log_floor)``.

    The STFT runs in float32 with autocast disabled (float64 input stays float64), and the output has
    that dtype. The window and filterbank are float32 buffers, so they follow ``.to(device)``.
    """

    window: Tensor
    filterbank: Tensor

    def __init__(
        self,
        *,
        sample_rate: int = 22050,
        n_fft: int = 1024,
        win_length: int = 1024,
        hop_length: int = 256,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float | None = 8000.0,
        window: Literal["hann"] = "hann",
        center: bool = True,
        pad_mode: Literal["reflect", "constant"] = "reflect",
        power: float = 1.0,
        magnitude_eps: float = 0.0,
        mel_scale: MelScale = "slaney",
        norm: Literal["slaney", "none"] = "slaney",
        log: LogBase = "ln",
        log_floor: float = 1e-5,
    ):
        super().__init__()
        # The config is the single place that validates these numbers.
        self._config = MelConfig(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            window=window,
            center=center,
            pad_mode=pad_mode,
            power=power,
            magnitude_eps=magnitude_eps,
            mel_scale=mel_scale,
            norm=norm,
            log=log,
            log_floor=log_floor,
        )
        self._config.validate()
        for name, value, allowed in (
            ("window", window, ("hann",)),
            ("pad_mode", pad_mode, ("reflect", "constant")),
            ("mel_scale", mel_scale, ("slaney", "htk")),
            ("norm", norm, ("slaney", "none")),
            ("log", log, ("ln", "log10")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
        self.register_buffer("window", hann_window(win_length, n_fft))
        fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, norm)
        self.register_buffer("filterbank", torch.from_numpy(fb.astype(np.float32)))

    @classmethod
    def from_config(cls, config: MelConfig) -> MelSpectrogram:
        return cls(**config.to_dict())

    @property
    def config(self) -> MelConfig:
        return self._config

    @property
    def n_mels(self) -> int:
        return self._config.n_mels

    @property
    def hop_length(self) -> int:
        return self._config.hop_length

    @property
    def sample_rate(self) -> int:
        return self._config.sample_rate

    def _padding(self) -> int:
        cfg = self._config
        return cfg.n_fft // 2 if cfg.center else (cfg.n_fft - cfg.hop_length) // 2

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples (``T // hop + 1`` centred, ``T // hop`` uncentred)."""
        cfg = self._config
        return (num_samples + 2 * self._padding() - cfg.n_fft) // cfg.hop_length + 1

    def _check(self, audio: Tensor) -> None:
        if audio.dim() not in (1, 2):
            raise ValueError(f"audio must be (T,) or (B, T), got shape {tuple(audio.shape)}")
        if not audio.is_floating_point():
            raise ValueError(
                f"audio must be a float tensor in [-1, 1], got {audio.dtype} (divide int16 PCM by 32768)"
            )
        num_samples = audio.shape[-1]
        pad = self._padding()
        if self._config.pad_mode == "reflect" and num_samples <= pad:
            raise ValueError(
                f"audio has {num_samples} samples; reflect padding by {pad} needs more than {pad}"
            )
        if self.num_frames(num_samples) < 1:
            raise ValueError(
                f"audio has {num_samples} samples, too short for one frame "
                f"(n_fft={self._config.n_fft}, hop_length={self._config.hop_length})"
            )
        if not torch.isfinite(audio).all():
            raise ValueError("audio contains NaN or Inf")

    def forward(self, audio: Tensor) -> Tensor:
        self._check(audio)
        cfg = self._config
        unbatched = audio.dim() == 1
        if unbatched:
            audio = audio.unsqueeze(0)  # (T,) -> (1, T)
        dtype = stft_dtype(audio.dtype)
        pad = self._padding()
        with torch.autocast(device_type=audio.device.type, enabled=False):
            # (B, T) -> (B, 1, T) for 1-D padding -> (B, T + 2 * pad)
            padded = torch.nn.functional.pad(audio.to(dtype).unsqueeze(1), (pad, pad), mode=cfg.pad_mode)
            spec = torch.stft(
                padded.squeeze(1),
                n_fft=cfg.n_fft,
                hop_length=cfg.hop_length,
                window=self.window.to(dtype),
                center=False,
                normalized=False,
                onesided=True,
                return_complex=True,
            )  # (B, n_fft // 2 + 1, frames)
            ri = torch.view_as_real(spec)  # (B, n_bins, frames, 2)
            power = ri[..., 0].pow(2) + ri[..., 1].pow(2) + cfg.magnitude_eps
            spectrum = power.sqrt() if cfg.power == 1.0 else power
            mel = torch.matmul(self.filterbank.to(dtype), spectrum)  # (B, n_mels, frames)
            mel = mel.clamp(min=cfg.log_floor)
            mel = mel.log() if cfg.log == "ln" else mel.log10()
        return mel.squeeze(0) if unbatched else mel

    def extra_repr(self) -> str:
        cfg = self._config
        return (
            f"sample_rate={cfg.sample_rate}, n_fft={cfg.n_fft}, win_length={cfg.win_length}, "
            f"hop_length={cfg.hop_length}, n_mels={cfg.n_mels}, f_min={cfg.f_min}, f_max={cfg.f_max}, "
            f"center={cfg.center}, log={cfg.log}"
        )

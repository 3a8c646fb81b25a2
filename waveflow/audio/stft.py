"""Short-time Fourier transform helpers with NVIDIA's Tacotron2/WaveGlow conventions.

The conventions are: a periodic Hann window of ``win_length`` samples, zero-padded (centred) to
``n_fft``; frames centred on multiples of ``hop_length`` (``n_fft // 2`` samples of reflect padding
on both sides, so ``T`` samples give ``T // hop_length + 1`` frames); one-sided spectra with
``n_fft // 2 + 1`` bins; no normalisation.

NVIDIA computes this STFT as a convolution with a windowed Fourier basis and inverts it with the
pseudo-inverse of that basis, divided by the overlap-added squared window. For the real one-sided
basis the pseudo-inverse is the inverse real FFT (both are left inverses of the basis and both ignore
the imaginary parts of the DC and Nyquist bins), so ``torch.stft``/``torch.istft`` compute the same
maps; only float32 rounding differs.

This module only needs torch, so the mel front end (layer 1) and the denoiser both use it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def hann_window(
    win_length: int,
    n_fft: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Periodic Hann window of ``win_length`` samples, zero-padded (centred) to ``(n_fft,)``.

    Computed in float64 and cast, so float32 values equal ``scipy.signal.get_window('hann',
    win_length, fftbins=True)`` cast to float32 (what NVIDIA's basis uses).
    """
    if not 0 < win_length <= n_fft:
        raise ValueError(f"win_length must be in (0, n_fft={n_fft}], got {win_length}")
    n = torch.arange(win_length, dtype=torch.float64)
    window = 0.5 - 0.5 * torch.cos(2.0 * math.pi * n / win_length)
    left = (n_fft - win_length) // 2  # same split as librosa.util.pad_center
    window = torch.nn.functional.pad(window, (left, n_fft - win_length - left))
    return window.to(device=device, dtype=dtype)


def stft_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the transform runs in: float64 stays float64, everything else uses float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def stft(audio: Tensor, window: Tensor, hop_length: int) -> Tensor:
    """Centred, reflect-padded STFT: ``audio (B, T)`` -> complex ``(B, n_fft // 2 + 1, frames)``.

    ``n_fft`` is ``len(window)``; ``frames = T // hop_length + 1`` for even ``n_fft``. The transform runs
    in float32 (float64 for float64 input) with autocast disabled.
    """
    n_fft = window.shape[-1]
    if audio.dim() != 2:
        raise ValueError(f"audio must be (B, T), got shape {tuple(audio.shape)}")
    if audio.shape[-1] <= n_fft // 2:
        raise ValueError(
            f"audio has {audio.shape[-1]} samples; the centred STFT needs more than n_fft // 2 = "
            f"{n_fft // 2} for reflect padding"
        )
    dtype = stft_dtype(audio.dtype)
    with torch.autocast(device_type=audio.device.type, enabled=False):
        return torch.stft(
            audio.to(dtype),
            n_fft=n_fft,
            hop_length=hop_length,
            window=window.to(device=audio.device, dtype=dtype),
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )


def istft(spec: Tensor, window: Tensor, hop_length: int, length: int) -> Tensor:
    """Inverse of :func:`stft`: complex ``(B, n_fft // 2 + 1, frames)`` -> ``(B, length)``.

    Overlap-add of the windowed inverse FFTs divided by the overlap-added squared window, with the
    ``n_fft // 2`` padding samples removed from the front.
    """
    n_fft = window.shape[-1]
    if spec.dim() != 3 or spec.shape[1] != n_fft // 2 + 1:
        raise ValueError(
            f"spec must be (B, n_fft // 2 + 1 = {n_fft // 2 + 1}, frames), got shape {tuple(spec.shape)}"
        )
    real_dtype = torch.float64 if spec.dtype == torch.complex128 else torch.float32
    with torch.autocast(device_type=spec.device.type, enabled=False):
        return torch.istft(
            spec,
            n_fft=n_fft,
            hop_length=hop_length,
            window=window.to(device=spec.device, dtype=real_dtype),
            center=True,
            normalized=False,
            onesided=True,
            length=length,
        )


def to_polar(spec: Tensor) -> tuple[Tensor, Tensor]:
    """Complex spectrum -> ``(magnitude, phase)``, both real and of the same shape.

    The magnitude is ``sqrt(re^2 + im^2)`` and the phase ``atan2(im, re)`` (0 where the bin is 0).
    """
    return spec.abs(), spec.angle()


def from_polar(magnitude: Tensor, phase: Tensor) -> Tensor:
    """``(magnitude, phase)`` -> complex spectrum ``magnitude * exp(i * phase)``."""
    return torch.polar(magnitude, phase)

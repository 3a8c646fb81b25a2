"""NVIDIA's WaveGlow denoiser: subtract the model's own bias spectrum.

A trained WaveGlow played with a silent (all-zero) mel and ``sigma = 0`` does not output silence: it
emits a faint, roughly stationary hiss that is also present under real speech. The denoiser measures
that hiss once, as the STFT magnitude of the first frame of ``model.infer(zeros(1, n_mels, 88), 0)``,
and removes it from any audio by spectral subtraction::

    audio (B, T) --STFT--> magnitude, phase
    magnitude' = max(magnitude - strength * bias_spec, 0)      (per frequency bin, every frame)
    (magnitude', phase) --iSTFT--> audio (B, T)

Unlike NVIDIA's ``denoiser.py`` the mel size, device and dtype come from the model (NVIDIA hard-codes
80 mels and ``.cuda()``), and the output is ``(B, T)`` rather than ``(B, 1, T)``. NVIDIA's STFT is a
convolution with a Fourier basis; :mod:`waveflow.audio.stft` computes the same maps with FFTs.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor, nn

from waveflow.audio import stft as stft_ops

# NVIDIA's bias mel has 88 frames. Only the first STFT frame of its audio is kept, which sees the
# first n_fft // 2 samples, so the length only has to exceed that; 88 keeps exact parity.
_BIAS_FRAMES = 88


class BiasSource(Protocol):
    """What the denoiser needs from a vocoder (``WaveGlow`` satisfies it)."""

    n_mels: int

    def infer(self, mel: Tensor, sigma: float = ...) -> Tensor: ...

    def parameters(self, recurse: bool = ...): ...


class Denoiser(nn.Module):
    """Remove a vocoder's bias spectrum from its output: ``audio (B, T)`` -> ``audio (B, T)``.

    ``bias_spec`` (buffer, ``(1, n_fft // 2 + 1, 1)``) is computed at construction on the model's device
    and in its dtype (the STFT itself runs in float32, or float64 for a float64 model).
    """

    bias_spec: Tensor
    window: Tensor

    def __init__(
        self, model: BiasSource, *, n_fft: int = 1024, hop_length: int = 256, win_length: int = 1024
    ):
        super().__init__()
        if n_fft <= 0 or hop_length <= 0:
            raise ValueError(f"n_fft and hop_length must be positive, got {n_fft}, {hop_length}")
        if hop_length > win_length:
            raise ValueError(
                f"hop_length ({hop_length}) must not exceed win_length ({win_length}): frames would not overlap"
            )
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        try:
            reference = next(iter(model.parameters()))
        except StopIteration:
            raise ValueError("the model has no parameters to take a device and dtype from") from None
        device, dtype = reference.device, reference.dtype
        self.register_buffer("window", stft_ops.hann_window(win_length, n_fft, device=device))
        with torch.no_grad():
            silent_mel = torch.zeros(1, model.n_mels, _BIAS_FRAMES, device=device, dtype=dtype)
            bias_audio = model.infer(silent_mel, sigma=0.0)  # (1, T)
            magnitude, _ = stft_ops.to_polar(stft_ops.stft(bias_audio, self.window, hop_length))
        self.register_buffer("bias_spec", magnitude[:, :, :1].clone())  # (1, n_bins, 1): first frame only

    def forward(self, audio: Tensor, strength: float = 0.1) -> Tensor:
        """Spectral subtraction of ``strength * bias_spec``; output has the input's shape and dtype."""
        if audio.dim() != 2:
            raise ValueError(f"audio must be (B, T), got shape {tuple(audio.shape)}")
        if not audio.is_floating_point():
            raise ValueError(f"audio must be a float tensor, got {audio.dtype}")
        if not (math.isfinite(strength) and strength >= 0):
            raise ValueError(f"strength must be a finite number >= 0, got {strength}")
        if audio.shape[1] <= self.n_fft // 2:
            raise ValueError(
                f"audio has {audio.shape[1]} samples; the denoiser's STFT needs more than "
                f"n_fft // 2 = {self.n_fft // 2}"
            )
        if not torch.isfinite(audio).all():
            raise ValueError("audio contains NaN or Inf")
        spec = stft_ops.stft(audio, self.window, self.hop_length)  # (B, n_bins, frames)
        magnitude, phase = stft_ops.to_polar(spec)
        bias = self.bias_spec.to(device=magnitude.device, dtype=magnitude.dtype)
        magnitude = (magnitude - strength * bias).clamp(min=0.0)
        denoised = stft_ops.istft(
            stft_ops.from_polar(magnitude, phase), self.window, self.hop_length, audio.shape[1]
        )
        return denoised.to(audio.dtype)

    def extra_repr(self) -> str:
        return f"n_fft={self.n_fft}, hop_length={self.hop_length}, win_length={self.win_length}"

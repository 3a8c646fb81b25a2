"""Exact negative log-likelihood of audio under the flow.

With ``z = f(x)`` and a Gaussian prior ``N(0, sigma^2 I)`` on ``z``, the density of the audio is

    -log p(x) = ||z||^2 / (2 sigma^2) + N (log sigma + log(2 pi) / 2) - log|det df/dx|

for ``N`` audio samples. :func:`nll` returns it per audio sample, in nats, for each batch item.

NVIDIA's ``WaveGlowLoss`` drops the constant ``N (log sigma + log(2 pi) / 2)``; :func:`nvidia_loss`
reproduces that number so results can be compared with theirs (their "loss -6" at sigma 1 is an
NLL of about -5.08 nats/sample here). Divide nats by ``ln 2`` for bits per sample.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def _sum_sq(z: Tensor) -> Tensor:
    zf = z.to(torch.promote_types(z.dtype, torch.float32))  # half-precision z: sum in float32
    return (zf * zf).reshape(zf.shape[0], -1).sum(dim=1)


def nvidia_loss(z: Tensor, logdet: Tensor, sigma: float = 1.0) -> Tensor:
    """NVIDIA's per-sample loss without the Gaussian constant, per batch item ``(B,)``.

    ``mean()`` over the batch equals ``WaveGlowLoss(sigma)`` on the same output.
    """
    n = z[0].numel()
    return (_sum_sq(z) / (2.0 * sigma * sigma) - logdet) / n


def nll(z: Tensor, logdet: Tensor, sigma: float = 1.0) -> Tensor:
    """Exact NLL in nats per audio sample, per batch item ``(B,)``, Gaussian constant included."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return nvidia_loss(z, logdet, sigma) + math.log(sigma) + 0.5 * LOG_2PI


def nats_to_bits(x: Tensor | float) -> Tensor | float:
    return x / math.log(2.0)


# -- spectral distance (the auxiliary training loss and the MR-STFT metric) ----------------------
# (n_fft, hop_length, win_length): ParallelWaveGAN's set at 22.05/24 kHz.
STFT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))
POWER_FLOOR = 1e-7


def stft_magnitude(audio: Tensor, n_fft: int, hop_length: int, win_length: int) -> Tensor:
    """``|STFT|`` of ``audio`` ``(..., T)``: periodic Hann window, centred reflect-padded frames.

    The power is floored (as ParallelWaveGAN does), not the magnitude: numerically silent bins sit
    at ``sqrt(1e-7)`` (about -70 dB) instead of dominating a log distance.
    """
    window = torch.hann_window(win_length, periodic=True, dtype=audio.dtype, device=audio.device)
    spec = torch.stft(
        audio, n_fft, hop_length, win_length, window, center=True, pad_mode="reflect", return_complex=True
    )  # (..., n_fft // 2 + 1, frames)
    return (spec.real.square() + spec.imag.square()).clamp(min=POWER_FLOOR).sqrt()


def stft_distance_terms(
    estimate: Tensor, reference: Tensor, resolutions: tuple[tuple[int, int, int], ...] = STFT_RESOLUTIONS
) -> tuple[Tensor, Tensor]:
    """``(spectral convergence, log-magnitude L1)``, each averaged over ``resolutions`` (differentiable).

    Spectral convergence is ``||S_r - S_e||_F / ||S_r||_F`` over the whole batch; the log term is
    the mean ``|ln S_r - ln S_e|``. Both are insensitive to phase.
    """
    if estimate.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(estimate.shape)} and {tuple(reference.shape)}")
    if not resolutions:
        raise ValueError("resolutions must name at least one (n_fft, hop_length, win_length)")
    convergence, log_l1 = [], []
    for n_fft, hop_length, win_length in resolutions:
        if reference.shape[-1] <= n_fft // 2:
            raise ValueError(
                f"signals of {reference.shape[-1]} samples are too short for an STFT with n_fft={n_fft} "
                f"(reflect padding needs more than {n_fft // 2})"
            )
        mag_ref = stft_magnitude(reference, n_fft, hop_length, win_length)
        mag_est = stft_magnitude(estimate, n_fft, hop_length, win_length)
        convergence.append(torch.linalg.norm(mag_ref - mag_est) / torch.linalg.norm(mag_ref))
        log_l1.append((mag_ref.log() - mag_est.log()).abs().mean())
    return torch.stack(convergence).mean(), torch.stack(log_l1).mean()


def multi_resolution_stft_loss(generated: Tensor, target: Tensor) -> Tensor:
    """The auxiliary training loss: spectral convergence + log-magnitude L1 of ``(B, T)`` audio.

    A flow trained with it beside the NLL keeps its randomness in the phase while matching the
    target's spectrum (WG-WaveNet).
    """
    if generated.dim() != 2:
        raise ValueError(f"expected (B, T) audio, got shape {tuple(generated.shape)}")
    sc, log_l1 = stft_distance_terms(generated.float(), target.float())
    return sc + log_l1

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

"""Squeeze: fold time into channels, ``n_group`` consecutive samples per vector.

Layout (NVIDIA's ``unfold``): for an input ``(B, C, T)`` the output is ``(B, C * g, T / g)`` with
output channel ``c * g + j`` holding sample ``t * g + j`` of input channel ``c``::

    audio   a0 a1 a2 a3 a4 a5 a6 a7 | a8 a9 ...        (B, T), g = 8
    squeezed channel j, time t  =  a[t*8 + j]          (B, 8, T/8)

The same rule groups the upsampled mel: channel ``mel_bin * g + j``.
"""

from __future__ import annotations

from torch import Tensor

from waveflow.flows.base import Flow, zero_logdet


def squeeze(x: Tensor, n_group: int) -> Tensor:
    """``(B, C, T)`` -> ``(B, C * n_group, T / n_group)``; ``(B, T)`` -> ``(B, n_group, T / n_group)``."""
    if x.dim() == 2:
        x = x.unsqueeze(1)
    if x.dim() != 3:
        raise ValueError(f"squeeze expects (B, T) or (B, C, T), got {tuple(x.shape)}")
    b, c, t = x.shape
    if t % n_group != 0:
        raise ValueError(f"length {t} is not divisible by n_group={n_group}")
    x = x.reshape(b, c, t // n_group, n_group)  # (B, C, T/g, g)
    x = x.transpose(2, 3)  # (B, C, g, T/g)
    return x.reshape(b, c * n_group, t // n_group)  # channel c*g + j


def unsqueeze(y: Tensor, n_group: int, num_channels: int = 1) -> Tensor:
    """Inverse of :func:`squeeze`. Returns ``(B, T)`` when ``num_channels == 1``, else ``(B, C, T)``."""
    if y.dim() != 3 or y.shape[1] != num_channels * n_group:
        raise ValueError(f"unsqueeze expects (B, {num_channels * n_group}, T'), got {tuple(y.shape)}")
    b, _, tg = y.shape
    x = y.reshape(b, num_channels, n_group, tg)  # (B, C, g, T/g)
    x = x.transpose(2, 3).reshape(b, num_channels, tg * n_group)  # (B, C, T)
    return x.squeeze(1) if num_channels == 1 else x


class Squeeze(Flow):
    """:func:`squeeze` as a flow: ``(B, T)`` <-> ``(B, n_group, T / n_group)``. Volume preserving."""

    def __init__(self, n_group: int):
        super().__init__()
        if n_group < 1:
            raise ValueError(f"n_group must be >= 1, got {n_group}")
        self.n_group = n_group

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return squeeze(x, self.n_group), zero_logdet(x)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return unsqueeze(y, self.n_group), zero_logdet(y)

"""Coupling layers: half the channels pass unchanged and parameterise a map of the other half.

The conditioner network is injected: any ``nn.Module`` called as ``conditioner(x_a, cond)`` that
returns ``(B, k * n_b, T)``. This module knows nothing about WaveNet. For an identity at
initialisation the conditioner's last layer must be zero-initialised (WaveGlow's ``WN.end``).

Split (NVIDIA's): ``x_a = x[:, :C // 2]`` conditions, ``x_b = x[:, C // 2:]`` is transformed.
With ``swap=True`` the roles are exchanged (``x_a`` = the last ``C // 2`` channels), which gives
RealNVP's alternating masks without a permutation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from waveflow.flows.base import Flow, logdet_dtype, zero_logdet


def soft_clamp(log_s: Tensor, clamp: float) -> Tensor:
    """``clamp * tanh(log_s / clamp)``: the log-scale limited softly to ``(-clamp, clamp)``.

    The one definition, read by the coupling, the fast engine and the exported graph (scriptable).
    """
    return clamp * torch.tanh(log_s / clamp)


class _Coupling(Flow):
    def __init__(self, num_channels: int, conditioner: nn.Module, swap: bool = False):
        super().__init__()
        if num_channels < 2:
            raise ValueError(f"a coupling needs at least 2 channels, got {num_channels}")
        self.num_channels = num_channels
        self.conditioner = conditioner
        self.swap = swap
        self.n_a = num_channels // 2  # conditioning half
        self.n_b = num_channels - self.n_a  # transformed half

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_a, x_b)``: the conditioning half and the transformed half."""
        if x.dim() != 3 or x.shape[1] != self.num_channels:
            raise ValueError(
                f"{type(self).__name__} expects (B, {self.num_channels}, T), got {tuple(x.shape)}"
            )
        # torch.split, not two slices: the backward of a slice zero-fills a tensor of the input's
        # size for each slice; split's backward is one concatenation.
        if self.swap:
            x_b, x_a = x.split([self.n_b, self.n_a], dim=1)
            return x_a, x_b
        x_a, x_b = x.split([self.n_a, self.n_b], dim=1)
        return x_a, x_b

    def merge(self, x_a: Tensor, x_b: Tensor) -> Tensor:
        return torch.cat([x_b, x_a] if self.swap else [x_a, x_b], dim=1)


class AffineCoupling(_Coupling):
    """``y_b = x_b * exp(log_s) + t`` with ``(t, log_s) = conditioner(x_a, cond)``.

    The conditioner returns ``(B, 2 * n_b, T)``: shift first, log-scale second (NVIDIA's order).
    ``log_scale_clamp`` (off by default, for NVIDIA compatibility) soft-limits the log-scale to
    ``(-clamp, clamp)`` with ``clamp * tanh(s / clamp)``, which keeps early training stable.
    ``logdet = sum(log_s)`` over channels and time, accumulated in float32 or wider.
    """

    def __init__(
        self,
        num_channels: int,
        conditioner: nn.Module,
        swap: bool = False,
        log_scale_clamp: float | None = None,
    ):
        super().__init__(num_channels, conditioner, swap)
        if log_scale_clamp is not None and log_scale_clamp <= 0:
            raise ValueError(f"log_scale_clamp must be positive, got {log_scale_clamp}")
        self.log_scale_clamp = log_scale_clamp

    def shift_and_log_scale(self, x_a: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        out = self.conditioner(x_a, cond)
        if out.shape[1] != 2 * self.n_b:
            raise ValueError(f"conditioner returned {out.shape[1]} channels, expected {2 * self.n_b}")
        shift, log_s = out.split(self.n_b, dim=1)
        if self.log_scale_clamp is not None:
            log_s = soft_clamp(log_s, self.log_scale_clamp)
        return shift, log_s

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, log_s = self._forward(x, cond)
        return y, log_s.to(logdet_dtype(x)).sum(dim=(1, 2))

    def forward_per_position(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, log_s = self._forward(x, cond)
        return y, log_s.to(logdet_dtype(x)).sum(dim=1)

    def _forward(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        x_a, x_b = self.split(x)
        shift, log_s = self.shift_and_log_scale(x_a, cond)
        return self.merge(x_a, x_b * torch.exp(log_s) + shift), log_s

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y_a, y_b = self.split(y)
        shift, log_s = self.shift_and_log_scale(y_a, cond)
        x_b = (y_b - shift) * torch.exp(-log_s)
        logdet = -log_s.to(logdet_dtype(y)).sum(dim=(1, 2))
        return self.merge(y_a, x_b), logdet


class AdditiveCoupling(_Coupling):
    """NICE's volume-preserving coupling: ``y_b = x_b + t(x_a, cond)``; ``logdet = 0``.

    The conditioner returns ``(B, n_b, T)``.
    """

    def _shift(self, x_a: Tensor, cond: Tensor | None) -> Tensor:
        shift = self.conditioner(x_a, cond)
        if shift.shape[1] != self.n_b:
            raise ValueError(f"conditioner returned {shift.shape[1]} channels, expected {self.n_b}")
        return shift

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_a, x_b = self.split(x)
        return self.merge(x_a, x_b + self._shift(x_a, cond)), zero_logdet(x)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y_a, y_b = self.split(y)
        return self.merge(y_a, y_b - self._shift(y_a, cond)), zero_logdet(y)

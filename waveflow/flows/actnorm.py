"""Activation normalisation (Glow): a per-channel affine map with data-dependent initialisation."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from waveflow.flows.base import Flow, logdet_dtype


class ActNorm(Flow):
    """``y = (x + bias) * exp(log_scale)`` per channel, on ``(B, C, T)``.

    On the first forward call in training mode the parameters are set so that the output of
    that batch has zero mean and unit variance per channel (Glow's data-dependent init). Under
    torch.distributed the statistics are averaged over ranks first, so every replica starts from
    the same parameters. The ``initialized`` flag is saved in the state dict, so a loaded model
    is never re-initialised.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.log_scale = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        xf = x.float()
        mean = xf.mean(dim=(0, 2))
        sq_mean = (xf * xf).mean(dim=(0, 2))
        if dist.is_available() and dist.is_initialized():
            stats = torch.stack([mean, sq_mean])
            dist.all_reduce(stats)
            stats /= dist.get_world_size()
            mean, sq_mean = stats[0], stats[1]
        std = torch.sqrt(torch.clamp(sq_mean - mean * mean, min=0.0)) + self.eps
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std))
        self.initialized.fill_(True)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.num_channels:
            raise ValueError(f"ActNorm expects (B, {self.num_channels}, T), got {tuple(x.shape)}")

    def _logdet(self, x: Tensor) -> Tensor:
        ld = self.log_scale.to(logdet_dtype(x)).sum() * x.shape[-1]
        return ld.expand(x.shape[0])

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        if self.training and not bool(self.initialized):
            self._initialize(x)
        y = (x + self.bias.to(x.dtype)[:, None]) * torch.exp(self.log_scale.to(x.dtype))[:, None]
        return y, self._logdet(x)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(y)
        x = y * torch.exp(-self.log_scale.to(y.dtype))[:, None] - self.bias.to(y.dtype)[:, None]
        return x, -self._logdet(y)

"""Fixed channel permutations (RealNVP/NICE mix halves by reversing channel order)."""

from __future__ import annotations

import torch
from torch import Tensor

from waveflow.flows.base import Flow, zero_logdet


class ChannelPermutation(Flow):
    """Reorder channels by a fixed permutation: ``y[:, i] = x[:, perm[i]]``. Volume preserving."""

    def __init__(self, permutation: Tensor | list[int]):
        super().__init__()
        perm = torch.as_tensor(permutation, dtype=torch.long)
        if sorted(perm.tolist()) != list(range(len(perm))):
            raise ValueError(f"not a permutation of 0..{len(perm) - 1}: {perm.tolist()}")
        self.register_buffer("perm", perm, persistent=False)
        self.register_buffer("inv_perm", torch.argsort(perm), persistent=False)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.perm.numel():
            raise ValueError(
                f"{type(self).__name__} expects (B, {self.perm.numel()}, T), got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        return x[:, self.perm], zero_logdet(x)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(y)
        return y[:, self.inv_perm], zero_logdet(y)


class ChannelReverse(ChannelPermutation):
    """Reverse the channel order, so the next coupling transforms the other half."""

    def __init__(self, num_channels: int):
        super().__init__(list(range(num_channels - 1, -1, -1)))

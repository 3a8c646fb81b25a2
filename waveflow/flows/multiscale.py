"""Early outputs ("multi-scale"): some channels leave the flow before later steps.

The schedule is computed once, as data, and read by both directions. For NVIDIA's released
model (12 steps, 8 channels, ``every=4``, ``size=2``)::

    x (8 ch) -> step0..step3 -> emit 2 -> (6 ch) step4..step7 -> emit 2 -> (4 ch) step8..step11
                               |                                  |                      |
    z = [ emitted before step4 (2) | emitted before step8 (2) | remaining after step11 (4) ]

The **first** channels are emitted (NVIDIA's choice). ``inverse`` reads ``z`` with the same
layout: it starts from the remaining block and prepends each emitted block when it reaches the
step that emitted it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from waveflow.flows.base import Flow, zero_logdet


@dataclass(frozen=True)
class EarlyOutputSchedule:
    """Which channels leave before which step.

    ``emit[k]``: channels emitted just before step ``k``. ``channels[k]``: channels step ``k`` sees.
    ``remaining``: channels left after the last step. ``blocks``: ``(step, size)`` of the emitted
    blocks in the order they appear in ``z`` (followed by the remaining block).
    """

    num_steps: int
    num_channels: int
    every: int
    size: int
    emit: tuple[int, ...]
    channels: tuple[int, ...]
    remaining: int

    @classmethod
    def compute(cls, num_steps: int, num_channels: int, every: int, size: int) -> EarlyOutputSchedule:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        emit, channels = [], []
        c = num_channels
        for k in range(num_steps):
            e = size if (k > 0 and k % every == 0 and size > 0) else 0
            if c - e < 2:
                raise ValueError(
                    f"early outputs exhaust the channels: step {k} would see {c - e} channel(s) "
                    f"(num_channels={num_channels}, every={every}, size={size})"
                )
            c -= e
            emit.append(e)
            channels.append(c)
        return cls(num_steps, num_channels, every, size, tuple(emit), tuple(channels), c)

    @property
    def blocks(self) -> list[tuple[int, int]]:
        return [(k, e) for k, e in enumerate(self.emit) if e > 0]


class MultiScaleFlow(Flow):
    """Runs ``steps`` on ``(B, C, T)`` with early outputs; ``z`` is ``(B, C, T)`` again."""

    def __init__(self, steps: Sequence[Flow], schedule: EarlyOutputSchedule):
        super().__init__()
        if len(steps) != schedule.num_steps:
            raise ValueError(f"{len(steps)} steps but the schedule has {schedule.num_steps}")
        self.steps = nn.ModuleList(steps)
        self.schedule = schedule

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._forward(x, cond, per_position=False)

    def forward_per_position(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._forward(x, cond, per_position=True)

    def _forward(self, x: Tensor, cond: Tensor | None, per_position: bool) -> tuple[Tensor, Tensor]:
        if x.dim() != 3 or x.shape[1] != self.schedule.num_channels:
            raise ValueError(f"expected (B, {self.schedule.num_channels}, T), got {tuple(x.shape)}")
        logdet = zero_logdet(x)
        if per_position:
            logdet = logdet.unsqueeze(1).expand(-1, x.shape[2])
        emitted = []
        for step, e in zip(self.steps, self.schedule.emit):
            if e:
                early, x = x.split([e, x.shape[1] - e], dim=1)
                emitted.append(early)
            x, ld = step.forward_per_position(x, cond) if per_position else step(x, cond)
            logdet = logdet + ld
        return torch.cat(emitted + [x], dim=1), logdet

    def split_latent(self, z: Tensor) -> tuple[dict[int, Tensor], Tensor]:
        """``z`` -> (``{step: emitted block}``, remaining block)."""
        if z.dim() != 3 or z.shape[1] != self.schedule.num_channels:
            raise ValueError(
                f"expected z of shape (B, {self.schedule.num_channels}, T), got {tuple(z.shape)}"
            )
        blocks, start = {}, 0
        for k, e in self.schedule.blocks:
            blocks[k] = z[:, start : start + e]
            start += e
        return blocks, z[:, start:]

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        blocks, x = self.split_latent(z)
        logdet = zero_logdet(z)
        for k in range(len(self.steps) - 1, -1, -1):
            x, ld = self.steps[k].inverse(x, cond)
            logdet = logdet + ld
            if k in blocks:
                x = torch.cat([blocks[k], x], dim=1)
        return x, logdet

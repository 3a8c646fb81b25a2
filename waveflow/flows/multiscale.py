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

    @property
    def block_offsets(self) -> dict[int, tuple[int, int]]:
        """``{step: (first channel, size)}`` of each emitted block inside ``z``."""
        offsets, start = {}, 0
        for k, e in self.blocks:
            offsets[k] = (start, e)
            start += e
        return offsets

    def draw_latent(
        self,
        batch_size: int,
        num_groups: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Standard normal ``z`` ``(B, num_channels, num_groups)`` in NVIDIA's draw order.

        NVIDIA's ``infer`` draws the remaining channels first, then the emitted blocks from the
        last early point to the first, so a seeded CPU generator reproduces its noise exactly.
        Drawn on ``generator``'s device (else ``device``).
        """

        def draw(channels: int) -> Tensor:
            return torch.randn(batch_size, channels, num_groups, generator=generator, device=device)

        remaining = draw(self.remaining)
        emitted = {k: draw(e) for k, e in reversed(self.blocks)}
        return torch.cat([emitted[k] for k, _ in self.blocks] + [remaining], dim=1)

    def inverse_plan(
        self, width: int, contexts: Sequence[int], keep: tuple[int, int] | None = None
    ) -> InversePlan:
        """The inverse over a window of ``width`` groups, as data (see :class:`InversePlan`).

        ``contexts[k]``: groups each side that step ``k``'s coupling reads. ``keep``: window groups
        ``[a, b)`` wanted (default all). Step ``k`` runs only where a kept group can still depend
        on its input: ``sum(contexts[:k + 1])`` groups around ``keep``, cut to the window.
        """
        if len(contexts) != self.num_steps:
            raise ValueError(f"{len(contexts)} contexts for {self.num_steps} steps")
        lo_keep, hi_keep = (0, width) if keep is None else keep
        if not 0 <= lo_keep < hi_keep <= width:
            raise ValueError(f"keep {keep} is not inside a window of {width} groups")
        ranges = []
        for k in range(self.num_steps - 1, -1, -1):
            reach = sum(contexts[: k + 1])
            ranges.append((k, max(0, lo_keep - reach), min(width, hi_keep + reach)))
        return InversePlan(tuple(ranges), (lo_keep, hi_keep), self.block_offsets, self.remaining)


@dataclass(frozen=True)
class InversePlan:
    """The inverse flow over a window of groups, written once and read by every engine.

    ``steps``: ``(k, lo, hi)`` in the order they run (last step first): step ``k`` inverts window
    groups ``[lo, hi)``, the only ones a kept group can still depend on (the ranges shrink as the
    steps use up their context). ``blocks``: ``{k: (first channel, size)}`` of the block of ``z``
    emitted before step ``k``, which joins in front of the channels once step ``k`` is undone.
    ``remaining``: the last channels of ``z``, where the inverse starts. ``keep``: the groups
    returned. Engines differ only in how they run one step on a range:
    :meth:`MultiScaleFlow.inverse_window` (the model's own modules),
    :class:`~waveflow.infer.fast.FastWaveGlow` (in place, time-major) and the exported graph.
    """

    steps: tuple[tuple[int, int, int], ...]
    keep: tuple[int, int]
    blocks: dict[int, tuple[int, int]]
    remaining: int


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

    @property
    def contexts(self) -> list[int]:
        """Groups each side that each step's coupling reads (its conditioner's ``context``)."""
        return [step.coupling.conditioner.context for step in self.steps]

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.split_latent(z)  # shape check
        plan = self.schedule.inverse_plan(z.shape[2], [z.shape[2]] * len(self.steps))
        return self._run_inverse(z, cond, plan, with_logdet=True)

    def inverse_window(self, z: Tensor, cond: Tensor, keep: tuple[int, int] | None = None) -> Tensor:
        """``x`` of window groups ``keep`` (default all) from ``z`` and ``cond`` of a window.

        Each step runs only on the groups a kept one still depends on (:meth:`EarlyOutputSchedule.inverse_plan`);
        groups of ``keep`` within ``sum(contexts)`` of a window edge that is not an edge of the
        whole sequence see the convolutions' zero padding there, not the real neighbours.
        """
        self.split_latent(z)
        plan = self.schedule.inverse_plan(z.shape[2], self.contexts, keep)
        return self._run_inverse(z, cond, plan, with_logdet=False)[0]

    def _run_inverse(
        self, z: Tensor, cond: Tensor | None, plan: InversePlan, with_logdet: bool
    ) -> tuple[Tensor, Tensor]:
        x, lo = z[:, z.shape[1] - plan.remaining :], 0
        logdet = zero_logdet(z)
        for k, step_lo, step_hi in plan.steps:
            x, lo = x[:, :, step_lo - lo : step_hi - lo], step_lo
            x, ld = self.steps[k].inverse(x, None if cond is None else cond[:, :, step_lo:step_hi])
            if with_logdet:
                logdet = logdet + ld
            if k in plan.blocks:
                first, size = plan.blocks[k]
                x = torch.cat([z[:, first : first + size, step_lo:step_hi], x], dim=1)
        return x[:, :, plan.keep[0] - lo : plan.keep[1] - lo], logdet

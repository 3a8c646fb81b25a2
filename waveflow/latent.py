"""The noise of synthesis: two documented orders, written once.

Every public synthesis entry point (:meth:`WaveGlow.infer <waveflow.model.WaveGlow.infer>`,
:meth:`FastWaveGlow.infer <waveflow.infer.fast.FastWaveGlow.infer>`, :class:`~waveflow.infer.vocoder.Vocoder`
calls, ``decode_batch`` and ``stream``, :class:`~waveflow.infer.export.OnnxVocoder`, ``waveflow
synthesize``) draws ``z ~ N(0, sigma^2)`` through :func:`item_latents`, in one of two orders chosen
by one switch, ``latent_order``:

* ``"stream"`` (the default of the :class:`~waveflow.infer.vocoder.Vocoder` family): each batch
  item reads its own :class:`LatentStream` (fixed blocks of ``LATENT_BLOCK_GROUPS`` groups, one
  ``torch.randn`` call each), so any prefix is the same however it is read: batched, one by one,
  chunked and streamed synthesis give the same audio from the same seed.
* ``"nvidia"`` (the default of ``WaveGlow.infer``/``FastWaveGlow.infer``): one draw for the whole
  batch in NVIDIA/waveglow's order (:meth:`EarlyOutputSchedule.draw_latent
  <waveflow.flows.EarlyOutputSchedule.draw_latent>`), bit-exact with NVIDIA's ``infer`` for a
  seeded CPU generator. It depends on the batch's length, so it cannot stream.

The same order and seed give the same audio from every entry point that takes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from waveflow.flows import EarlyOutputSchedule

LATENT_BLOCK_GROUPS = 4096
LATENT_ORDERS = ("stream", "nvidia")


class LatentStream:
    """One latent sequence ``z ~ N(0, sigma^2)``, ``(1, n_group, position)``, read front to back.

    Blocks of ``block_groups`` groups are drawn with ``torch.randn((1, n_group, block_groups))`` from
    ``generator`` (on the generator's device, else ``device``), scaled by ``sigma`` and handed out
    in order; :meth:`read` returns the next groups. Reading 10 then 20 groups gives the same values
    as reading 30 at once.
    """

    def __init__(
        self,
        n_group: int,
        sigma: float = 0.6,
        generator: torch.Generator | None = None,
        *,
        block_groups: int = LATENT_BLOCK_GROUPS,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        if not sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        if block_groups < 1:
            raise ValueError(f"block_groups must be >= 1, got {block_groups}")
        self.n_group = n_group
        self.sigma = float(sigma)
        self.generator = generator
        self.block_groups = block_groups
        self.device = torch.device(device) if device is not None else None
        self.dtype = dtype
        self.position = 0  # groups handed out so far
        self._buffer: Tensor | None = None  # drawn but not yet handed out, (1, n_group, k)

    def _draw_block(self) -> Tensor:
        gen_device = self.generator.device if self.generator is not None else self.device
        block = torch.randn(1, self.n_group, self.block_groups, generator=self.generator, device=gen_device)
        return (block * self.sigma).to(device=self.device, dtype=self.dtype)

    def read(self, num_groups: int) -> Tensor:
        """The next ``num_groups`` groups: ``(1, n_group, num_groups)``."""
        if num_groups < 0:
            raise ValueError(f"num_groups must be >= 0, got {num_groups}")
        parts, have = [], 0
        if self._buffer is not None:
            parts.append(self._buffer)
            have = self._buffer.shape[2]
        while have < num_groups:
            block = self._draw_block()
            parts.append(block)
            have += block.shape[2]
        if not parts:
            return torch.empty(1, self.n_group, 0, device=self.device, dtype=self.dtype)
        drawn = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]  # (1, g, have)
        self._buffer = drawn[:, :, num_groups:] if have > num_groups else None
        self.position += num_groups
        return drawn[:, :, :num_groups]


def check_latent_order(order: str) -> str:
    if order not in LATENT_ORDERS:
        raise ValueError(f"latent_order must be one of {', '.join(LATENT_ORDERS)}, got {order!r}")
    return order


def item_latents(
    schedule: EarlyOutputSchedule,
    lengths: Sequence[int],
    sigma: float,
    generator: torch.Generator | None = None,
    *,
    order: str = "stream",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[Tensor]:
    """One latent ``(1, n_group, lengths[i])`` per batch item (lengths in groups), in batch order.

    ``"stream"``: item ``i`` reads the first ``lengths[i]`` groups of its own :class:`LatentStream`
    (the streams follow each other on ``generator``). ``"nvidia"``: one
    :meth:`~waveflow.flows.EarlyOutputSchedule.draw_latent` of ``(B, n_group, max(lengths))``, item
    ``i`` taking its first ``lengths[i]`` groups (for equal lengths: NVIDIA's ``infer`` noise).
    """
    if check_latent_order(order) == "stream":
        n_group = schedule.num_channels
        return [LatentStream(n_group, sigma, generator, device=device, dtype=dtype).read(n) for n in lengths]
    gen_device = generator.device if generator is not None else device
    z = schedule.draw_latent(len(lengths), max(lengths), generator, gen_device) * sigma
    z = z.to(device=device, dtype=dtype)
    return [z[i : i + 1, :, :n] for i, n in enumerate(lengths)]

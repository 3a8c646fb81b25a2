"""The flow contract.

A :class:`Flow` is an invertible map with a tractable Jacobian determinant.

Direction
    ``forward`` maps **data to latent** (audio -> z): it is the training direction, where the
    exact log-likelihood is computed. ``inverse`` maps **latent to data** (z -> audio): it is the
    synthesis direction. This is the nflows / FrEIA / NVIDIA WaveGlow convention (normflows uses
    the opposite one).

Signatures
    ``forward(x, cond=None) -> (y, logdet)`` and ``inverse(y, cond=None) -> (x, logdet)``.
    Both directions return the same kind of value; there is no ``reverse=`` flag.

``logdet``
    ``log |det dy/dx|`` of the map that was applied, one value per batch item: shape ``(B,)``.
    ``inverse`` returns the log-determinant of the inverse map, i.e. the negation of the value
    ``forward`` gives at the corresponding point: ``inverse(forward(x)[0])[1] == -forward(x)[1]``.
    It is float32 or wider even when the input is half precision (it is accumulated in float32
    at least), and it lives on the input's device.

``cond``
    Optional conditioning (for WaveGlow, the upsampled and grouped mel), passed unchanged to every
    step. A flow that does not use it ignores it.

Shapes
    Tensors are ``(B, C, T)`` unless a class documents otherwise (:class:`~waveflow.flows.squeeze.Squeeze`
    maps ``(B, T)`` to ``(B, n_group, T / n_group)``).

Note to implementers: subclasses implement both methods and must satisfy the contract tests in
``tests/flows/contract.py`` (round trip, log-det sign, log-det against an autograd Jacobian).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def logdet_dtype(x: Tensor) -> torch.dtype:
    """The dtype log-determinants are accumulated in for input ``x``: float32 or wider."""
    return torch.promote_types(x.dtype, torch.float32)


def zero_logdet(x: Tensor) -> Tensor:
    """A zero log-determinant of shape ``(B,)`` on ``x``'s device."""
    return x.new_zeros(x.shape[0], dtype=logdet_dtype(x))


class Flow(nn.Module):
    """Base class of every invertible step (see the module docstring for the contract)."""

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward_per_position(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``forward`` with the log-determinant split over time: ``(y, logdet (B, T))``.

        ``logdet.sum(1)`` is ``forward``'s value. Windowed (bounded-memory) likelihood keeps only
        the positions a window computes exactly. This default spreads ``forward``'s value evenly,
        which is right for flows that act on every position alike (1x1 convolutions, ActNorm,
        permutations, additive couplings); flows whose log-det varies along time override it.
        """
        y, logdet = self.forward(x, cond)
        return y, (logdet / x.shape[-1]).unsqueeze(1).expand(-1, x.shape[-1])


def _chain_per_position(flows: Iterable[Flow], x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
    logdet = x.new_zeros(x.shape[0], x.shape[-1], dtype=logdet_dtype(x))
    for flow in flows:
        x, ld = flow.forward_per_position(x, cond)
        logdet = logdet + ld
    return x, logdet


class SequentialFlow(Flow):
    """A chain of flows; log-determinants add up.

    ``forward`` applies ``flows[0]`` first; ``inverse`` undoes them in reverse order.
    """

    def __init__(self, flows: Iterable[Flow]):
        super().__init__()
        self.flows = nn.ModuleList(flows)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = zero_logdet(x)
        for flow in self.flows:
            x, ld = flow(x, cond)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = zero_logdet(y)
        for flow in reversed(self.flows):
            y, ld = flow.inverse(y, cond)
            logdet = logdet + ld
        return y, logdet

    def forward_per_position(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return _chain_per_position(self.flows, x, cond)


class FlowStep(Flow):
    """One step of a Glow-style flow: ``norm`` (optional) -> ``mix`` (optional) -> ``coupling``.

    WaveGlow's step is ``mix`` = invertible 1x1 convolution followed by an affine coupling; Glow
    adds ActNorm in front; RealNVP/NICE use a channel reversal or nothing as ``mix``.
    """

    def __init__(self, coupling: Flow, mix: Flow | None = None, norm: Flow | None = None):
        super().__init__()
        self.norm = norm
        self.mix = mix
        self.coupling = coupling

    def _parts(self) -> list[Flow]:
        return [f for f in (self.norm, self.mix, self.coupling) if f is not None]

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = zero_logdet(x)
        for flow in self._parts():
            x, ld = flow(x, cond)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = zero_logdet(y)
        for flow in reversed(self._parts()):
            y, ld = flow.inverse(y, cond)
            logdet = logdet + ld
        return y, logdet

    def forward_per_position(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return _chain_per_position(self._parts(), x, cond)

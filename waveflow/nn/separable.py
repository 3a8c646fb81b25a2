"""A WaveNet-like coupling network with depthwise-separable dilated convolutions (SqueezeWave).

::

    x_a (B, n_in, T) --start(1x1)--> h (B, C, T)
    cond (B, n_cond, T) --cond_layer(1x1, one GEMM for all layers)--> (B, 2*C*L, T)
    for layer i (dilation 2 ** (i % cycle)):
        a = pointwise[i](depthwise[i](h)) + cond_i        # depthwise: one K-tap filter per channel
        g = tanh(a[:, :C]) * sigmoid(a[:, C:])
        r = res_skip[i](g); h = h + r[:, :C]; skip += r[:, C:]   (the last layer: skip only)
    out = end(skip)                                        # zero-initialised

A dense K-tap convolution ``C -> 2C`` costs ``2 K C^2`` multiply-adds per position; the separable
one ``K C + 2 C^2``. Dilations restart every ``dilation_cycle`` layers so the receptive field stays
within the few dozen positions a training crop holds at frame rate.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from waveflow.nn.wavenet import check_inputs, fold_weight_norm, gated_activation


def pointwise(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """A 1x1 ``conv`` applied as one matrix product: ``(C_out, C_in) @ (B, C_in, T)``.

    Same result as ``conv(x)`` up to rounding; on a CPU 2-3x faster than oneDNN's convolution at
    the few hundred positions a frame-rate model sees per second of audio.
    """
    w = conv.weight[:, :, 0]  # (C_out, C_in)
    bias = conv.bias if conv.bias is not None else w.new_zeros(w.shape[0])
    if x.shape[0] == 1:  # no batch to broadcast over: one GEMM, no copies
        return torch.addmm(bias[:, None], w, x[0]).unsqueeze(0)
    return torch.baddbmm(bias[None, :, None], w.expand(x.shape[0], -1, -1), x)


class SeparableWaveNet(nn.Module):
    """Conditioner ``(x_a, cond) -> (B, out_channels, T)``; same call contract as :class:`WaveNet`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        cond_channels: int,
        n_layers: int = 8,
        n_channels: int = 128,
        kernel_size: int = 3,
        dilation_cycle: int | None = None,
        weight_norm: bool = True,
        direct_channels: int = 0,
        direct_out: int | None = None,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if dilation_cycle is not None and dilation_cycle < 1:
            raise ValueError(f"dilation_cycle must be >= 1, got {dilation_cycle}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.cond_channels = cond_channels
        self.n_layers = n_layers
        self.n_channels = n_channels
        self.kernel_size = kernel_size
        cycle = dilation_cycle or n_layers
        self.dilations = tuple(2 ** (i % cycle) for i in range(n_layers))
        wn = _weight_norm if weight_norm else (lambda m: m)
        c = n_channels
        self.start = wn(nn.Conv1d(in_channels, c, 1))
        # direct_channels: the last channels of ``cond`` skip the layers and reach the first
        # ``direct_out`` output channels through a linear map (zero at init) -- the path by which a
        # source model's excitation samples reach each coupling's shift (waveflow.nn.source).
        if not 0 <= direct_channels < cond_channels:
            raise ValueError(f"direct_channels must be in [0, {cond_channels}), got {direct_channels}")
        self.direct_channels = direct_channels
        self.cond_layer = wn(nn.Conv1d(cond_channels - direct_channels, 2 * c * n_layers, 1))
        self.depthwise = nn.ModuleList()
        self.pointwise = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i, d in enumerate(self.dilations):
            pad = (kernel_size - 1) * d // 2
            self.depthwise.append(nn.Conv1d(c, c, kernel_size, dilation=d, padding=pad, groups=c))
            self.pointwise.append(wn(nn.Conv1d(c, 2 * c, 1)))
            self.res_skip_layers.append(wn(nn.Conv1d(c, 2 * c if i < n_layers - 1 else c, 1)))
        self.end = nn.Conv1d(c, out_channels, 1)
        nn.init.zeros_(self.end.weight)  # the coupling starts as the identity
        nn.init.zeros_(self.end.bias)
        self.direct = None
        if direct_channels:
            self.direct_out = out_channels if direct_out is None else direct_out
            self.direct = nn.Conv1d(direct_channels, self.direct_out, 1, bias=False)
            nn.init.zeros_(self.direct.weight)

    @property
    def context(self) -> int:
        """Positions of context on each side of an output position."""
        return (self.kernel_size - 1) // 2 * sum(self.dilations)

    @property
    def receptive_field(self) -> int:
        return 2 * self.context + 1

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        check_inputs("SeparableWaveNet", x, cond, self.in_channels, self.cond_channels)
        c = self.n_channels
        direct_in = None
        if self.direct_channels:
            split = cond.shape[1] - self.direct_channels
            cond, direct_in = cond[:, :split], cond[:, split:]
        conds = pointwise(self.cond_layer, cond).split(2 * c, dim=1)  # L x (B, 2C, T)
        h = pointwise(self.start, x)
        skip = None
        for i in range(self.n_layers):
            a = pointwise(self.pointwise[i], self.depthwise[i](h))
            g = gated_activation(a + conds[i], c)
            r = pointwise(self.res_skip_layers[i], g)
            if i < self.n_layers - 1:
                res, s = r.split(c, dim=1)
                h = h + res
            else:
                s = r
            skip = s if skip is None else skip + s
        out = pointwise(self.end, skip)
        if self.direct is not None:
            direct = pointwise(self.direct, direct_in)
            if self.direct_out == out.shape[1]:
                return out + direct
            return torch.cat([out[:, : self.direct_out] + direct, out[:, self.direct_out :]], dim=1)
        return out

    def remove_weight_norm(self) -> None:
        """Fold ``g * v / ||v||`` into plain weights (idempotent)."""
        fold_weight_norm(self)

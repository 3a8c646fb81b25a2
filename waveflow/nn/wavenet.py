"""The WaveNet-like network that parameterises each affine coupling (NVIDIA's ``WN``).

Layout, kept identical to NVIDIA's so its checkpoints load one to one::

    x_a (B, n_in, T) --start(1x1)--> h (B, C, T)
    cond (B, n_cond, T) --cond_layer(1x1, one fused conv for all layers)--> (B, 2*C*L, T)
    for layer i (dilation 2**i, non-causal "same" padding):
        a = in_layers[i](h) + cond[:, 2*C*i : 2*C*(i+1)]
        g = tanh(a[:, :C]) * sigmoid(a[:, C:])
        r = res_skip_layers[i](g)        # (B, 2C): residual r[:, :C], skip r[:, C:]
        h = h + r[:, :C]                 # the last layer has no residual half (B, C)
        skip += r[:, C:]
    out = end(skip)                      # (B, n_out, T), zero-initialised

Convolutions other than ``end`` use weight normalisation (``w = g * v / ||v||`` per output
channel) when ``weight_norm`` is true. :meth:`WaveNet.remove_weight_norm` folds it for inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from waveflow.nn.winograd import dilated_conv3

# Dilated convolutions with at least this dilation run as Winograd F(4, 3). On a 2-core AVX2 CPU
# (tools/bench_winograd.py, forward + backward at NVIDIA's layer shape) F(4, 3) beats oneDNN's
# direct convolution at every dilation from 1 to 128 (1.17x at d = 2, 1.3-1.5x elsewhere).
WINOGRAD_MIN_DILATION = 1


class _Gate(torch.autograd.Function):
    """``tanh(t) * sigmoid(s)`` for ``a = [t | s]``, with a hand-written backward.

    ``tanh(t)`` is computed as ``2 sigmoid(2t) - 1`` (torch's CPU ``tanh`` is ~3x slower than its
    ``sigmoid``; the two agree to ~1e-7). The backward writes both halves of ``da`` into one
    buffer, where autograd would build them separately and concatenate them (``split``'s backward).
    """

    @staticmethod
    def forward(ctx, a: Tensor, n_channels: int) -> Tensor:  # type: ignore[override]
        t, s = a.split(n_channels, dim=1)
        tanh_t = torch.sigmoid(t * 2).mul_(2).sub_(1)
        sig_s = torch.sigmoid(s)
        ctx.save_for_backward(tanh_t, sig_s)
        return tanh_t * sig_s

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        tanh_t, sig_s = ctx.saved_tensors
        c = tanh_t.shape[1]
        da = grad.new_empty(grad.shape[0], 2 * c, grad.shape[2])
        dt, ds = da.split(c, dim=1)
        grad_s = grad * sig_s
        torch.mul(tanh_t, tanh_t, out=dt).neg_().add_(1).mul_(grad_s)  # g * s * (1 - tanh^2)
        torch.sub(1, sig_s, out=ds).mul_(grad_s).mul_(tanh_t)  # g * tanh * s * (1 - s)
        return da, None


def gated_activation(a: Tensor, n_channels: int) -> Tensor:
    """WaveNet's gate: ``tanh(a[:, :C]) * sigmoid(a[:, C:])``."""
    if a.dim() != 3 or a.shape[1] != 2 * n_channels:
        raise ValueError(f"gated_activation expects (B, {2 * n_channels}, T), got {tuple(a.shape)}")
    return _Gate.apply(a, n_channels)


def check_inputs(name: str, x: Tensor, cond: Tensor | None, in_channels: int, cond_channels: int) -> None:
    """``ValueError`` unless ``x`` is ``(B, in_channels, T)`` and ``cond`` ``(B, cond_channels, T)``."""
    if x.dim() != 3 or x.shape[1] != in_channels:
        raise ValueError(f"{name} expects x of shape (B, {in_channels}, T), got {tuple(x.shape)}")
    if cond is None or cond.dim() != 3 or cond.shape[1] != cond_channels or cond.shape[2] != x.shape[2]:
        got = None if cond is None else tuple(cond.shape)
        raise ValueError(f"{name} expects cond of shape (B, {cond_channels}, {x.shape[2]}), got {got}")


def fold_weight_norm(module: nn.Module) -> None:
    """Fold ``g * v / ||v||`` into plain weights in every convolution of ``module`` (idempotent)."""
    for m in module.modules():
        if isinstance(m, nn.Conv1d) and parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


class WaveNet(nn.Module):
    """Conditioner ``(x_a, cond) -> (B, out_channels, T)`` with a finite receptive field.

    Args:
        in_channels: channels of ``x_a``.
        out_channels: channels produced (``2 * n_b`` for an affine coupling).
        cond_channels: channels of ``cond`` (``n_mels * n_group`` for WaveGlow).
        n_layers, n_channels, kernel_size: depth, width and kernel of the dilated stack;
            the dilation of layer ``i`` is ``2 ** i``.
        weight_norm: apply weight normalisation to every convolution except ``end``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        cond_channels: int,
        n_layers: int = 8,
        n_channels: int = 256,
        kernel_size: int = 3,
        weight_norm: bool = True,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.cond_channels = cond_channels
        self.n_layers = n_layers
        self.n_channels = n_channels
        self.kernel_size = kernel_size
        # Compute with the start and end convolutions folded into their neighbours (same result up
        # to rounding, fewer FLOPs; see forward). False: NVIDIA's layer-by-layer arithmetic.
        self.fold_linear_maps = True
        # Dilated convolutions with dilation >= this run as Winograd F(4, 3) (half the multiply-adds,
        # same result up to rounding; see nn.winograd). None: always F.conv1d.
        self.winograd_min_dilation: int | None = WINOGRAD_MIN_DILATION if kernel_size == 3 else None

        wn = _weight_norm if weight_norm else (lambda m: m)
        c = n_channels
        self.start = wn(nn.Conv1d(in_channels, c, 1))
        self.cond_layer = wn(nn.Conv1d(cond_channels, 2 * c * n_layers, 1))
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = 2**i
            padding = (kernel_size - 1) * dilation // 2
            self.in_layers.append(wn(nn.Conv1d(c, 2 * c, kernel_size, dilation=dilation, padding=padding)))
            res_skip = 2 * c if i < n_layers - 1 else c
            self.res_skip_layers.append(wn(nn.Conv1d(c, res_skip, 1)))
        # Zero-initialised so that the coupling starts as the identity map.
        self.end = nn.Conv1d(c, out_channels, 1)
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)

    @property
    def context(self) -> int:
        """Frames of context on each side of an output frame."""
        return (self.kernel_size - 1) // 2 * (2**self.n_layers - 1)

    @property
    def receptive_field(self) -> int:
        """Width, in input frames, of the window an output frame depends on (``2 * context + 1``)."""
        return 2 * self.context + 1

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        check_inputs("WaveNet", x, cond, self.in_channels, self.cond_channels)
        c, n_out, n_layers = self.n_channels, self.out_channels, self.n_layers
        # One GEMM conditions every layer. Views are taken with split, not slicing: in the backward,
        # each slice of a tensor zero-fills a gradient of the whole tensor (a quarter of a training
        # step for NVIDIA's model on a CPU), while split's backward is a single concatenation.
        # Without autograd, each layer's slice is computed when it is needed instead: the same
        # numbers (row blocks of one GEMM) at the same speed, holding 2C channels per position
        # instead of 2CL (for NVIDIA's model 1,024 instead of 8,192: what bounds the window that
        # scoring and decoding long recordings can afford).
        if torch.is_grad_enabled():
            conds = self.cond_layer(cond).split(2 * c, dim=1)  # L x (B, 2C, T)
        else:
            conds = _LayerConditioning(self.cond_layer, cond, 2 * c)
        h = self.start(x)
        a = self._first_layer(x, h)
        # Skip path folded into `end` (both linear): end(sum_i skip_i(g_i)) = sum_i (end . skip_i)(g_i),
        # so each res_skip conv emits C + n_out channels instead of 2C (the product of the two
        # weights is recomputed per call, so gradients reach both). Same result up to rounding.
        fold_skip = self.fold_linear_maps and n_out < c
        w_end = self.end.weight[:, :, 0] if fold_skip else None  # (n_out, C)
        out = None
        for i in range(n_layers):
            if i > 0:
                a = self._dilated(i, h)
            g = gated_activation(a + conds[i], c)
            layer = self.res_skip_layers[i]
            last = i == n_layers - 1
            if fold_skip:
                w, b = layer.weight[:, :, 0], layer.bias
                if last:
                    s = F.conv1d(g, (w_end @ w).unsqueeze(2), w_end @ b)
                else:
                    w = torch.cat([w[:c], w_end @ w[c:]])  # (C + n_out, C): [residual | end . skip]
                    b = torch.cat([b[:c], w_end @ b[c:]])
                    res, s = F.conv1d(g, w.unsqueeze(2), b).split([c, n_out], dim=1)
                    h = h + res
            else:
                r = layer(g)
                if last:
                    s = r
                else:
                    res, s = r.split(c, dim=1)
                    h = h + res
            out = s if out is None else out + s
        if fold_skip:
            return out + self.end.bias.unsqueeze(1)
        return self.end(out)

    def _dilated(self, i: int, h: Tensor) -> Tensor:
        """``in_layers[i](h)``, by Winograd's F(4, 3) where the dilation is wide enough to pay."""
        layer = self.in_layers[i]
        dilation = layer.dilation[0]
        # CPU only: measured against oneDNN; on a GPU cuDNN picks its own algorithm (Winograd included).
        use = self.winograd_min_dilation is not None and dilation >= self.winograd_min_dilation
        if use and h.device.type == "cpu":
            return dilated_conv3(h, layer.weight, layer.bias, dilation)
        return layer(h)

    def _first_layer(self, x: Tensor, h: Tensor) -> Tensor:
        """``in_layers[0](h)`` for ``h = start(x)``, computed from ``x`` when it has fewer channels.

        Both convolutions are linear: ``W0 * (Ws x + bs) = (W0 Ws) * x + W0 * bs``, where the
        start bias only reaches the taps that fall inside the sequence (``h`` is zero-padded), so
        that term is the convolution of a ones signal. A ``C``-wide dilated conv becomes an
        ``in_channels``-wide one (1/L of the stack's dilated-conv cost). Same result up to rounding.
        """
        layer = self.in_layers[0]
        if not self.fold_linear_maps or self.in_channels >= self.n_channels:
            return self._dilated(0, h)
        w0, ws, bs = layer.weight, self.start.weight[:, :, 0], self.start.bias  # (2C, C, K), (C, n_in), (C,)
        pad, dil = layer.padding, layer.dilation
        a = F.conv1d(x, torch.einsum("ock,ci->oik", w0, ws), layer.bias, padding=pad, dilation=dil)
        bias_taps = torch.einsum("ock,c->ok", w0, bs).unsqueeze(1)  # (2C, 1, K)
        ones = x.new_ones(1, 1, x.shape[2])
        return a + F.conv1d(ones, bias_taps, padding=pad, dilation=dil)

    def remove_weight_norm(self) -> None:
        """Fold ``g * v / ||v||`` into plain weights (idempotent)."""
        fold_weight_norm(self)


class _LayerConditioning:
    """``cond_layer(cond).split(width)[i]``, computed on demand from the matching rows of the weight."""

    def __init__(self, conv: nn.Conv1d, cond: Tensor, width: int):
        self.weight, self.bias, self.cond, self.width = conv.weight, conv.bias, cond, width

    def __getitem__(self, i: int) -> Tensor:
        rows = slice(i * self.width, (i + 1) * self.width)
        return F.conv1d(self.cond, self.weight[rows], None if self.bias is None else self.bias[rows])

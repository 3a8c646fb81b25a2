"""Dilated kernel-3 convolution by Winograd's minimal filtering F(2, 3): 4 products per 2 outputs.

A WaveNet layer's ``in_layer`` is ``y(t) = g0 x(t - d) + g1 x(t) + g2 x(t + d) + b`` over channels
(``x`` zero outside the sequence, i.e. ``F.conv1d(x, w, b, padding=d, dilation=d)``). Direct
evaluation costs 3 channel GEMMs per output. Taking outputs in pairs ``(t, t + d)``, with
``x0..x3 = x(t - d), x(t), x(t + d), x(t + 2d)``::

    m0 = G0 (x0 - x2)    G0 = g0
    m1 = G1 (x1 + x2)    G1 = (g0 + g1 + g2) / 2
    m2 = G2 (x2 - x1)    G2 = (g0 - g1 + g2) / 2
    m3 = G3 (x1 - x3)    G3 = g2
    y(t) = m0 + m1 + m2,   y(t + d) = m1 - m2 - m3

gives both outputs from 4 GEMMs instead of 6: two thirds of the multiply-adds, the same in the
backward pass (``dW`` and ``dx`` are GEMMs of the same shapes). The transforms only add, subtract
and halve, so the result equals the direct convolution up to float rounding.

The pairs tile time in blocks of ``2d`` steps: block ``j`` holds outputs ``2dj + u`` and
``2dj + d + u`` for ``u < d``. The sequence is zero-padded to whole blocks; the extra outputs are
dropped. The forward saves only ``x`` and the transformed weights; the backward rebuilds the
input transforms (three additions over ``x``), so memory matches a plain convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _blocks(x: Tensor, d: int) -> tuple[Tensor, Tensor, int]:
    """Views ``a, c`` of the zero-padded ``x`` shaped ``(B, C, nb, 2, d)``: ``c`` is ``a`` shifted by ``2d``.

    ``a[..., j, e, u] = x(2dj + ed + u - d)``, ``c[..., j, e, u] = x(2dj + ed + u + d)``.
    """
    b, ch, t = x.shape
    nb = -(-t // (2 * d))
    tp = nb * 2 * d
    xp = F.pad(x, (d, tp - t + d))
    return xp[..., :tp].view(b, ch, nb, 2, d), xp[..., 2 * d :].view(b, ch, nb, 2, d), nb


def _input_transform(x: Tensor, d: int) -> Tensor:
    """``(4, C, B * nb * d)``: the rows ``x0 - x2, x1 + x2, x2 - x1, x1 - x3`` of every block."""
    a, c, nb = _blocks(x, d)
    b, ch = x.shape[:2]
    out = x.new_empty(4, ch, b, nb, d)
    x0, x1 = a.unbind(3)
    x2, x3 = c.unbind(3)
    x0, x1, x2, x3 = (v.transpose(0, 1) for v in (x0, x1, x2, x3))  # (C, B, nb, d)
    torch.sub(x0, x2, out=out[0])
    torch.add(x1, x2, out=out[1])
    torch.sub(x2, x1, out=out[2])
    torch.sub(x1, x3, out=out[3])
    return out.view(4, ch, b * nb * d)


def _weight_transform(w: Tensor) -> Tensor:
    """``(4, O, C)``: ``g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2`` for ``w`` of shape ``(O, C, 3)``."""
    g0, g1, g2 = w.unbind(2)
    half = (g0 + g2) * 0.5
    return torch.stack([g0, half + g1 * 0.5, half - g1 * 0.5, g2])


class _DilatedConv3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, bias: Tensor | None, d: int) -> Tensor:  # type: ignore[override]
        b, _, t = x.shape
        o = w.shape[0]
        g = _weight_transform(w)
        m = torch.bmm(g, _input_transform(x, d))  # (4, O, B * nb * d)
        nb = m.shape[2] // (b * d)
        m0, m1, m2, m3 = (v.view(o, b, nb, d).transpose(0, 1) for v in m.unbind(0))  # (B, O, nb, d)
        y = x.new_empty(b, o, nb, 2, d)
        y0, y1 = y.unbind(3)
        torch.add(m0, m1, out=y0).add_(m2)
        torch.sub(m1, m2, out=y1).sub_(m3)
        y = y.view(b, o, nb * 2 * d)[..., :t]
        if bias is not None:
            y = y + bias.view(1, o, 1)
        else:
            y = y.contiguous()
        ctx.save_for_backward(x, g)
        ctx.d = d
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, g = ctx.saved_tensors
        d = ctx.d
        b, ch, t = x.shape
        o = g.shape[1]
        nb = -(-t // (2 * d))
        tp = nb * 2 * d
        gp = (F.pad(grad, (0, tp - t)) if tp > t else grad.contiguous()).view(b, o, nb, 2, d)
        gy0, gy1 = (v.transpose(0, 1) for v in gp.unbind(3))  # (O, B, nb, d)
        dm = grad.new_empty(4, o, b, nb, d)
        dm[0].copy_(gy0)
        torch.add(gy0, gy1, out=dm[1])
        torch.sub(gy0, gy1, out=dm[2])
        torch.neg(gy1, out=dm[3])
        dm = dm.view(4, o, b * nb * d)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            dg = torch.bmm(dm, _input_transform(x, d).transpose(1, 2))  # (4, O, C)
            half = (dg[1] + dg[2]) * 0.5
            grad_w = torch.stack([dg[0] + half, (dg[1] - dg[2]) * 0.5, dg[3] + half], dim=2)
        if ctx.needs_input_grad[0]:
            dx4 = torch.bmm(g.transpose(1, 2), dm).view(4, ch, b, nb, d).transpose(1, 2)  # (4, B, C, nb, d)
            # x0 - x2, x1 + x2, x2 - x1, x1 - x3  ->  x0: D0;  x1: D1 - D2 + D3;  x2: -D0 + D1 + D2;  x3: -D3
            gxp = grad.new_empty(b, ch, tp + 2 * d)
            gxp[..., tp:].zero_()  # only the last block's right neighbour is not assigned below
            a = gxp[..., :tp].view(b, ch, nb, 2, d)
            a0, a1 = a.unbind(3)
            a0.copy_(dx4[0])
            torch.sub(dx4[1], dx4[2], out=a1).add_(dx4[3])
            c = gxp[..., 2 * d :].view(b, ch, nb, 2, d)
            c0, c1 = c.unbind(3)
            c0.add_(dx4[1]).add_(dx4[2]).sub_(dx4[0])
            c1.sub_(dx4[3])
            grad_x = gxp[..., d : d + t]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=(0, 2))
        return grad_x, grad_w, grad_b, None


def dilated_conv3(x: Tensor, weight: Tensor, bias: Tensor | None, dilation: int) -> Tensor:
    """``F.conv1d(x, weight, bias, padding=dilation, dilation=dilation)`` for a kernel of 3, via F(2, 3)."""
    if weight.dim() != 3 or weight.shape[2] != 3:
        raise ValueError(f"dilated_conv3 needs a (O, C, 3) weight, got {tuple(weight.shape)}")
    if x.dim() != 3 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"dilated_conv3 expects x of shape (B, {weight.shape[1]}, T), got {tuple(x.shape)}")
    if int(dilation) < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    return _DilatedConv3.apply(x, weight, bias, int(dilation))

"""Dilated kernel-3 convolution by Winograd's minimal filtering F(m, 3), m = 2 or 4.

A WaveNet layer's ``in_layer`` is ``y(t) = g0 x(t - d) + g1 x(t) + g2 x(t + d) + b`` over channels
(``x`` zero outside the sequence, i.e. ``F.conv1d(x, w, b, padding=d, dilation=d)``). Direct
evaluation costs 3 channel GEMMs per output. Winograd's algorithm takes ``m`` outputs
``t, t + d, ..., t + (m - 1) d`` together: their ``m + 2`` inputs are mixed by a fixed matrix
``B^T``, each mixture is multiplied by one transformed weight (``G g``, one GEMM over channels), and
the ``m + 2`` products are mixed back into the ``m`` outputs by ``A^T``::

    y_tile = A^T [ (G g) (B^T x_tile) ]        (one (O, C) x (C, n) GEMM per row of B^T)

so ``m`` outputs cost ``m + 2`` GEMMs instead of ``3 m``: two thirds of the multiply-adds for
F(2, 3), half for F(4, 3) (interpolation points 0, 1, -1, 2, -2 and infinity; Lavin & Gray 2015).
The backward pass is GEMMs of the same shapes (``dW`` and ``dx``), so it saves the same share.
The transforms only scale and add, so the result equals the direct convolution up to float
rounding (~1e-6 relative in float32 for F(4, 3), less for F(2, 3)).

Tiles cover time in blocks of ``m d`` steps: block ``j`` holds outputs ``m d j + i d + u`` for
``i < m``, ``u < d``, and reads inputs ``m d j + (k - 1) d + u`` for ``k < m + 2`` (the next block's
first two rows overlap). The sequence is zero-padded to whole blocks; the extra outputs are
dropped. The forward saves only ``x`` and ``w``; the backward rebuilds both transforms, so the saved
memory matches a plain convolution. The transforms run as small GEMMs (``einsum``)
over the tile axis: a few memory-bound passes, against ``m + 2`` compute-bound channel GEMMs.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

# (B^T, G, A^T) for y = A^T [(G g) * (B^T x)], correlation form: y_i = sum_k g_k x_{i + k}.
TRANSFORMS = {
    2: (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}
TILES = tuple(TRANSFORMS)


def _matrices(m: int, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return _matrices_for(m, like.dtype, like.device)


@functools.lru_cache(maxsize=16)
def _matrices_for(m: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """``(B^T, G, A^T)`` as tensors, built once per tile, dtype and device (read-only)."""
    return tuple(torch.tensor(v, dtype=dtype, device=device) for v in TRANSFORMS[m])  # type: ignore[return-value]


def _layout(t: int, d: int, m: int) -> tuple[int, int]:
    """(blocks, padded length) for ``t`` outputs in tiles of ``m`` at dilation ``d``."""
    nb = -(-t // (m * d))
    return nb, nb * m * d


def _input_transform(x: Tensor, d: int, m: int, bt: Tensor) -> Tensor:
    """``(m + 2, C, B * nb * d)``: ``B^T`` applied to every tile of the zero-padded ``x``."""
    b, c, t = x.shape
    nb, tp = _layout(t, d, m)
    xp = F.pad(x, (d, tp - t + d))
    length = xp.shape[2]
    tiles = xp.as_strided((b, c, nb, m + 2, d), (c * length, length, m * d, d, 1))  # overlapping views
    return torch.einsum("pk,bcjku->pcbju", bt, tiles).reshape(m + 2, c, b * nb * d)


class _DilatedConv3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, bias: Tensor | None, d: int, m: int) -> Tensor:  # type: ignore[override]
        b, _, t = x.shape
        o = w.shape[0]
        bt, g_mat, at = _matrices(m, x)
        g = torch.einsum("pk,ock->poc", g_mat, w)  # (m + 2, O, C)
        nb, tp = _layout(t, d, m)
        prod = torch.bmm(g, _input_transform(x, d, m, bt)).view(m + 2, o, b, nb, d)
        y = torch.einsum("ip,pobju->bojiu", at, prod).reshape(b, o, tp)[..., :t]
        y = y + bias.view(1, o, 1) if bias is not None else y.contiguous()
        # w, not its transform g: half the memory per layer; g is cheap to rebuild in the backward.
        ctx.save_for_backward(x, w)
        ctx.d, ctx.m, ctx.has_bias = d, m, bias is not None
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, w = ctx.saved_tensors
        d, m = ctx.d, ctx.m
        b, c, t = x.shape
        o = w.shape[0]
        bt, g_mat, at = _matrices(m, x)
        nb, tp = _layout(t, d, m)
        grad_tiles = F.pad(grad, (0, tp - t)).reshape(b, o, nb, m, d)
        dprod = torch.einsum("ip,bojiu->pobju", at, grad_tiles).reshape(m + 2, o, b * nb * d)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            dg = torch.bmm(dprod, _input_transform(x, d, m, bt).transpose(1, 2))  # (m + 2, O, C)
            grad_w = torch.einsum("pk,poc->ock", g_mat, dg)
        if ctx.needs_input_grad[0]:
            g = torch.einsum("pk,ock->pco", g_mat, w)  # (m + 2, C, O): the transform, transposed
            dtiles = torch.bmm(g, dprod).view(m + 2, c, b, nb, d)
            dx_tiles = torch.einsum("pk,pcbju->bcjku", bt, dtiles)  # (B, C, nb, m + 2, d)
            # Tile j's rows m, m + 1 are the first two rows of tile j + 1: assign, then add.
            gxp = grad.new_zeros(b, c, tp + m * d)
            gxp[..., :tp].view(b, c, nb, m, d).copy_(dx_tiles[:, :, :, :m])
            gxp[..., m * d :].view(b, c, nb, m, d)[:, :, :, :2].add_(dx_tiles[:, :, :, m:])
            grad_x = gxp[..., d : d + t]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=(0, 2))
        return grad_x, grad_w, grad_b, None, None


def dilated_conv3(x: Tensor, weight: Tensor, bias: Tensor | None, dilation: int, tile: int = 4) -> Tensor:
    """``F.conv1d(x, weight, bias, padding=dilation, dilation=dilation)`` for a kernel of 3, by
    Winograd F(``tile``, 3) (``tile`` 2 or 4)."""
    if weight.dim() != 3 or weight.shape[2] != 3:
        raise ValueError(f"dilated_conv3 needs a (O, C, 3) weight, got {tuple(weight.shape)}")
    if x.dim() != 3 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"dilated_conv3 expects x of shape (B, {weight.shape[1]}, T), got {tuple(x.shape)}")
    if int(dilation) < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    if tile not in TRANSFORMS:
        raise ValueError(f"tile must be one of {TILES}, got {tile}")
    return _DilatedConv3.apply(x, weight, bias, int(dilation), tile)

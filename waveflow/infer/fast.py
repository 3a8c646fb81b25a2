r"""Fast CPU synthesis: the inverse flow of a trained :class:`~waveflow.model.WaveGlow`, rewritten.

``FastWaveGlow.from_model(model)`` builds a separate, inference-only module whose ``infer`` and
``decode`` give the model's audio (to float rounding, ~1e-6) with about two thirds of the
arithmetic. Nothing here changes the model, and nothing here trains.

Where the time goes
-------------------
One second of 22050 Hz audio is 2756 group-frames; each of the 12 steps runs its WaveNet on all of
them. Per group-frame and step, NVIDIA's released model (L = 8 layers, C = 256 channels, kernel 3,
80 mels, ``n_group`` 8) spends, in multiply-adds::

    in_layers   L * 2C * C * 3      3.15 M   dilated convs, the irreducible core
    cond_layer  2CL * 80 * 8        2.62 M   the upsampled mel projected for every layer
    res_skip    (L-1) * 2C*C + C*C  0.98 M
    start, end                      small

about 448 GFLOP per second of audio. The rewrites below, each exact in real arithmetic, bring it
to ~212 GFLOP (~300 without item 8; :mod:`tools.flops` counts all three):

1. **Weight norm folded** once: ``w = g * v / ||v||``.
2. **Upsampler folded into the conditioning** (``fold_upsampler=True``). The ConvTranspose1d
   (stride ``hop``) and every step's 1x1 ``cond_layer`` are both linear, so their composition is
   one transposed convolution straight from mel frames: the group at position ``p`` of hop block
   ``f`` sees frames ``f - W + 1 .. f`` (``W = ceil(kernel / hop)`` = 4), i.e. 320 numbers in
   place of the 640 upsampled ones. Half the conditioning cost, but the folded weight is large:
   ``n_flows * W * n_mels * (hop / n_group) * 2CL`` floats (2.0 GB for NVIDIA's model, against
   126 MB for the 12 ``cond_layer``\ s), so it is optional.
3. **``start`` folded into the first dilated conv**: ``in_layers[0](start(x_a))`` acts on the
   ``n_a`` (<= 4) input channels directly (``W0_k @ W_start`` per tap), saving a 256-wide conv.
4. **Skip path folded into ``end``**: ``end(sum_i skip_i(g_i)) = sum_i (end . skip_i)(g_i)``, so
   each ``res_skip`` GEMM emits ``C + 2 n_b`` columns (residual + the coupling's output directly)
   in place of ``2C``.
5. **Biases off the hot path**: the biases of ``start``, ``in_layers`` and the residual halves are
   constant vectors, carried into the conditioning bias. The zero padding of the dilated convs
   removes some taps near the sequence edges; those ``dilation`` rows per side get an explicit
   correction.
6. **Gate in two passes**: ``tanh(a) * sigmoid(b) = sigmoid(b) - 2 sigmoid(-2a) sigmoid(b)``; the
   factor -2 is folded into the weights of the ``a`` half, so the gate is one in-place ``sigmoid``
   over both halves and one ``addcmul`` (torch's CPU ``tanh`` is ~3x slower than its ``sigmoid``).
7. **Pointwise maps after each coupling** (inverse 1x1 convolution, inverse ActNorm, channel
   reversal) composed in float64 at load into one ``(c, c)`` matrix and a shift.
8. **Dilated convolutions by Winograd F(4, 3)** (kernel 3, layers after the first): 6 GEMMs per 4
   output rows instead of 12 (:mod:`waveflow.nn.winograd`; the transformed weights are computed
   in float64 at load). About 10 % of the engine's time for NVIDIA's model, audio equal to ~3e-6.

Layout
------
Each batch item is processed time-major, ``(T', channels)``, so that every convolution is a GEMM
on views: the dilated conv of layer ``i`` is ``kernel_size`` in-place ``addmm_`` calls on
row-shifted views of the same buffer (no im2col copy, no padding, no ``torch.cat``), added straight
into the conditioning buffer (with Winograd, one batched GEMM per block of tiles, added the same way); the residual/output update is one more ``addmm_`` into a buffer that
holds ``[h | out]`` side by side. Early outputs need no concatenation either: ``z`` of one item is a
``(T', n_group)`` buffer and step ``k`` works on its last ``channels[k]`` columns, in place. The
flattened buffer is the audio (sample ``t * n_group + j``). Batch items run one after another: the
GEMMs are already large (``T'`` rows), so batching adds no efficiency on a CPU.

The module is float32 and inference-only (``torch.inference_mode``). Thread count is torch's
global setting (``torch.set_num_threads``; the physical core count is best).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn

from waveflow.flows import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ChannelReverse,
    InvertibleConv1x1,
    LUInvertibleConv1x1,
)
from waveflow.infer.streaming import chunk_windows, context_groups
from waveflow.model import WaveGlow
from waveflow.nn import WaveNet
from waveflow.nn.upsample import upsample_frame_range
from waveflow.nn.winograd import TRANSFORMS

__all__ = ["FastWaveGlow", "folded_cond_bytes"]

_WINOGRAD = TRANSFORMS[4]  # (B^T, G, A^T) of F(4, 3)
_WINOGRAD_ROWS = 16384  # output rows per block of tiles in the dilated convs


def _weight(conv: nn.Module) -> Tensor:
    """A conv's effective weight in float64 (weight norm, if any, evaluated: ``g * v / ||v||``)."""
    with torch.no_grad():
        return conv.weight.detach().double().clone()


def _packed_linear_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


# oneDNN's inner product with a weight reordered once at load runs the conditioning GEMMs
# (few rows, very many columns when the upsampler is folded) 1.3-2.5x faster than torch.addmm,
# which repacks the whole weight on every call. The op is the one inductor uses for frozen CPU
# linears; builds without oneDNN fall back to addmm.
_PACKED = _packed_linear_available()


def _pack(weight: Tensor) -> Tensor:
    """``weight`` ``(out, in)`` float32 -> the form :func:`_linear` takes."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, 64) if _PACKED else weight


def _linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``x @ weight.T + bias`` for ``weight`` from :func:`_pack`."""
    if _PACKED:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return torch.addmm(bias, x, weight.T)


def folded_cond_bytes(model: WaveGlow) -> int:
    """Bytes of float32 weight that ``fold_upsampler=True`` stores for ``model`` (2.0 GB for NVIDIA's)."""
    cfg = model.config
    frames = math.ceil(cfg.upsample_kernel_size / cfg.hop_length)
    positions = cfg.hop_length // cfg.n_group
    cond_out = 2 * cfg.wavenet.n_channels * cfg.wavenet.n_layers
    return 4 * cfg.n_flows * frames * cfg.n_mels * positions * cond_out


def _mix_inverse(step: nn.Module, c: int) -> tuple[Tensor, Tensor] | None:
    """The step's pointwise maps after its coupling (in the inverse direction) as ``x = M @ y + s``.

    Inverse order: coupling, then mixing, then ActNorm. ``M`` ``(c, c)`` and ``s`` ``(c,)`` are
    float64; ``None`` when both are absent.
    """
    m = torch.eye(c, dtype=torch.float64)
    shift = torch.zeros(c, dtype=torch.float64)
    touched = False
    mix = step.mix
    if isinstance(mix, (InvertibleConv1x1, LUInvertibleConv1x1)):
        with torch.no_grad():
            m = torch.linalg.inv(mix.weight_matrix(torch.float64).detach())
        touched = True
    elif isinstance(mix, ChannelReverse):
        m = m[mix.inv_perm]  # y[:, inv_perm]: row i picks channel inv_perm[i]
        touched = True
    elif mix is not None:
        raise ValueError(f"FastWaveGlow does not know the mixing layer {type(mix).__name__}")
    norm = step.norm
    if isinstance(norm, ActNorm):
        # x = y * exp(-log_scale) - bias, applied after the mixing's inverse.
        scale = torch.exp(-norm.log_scale.detach().double())
        m = scale[:, None] * m
        shift = -norm.bias.detach().double()
        touched = True
    elif norm is not None:
        raise ValueError(f"FastWaveGlow does not know the normalisation layer {type(norm).__name__}")
    return (m, shift) if touched else None


class _FastStep(nn.Module):
    """One step's inverse, precomputed. Buffers are float32; shapes use ``C = n_channels``,
    ``L = n_layers``, ``K = kernel_size``, ``n_out = 2 n_b`` (affine) or ``n_b`` (additive)."""

    def __init__(
        self,
        step: nn.Module,
        cond_weight: Tensor,
        cond_bias: Tensor,
    ):
        super().__init__()
        coupling = step.coupling
        wn = coupling.conditioner
        if not isinstance(wn, WaveNet):
            raise ValueError(f"FastWaveGlow needs a WaveNet conditioner, got {type(wn).__name__}")
        if not isinstance(coupling, (AffineCoupling, AdditiveCoupling)):
            raise ValueError(f"FastWaveGlow does not know the coupling {type(coupling).__name__}")
        self.affine = isinstance(coupling, AffineCoupling)
        self.log_scale_clamp = coupling.log_scale_clamp if self.affine else None
        self.num_channels = coupling.num_channels
        self.n_a, self.n_b, self.swap = coupling.n_a, coupling.n_b, coupling.swap
        c, n_layers, k_size = wn.n_channels, wn.n_layers, wn.kernel_size
        self.n_channels, self.n_layers = c, n_layers
        self.n_out = wn.out_channels
        # Tap offsets, in frames, of layer i: (k - (K - 1) / 2) * 2**i.
        self.offsets = [[(k - (k_size - 1) // 2) * 2**i for k in range(k_size)] for i in range(n_layers)]

        w_start, b_start = _weight(wn.start)[:, :, 0], wn.start.bias.detach().double()  # (C, n_a), (C,)
        w_end, b_end = _weight(wn.end)[:, :, 0], wn.end.bias.detach().double()  # (n_out, C), (n_out,)
        # tanh(a) is computed as 1 - 2 sigmoid(-2a): scale the a-columns of everything that feeds
        # the gate by -2 (see the module docstring, item 6).
        gate_scale = torch.cat([torch.full((c,), -2.0), torch.ones(c)]).double()  # (2C,)

        beta = b_start  # the constant part of the residual stream h (kept out of the GEMMs)
        taps0, taps, edges, layer_bias, res_skip = [], [], [], [], []
        skip_bias = torch.zeros(c, dtype=torch.float64)
        skip_last = None
        for i in range(n_layers):
            w_in = _weight(wn.in_layers[i]) * gate_scale[:, None, None]  # (2C, C, K)
            b_in = wn.in_layers[i].bias.detach().double() * gate_scale
            taps_i = [w_in[:, :, k] for k in range(k_size)]  # each (2C, C)
            if i == 0:
                taps0 = [(w @ w_start).T for w in taps_i]  # (n_a, 2C): start folded in
            else:
                taps.append(torch.stack([w.T for w in taps_i]))  # (K, C, 2C)
            edges.append(torch.stack([w @ beta for w in taps_i]))  # (K, 2C): a tap's share of beta
            layer_bias.append(b_in + sum(w @ beta for w in taps_i))  # (2C,)
            w_rs = _weight(wn.res_skip_layers[i])[:, :, 0]  # (2C or C, C)
            b_rs = wn.res_skip_layers[i].bias.detach().double()
            if i < n_layers - 1:
                res_skip.append(
                    torch.cat([w_rs[:c], w_end @ w_rs[c:]]).T
                )  # [residual | end . skip]: (C, C + n_out)
                beta = beta + b_rs[:c]
                skip_bias = skip_bias + b_rs[c:]
            else:
                skip_last = (w_end @ w_rs).T  # (C, n_out)
                skip_bias = skip_bias + b_rs

        f32 = torch.float32
        self.register_buffer("start_t", w_start.T.to(f32).contiguous())  # (n_a, C)
        self.register_buffer("taps0", torch.stack(taps0).to(f32).contiguous())  # (K, n_a, 2C)
        self.register_buffer(
            "taps",
            torch.stack(taps).to(f32).contiguous() if taps else torch.empty(0, k_size, c, 2 * c),
        )  # (L - 1, K, C, 2C)
        # Winograd F(4, 3) weights of the dilated layers (see waveflow.nn.winograd): G applied to
        # the 3 taps, (L - 1, 6, C, 2C). None for other kernel sizes.
        self.winograd = k_size == 3 and n_layers > 1
        if self.winograd:
            g_mat = torch.tensor(_WINOGRAD[1], dtype=torch.float64)  # (6, 3)
            wino = torch.einsum("pk,lkco->lpco", g_mat, torch.stack(taps))
            self.register_buffer("wino", wino.to(f32).contiguous())
        self.register_buffer("edges", torch.stack(edges).to(f32).contiguous())  # (L, K, 2C)
        self.register_buffer(
            "res_skip",
            torch.stack(res_skip).to(f32).contiguous() if res_skip else torch.empty(0, c, c + self.n_out),
        )  # (L - 1, C, C + n_out)
        self.register_buffer("skip_last", skip_last.to(f32).contiguous())  # (C, n_out)
        self.register_buffer("out_bias", (b_end + w_end @ skip_bias).to(f32))  # (n_out,)

        # Conditioning: the caller's projection, columns (position p, layer i, channel), with every
        # constant bias of the layer added and the gate scale applied; stored per layer,
        # (L, rows_in, P * 2C), so that each layer's conditioning is computed just before it is used
        # (a contiguous, cache-sized block).
        positions = cond_weight.shape[1] // (2 * c * n_layers)  # 1, or hop / n_group when folded
        self.positions = positions
        w = cond_weight.reshape(-1, positions, n_layers, 2 * c) * gate_scale.to(cond_weight.dtype)
        w = w.permute(2, 1, 3, 0).reshape(n_layers, positions * 2 * c, -1).to(f32)  # (L, P * 2C, rows_in)
        # Per layer, (out, in) as torch's linear wants it; prepacked for oneDNN where available.
        self.cond_weight = [_pack(w[i].contiguous()) for i in range(n_layers)]
        del w
        bias = cond_bias.double().reshape(positions, n_layers, 2 * c) * gate_scale + torch.stack(layer_bias)
        self.register_buffer("cond_bias", bias.permute(1, 0, 2).reshape(n_layers, -1).to(f32))

        self.use_winograd = True  # switch for benchmarks: False gives the 3-GEMM dilated convs
        self.register_buffer("_bt", torch.tensor(_WINOGRAD[0], dtype=f32), persistent=False)
        self.register_buffer("_at", torch.tensor(_WINOGRAD[2], dtype=f32), persistent=False)
        mix = _mix_inverse(step, self.num_channels)
        self.has_mix = mix is not None
        eye = torch.eye(self.num_channels)
        self.register_buffer("mix_t", (mix[0].T if mix else eye).to(f32).contiguous())  # (c, c): x = y @ M^T
        self.register_buffer("mix_shift", (mix[1] if mix else torch.zeros(self.num_channels)).to(f32))

    # -- the WaveNet ------------------------------------------------------------------------------
    def _project(self, rows: Tensor, i: int, skip: int, width: int) -> Tensor:
        """Layer ``i``'s conditioning ``(B, width, 2C)`` from the stacked rows ``(B, n, rows_in)``
        of every item (one GEMM for the batch). Folded rows are hop blocks of ``P`` groups each;
        ``skip`` groups are dropped from the first block."""
        out = _linear(rows.reshape(-1, rows.shape[2]), self.cond_weight[i], self.cond_bias[i])
        out = out.reshape(rows.shape[0], -1, 2 * self.n_channels)  # (B, n * P, 2C)
        return out[:, skip : skip + width]

    def conditioner(self, x_a: Tensor, rows: Tensor, skip: int) -> Tensor:
        """The WaveNet of every item: ``x_a`` ``(B, T', n_a)`` (a column view) and the conditioning
        rows -> the coupling's ``(B, T', n_out)`` (shift first, then log-scale)."""
        batch, t = x_a.shape[0], x_a.shape[1]
        c, n_out = self.n_channels, self.n_out
        hs = x_a.new_zeros(batch, t, c + n_out)  # [h | out]: residual stream and output side by side
        for b in range(batch):
            torch.mm(x_a[b], self.start_t, out=hs[b, :, :c])
        gated = x_a.new_empty(t, c)
        for i in range(self.n_layers):
            cond = self._project(rows, i, skip, t)  # (B, T', 2C), consumed in place
            weights = self.taps0 if i == 0 else self.taps[i - 1]
            winograd = i > 0 and self.winograd and self.use_winograd
            for b in range(batch):
                a, src = cond[b], (x_a[b] if i == 0 else hs[b, :, :c])
                if winograd:
                    self._winograd_conv_(a, src, i)
                for k, off in enumerate(self.offsets[i]):
                    w, edge = weights[k], self.edges[i, k]
                    if off == 0:
                        if not winograd:
                            a.addmm_(src, w)
                    elif off < 0:  # a[t] += w . src[t + off]; rows t < -off see the zero padding
                        if t > -off and not winograd:
                            a[-off:].addmm_(src[: t + off], w)
                        a[: min(-off, t)].sub_(edge)
                    else:
                        if t > off and not winograd:
                            a[: t - off].addmm_(src[off:], w)
                        a[max(t - off, 0) :].sub_(edge)
                a.sigmoid_()  # [sigmoid(-2 a) | sigmoid(b)]
                torch.addcmul(a[:, c:], a[:, :c], a[:, c:], value=-2.0, out=gated)  # tanh(a) * sigmoid(b)
                if i < self.n_layers - 1:
                    hs[b].addmm_(gated, self.res_skip[i])
                else:
                    hs[b, :, c:].addmm_(gated, self.skip_last)
        return hs[:, :, c:] + self.out_bias

    def _winograd_conv_(self, a: Tensor, src: Tensor, i: int) -> None:
        """``a[t] += sum_k src[t + (k - 1) d] @ taps[k]`` (zero outside ``src``) by F(4, 3), time-major.

        Tiles of 4 outputs ``4dj + i'd + u`` read the 6 rows ``4dj + (k - 1)d + u``; blocks of tiles
        are processed ``_WINOGRAD_ROWS`` output rows at a time, so the transforms' buffers stay small.
        """
        t, c = src.shape
        d = self.offsets[i][2]
        nb = -(-t // (4 * d))
        xp = src.new_zeros(nb * 4 * d + 2 * d, c)
        xp[d : d + t] = src
        bt = self._bt.to(src.dtype)
        at = self._at.to(src.dtype)
        weights = self.wino[i - 1]  # (6, C, 2C)
        per_block = max(1, _WINOGRAD_ROWS // (4 * d))
        for j0 in range(0, nb, per_block):
            j1 = min(nb, j0 + per_block)
            base = xp[j0 * 4 * d :]
            tiles = base.as_strided((j1 - j0, 6, d, c), (4 * d * c, d * c, c, 1))
            dt = torch.einsum("pk,jkuc->pjuc", bt, tiles).reshape(6, -1, c)
            prod = torch.bmm(dt, weights).view(6, j1 - j0, d, -1)
            y = torch.einsum("ip,pjuo->jiuo", at, prod).reshape((j1 - j0) * 4 * d, -1)
            r0 = j0 * 4 * d
            rows = min(t, j1 * 4 * d) - r0
            a[r0 : r0 + rows].add_(y[:rows])

    # -- the step ---------------------------------------------------------------------------------
    def inverse_(self, x: Tensor, rows: Tensor, skip: int) -> None:
        """Undo this step in place on ``x`` ``(B, T', c)`` (a column view of the items' state)."""
        if self.swap:
            x_b, x_a = x[..., : self.n_b], x[..., self.n_b :]
        else:
            x_a, x_b = x[..., : self.n_a], x[..., self.n_a :]
        out = self.conditioner(x_a, rows, skip)
        if self.affine:
            shift, log_s = out[..., : self.n_b], out[..., self.n_b :]
            if self.log_scale_clamp is not None:
                log_s = self.log_scale_clamp * torch.tanh(log_s / self.log_scale_clamp)
            x_b.sub_(shift).mul_(torch.exp(-log_s))
        else:
            x_b.sub_(out)
        if self.has_mix:
            x.copy_(torch.matmul(x, self.mix_t).add_(self.mix_shift))


class FastWaveGlow(nn.Module):
    """Inference-only rewrite of a :class:`~waveflow.model.WaveGlow` (see the module docstring).

    Build it with :meth:`from_model`; the model itself is not kept (nor changed).
    ``infer(mel, sigma, z, generator)`` and ``decode(z, mel)`` have the model's signatures and
    results; :meth:`decode_window` mirrors :func:`waveflow.infer.streaming.decode_window`.
    """

    def __init__(self, model: WaveGlow, fold_upsampler: bool = True):
        super().__init__()
        cfg = model.config
        self.config = cfg
        self.n_mels, self.n_group, self.hop_length = cfg.n_mels, cfg.n_group, cfg.hop_length
        self.kernel_size = cfg.upsample_kernel_size
        self.schedule = model.schedule
        self.context_groups = context_groups(model)
        self.fold_upsampler = fold_upsampler
        # Frames a hop block depends on, and group positions per hop block.
        self.window_frames = math.ceil(self.kernel_size / self.hop_length)
        self.positions = self.hop_length // self.n_group

        up_w = model.upsample.conv.weight.detach()  # (n_mels in, n_mels out, kernel)
        up_b = model.upsample.conv.bias.detach()  # (n_mels,)
        if not fold_upsampler:
            self.register_buffer("upsample_weight", up_w.float().clone())
            self.register_buffer("upsample_bias", up_b.float().clone())
        steps = []
        for step in model.flow.steps:
            wn = step.coupling.conditioner
            w_c = _weight(wn.cond_layer)[:, :, 0]  # (2CL, n_mels * g), input channel m * g + j
            b_c = wn.cond_layer.bias.detach().double()
            if fold_upsampler:
                cond_weight, cond_bias = self._fold(up_w, up_b, w_c, b_c)
            else:
                cond_weight, cond_bias = w_c.T, b_c  # (n_mels * g, 2CL)
            steps.append(_FastStep(step, cond_weight, cond_bias))
        self.steps = nn.ModuleList(steps)
        self.eval()

    @classmethod
    def from_model(cls, model: WaveGlow, fold_upsampler: bool = True) -> FastWaveGlow:
        """Precompute the fast inverse of ``model`` (weights read once; ``model`` is left as it is).

        ``fold_upsampler``: fold the mel upsampler into every step's conditioning (faster, but
        stores :func:`folded_cond_bytes` of weights: 2.0 GB for NVIDIA's model).
        """
        if model.config.conditioning != "upsample" or model.config.wavenet.separable:
            raise ValueError(
                "the fast engine compiles WaveGlow's upsampled conditioning and dense WaveNets; "
                "this model is of the compact family (use its own inverse: engine='plain')"
            )
        return cls(model, fold_upsampler)

    def _fold(self, up_w: Tensor, up_b: Tensor, w_c: Tensor, b_c: Tensor) -> tuple[Tensor, Tensor]:
        """``cond_layer . upsample`` as a map from a window of ``W`` frames to ``P`` positions.

        Returns the weight ``(W * n_mels, P * 2CL)`` (rows: window frame ``w`` (oldest first), mel bin;
        columns: position ``p`` in the hop block, cond channel) and the bias ``(P * 2CL,)`` (float64).
        Upsampled sample ``r = p * g + j`` of hop block ``f`` receives frame ``f - d`` through tap
        ``hop * d + r`` of the transposed conv.
        """
        n_mels, g, hop, frames, pos = (
            self.n_mels,
            self.n_group,
            self.hop_length,
            self.window_frames,
            self.positions,
        )
        kernel = torch.zeros(n_mels, n_mels, frames * hop, dtype=torch.float32)
        kernel[:, :, : self.kernel_size] = up_w.float()
        u = kernel.reshape(n_mels, n_mels, frames, pos, g)  # [m_in, m_out, d, p, j]
        u = u.permute(0, 2, 3, 1, 4).reshape(n_mels * frames * pos, n_mels * g)  # [(m_in, d, p), (m_out, j)]
        # float32 GEMM (K = n_mels * g): the fold of NVIDIA's model is 27 GMAC per step.
        folded = u @ w_c.T.float()  # [(m_in, d, p), c]
        folded = folded.reshape(n_mels, frames, pos, -1).flip(1)  # d -> window slot w = W - 1 - d
        weight = folded.permute(1, 0, 2, 3).reshape(frames * n_mels, -1)  # [(w, m_in), (p, c)]
        # The upsampler's bias reaches every sample: cond_layer(bias repeated over j).
        bias = b_c + w_c @ up_b.double().repeat_interleave(g)  # (2CL,)
        return weight, bias.repeat(pos)

    # -- conditioning ------------------------------------------------------------------------------
    def _cond_rows(self, mel: Tensor, first_group: int, num_groups: int) -> Tensor:
        """Per-step projection input for groups ``[first_group, first_group + num_groups)``, where
        group 0 starts at sample 0 of ``mel`` ``(n_mels, f)`` (one item; frames before 0 and after
        ``f`` count as zero). Folded: the frame windows ``(blocks, W * n_mels)`` of the hop blocks
        covering the groups; otherwise the grouped upsampled mel ``(num_groups, n_mels * g)``."""
        g, hop = self.n_group, self.hop_length
        if self.fold_upsampler:
            b0 = first_group * g // hop
            b1 = -(-(first_group + num_groups) * g // hop)  # ceil
            w = self.window_frames
            # frames b0 - w + 1 .. b1 - 1, zero outside [0, f)
            lo, hi = b0 - w + 1, b1
            padded = mel.new_zeros(self.n_mels, hi - lo)
            s0, s1 = max(lo, 0), min(hi, mel.shape[1])
            if s1 > s0:
                padded[:, s0 - lo : s1 - lo] = mel[:, s0:s1]
            win = padded.unfold(1, w, 1)  # (n_mels, blocks, W)
            return win.permute(1, 2, 0).reshape(b1 - b0, w * self.n_mels)  # row: [(w, mel bin)]
        up = torch.nn.functional.conv_transpose1d(
            mel[None], self.upsample_weight, self.upsample_bias, stride=hop
        )[0]  # (n_mels, hop * (f - 1) + kernel)
        s0 = first_group * g
        up = up[:, s0 : s0 + num_groups * g]  # (n_mels, num_groups * g)
        return up.reshape(self.n_mels, num_groups, g).permute(1, 0, 2).reshape(num_groups, -1)  # [t, m*g+j]

    # -- public API --------------------------------------------------------------------------------
    def _check_mel(self, mel: Tensor) -> None:
        if mel.dim() != 3 or mel.shape[1] != self.n_mels or mel.shape[2] < 1:
            raise ValueError(
                f"mel must be (B, n_mels={self.n_mels}, frames >= 1), got shape {tuple(mel.shape)}"
            )
        if not torch.isfinite(mel).all():
            raise ValueError(f"mel contains {int((~torch.isfinite(mel)).sum())} NaN/Inf value(s)")

    @torch.inference_mode()
    def decode_window(self, mel: Tensor, z: Tensor, start: int, mel_offset: int = 0) -> Tensor:
        """Inverse flow over groups ``[start, start + W)``: ``(B, W * n_group)`` audio.

        ``z`` ``(B, n_group, W)``; ``mel`` ``(B, n_mels, f)`` holds absolute frames
        ``[mel_offset, mel_offset + f)`` and must cover every frame that reaches the window (as
        :func:`waveflow.infer.streaming.decode_window` requires; same result).
        """
        self._check_mel(mel)
        if z.dim() != 3 or z.shape[0] != mel.shape[0] or z.shape[1] != self.n_group:
            raise ValueError(f"z must be (B={mel.shape[0]}, n_group={self.n_group}, W), got {tuple(z.shape)}")
        g, hop = self.n_group, self.hop_length
        width = z.shape[2]
        first_sample = start * g - mel_offset * hop
        available = hop * (mel.shape[2] - 1) + self.kernel_size
        if first_sample < 0 or first_sample + width * g > available:
            raise ValueError(
                f"mel frames [{mel_offset}, {mel_offset + mel.shape[2]}) do not cover samples "
                f"[{start * g}, {(start + width) * g})"
            )
        first_group = first_sample // g
        # Each item's state is (W, n_group), time-major; sample = t * g + j.
        x = z.float().transpose(1, 2).contiguous()  # (B, W, n_group)
        rows = torch.stack([self._cond_rows(m, first_group, width) for m in mel.float()])
        channels = self.schedule.channels
        # Folded rows are hop blocks; the window starts `skip` groups into the first one.
        skip = (
            first_group - (first_group * g // self.hop_length) * self.positions if self.fold_upsampler else 0
        )
        for k in range(len(self.steps) - 1, -1, -1):
            self.steps[k].inverse_(x[:, :, g - channels[k] :], rows, skip)
        return x.reshape(x.shape[0], width * g)

    def synthesize_chunked(self, mel: Tensor, z: Tensor, chunk_groups: int) -> Tensor:
        """Windows of ``chunk_groups`` groups plus the exact context each side, as
        :func:`waveflow.infer.streaming.synthesize_chunked` does for the model (same audio)."""
        g = self.n_group
        windows = list(
            chunk_windows(
                mel.shape[2],
                z.shape[2],
                chunk_groups,
                self.context_groups,
                g,
                self.hop_length,
                functools.partial(upsample_frame_range, self.hop_length, self.kernel_size),
            )
        )
        if len(windows) == 1:
            return self.decode(z, mel)
        audio = torch.empty(mel.shape[0], z.shape[2] * g, dtype=torch.float32)
        for a, b, w0, w1, f0, f1 in windows:
            window = self.decode_window(mel[:, :, f0:f1], z[:, :, w0:w1], w0, f0)
            audio[:, a * g : b * g] = window[:, (a - w0) * g : (b - w0) * g]
        return audio

    def decode(self, z: Tensor, mel: Tensor) -> Tensor:
        """``z`` ``(B, n_group, T / n_group)`` -> audio ``(B, T)`` (as :meth:`WaveGlow.decode`)."""
        self._check_mel(mel)
        if z.dim() != 3 or z.shape[0] != mel.shape[0] or z.shape[1] != self.n_group:
            raise ValueError(
                f"z must be (B={mel.shape[0]}, n_group={self.n_group}, T/n_group), got {tuple(z.shape)}"
            )
        return self.decode_window(mel, z, 0, 0)

    def sample_latent(
        self,
        batch_size: int,
        num_groups: int,
        sigma: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``z ~ N(0, sigma^2)`` ``(B, n_group, num_groups)`` in NVIDIA's draw order, the same
        numbers as :meth:`WaveGlow.sample_latent` for the same generator state."""
        schedule = self.schedule

        def draw(channels: int) -> Tensor:
            return torch.randn(batch_size, channels, num_groups, generator=generator)

        remaining = draw(schedule.remaining)
        emitted = {k: draw(e) for k, e in reversed(schedule.blocks)}
        return torch.cat([emitted[k] for k, _ in schedule.blocks] + [remaining], dim=1) * sigma

    def infer(
        self,
        mel: Tensor,
        sigma: float = 1.0,
        z: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``mel`` ``(B, n_mels, F)`` -> audio ``(B, F * hop_length)`` (as :meth:`WaveGlow.infer`)."""
        self._check_mel(mel)
        num_groups = mel.shape[2] * self.hop_length // self.n_group
        if z is None:
            z = self.sample_latent(mel.shape[0], num_groups, sigma, generator)
        elif z.shape != (mel.shape[0], self.n_group, num_groups):
            raise ValueError(
                f"z must have shape {(mel.shape[0], self.n_group, num_groups)} for {mel.shape[2]} frames, "
                f"got {tuple(z.shape)}"
            )
        return self.decode(z, mel)

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
to ~209 GFLOP (~297 unfolded; :mod:`tools.flops` counts every variant):

1. **Weight norm folded** once: ``w = g * v / ||v||``.
2. **Upsampler folded into the conditioning** (``fold_upsampler=True``). The ConvTranspose1d
   (stride ``hop``) and every step's 1x1 ``cond_layer`` are both linear, so their composition is
   one transposed convolution straight from mel frames: the group at position ``p`` of hop block
   ``f`` sees frames ``f - W + 1 .. f`` (``W = ceil(kernel / hop)`` = 4), i.e. 320 numbers in
   place of the 640 upsampled ones. Half the conditioning cost, but the folded weight is large:
   ``n_flows * W * n_mels * (hop / n_group) * 2CL`` floats (2.0 GB for NVIDIA's model, against
   126 MB for the 12 ``cond_layer``\ s), so it is optional, and can be partial: with
   ``fold_upsampler=<bytes>`` only as many (step, layer) projections are folded as fit the budget
   (:func:`folded_layer_bytes` each, 20 MiB for NVIDIA's model; the steps the inverse runs first
   come first), the others project the upsampled mel. Unfolded, the upsampler itself is one GEMM
   per hop block from its window of frames (the transposed conv's sums, without torch's slow CPU
   kernel for it).
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
   in float64 at load and prepacked for oneDNN; only they are kept, not the direct taps). The tile
   transforms are a few in-place vector additions (their matrices hold small integers), the
   output transform adding straight into the conditioning buffer. About 15 % of the engine's time
   for NVIDIA's model, audio equal to ~3e-6.

Layout
------
Each batch item is processed time-major, ``(T', channels)``, so that every convolution is a GEMM
on views: the dilated conv of layer ``i`` is ``kernel_size`` in-place ``addmm_`` calls on
row-shifted views of the same buffer (no im2col copy, no padding, no ``torch.cat``), added straight
into the conditioning buffer (with Winograd, 6 GEMMs per block of tiles, added the same way); the
residual/output update is one more ``addmm_`` into a buffer that
holds ``[h | out]`` side by side. Early outputs need no concatenation either: ``z`` of one item is a
``(T', n_group)`` buffer and step ``k`` works on its last ``channels[k]`` columns, in place. The
flattened buffer is the audio (sample ``t * n_group + j``). Batch items run one after another: the
GEMMs are already large (``T'`` rows), so batching adds no efficiency on a CPU.

The module is float32 and inference-only (``torch.inference_mode``). Thread count is torch's
global setting (``torch.set_num_threads``; the physical core count is best).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from waveflow.config import ModelConfig
from waveflow.flows import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ChannelReverse,
    InvertibleConv1x1,
    LUInvertibleConv1x1,
)
from waveflow.flows.coupling import soft_clamp
from waveflow.infer import streaming
from waveflow.latent import item_latents
from waveflow.model import WaveGlow
from waveflow.nn import WaveNet
from waveflow.nn.upsample import upsample_frame_range
from waveflow.nn.winograd import TRANSFORMS

__all__ = ["FastWaveGlow", "folded_cond_bytes", "folded_layer_bytes", "folded_layers"]

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


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x @ weight.T + bias`` for ``weight`` from :func:`_pack` (``bias`` may be ``None``)."""
    if _PACKED:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return torch.mm(x, weight.T) if bias is None else torch.addmm(bias, x, weight.T)


def folded_cond_bytes(model: WaveGlow | ModelConfig) -> int:
    """Bytes of float32 weight that ``fold_upsampler=True`` stores for ``model`` (2.0 GB for NVIDIA's)."""
    cfg = model if isinstance(model, ModelConfig) else model.config
    frames = math.ceil(cfg.upsample_kernel_size / cfg.hop_length)
    positions = cfg.hop_length // cfg.n_group
    cond_out = 2 * cfg.wavenet.n_channels * cfg.wavenet.n_layers
    return 4 * cfg.n_flows * frames * cfg.n_mels * positions * cond_out


def folded_layer_bytes(model: WaveGlow | ModelConfig) -> int:
    """Bytes of float32 weight one folded layer (one step's one WaveNet layer) stores in a partial
    fold, ``fold_upsampler=<bytes>``: 20 MiB for NVIDIA's model, 1/96 of the whole fold (a little
    more when the window's ``W * n_mels`` inputs do not split evenly over the ``P`` positions)."""
    cfg = model if isinstance(model, ModelConfig) else model.config
    frames = math.ceil(cfg.upsample_kernel_size / cfg.hop_length)
    positions = cfg.hop_length // cfg.n_group
    extra = -(-frames * cfg.n_mels // positions)  # window values per position (_RowLayout)
    return 4 * positions * extra * positions * 2 * cfg.wavenet.n_channels


def folded_layers(model: WaveGlow | ModelConfig, fold_upsampler: bool | int) -> int:
    """How many (step, layer) conditioning projections ``fold_upsampler`` folds: all (``True``,
    or a budget of at least :func:`folded_cond_bytes`), none (``False``), or as many as fit in a
    budget of that many bytes (an ``int``; :func:`folded_layer_bytes` each)."""
    cfg = model if isinstance(model, ModelConfig) else model.config
    total = cfg.n_flows * cfg.wavenet.n_layers
    if isinstance(fold_upsampler, bool):
        return total if fold_upsampler else 0
    if not isinstance(fold_upsampler, int) or fold_upsampler < 0:
        raise ValueError(f"fold_upsampler must be True, False or a byte budget >= 0, got {fold_upsampler!r}")
    if fold_upsampler >= folded_cond_bytes(cfg):
        return total
    return min(total - 1, fold_upsampler // folded_layer_bytes(cfg))


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


class _RowLayout(NamedTuple):
    """How the conditioning rows that :meth:`FastWaveGlow._cond_rows` builds are laid out.

    ``kind``: ``"groups"`` (nothing folded; a row per group: its upsampled mel, ``n_mels * g``),
    ``"blocks"`` (all folded; a row per hop block: its window of ``W`` frames, ``W * n_mels``) or
    ``"both"`` (a partial fold; a row per hop block: for each of its ``P`` groups the upsampled
    mel and ``extra`` of the window's values, zero-padded to ``P * extra``). ``positions``: groups
    per row; ``group_width`` / ``folded_width``: the inputs of an unfolded / a folded layer's GEMM.
    """

    kind: str
    positions: int
    group_width: int
    folded_width: int
    extra: int

    @classmethod
    def build(cls, cfg: Any, folded: int, total: int, frames: int, positions: int) -> _RowLayout:
        group, window = cfg.n_mels * cfg.n_group, frames * cfg.n_mels
        if folded == 0:
            return cls("groups", 1, group, window, 0)
        if folded == total:
            return cls("blocks", positions, group, window, 0)
        extra = -(-window // positions)
        return cls("both", positions, group + extra, positions * extra, extra)


class _FastStep(nn.Module):
    """One step's inverse, precomputed. Buffers are float32; shapes use ``C = n_channels``,
    ``L = n_layers``, ``K = kernel_size``, ``n_out = 2 n_b`` (affine) or ``n_b`` (additive)."""

    def __init__(
        self,
        step: nn.Module,
        cond: list[tuple[Tensor, Tensor]],
        rows: _RowLayout,
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
        self.register_buffer("taps0_flat", self.taps0.reshape(-1, 2 * c), persistent=False)  # (K * n_a, 2C)
        # Winograd F(4, 3) weights of the dilated layers (see waveflow.nn.winograd): G applied to
        # the 3 taps, per layer 6 matrices (2C, C), prepacked like the conditioning. The direct taps
        # (L - 1, K, C, 2C) are kept only without Winograd (other kernel sizes); the benchmark
        # switch ``use_winograd = False`` rebuilds them from the transformed weights.
        self.winograd = k_size == 3 and n_layers > 1
        self._use_winograd = self.winograd
        if self.winograd:
            g_mat = torch.tensor(_WINOGRAD[1], dtype=torch.float64)  # (6, 3)
            wino = torch.einsum("pk,lkco->lpoc", g_mat, torch.stack(taps)).to(f32)  # (L - 1, 6, 2C, C)
            self.wino = [[_pack(wino[j, p].contiguous()) for p in range(6)] for j in range(n_layers - 1)]
            self._wino_g = g_mat
            taps = []
        self.register_buffer(
            "taps",
            torch.stack(taps).to(f32).contiguous() if taps else torch.empty(0, k_size, c, 2 * c),
        )  # (L - 1, K, C, 2C), empty with Winograd
        self.register_buffer("edges", torch.stack(edges).to(f32).contiguous())  # (L, K, 2C)
        self.register_buffer(
            "res_skip",
            torch.stack(res_skip).to(f32).contiguous() if res_skip else torch.empty(0, c, c + self.n_out),
        )  # (L - 1, C, C + n_out)
        self.register_buffer("skip_last", skip_last.to(f32).contiguous())  # (C, n_out)
        self.register_buffer("out_bias", (b_end + w_end @ skip_bias).to(f32))  # (n_out,)

        # Conditioning, per layer: the caller's projection ``(rows_in, P * 2C)`` (columns: position p
        # in the hop block, channel; P = 1 unfolded) with every constant bias of the layer added and
        # the gate scale applied, so that each layer's conditioning is computed just before it is
        # used (a contiguous, cache-sized block). Weights are (out, in) as torch's linear wants them,
        # prepacked for oneDNN where available, their inputs zero-padded to the row layout's widths.
        self.row_layout = rows
        self.folded = [w.shape[1] != 2 * c for w, _ in cond]
        self.cond_weight, self.cond_bias = [], []
        for i, (w, b) in enumerate(cond):
            positions = w.shape[1] // (2 * c)
            w = (w.reshape(w.shape[0], positions, 2 * c) * gate_scale.to(w.dtype)).reshape(w.shape[0], -1)
            width = rows.folded_width if self.folded[i] else rows.group_width
            w_t = torch.zeros(w.shape[1], width, dtype=f32)
            w_t[:, : w.shape[0]] = w.T
            self.cond_weight.append(_pack(w_t))
            del w, w_t
            bias = b.double().reshape(positions, 2 * c) * gate_scale + layer_bias[i]
            self.cond_bias.append(bias.reshape(-1).to(f32))

        mix = _mix_inverse(step, self.num_channels)
        self.has_mix = mix is not None
        eye = torch.eye(self.num_channels)
        self.register_buffer("mix_t", (mix[0].T if mix else eye).to(f32).contiguous())  # (c, c): x = y @ M^T
        self.register_buffer("mix_shift", (mix[1] if mix else torch.zeros(self.num_channels)).to(f32))

    @property
    def use_winograd(self) -> bool:
        """Switch for benchmarks and tests: ``False`` runs the dilated convs as 3 shifted GEMMs."""
        return self._use_winograd

    @use_winograd.setter
    def use_winograd(self, value: bool) -> None:
        value = bool(value) and self.winograd
        if not value and self.winograd and self.taps.numel() == 0:
            # The taps back from the transformed weights: g = pinv(G) (G g), in float64.
            pinv = torch.linalg.pinv(self._wino_g)  # (3, 6)
            taps = []
            for layer in self.wino:
                wino = torch.stack([w.to_dense() if w.is_mkldnn else w for w in layer]).double()  # (6, 2C, C)
                taps.append(torch.einsum("kp,poc->kco", pinv, wino))
            self.taps = torch.stack(taps).float().contiguous()  # (L - 1, K, C, 2C)
        self._use_winograd = value

    # -- the WaveNet ------------------------------------------------------------------------------
    def _project(self, rows: Tensor, i: int, skip: int, width: int) -> Tensor:
        """Layer ``i``'s conditioning ``(B, width, 2C)`` from the stacked rows ``(B, n, ...)`` of
        every item (one GEMM for the batch), in the layout :class:`_RowLayout` describes. Rows of
        hop blocks hold ``P`` groups each; ``skip`` groups are dropped from the first row."""
        lay = self.row_layout
        batch, n, c2 = rows.shape[0], rows.shape[1], 2 * self.n_channels
        if self.folded[i]:
            if lay.kind == "both":  # each group's row ends with `extra` of the block's window values
                x = rows.reshape(batch, n, lay.positions, lay.group_width)[..., lay.group_width - lay.extra :]
            else:
                x = rows
            out = _linear(x.reshape(batch * n, lay.folded_width), self.cond_weight[i], self.cond_bias[i])
            return out.reshape(batch, -1, c2)[:, skip : skip + width]  # (B, width, 2C)
        x = rows.reshape(batch, n * lay.positions, lay.group_width)[:, skip : skip + width]
        out = _linear(x.reshape(batch * width, lay.group_width), self.cond_weight[i], self.cond_bias[i])
        return out.reshape(batch, width, c2)

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
            # The taps are added by one GEMM over shifted copies of the n_a input channels (layer 0),
            # Winograd, or (other kernel sizes, or the switch off) one GEMM per tap on shifted views.
            direct = i > 0 and not self._use_winograd
            for b in range(batch):
                a, src = cond[b], (x_a[b] if i == 0 else hs[b, :, :c])
                if i == 0:
                    a.addmm_(self._shifted(src), self.taps0_flat)
                elif not direct:
                    self._winograd_conv_(a, src, i)
                for k, off in enumerate(self.offsets[i]):
                    w, edge = (self.taps[i - 1, k] if direct else None), self.edges[i, k]
                    if off == 0:
                        if direct:
                            a.addmm_(src, w)
                    elif off < 0:  # a[t] += w . src[t + off]; rows t < -off see the zero padding
                        if t > -off and direct:
                            a[-off:].addmm_(src[: t + off], w)
                        a[: min(-off, t)].sub_(edge)
                    else:
                        if t > off and direct:
                            a[: t - off].addmm_(src[off:], w)
                        a[max(t - off, 0) :].sub_(edge)
                a.sigmoid_()  # [sigmoid(-2 a) | sigmoid(b)]
                torch.addcmul(a[:, c:], a[:, :c], a[:, c:], value=-2.0, out=gated)  # tanh(a) * sigmoid(b)
                if i < self.n_layers - 1:
                    hs[b].addmm_(gated, self.res_skip[i])
                else:
                    hs[b, :, c:].addmm_(gated, self.skip_last)
        return hs[:, :, c:] + self.out_bias

    def _shifted(self, src: Tensor) -> Tensor:
        """Layer 0's input ``(T', n_a)`` as ``(T', K * n_a)``: column block ``k`` holds
        ``src[t + offset_k]`` (zero outside), so its taps are one GEMM with ``taps0_flat``."""
        t, n_a = src.shape
        out = src.new_zeros(t, len(self.offsets[0]) * n_a)
        for k, off in enumerate(self.offsets[0]):
            lo, hi = max(off, 0), t + min(off, 0)  # the rows of src that land in the output
            if hi > lo:
                out[lo - off : hi - off, k * n_a : (k + 1) * n_a] = src[lo:hi]
        return out

    def _winograd_conv_(self, a: Tensor, src: Tensor, i: int) -> None:
        """``a[t] += sum_k src[t + (k - 1) d] @ taps[k]`` (zero outside ``src``) by F(4, 3), time-major.

        Tiles of 4 outputs ``4dj + i'd + u`` read the 6 rows ``4dj + (k - 1)d + u``; blocks of tiles
        are processed ``_WINOGRAD_ROWS`` output rows at a time, so the transforms' buffers stay small.
        Both transforms are a few in-place vector ops (their matrices have entries 0, +-1, +-2, +-4,
        +-5, +-8); the output transform adds straight into ``a``.
        """
        t, c = src.shape
        d = self.offsets[i][2]
        nb = -(-t // (4 * d))  # tiles
        whole = t // (4 * d)  # tiles whose 4 outputs all lie in `a`
        xp = src.new_empty(nb * 4 * d + 2 * d, c)
        xp[:d].zero_()
        xp[d : d + t] = src
        xp[d + t :].zero_()
        weights = self.wino[i - 1]  # 6 x (2C, C)
        per_block = max(1, _WINOGRAD_ROWS // (4 * d))
        for j0 in range(0, nb, per_block):
            j1 = min(nb, j0 + per_block)
            n = j1 - j0
            tiles = xp[j0 * 4 * d :].as_strided((6, n, d, c), (d * c, 4 * d * c, c, 1))
            x0, x1, x2, x3, x4, x5 = tiles  # each (n, d, c): rows 4dj + (k - 1)d + u
            # B^T x (rows of B^T: [4 0 -5 0 1 0], [0 -4 -4 1 1 0], [0 4 -4 -1 1 0],
            # [0 -2 -1 2 1 0], [0 2 -1 -2 1 0], [0 4 0 -5 0 1]).
            dt = xp.new_empty(6, n, d, c)
            s12, d12 = torch.add(x1, x2), torch.sub(x1, x2)
            s34, d43 = torch.add(x3, x4), torch.sub(x4, x3)
            torch.add(x4, x0, alpha=4, out=dt[0]).add_(x2, alpha=-5)
            torch.add(s34, s12, alpha=-4, out=dt[1])
            torch.add(d43, d12, alpha=4, out=dt[2])
            e, f = torch.sub(x4, x2, out=s34), torch.sub(x3, x1, out=d43)  # (reusing buffers)
            torch.add(e, f, alpha=2, out=dt[3])
            torch.add(e, f, alpha=-2, out=dt[4])
            torch.add(x5, x1, alpha=4, out=dt[5]).add_(x3, alpha=-5)
            dt = dt.view(6, n * d, c)
            p0, p1, p2, p3, p4, p5 = (_linear(dt[k], weights[k], None).view(n, d, -1) for k in range(6))
            # A^T p (rows of A^T: [1 1 1 1 1 0], [0 1 -1 2 -2 0], [0 1 1 4 4 0], [0 1 -1 8 -8 1]).
            s1, d1 = torch.add(p1, p2), p1.sub_(p2)
            s2, d2 = torch.add(p3, p4), p3.sub_(p4)
            m = min(j1, whole) - j0  # whole tiles of this block
            if m > 0:
                out = a[j0 * 4 * d : (j0 + m) * 4 * d].view(m, 4, d, -1)
                out[:, 0].add_(p0[:m]).add_(s1[:m]).add_(s2[:m])
                out[:, 1].add_(d1[:m]).add_(d2[:m], alpha=2)
                out[:, 2].add_(s1[:m]).add_(s2[:m], alpha=4)
                out[:, 3].add_(d1[:m]).add_(d2[:m], alpha=8).add_(p5[:m])
            if m < n:  # the last tile, cut by the end of the sequence
                y = torch.stack(
                    [p0[m] + s1[m] + s2[m], d1[m] + 2 * d2[m], s1[m] + 4 * s2[m], d1[m] + 8 * d2[m] + p5[m]]
                ).reshape(4 * d, -1)
                r0 = (j0 + m) * 4 * d
                a[r0:].add_(y[: t - r0])

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
                log_s = soft_clamp(log_s, self.log_scale_clamp)
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

    def __init__(self, model: WaveGlow, fold_upsampler: bool | int = True):
        super().__init__()
        cfg = model.config
        self.config = cfg
        self.n_mels, self.n_group, self.hop_length = cfg.n_mels, cfg.n_group, cfg.hop_length
        self.kernel_size = cfg.upsample_kernel_size
        self.schedule = model.schedule
        self.contexts = model.flow.contexts
        self.context_groups = model.context_groups
        # Frames a hop block depends on, and group positions per hop block.
        self.window_frames = math.ceil(self.kernel_size / self.hop_length)
        self.positions = self.hop_length // self.n_group
        n_layers = cfg.wavenet.n_layers
        # Which (step, layer) projections are folded: the first `folded_layers` in the order the
        # inverse runs the steps (last step first), layer by layer.
        self.folded_layers = folded_layers(model, fold_upsampler)
        order = [(k, i) for k in reversed(range(cfg.n_flows)) for i in range(n_layers)]
        folded = set(order[: self.folded_layers])
        self.fold_upsampler = self.folded_layers > 0  # conditioning rows are hop blocks
        self.row_layout = _RowLayout.build(
            cfg, self.folded_layers, cfg.n_flows * n_layers, self.window_frames, self.positions
        )

        up_w = model.upsample.conv.weight.detach()  # (n_mels in, n_mels out, kernel)
        up_b = model.upsample.conv.bias.detach()  # (n_mels,)
        u = self._upsampler_matrix(up_w)
        if self.row_layout.kind != "blocks":
            self.upsample_rows = self._upsampler_rows(u, up_b)
        c2 = 2 * cfg.wavenet.n_channels
        steps = []
        for k, step in enumerate(model.flow.steps):
            wn = step.coupling.conditioner
            w_c = _weight(wn.cond_layer)[:, :, 0]  # (2CL, n_mels * g), input channel m * g + j
            b_c = wn.cond_layer.bias.detach().double()
            cond = []
            for i in range(n_layers):
                w_i, b_i = w_c[i * c2 : (i + 1) * c2], b_c[i * c2 : (i + 1) * c2]
                if (k, i) in folded:
                    cond.append(self._fold(u, up_b, w_i, b_i))
                else:
                    cond.append((w_i.T, b_i))  # (n_mels * g, 2C)
            steps.append(_FastStep(step, cond, self.row_layout))
            del cond
        self.steps = nn.ModuleList(steps)
        self.eval()

    @classmethod
    def from_model(cls, model: WaveGlow, fold_upsampler: bool | int = True) -> FastWaveGlow:
        """Precompute the fast inverse of ``model`` (weights read once; ``model`` is left as it is).

        ``fold_upsampler``: fold the mel upsampler into the conditioning of every step and layer
        (``True``: faster, but stores :func:`folded_cond_bytes` of weights, 2.0 GB for NVIDIA's
        model), of none (``False``), or (an ``int``) of as many layers as fit in that many bytes of
        folded weight (:func:`folded_layer_bytes` each; :func:`folded_layers` says how many).
        """
        if model.config.conditioning != "upsample" or model.config.wavenet.separable:
            raise ValueError(
                "the fast engine compiles WaveGlow's upsampled conditioning and dense WaveNets; "
                "this model is of the compact family (use its own inverse: engine='plain')"
            )
        return cls(model, fold_upsampler)

    def _upsampler_matrix(self, up_w: Tensor) -> Tensor:
        """The transposed conv's taps as ``(n_mels * W * P, n_mels * g)`` float32: row ``(m_in, d, p)``,
        column ``(m_out, j)`` is tap ``hop * d + p * g + j`` (zero past the kernel)."""
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
        return u.permute(0, 2, 3, 1, 4).reshape(n_mels * frames * pos, n_mels * g)

    def _upsampler_rows(self, u: Tensor, up_b: Tensor) -> tuple[Tensor, Tensor]:
        """The upsampler as one GEMM from a hop block's window of frames to its conditioning rows
        (:meth:`_cond_rows`; the same sums as the transposed conv, without its slow CPU kernel):
        weight (prepacked) and bias of the map ``(W * n_mels,) -> (P * width,)``. Per position,
        columns ``(m_out, j)`` hold the upsampled mel; in the ``"both"`` layout the ``extra``
        columns after them copy the position's share of the window (weight 1: exact)."""
        n_mels, frames, pos, lay = self.n_mels, self.window_frames, self.positions, self.row_layout
        group = n_mels * self.n_group
        rows = frames * n_mels
        weight = torch.zeros(rows, pos, group + lay.extra, dtype=torch.float32)
        # u: [(m_in, d, p), (m_out, j)] -> [(w, m_in), p, (m_out, j)], w = W - 1 - d (oldest first)
        weight[:, :, :group] = (
            u.reshape(n_mels, frames, pos, group).flip(1).permute(1, 0, 2, 3).reshape(rows, pos, group)
        )
        bias = torch.zeros(pos, group + lay.extra, dtype=torch.float32)
        bias[:, :group] = up_b.float().repeat_interleave(self.n_group)
        for r in range(rows):  # window value r goes to position r // extra, slot r % extra
            if lay.extra:
                weight[r, r // lay.extra, group + r % lay.extra] = 1.0
        return _pack(weight.reshape(rows, -1).T.contiguous()), bias.reshape(-1)

    def _fold(self, u: Tensor, up_b: Tensor, w_c: Tensor, b_c: Tensor) -> tuple[Tensor, Tensor]:
        """``cond_layer . upsample`` for one layer (``w_c`` ``(2C, n_mels * g)``, ``b_c``; ``u`` from
        :meth:`_upsampler_matrix`) as a map from a window of ``W`` frames to ``P`` positions.

        Returns the weight ``(W * n_mels, P * 2C)`` (rows: window frame ``w`` (oldest first), mel bin;
        columns: position ``p`` in the hop block, cond channel) and the bias ``(P * 2C,)`` (float64).
        Upsampled sample ``r = p * g + j`` of hop block ``f`` receives frame ``f - d`` through tap
        ``hop * d + r`` of the transposed conv.
        """
        n_mels, frames, pos = self.n_mels, self.window_frames, self.positions
        # float32 GEMM (K = n_mels * g): the fold of NVIDIA's model is 3.4 GMAC per layer and step.
        folded = u @ w_c.T.float()  # [(m_in, d, p), c]
        folded = folded.reshape(n_mels, frames, pos, -1).flip(1)  # d -> window slot w = W - 1 - d
        weight = folded.permute(1, 0, 2, 3).reshape(frames * n_mels, -1)  # [(w, m_in), (p, c)]
        # The upsampler's bias reaches every sample: cond_layer(bias repeated over j).
        bias = b_c + w_c @ up_b.double().repeat_interleave(self.n_group)  # (2C,)
        return weight, bias.repeat(pos)

    # -- conditioning ------------------------------------------------------------------------------
    def _cond_rows(self, mel: Tensor, first_group: int, num_groups: int) -> Tensor:
        """Per-step projection input for groups ``[first_group, first_group + num_groups)``, where
        group 0 starts at sample 0 of ``mel`` ``(n_mels, f)`` (one item; frames before 0 and after
        ``f`` count as zero), in the engine's :class:`_RowLayout`: for a full fold, the frame windows
        ``(blocks, W * n_mels)`` of the hop blocks covering the groups; unfolded, the grouped
        upsampled mel ``(num_groups, n_mels * g)``; for a partial fold, per hop block its ``P``
        groups' upsampled mel, each followed by ``e`` of the block's window values."""
        g, hop, lay = self.n_group, self.hop_length, self.row_layout
        b0 = first_group * g // hop
        b1 = -(-(first_group + num_groups) * g // hop)  # ceil
        w = self.window_frames
        # frames b0 - w + 1 .. b1 - 1, zero outside [0, f)
        lo, hi = b0 - w + 1, b1
        padded = mel.new_zeros(self.n_mels, hi - lo)
        s0, s1 = max(lo, 0), min(hi, mel.shape[1])
        if s1 > s0:
            padded[:, s0 - lo : s1 - lo] = mel[:, s0:s1]
        win = padded.unfold(1, w, 1).permute(1, 2, 0).reshape(b1 - b0, w * self.n_mels)  # row: [(w, mel bin)]
        if lay.kind == "blocks":
            return win
        rows = _linear(win, *self.upsample_rows)  # (blocks, P * width)
        if lay.kind == "both":
            return rows
        skip = first_group - b0 * self.positions
        return rows.view(-1, lay.group_width)[skip : skip + num_groups]  # [t, m*g+j]

    # -- public API --------------------------------------------------------------------------------
    def _check_mel(self, mel: Tensor) -> None:
        if mel.dim() != 3 or mel.shape[1] != self.n_mels or mel.shape[2] < 1:
            raise ValueError(
                f"mel must be (B, n_mels={self.n_mels}, frames >= 1), got shape {tuple(mel.shape)}"
            )
        if not torch.isfinite(mel).all():
            raise ValueError(f"mel contains {int((~torch.isfinite(mel)).sum())} NaN/Inf value(s)")

    # What the chunk loop and the stream read (waveflow.infer.streaming.Engine).
    has_source = False  # compiles WaveGlow's upsampled conditioning only
    cond_lookahead = 0

    def cond_frames(self, start: int, stop: int, num_frames: int) -> tuple[int, int]:
        """Mel frames ``[f0, f1)`` the conditioning of samples ``[start, stop)`` reads (the model's rule)."""
        return upsample_frame_range(self.hop_length, self.kernel_size, start, stop, num_frames)

    def excitation(self, mel: Tensor, num_samples: int | None = None) -> Tensor:
        raise ValueError("the fast engine compiles models without a source: there is no excitation")

    @torch.inference_mode()
    def decode_window(
        self,
        mel: Tensor,
        z: Tensor,
        start: int,
        mel_offset: int = 0,
        keep: tuple[int, int] | None = None,
        num_frames: int | None = None,
        excitation: Tensor | None = None,
    ) -> Tensor:
        """:meth:`WaveGlow.decode_window <waveflow.model.WaveGlow.decode_window>`, compiled: the
        same plan (:meth:`~waveflow.flows.EarlyOutputSchedule.inverse_plan`), each step run in place.

        ``z`` ``(B, n_group, W)``; ``mel`` ``(B, n_mels, f)`` holds absolute frames
        ``[mel_offset, mel_offset + f)`` and must cover every frame that reaches the window.
        ``num_frames`` is accepted for the engine interface (the upsampled conditioning does not
        need it); ``excitation`` must be ``None``.
        """
        self._check_mel(mel)
        if excitation is not None:
            raise ValueError("the fast engine compiles models without a source: it takes no excitation")
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
        local = None if keep is None else (keep[0] - start, keep[1] - start)
        plan = self.schedule.inverse_plan(width, self.contexts, local)
        first_group = first_sample // g
        # Each item's state is (W, n_group), time-major; sample = t * g + j. Step k works in place
        # on the last channels[k] columns of rows [lo, hi): the emitted blocks of z already sit in
        # the columns in front, so nothing is concatenated.
        x = z.float().transpose(1, 2).contiguous()  # (B, W, n_group)
        rows = torch.stack([self._cond_rows(m, first_group, width) for m in mel.float()])
        # Folded rows are hop blocks of `positions` groups; the window starts `skip` groups into the first.
        per_row = self.positions if self.fold_upsampler else 1
        skip = first_group % per_row
        channels = self.schedule.channels
        for k, lo, hi in plan.steps:
            r0, r1 = (skip + lo) // per_row, -(-(skip + hi) // per_row)
            self.steps[k].inverse_(x[:, lo:hi, g - channels[k] :], rows[:, r0:r1], skip + lo - r0 * per_row)
        a, b = plan.keep
        return x[:, a:b].reshape(x.shape[0], (b - a) * g)

    def synthesize_chunked(self, mel: Tensor, z: Tensor, chunk_groups: int) -> Tensor:
        """:func:`waveflow.infer.streaming.synthesize_chunked` with this engine (the same audio)."""
        return streaming.synthesize_chunked(self, mel, z, chunk_groups).float()

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
        return self.schedule.draw_latent(batch_size, num_groups, generator) * sigma

    def infer(
        self,
        mel: Tensor,
        sigma: float = 1.0,
        z: Tensor | None = None,
        generator: torch.Generator | None = None,
        latent_order: str = "nvidia",
    ) -> Tensor:
        """``mel`` ``(B, n_mels, F)`` -> audio ``(B, F * hop_length)`` (as :meth:`WaveGlow.infer`)."""
        self._check_mel(mel)
        num_groups = mel.shape[2] * self.hop_length // self.n_group
        if z is None:
            z = torch.cat(
                item_latents(self.schedule, [num_groups] * mel.shape[0], sigma, generator, order=latent_order)
            )
        elif z.shape != (mel.shape[0], self.n_group, num_groups):
            raise ValueError(
                f"z must have shape {(mel.shape[0], self.n_group, num_groups)} for {mel.shape[2]} frames, "
                f"got {tuple(z.shape)}"
            )
        return self.decode(z, mel)

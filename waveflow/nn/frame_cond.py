"""Frame-rate conditioning for the compact flows (no audio-rate upsampler).

The alignment rule: mel frame ``f`` of a centred STFT is centred on audio sample ``f * hop``, so the
hop ``j`` (samples ``[j * hop, (j + 1) * hop)``) lies between frames ``j`` and ``j + 1``. Its
conditioning vector is computed from the ``kernel_size`` frames ``j - p .. j + 1 + p``
(``p = kernel_size / 2 - 1``), symmetric around the hop; frames outside the sequence repeat its
first/last frame. The vector is shared by the ``hop / n_group`` groups of that hop::

    mel (B, n_mels, F) --conv(kernel K, no padding)--> leaky ReLU --1x1--> (B, C, hops)
                       --repeat each hop hop/n_group times--> cond (B, C, T / n_group)

Training crops of ``T`` samples come with ``T / hop + 1`` frames (centred STFT); synthesis from
``F`` frames gives ``F * hop`` samples, the last hop reading the last frame twice. Because
conditioning depends on frames only through this rule, a window of the sequence can be conditioned
from a slice of the mel (:meth:`FrameConditioner.window`), which chunked synthesis relies on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from waveflow.nn.separable import pointwise


class FrameConditioner(nn.Module):
    """``mel (B, n_mels, F)`` -> ``cond (B, channels, T / n_group)`` at (a multiple of) frame rate."""

    def __init__(
        self,
        n_mels: int,
        hop_length: int,
        n_group: int,
        channels: int,
        kernel_size: int = 4,
        weight_norm: bool = True,
        source: bool = False,
        direct: bool = False,
    ):
        super().__init__()
        if kernel_size < 2 or kernel_size % 2:
            raise ValueError(f"kernel_size must be even and >= 2, got {kernel_size}")
        if hop_length % n_group:
            raise ValueError(f"hop_length ({hop_length}) must be divisible by n_group ({n_group})")
        wn = _weight_norm if weight_norm else (lambda m: m)
        self.n_mels = n_mels
        self.hop_length = hop_length
        self.n_group = n_group
        self.channels = channels
        self.kernel_size = kernel_size
        self.pad = kernel_size // 2 - 1  # frames before j (and after j + 1) that hop j reads
        self.repeat = hop_length // n_group  # groups per hop
        self.encode = wn(nn.Conv1d(n_mels, channels, kernel_size))
        self.project = wn(nn.Conv1d(channels, channels, 1))
        # With a source, the excitation of each group (n_group samples) joins the mel encoding
        # before the non-linearity (see waveflow.nn.source).
        self.source = wn(nn.Conv1d(n_group, channels, 1)) if source else None
        # direct: the grouped excitation is also appended to the output (channels + n_group).
        if direct and not source:
            raise ValueError("direct needs a source")
        self.direct = direct

    def frame_range(self, start: int, stop: int, num_frames: int) -> tuple[int, int]:
        """Frames ``[f0, f1)`` that samples ``[start, stop)`` are conditioned on."""
        j0, j1 = start // self.hop_length, -(-stop // self.hop_length)
        return max(0, j0 - self.pad), min(num_frames, j1 + 1 + self.pad)

    def window(
        self,
        mel: Tensor,
        mel_offset: int,
        start: int,
        num_samples: int,
        num_frames: int,
        excitation: Tensor | None = None,
    ) -> Tensor:
        """Conditioning of samples ``[start, start + num_samples)``: ``(B, channels, num_samples / n_group)``.

        ``mel`` holds the absolute frames ``[mel_offset, mel_offset + mel.shape[2])`` of a sequence
        of ``num_frames`` frames; it must include :meth:`frame_range` of the window. ``start`` and
        ``num_samples`` are multiples of ``n_group``. A conditioner with a source also takes the
        ``excitation`` of the window's samples, ``(B, num_samples)``.
        """
        if (excitation is None) != (self.source is None):
            raise ValueError(
                "this conditioner needs the excitation of the window"
                if excitation is None
                else "this conditioner has no source; it takes no excitation"
            )
        hop, g = self.hop_length, self.n_group
        if start % g or num_samples % g or num_samples <= 0:
            raise ValueError(f"window [{start}, {start + num_samples}) is not made of whole groups of {g}")
        if start + num_samples > num_frames * hop:
            raise ValueError(
                f"{num_frames} mel frames condition at most {num_frames * hop} samples, "
                f"but samples up to {start + num_samples} were asked for"
            )
        j0, j1 = start // hop, -(-(start + num_samples) // hop)
        frames = torch.arange(j0 - self.pad, j1 + 1 + self.pad, device=mel.device)
        index = frames.clamp(0, num_frames - 1) - mel_offset  # edge frames repeat
        if int(index.min()) < 0 or int(index.max()) >= mel.shape[2]:
            f0, f1 = self.frame_range(start, start + num_samples, num_frames)
            raise ValueError(
                f"mel frames [{mel_offset}, {mel_offset + mel.shape[2]}) do not include frames [{f0}, {f1}) "
                f"needed for samples [{start}, {start + num_samples})"
            )
        first = (start - j0 * hop) // g
        if self.source is not None:
            if excitation.shape[-1] != num_samples:
                raise ValueError(f"excitation has {excitation.shape[-1]} samples, the window {num_samples}")
            h = self.encode(mel.index_select(2, index))  # (B, C, j1 - j0)
            if self.repeat > 1:
                h = h.repeat_interleave(self.repeat, dim=2)
            h = h[:, :, first : first + num_samples // g]
            exc = excitation.reshape(excitation.shape[0], -1, g).transpose(1, 2)  # (B, g, W)
            exc = exc.to(h.dtype)
            h = pointwise(self.project, F.leaky_relu(h + pointwise(self.source, exc), 0.2))
            return torch.cat([h, exc], dim=1) if self.direct else h
        h = F.leaky_relu(self.encode(mel.index_select(2, index)), 0.2)  # (B, C, j1 - j0)
        h = pointwise(self.project, h)
        if self.repeat > 1:
            h = h.repeat_interleave(self.repeat, dim=2)  # (B, C, (j1 - j0) * hop / g)
        return h[:, :, first : first + num_samples // g]

    def forward(self, mel: Tensor, num_samples: int, excitation: Tensor | None = None) -> Tensor:
        """Conditioning of the first ``num_samples`` samples of the sequence ``mel`` describes."""
        return self.window(mel, 0, 0, num_samples, mel.shape[2], excitation)

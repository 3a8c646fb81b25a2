"""The one alignment rule between mel frames and audio samples.

The mel ``(B, n_mels, F)`` is upsampled once by a transposed convolution whose stride is the hop
length (NVIDIA: kernel 1024, stride 256). Its output has ``hop * (F - 1) + kernel`` samples; sample
``n`` of the audio is aligned with output sample ``n``, and the output is cut to the audio length.
For synthesis that length is ``F * hop``: every frame produces exactly ``hop`` samples, and the last
``kernel - hop`` samples of the overhang are dropped.
"""

from __future__ import annotations

from torch import Tensor, nn


def upsample_frame_range(hop: int, kernel: int, start: int, stop: int, num_frames: int) -> tuple[int, int]:
    """Frames ``[f0, f1)`` whose upsampled output reaches samples ``[start, stop)``.

    Frame ``f`` reaches samples ``[f * hop, f * hop + kernel)``: frames before ``f0`` end before
    ``start``, frames from ``f1`` on begin at or after ``stop``.
    """
    return max(0, (start - kernel) // hop + 1), min(num_frames, -(-stop // hop))


class MelUpsampler(nn.Module):
    """``(B, n_mels, F)`` -> ``(B, n_mels, num_samples)`` with a learned transposed convolution."""

    def __init__(self, n_mels: int, hop_length: int, kernel_size: int):
        super().__init__()
        if kernel_size < hop_length:
            raise ValueError(f"kernel_size ({kernel_size}) must be >= hop_length ({hop_length})")
        self.n_mels = n_mels
        self.hop_length = hop_length
        self.kernel_size = kernel_size
        self.conv = nn.ConvTranspose1d(n_mels, n_mels, kernel_size, stride=hop_length)

    def frame_range(self, start: int, stop: int, num_frames: int) -> tuple[int, int]:
        """Frames ``[f0, f1)`` that samples ``[start, stop)`` depend on (:func:`upsample_frame_range`)."""
        return upsample_frame_range(self.hop_length, self.kernel_size, start, stop, num_frames)

    def output_length(self, num_frames: int) -> int:
        return self.hop_length * (num_frames - 1) + self.kernel_size

    def window(self, mel: Tensor, first_sample: int, num_samples: int, mel_offset: int = 0) -> Tensor:
        """Upsampled samples ``[first_sample, first_sample + num_samples)`` of a mel slice holding the
        absolute frames ``[mel_offset, mel_offset + f)``; sample 0 is the slice's first frame's (the
        slice must reach them: see :meth:`frame_range`)."""
        upsampled = self.conv(mel)  # (B, n_mels, hop * (f - 1) + kernel)
        if first_sample < 0 or first_sample + num_samples > upsampled.shape[-1]:
            start = mel_offset * self.hop_length + first_sample
            raise ValueError(
                f"mel frames [{mel_offset}, {mel_offset + mel.shape[-1]}) do not cover samples "
                f"[{start}, {start + num_samples})"
            )
        return upsampled[..., first_sample : first_sample + num_samples]

    def forward(self, mel: Tensor, num_samples: int | None = None) -> Tensor:
        """Upsample and trim to ``num_samples`` (default ``F * hop_length``)."""
        num_frames = mel.shape[-1]
        if num_samples is None:
            num_samples = num_frames * self.hop_length
        available = self.output_length(num_frames)
        if num_samples > available:
            raise ValueError(
                f"{num_frames} mel frames cover at most {available} samples "
                f"(hop {self.hop_length}, kernel {self.kernel_size}), but {num_samples} were asked for"
            )
        return self.conv(mel)[..., :num_samples]

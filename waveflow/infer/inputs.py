"""What every synthesis object does before the flow runs: input coercion, checks, noise, batching.

:class:`SynthesisCall` is shared by :class:`~waveflow.infer.vocoder.Vocoder` (torch) and
:class:`~waveflow.infer.export.OnnxVocoder` (onnxruntime), so both take the same inputs, raise the
same errors, warn the same way about mels in another convention and draw the same noise. A
subclass supplies the sizes (``n_mels``, ``n_group``, ``hop_length``, ``schedule``), ``mel_config``,
``device``, ``_compute_dtype()`` and ``_synthesize(mel, z, denoise)`` for one unpadded length group.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from waveflow.config import MelConfig
from waveflow.flows import EarlyOutputSchedule
from waveflow.infer import mel_guard
from waveflow.infer.frontends import Frontend, MelAdapter, StatsLike, adapter_for
from waveflow.latent import LatentStream, check_latent_order, item_latents

ArrayLike = Tensor | np.ndarray


def to_tensor(value: Any, name: str) -> Tensor:
    """numpy or torch floating-point data -> a tensor (numpy float16/32 -> float32, wider -> float64)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "f":
            raise ValueError(
                f"{name} must hold floating-point values, got a numpy array of {value.dtype}"
                + (" (integer data: convert to float first)" if value.dtype.kind in "iu" else "")
            )
        # asarray also fixes a non-native byte order, which torch.from_numpy refuses.
        return torch.from_numpy(
            np.asarray(value, dtype=np.float32 if value.dtype.itemsize <= 4 else np.float64)
        )
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {value.dtype}")
        return value.detach()
    raise ValueError(f"{name} must be a torch.Tensor or a numpy array, got {type(value).__name__}")


def check_number(name: str, value: float) -> float:
    """``value`` as a float, if it is a finite real number >= 0 (else ``ValueError`` naming it)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def caller_stacklevel() -> int:
    """``stacklevel`` that points a warning at the first frame outside ``waveflow.infer`` and torch.

    The call path (nn.Module.__call__, no_grad wrappers, generators) varies, so it is counted.
    """
    internal = (os.path.dirname(__file__), os.path.dirname(torch.__file__))
    frame, level = sys._getframe(1), 1  # the frame that calls warnings.warn
    while frame is not None and frame.f_code.co_filename.startswith(internal):
        frame, level = frame.f_back, level + 1
    return level


def prepare_lengths(lengths: Any, batch_size: int, num_frames: int) -> list[int]:
    """Valid frames per item (``None``: all), checked: whole numbers in ``[1, num_frames]``."""
    if lengths is None:
        return [num_frames] * batch_size
    if isinstance(lengths, int) and not isinstance(lengths, bool):
        lengths = [lengths]
    values = torch.as_tensor(np.asarray(lengths.cpu() if isinstance(lengths, Tensor) else lengths))
    if values.dim() != 1 or values.numel() != batch_size:
        raise ValueError(
            f"lengths must have one entry per item ({batch_size}), got shape {tuple(values.shape)}"
        )
    if values.is_floating_point():
        if not bool(torch.isfinite(values).all()) or not bool((values == values.round()).all()):
            raise ValueError(f"lengths must be whole numbers of frames, got {values.tolist()}")
    elif values.dtype == torch.bool or values.is_complex():
        raise ValueError(f"lengths must be integers, got {values.dtype}")
    out = [int(v) for v in values.tolist()]
    for i, n in enumerate(out):
        if n < 1:
            raise ValueError(f"lengths[{i}] = {n}: every item needs at least one frame")
        if n > num_frames:
            raise ValueError(f"lengths[{i}] = {n} exceeds the mel's {num_frames} frames")
    return out


def check_items_finite(mel: Tensor, lengths: Sequence[int]) -> None:
    for i, n in enumerate(lengths):
        bad = int((~torch.isfinite(mel[i, :, :n])).sum())
        if bad:
            raise ValueError(f"mel item {i} contains {bad} NaN/Inf value(s) within its {n} frames")


class SynthesisCall:
    """The shared front door of a synthesis object (see the module docstring)."""

    n_mels: int
    n_group: int
    hop_length: int
    mel_config: MelConfig
    mel_adapter: MelAdapter | None
    check_mel: bool
    device: torch.device
    schedule: EarlyOutputSchedule

    def _compute_dtype(self) -> torch.dtype:
        return torch.float32

    def _synthesize(self, mel: Tensor, z: Tensor, denoise: float) -> Tensor:
        raise NotImplementedError

    # -- mels ------------------------------------------------------------------------------------------
    def set_frontend(self, mel_from: str | Frontend | None, stats: StatsLike | None = None) -> Any:
        """Convert every mel this vocoder receives from TTS front end ``mel_from`` (``None``: none).

        ``stats`` undo a mean/variance normalisation first (front ends whose mels may be normalised
        only, e.g. ``"espnet"``; checked against ``n_mels``). Where the front end's analysis (sample
        rate, hop, band, STFT, filterbank) differs from :attr:`mel_config`'s, one
        :class:`~waveflow.infer.frontends.FrontendMismatchWarning` says what no conversion repairs.
        Returns ``self``, so ``Vocoder.from_pretrained().set_frontend("espnet", stats=...)`` chains.
        """
        self.mel_adapter = adapter_for(mel_from, self.mel_config, stats, stacklevel=caller_stacklevel())
        return self

    def _prepare_mel(self, mel: Any, *, convert: bool = True) -> Tensor:
        """``(n_mels, T)`` or ``(B, n_mels, T)`` -> checked ``(B, n_mels, T)`` on the device, compute
        dtype, converted from the TTS front end (:meth:`set_frontend`) unless ``convert`` is false."""
        mel_t = to_tensor(mel, "mel")
        if mel_t.dim() not in (2, 3):
            raise ValueError(
                f"mel must be 2-D (n_mels, frames) or 3-D (B, n_mels, frames), got shape {tuple(mel_t.shape)}"
            )
        if mel_t.shape[-2] != self.n_mels:
            raise ValueError(mel_guard.describe_n_mels_mismatch(tuple(mel_t.shape), self.mel_config))
        if mel_t.dim() == 2:
            mel_t = mel_t.unsqueeze(0)  # (n_mels, T) -> (1, n_mels, T)
        if mel_t.shape[0] == 0 or mel_t.shape[2] == 0:
            raise ValueError(f"mel has shape {tuple(mel_t.shape)}: no items or no frames")
        if convert:
            mel_t = self._convert_mel(mel_t)
        return mel_t.to(device=self.device, dtype=self._compute_dtype())

    def _convert_mel(self, mel: Tensor) -> Tensor:
        """The front end's mel -> :attr:`mel_config`'s (identity without a front end)."""
        return mel if self.mel_adapter is None else self.mel_adapter(mel)

    def mel_warnings(self, mel: ArrayLike) -> list[str]:
        """What a call would warn about ``mel`` ``(n_mels, frames)`` (given as to the call, before any
        front-end conversion): its values against the front end's and the vocoder's conventions."""
        mel_t = to_tensor(mel, "mel")
        if self.mel_adapter is not None:
            return self.mel_adapter.check(mel_t)
        return mel_guard.check_mel_statistics(mel_t, self.mel_config)

    def _warn_convention(self, mel: Tensor) -> None:
        """One MelConventionWarning if ``mel`` ``(n_mels, frames)``, as given (before the front-end
        conversion), does not look like the front end's or ``mel_config``'s convention."""
        messages = self.mel_warnings(mel)
        if messages:
            warnings.warn("; ".join(messages), mel_guard.MelConventionWarning, stacklevel=caller_stacklevel())

    # -- noise -----------------------------------------------------------------------------------------
    def latent_stream(self, sigma: float = 0.6, generator: torch.Generator | None = None) -> LatentStream:
        """The latent sequence every ``"stream"``-order entry point draws from (:mod:`waveflow.latent`)."""
        return LatentStream(
            self.n_group,
            check_number("sigma", sigma),
            generator,
            device=self.device,
            dtype=self._compute_dtype(),
        )

    def _latents(
        self,
        lengths: Sequence[int],
        sigma: float,
        generator: torch.Generator | None,
        z: Any,
        num_frames: int,
        latent_order: str = "stream",
    ) -> list[Tensor]:
        """One ``(1, n_group, length * hop / n_group)`` latent per item, in batch order."""
        hop, g = self.hop_length, self.n_group
        check_latent_order(latent_order)
        if z is None:
            groups = [n * hop // g for n in lengths]
            return item_latents(
                self.schedule,
                groups,
                sigma,
                generator,
                order=latent_order,
                device=self.device,
                dtype=self._compute_dtype(),
            )
        if generator is not None:
            raise ValueError("pass either z or generator, not both")
        z_t = to_tensor(z, "z")
        if z_t.dim() == 2:
            z_t = z_t.unsqueeze(0)  # (g, G) -> (1, g, G)
        expected = (len(lengths), g, num_frames * hop // g)
        if tuple(z_t.shape) != expected:
            raise ValueError(f"z must have shape {expected} for {num_frames} frames, got {tuple(z_t.shape)}")
        if not bool(torch.isfinite(z_t).all()):
            raise ValueError("z contains NaN or Inf")
        z_t = z_t.to(device=self.device, dtype=self._compute_dtype())
        return [z_t[i : i + 1, :, : n * hop // g] for i, n in enumerate(lengths)]

    # -- the call --------------------------------------------------------------------------------------
    def _call(
        self,
        mel: Any,
        lengths: Any,
        sigma: float,
        denoise: float,
        generator: torch.Generator | None,
        z: Any,
        latent_order: str,
    ) -> tuple[Tensor, Tensor]:
        """The body of ``vocoder(mel, lengths, ...)``: checks, noise, then each length group on its own."""
        mel_t = self._prepare_mel(mel, convert=False)
        batch_size, _, num_frames = mel_t.shape
        item_lengths = prepare_lengths(lengths, batch_size, num_frames)
        sigma = check_number("sigma", sigma)
        denoise = check_number("denoise", denoise)
        check_items_finite(mel_t, item_lengths)
        latents = self._latents(item_lengths, sigma, generator, z, num_frames, latent_order)
        if self.check_mel:
            self._warn_convention(torch.cat([mel_t[i, :, :n] for i, n in enumerate(item_lengths)], dim=1))
        mel_t = self._convert_mel(mel_t)

        hop = self.hop_length
        by_length: dict[int, list[int]] = {}
        for i, n in enumerate(item_lengths):
            by_length.setdefault(n, []).append(i)
        if list(by_length) == [num_frames]:
            # Nothing is padded: one batch, no copies (this is the long-form path).
            z_all = torch.cat(latents) if batch_size > 1 else latents[0]
            audio = self._synthesize(mel_t, z_all, denoise)
        else:
            audio = torch.zeros(batch_size, num_frames * hop, device=self.device, dtype=torch.float32)
            for n, items in by_length.items():
                index = torch.tensor(items, device=self.device)
                z_group = torch.cat([latents[i] for i in items])  # (b, g, n * hop / g)
                audio[index, : n * hop] = self._synthesize(mel_t[index, :, :n], z_group, denoise)
        audio_lengths = torch.tensor(item_lengths, device=self.device, dtype=torch.int64) * hop
        return audio, audio_lengths

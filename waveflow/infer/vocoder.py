"""The public Python API: a trained vocoder as one object that knows its own mel convention.

::

    from waveflow import Vocoder

    vocoder = Vocoder.from_checkpoint("waveflow.pt", device="cuda", precision="fp16")
    audio, audio_lengths = vocoder(mel, mel_lengths)        # torchaudio style, (B, T * hop)
    waveforms = vocoder.decode_batch(mel, mel_lens)          # SpeechBrain style, (B, 1, T * hop)
    for chunk in vocoder.stream(mel_chunks): ...             # streaming, bounded latency
    mel = vocoder.mel(audio, sample_rate)                    # the checkpoint's own front end

Conventions shared by every entry point:

* **Lengths.** ``F`` mel frames give exactly ``F * hop_length`` samples. In a padded batch, item
  ``i`` uses frames ``[0, lengths[i])`` and its audio past ``lengths[i] * hop_length`` is exactly 0.
* **Batch consistency.** The flow is non-causal: noise or mel padding after an item's end would
  reach its last ``receptive_field / 2`` samples. So items are never synthesized on padding: items
  of equal length run together as one batch, each length group separately, and a padded batch gives
  the same audio as item-by-item calls (to float rounding).
* **Noise.** ``z ~ N(0, sigma^2)`` is drawn per item, in batch order, in one of two documented
  orders (:mod:`waveflow.latent`, the switch ``latent_order``): ``"stream"`` (default here: each
  item its own :class:`~waveflow.latent.LatentStream`, so batched calls, one-by-one calls, chunked
  long mels and :meth:`Vocoder.stream` read the same noise from the same seed) or ``"nvidia"``
  (NVIDIA's order, the default of ``WaveGlow.infer``). The same order and seed give the same audio
  from ``WaveGlow.infer``, ``FastWaveGlow.infer``, a Vocoder call on either engine and an exported
  :class:`~waveflow.infer.export.OnnxVocoder`.
* **Long mels** are synthesized in windows of ``chunk_frames`` frames (default 384, or 2048 with
  the fast engine, which needs far less memory per frame) plus the exact receptive-field context
  on each side (:func:`~waveflow.infer.streaming.synthesize_chunked`): memory stays bounded
  and the audio equals the one-shot result.
* **Engine.** Every synthesis entry point (calls, ``decode_batch``, :meth:`Vocoder.decode`,
  :meth:`Vocoder.stream`) runs one engine, :meth:`Vocoder.inverse_engine`: on a CPU in fp32 the
  inverse flow compiled for speed (:class:`~waveflow.infer.fast.FastWaveGlow`, the same plan and
  the same audio within float rounding, ~1e-6), elsewhere or with ``engine="plain"`` the model's
  own inverse. The upsampler is folded into the conditioning as far as ``FOLD_MAX_BYTES`` of
  weight allow (completely for small models, partly for NVIDIA's). Encoding and scoring run the model's forward direction.
* **Precision.** ``fp32`` everywhere; ``bf16`` on CUDA or CPU (on most CPUs slower than fp32, useful
  to halve memory); ``fp16`` on CUDA only. Weights are cast; audio is always returned as float32.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from waveflow import losses
from waveflow.audio.features import MelSpectrogram
from waveflow.config import MelConfig, VocoderConfig
from waveflow.devices import parse_device
from waveflow.flows import EarlyOutputSchedule
from waveflow.infer import mel_guard
from waveflow.infer.denoiser import Denoiser
from waveflow.infer.fast import FastWaveGlow
from waveflow.infer.frontends import Frontend, MelAdapter, StatsLike
from waveflow.infer.inputs import ArrayLike, SynthesisCall, check_items_finite, check_number, to_tensor
from waveflow.infer.streaming import (
    Engine,
    LatentStream,
    StreamingSynthesizer,
    context_samples,
    encode_chunked,
    synthesize_chunked,
)
from waveflow.model import WaveGlow, folded_copy

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_CHUNK_FRAMES = 384
# The fast engine keeps one layer's conditioning at a time (not every layer's, as the model does),
# so its windows can be longer: 2048 frames (24 s) cost ~0.5 GB for NVIDIA's model, and the exact
# context each side (3060 groups there) adds 9% of work instead of 50% at 384 frames.
FAST_CHUNK_FRAMES = 2048
# Frame-rate (compact) models run one position per frame: 4096 frames (48 s) hold ~30 MB of
# activations, and their context (~100 frames each side) then adds 5% of work.
COMPACT_CHUNK_FRAMES = 4096
ENGINES = ("auto", "fast", "plain")
# The folded conditioning weight the "auto" engine may store: models whose whole fold fits are
# folded completely (waveglow_fast: 126 MB); NVIDIA's (2.0 GB) folds as many (step, layer)
# projections as fit, 8 of 96. A Vocoder keeps its model beside the engine (encoding, scoring, the
# denoiser), so this is what keeps its synthesis peak within NVIDIA's code + 500 MB: measured
# +440-455 MB at 1 s mels, +230-340 MB at 2.5 s (400 MiB would be +670 MB; tools/results/
# bench_fold_budget_2threads.json has the speed of each budget). engine="fast" folds everything.
FOLD_MAX_BYTES = 160 * 2**20


def _check_precision(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError(
            "precision 'fp16' needs a CUDA device; on the CPU use 'fp32' (or 'bf16' to halve memory)"
        )
    return PRECISIONS[precision]


class Vocoder(nn.Module, SynthesisCall):
    """A WaveGlow-style vocoder with its mel convention, ready for synthesis.

    Build it with :meth:`from_checkpoint` or :meth:`from_model`. ``model`` is in eval mode with
    weight norm folded; ``mel_config`` is the convention it was trained on. The constructor takes
    ownership of ``model`` (it is folded and cast in place).

    Args:
        model: the flow.
        mel_config: its mel convention (``n_mels`` and ``hop_length`` must match the model).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see the module docstring).
        chunk_frames: long mels are synthesized in windows of this many frames (plus context);
            ``None``: ``COMPACT_CHUNK_FRAMES`` for frame-rate models, ``FAST_CHUNK_FRAMES`` with the
            fast engine, ``DEFAULT_CHUNK_FRAMES`` otherwise.
        mel_from: the TTS front end whose mels this vocoder receives (a name of
            :data:`~waveflow.infer.frontends.FRONTENDS`, e.g. ``"espnet"``, or a
            :class:`~waveflow.infer.frontends.Frontend`): every mel given to it is converted into
            ``mel_config``'s convention first. ``None`` (default): mels are already in it.
        stats: mean/variance statistics of a normalising front end (ESPnet's ``feats_stats.npz``, a
            Kaldi ``cmvn.ark``, PWG's ``stats.npy``/``.h5``, or a ``(mean, scale)`` pair); see
            :meth:`set_frontend`.
    """

    denoiser: Denoiser | None
    mel_adapter: MelAdapter | None

    def __init__(
        self,
        model: WaveGlow,
        mel_config: MelConfig,
        *,
        precision: str = "fp32",
        chunk_frames: int | None = None,
        engine: str = "auto",
        mel_from: str | Frontend | None = None,
        stats: StatsLike | None = None,
    ):
        super().__init__()
        if not isinstance(model, WaveGlow):
            raise ValueError(f"model must be a waveflow WaveGlow, got {type(model).__name__}")
        VocoderConfig(model=model.config, mel=mel_config).validate()
        if chunk_frames is not None and (
            isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1
        ):
            raise ValueError(f"chunk_frames must be a positive integer or None, got {chunk_frames!r}")
        device = next(model.parameters()).device
        dtype = _check_precision(precision, device)
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        if engine == "fast" and (device.type != "cpu" or dtype != torch.float32):
            raise ValueError(f"engine='fast' runs on the CPU in fp32, not on {device} in {precision}")
        if engine == "fast" and model.config.conditioning != "upsample":
            raise ValueError(
                "engine='fast' compiles WaveGlow's architecture; this model is of the compact family"
            )
        self.model = model.eval().remove_weight_norm().to(dtype)
        self.engine = engine
        self._compiled: list[FastWaveGlow] | None = None  # the fast engine, built on first use
        self.mel_config = mel_config
        self.chunk_frames = chunk_frames
        self.check_mel = True  # issue MelConventionWarning when a mel does not look like mel_config's
        self.mel_spectrogram = MelSpectrogram.from_config(mel_config).to(device)
        self.register_module("denoiser", None)
        self.mel_adapter = None
        self.set_frontend(mel_from, stats)

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        *,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
        mel_config: MelConfig | None = None,
        engine: str = "auto",
        mel_from: str | Frontend | None = None,
        stats: StatsLike | None = None,
    ) -> Vocoder:
        """Load a waveflow or NVIDIA checkpoint (format detected; no code from the file is run).

        ``mel_config`` only applies to NVIDIA files, which carry no mel settings (default: the
        Tacotron2 convention). Unsafe pickles raise ``UnsafeCheckpointError`` (a ``ValueError``).
        ``engine``: ``"auto"`` (the fast CPU path on a CPU in fp32), ``"fast"`` (it, with the
        upsampler always folded), ``"plain"`` (the model's own inverse); see the module docstring.
        """
        from waveflow.checkpoint import load_model

        dev = parse_device(device)
        _check_precision(precision, dev)
        model, config = load_model(path, map_location="cpu", fold_weight_norm=True, mel_config=mel_config)
        return cls(
            model.to(dev), config.mel, precision=precision, engine=engine, mel_from=mel_from, stats=stats
        )

    @classmethod
    def from_pretrained(
        cls,
        name: str = "default",
        *,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
        engine: str = "auto",
        mel_from: str | Frontend | None = None,
        stats: StatsLike | None = None,
    ) -> Vocoder:
        """A registered model by name: shipped inside the package, or one of NVIDIA's, downloaded once.

        ``Vocoder.from_pretrained()`` is the default model, which ships inside the package (no
        network). NVIDIA's published checkpoints (``waveflow download`` lists them, e.g.
        ``"nvidia-waveglow-universal-v5"``) are fetched on first use into the cache folder
        (``$WAVEFLOW_CACHE``, else ``$XDG_CACHE_HOME/waveflow``, else ``~/.cache/waveflow``),
        checked, converted through the safe reader and loaded from the cache afterwards; see
        :mod:`waveflow.pretrained.download` for the errors raised when that fails. ``mel_from`` and
        ``stats``: a TTS front end's mels, as in :meth:`from_checkpoint`.
        """
        from waveflow import pretrained

        return cls.from_checkpoint(
            pretrained.resolve(name),
            device=device,
            precision=precision,
            engine=engine,
            mel_from=mel_from,
            stats=stats,
        )

    @classmethod
    def from_model(
        cls,
        model: WaveGlow,
        mel_config: MelConfig,
        *,
        device: torch.device | str | None = None,
        precision: str = "fp32",
        engine: str = "auto",
        mel_from: str | Frontend | None = None,
        stats: StatsLike | None = None,
    ) -> Vocoder:
        """Wrap a copy of ``model`` (the caller's model, e.g. one being trained, is left untouched).

        ``device``: where the vocoder lives (default: ``model``'s device).
        """
        if not isinstance(model, WaveGlow):
            raise ValueError(f"model must be a waveflow WaveGlow, got {type(model).__name__}")
        clone = folded_copy(model)
        if device is not None:
            clone = clone.to(parse_device(device))
        return cls(clone, mel_config, precision=precision, engine=engine, mel_from=mel_from, stats=stats)

    def train(self, mode: bool = True) -> Vocoder:
        if mode:
            raise ValueError("a Vocoder is for inference only; train the WaveGlow model itself")
        return super().train(False)

    # -- properties ---------------------------------------------------------------------------------
    @property
    def config(self) -> VocoderConfig:
        return VocoderConfig(model=self.model.config, mel=self.mel_config)

    @property
    def sample_rate(self) -> int:
        return self.mel_config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.model.hop_length

    @property
    def n_mels(self) -> int:
        return self.model.n_mels

    @property
    def n_group(self) -> int:
        return self.model.n_group

    @property
    def schedule(self) -> EarlyOutputSchedule:
        return self.model.schedule

    @property
    def receptive_field(self) -> int:
        """Samples of latent one output sample depends on (see ``WaveGlow.receptive_field``)."""
        return self.model.receptive_field

    @property
    def context_samples(self) -> int:
        """Samples of context each side that make chunked/streamed synthesis exact."""
        return context_samples(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def precision(self) -> str:
        return {v: k for k, v in PRECISIONS.items()}[self.dtype]

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, hop_length={self.hop_length}, n_mels={self.n_mels}, "
            f"receptive_field={self.receptive_field}, precision={self.precision}, engine={self.engine}"
        )

    # -- input checks ---------------------------------------------------------------------------------
    def _compute_dtype(self) -> torch.dtype:
        dtype = self.dtype
        if dtype == torch.float16 and self.device.type == "cpu":
            raise ValueError(
                "fp16 weights on the CPU: move the vocoder to CUDA or build it with precision='fp32'"
            )
        return dtype

    # -- synthesis --------------------------------------------------------------------------------------
    @torch.no_grad()
    def forward(
        self,
        mel: ArrayLike,
        lengths: ArrayLike | Sequence[int] | int | None = None,
        sigma: float = 0.6,
        denoise: float = 0.0,
        generator: torch.Generator | None = None,
        z: ArrayLike | None = None,
        latent_order: str = "stream",
    ) -> tuple[Tensor, Tensor]:
        """Synthesize audio from ``mel``.

        Args:
            mel: ``(n_mels, frames)`` or ``(B, n_mels, frames)``, torch or numpy, in ``mel_config``'s
                convention, or the TTS front end's given to :meth:`set_frontend` (a
                :class:`~waveflow.infer.mel_guard.MelConventionWarning` is issued when its values look
                like another one).
            lengths: valid frames per item ``(B,)``; ``None``: all frames.
            sigma: standard deviation of the latent (0.6 is NVIDIA's default for synthesis).
            denoise: strength of NVIDIA's bias-spectrum denoiser (0: off; 0.01-0.1 typical).
            generator: source of the noise (see the module docstring); ``None``: torch's global RNG.
            z: explicit latent ``(B, n_group, frames * hop / n_group)`` instead of drawing one
                (``sigma`` is then ignored); item ``i`` uses its first ``lengths[i] * hop / n_group`` groups.
            latent_order: ``"stream"`` (each item its own latent stream, as :meth:`stream` and
                chunked synthesis read it) or ``"nvidia"`` (NVIDIA's draw order, the default of
                ``WaveGlow.infer``): see :mod:`waveflow.latent`. The same order and seed give the
                same audio from every entry point.

        Returns:
            ``(audio (B, frames * hop) float32, audio_lengths (B,) = lengths * hop)`` on ``device``;
            samples past each item's length are 0.
        """
        return self._call(mel, lengths, sigma, denoise, generator, z, latent_order)

    def _synthesize(self, mel: Tensor, z: Tensor, denoise: float) -> Tensor:
        """Unpadded ``mel`` ``(b, n_mels, n)`` and ``z`` -> float32 audio ``(b, n * hop)``, in windows
        of the engine's chunk length."""
        engine = self.inverse_engine()
        audio = synthesize_chunked(engine, mel, z, self._chunk_groups(engine)).float()
        return self._get_denoiser()(audio, denoise) if denoise > 0 else audio

    def _chunk_groups(self, engine: Engine) -> int:
        if self.chunk_frames is not None:
            frames = self.chunk_frames
        elif self.model.config.conditioning == "frame":
            frames = COMPACT_CHUNK_FRAMES
        else:
            frames = FAST_CHUNK_FRAMES if isinstance(engine, FastWaveGlow) else DEFAULT_CHUNK_FRAMES
        return max(1, frames * self.hop_length // self.n_group)

    def inverse_engine(self) -> Engine:
        """The inverse every synthesis entry point of this vocoder runs (calls, ``decode_batch``,
        :meth:`decode`, :meth:`stream`): the fast CPU compilation where :attr:`engine` and the
        vocoder's device and dtype allow it (built once, on first use), else the model itself."""
        if self.engine == "plain":
            return self.model
        reason = None
        if self.device.type != "cpu" or self.dtype != torch.float32:
            reason = f"engine='fast' runs on the CPU in fp32, not on {self.device} in {self.dtype}"
        elif self.model.config.conditioning != "upsample":
            reason = "engine='fast' compiles WaveGlow's architecture; this model is of the compact family"
        if reason is not None:
            if self.engine == "fast":
                raise ValueError(reason)
            return self.model
        if self._compiled is None:
            fold = True if self.engine == "fast" else FOLD_MAX_BYTES
            self._compiled = [
                FastWaveGlow.from_model(self.model, fold_upsampler=fold)
            ]  # a list: not a submodule
        return self._compiled[0]

    def decode_batch(
        self, mel: ArrayLike, mel_lens: ArrayLike | Sequence[int] | None = None, hop_len: int | None = None
    ) -> Tensor:
        """SpeechBrain's vocoder call: ``mel (B, n_mels, T)`` -> ``waveforms (B, 1, T * hop)``.

        ``mel_lens`` are frame counts; audio past ``mel_lens * hop`` is 0 (with or without ``hop_len``,
        which, if given, must equal this vocoder's hop length).
        """
        if hop_len is not None and hop_len != self.hop_length:
            raise ValueError(f"hop_len={hop_len} but this vocoder's hop_length is {self.hop_length}")
        audio, _ = self(mel, mel_lens)
        return audio.unsqueeze(1)  # (B, T) -> (B, 1, T)

    def _get_denoiser(self) -> Denoiser:
        if self.denoiser is None:
            cfg = self.mel_config
            self.denoiser = Denoiser(
                self.model, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length
            )
        return self.denoiser

    def stream(
        self,
        mel_chunks: Iterable[ArrayLike],
        sigma: float = 0.6,
        generator: torch.Generator | None = None,
        *,
        latent: LatentStream | None = None,
        left_context: int | None = None,
        right_context: int | None = None,
        overlap: int | None = None,
    ) -> Iterator[Tensor]:
        """Yield audio ``(samples,)`` float32 as mel chunks ``(n_mels, n)`` / ``(1, n_mels, n)`` arrive.

        With the default contexts (:attr:`context_samples` each side) the concatenated chunks equal
        ``self(full_mel, generator=<same seed>)`` up to float rounding; the audio then lags the mel
        by ``context_samples`` samples. ``right_context`` trades exactness for latency and
        ``overlap`` sets the cross-fade (see :mod:`waveflow.infer.streaming`). ``latent`` replaces
        ``sigma``/``generator`` with an explicit latent stream. Denoising is not available here.
        """
        if latent is None:
            latent = self.latent_stream(sigma, generator)
        elif generator is not None:
            raise ValueError("pass either latent or generator, not both")
        synthesizer = StreamingSynthesizer(
            self.inverse_engine(),
            latent,
            left_context=left_context,
            right_context=right_context,
            overlap=overlap,
        )
        return self._stream(mel_chunks, synthesizer)

    def _stream(self, mel_chunks: Iterable[ArrayLike], synthesizer: StreamingSynthesizer) -> Iterator[Tensor]:
        # The convention check runs once, on the first MIN_FRAMES_FOR_RANGE frames (or all, if fewer):
        # single small chunks say too little about the convention.
        pending: list[Tensor] | None = [] if self.check_mel else None  # frames awaiting the check
        for k, chunk in enumerate(mel_chunks):
            mel_t = self._prepare_mel(chunk, convert=False)
            if mel_t.shape[0] != 1:
                raise ValueError(
                    f"mel chunk {k} has batch size {mel_t.shape[0]}; a stream carries one utterance"
                )
            check_items_finite(mel_t, [mel_t.shape[2]])
            if pending is not None:
                pending.append(mel_t[0])
                if sum(m.shape[1] for m in pending) >= mel_guard.MIN_FRAMES_FOR_RANGE:
                    self._warn_convention(torch.cat(pending, dim=1))
                    pending = None
            # Grad mode is thread-local: keep no_grad around the computation only, not across the
            # yield, where it would leak into the consumer's code.
            with torch.no_grad():
                audio = synthesizer.push(self._convert_mel(mel_t))
            if audio.numel():
                yield audio.float()
        if pending:
            self._warn_convention(torch.cat(pending, dim=1))
        with torch.no_grad():
            audio = synthesizer.flush()
        if audio.numel():
            yield audio.float()

    # -- analysis -----------------------------------------------------------------------------------
    def _prepare_audio(self, audio: ArrayLike, sample_rate: int) -> Tensor:
        """``(T,)`` or ``(B, T)`` float audio at ``sample_rate`` -> float32 at :attr:`sample_rate` (CPU)."""
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, (int, np.integer))
            or sample_rate <= 0
        ):
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        audio_t = to_tensor(audio, "audio").to("cpu", torch.float32)
        if audio_t.dim() not in (1, 2) or audio_t.shape[-1] == 0:
            raise ValueError(f"audio must be (T,) or (B, T) with T > 0, got shape {tuple(audio_t.shape)}")
        if not bool(torch.isfinite(audio_t).all()):
            raise ValueError("audio contains NaN or Inf")
        if sample_rate != self.sample_rate:
            from waveflow.audio.io import resample_audio  # imported here: only resampling needs soxr

            resampled = resample_audio(audio_t.numpy().T, int(sample_rate), self.sample_rate)  # time first
            audio_t = torch.from_numpy(np.ascontiguousarray(resampled.T))
        return audio_t

    @torch.no_grad()
    def mel(self, audio: ArrayLike, sample_rate: int) -> Tensor:
        """The checkpoint's own front end: audio ``(T,)`` or ``(B, T)`` at ``sample_rate`` (resampled to
        :attr:`sample_rate` if needed) -> float32 mel ``(n_mels, frames)`` or ``(B, n_mels, frames)``."""
        audio_t = self._prepare_audio(audio, sample_rate)
        return self.mel_spectrogram(audio_t.to(self.device))

    @torch.no_grad()
    def encode(self, audio: ArrayLike, mel: ArrayLike) -> Tensor:
        """Audio ``(T,)``/``(B, T)`` -> latent ``z`` ``(n_group, T / n_group)``/``(B, ...)``; inverse of :meth:`decode`.

        ``T`` must be a multiple of ``n_group`` that ``mel`` covers (at most ``(F - 1) * hop + kernel``).
        """
        audio_t = to_tensor(audio, "audio")
        unbatched = audio_t.dim() == 1
        audio_t = audio_t.unsqueeze(0) if unbatched else audio_t  # (T,) -> (1, T)
        mel_t = self._prepare_mel(mel)
        z, _ = self._encode(audio_t.to(self.device, mel_t.dtype), mel_t)
        return z[0] if unbatched else z

    def _encode(self, audio: Tensor, mel: Tensor) -> tuple[Tensor, Tensor]:
        """``model.forward`` in windows (bounded memory on long recordings): ``(z, logdet)``."""
        # The plain engine's windows: the model computes every WaveNet layer's conditioning at once
        # (8192 channels per group for NVIDIA's model), which bounds the window, as in decoding.
        return encode_chunked(self.model, audio, mel, self._chunk_groups(self.model))

    @torch.no_grad()
    def decode(self, z: ArrayLike, mel: ArrayLike) -> Tensor:
        """Latent ``(n_group, G)``/``(B, n_group, G)`` -> audio ``(G * n_group,)``/``(B, ...)``, exactly
        inverting :meth:`encode` (chunked, with bounded memory, when ``G * n_group = F * hop``)."""
        z_t = to_tensor(z, "z")
        unbatched = z_t.dim() == 2
        z_t = z_t.unsqueeze(0) if unbatched else z_t  # (g, G) -> (1, g, G)
        mel_t = self._prepare_mel(mel)
        z_t = z_t.to(self.device, mel_t.dtype)
        if (
            z_t.dim() == 3
            and z_t.shape[1] == self.n_group
            and z_t.shape[2] * self.n_group == mel_t.shape[2] * self.hop_length
        ):
            if z_t.shape[0] != mel_t.shape[0]:
                raise ValueError(f"batch sizes differ: z {z_t.shape[0]}, mel {mel_t.shape[0]}")
            engine = self.inverse_engine()
            audio = synthesize_chunked(engine, mel_t, z_t, self._chunk_groups(engine))
        else:
            audio = self.model.decode(z_t, mel_t)  # audio shorter than the mel: one window
        return audio[0] if unbatched else audio

    @torch.no_grad()
    def score(self, audio: ArrayLike, sample_rate: int, *, sigma: float = 1.0) -> dict[str, float | int]:
        """Exact negative log-likelihood of one clip ``(T,)`` under the model, given its own mel.

        The audio is resampled to :attr:`sample_rate` if needed, its mel computed with :meth:`mel`,
        and the clip cut to a multiple of ``n_group`` the mel covers; the flow runs in windows with
        exact context (:func:`~waveflow.infer.streaming.encode_chunked`), so memory does not grow
        with the recording and the value equals the whole-clip computation. ``sigma`` is the prior's
        standard deviation used in training (1.0 by default, as NVIDIA's). Returns
        ``{"nats_per_sample", "bits_per_sample", "num_samples", "sample_rate", "sigma"}``.
        """
        sigma = check_number("sigma", sigma)
        if sigma == 0:
            raise ValueError("sigma must be positive to score audio")
        audio_t = self._prepare_audio(audio, sample_rate)
        if audio_t.dim() == 2:
            if audio_t.shape[0] != 1:
                raise ValueError(f"score takes one clip (T,), got shape {tuple(audio_t.shape)}")
            audio_t = audio_t[0]
        mel = self.mel_spectrogram(audio_t.to(self.device))  # (n_mels, F)
        covered = self.model.samples_covered(mel.shape[1])
        num_samples = min(audio_t.shape[0], covered) // self.n_group * self.n_group
        if num_samples == 0:
            raise ValueError(f"audio of {audio_t.shape[0]} samples is too short to score")
        dtype = self._compute_dtype()
        clip = audio_t[:num_samples].to(self.device, dtype).unsqueeze(0)  # (1, T')
        z, logdet = self._encode(clip, mel.unsqueeze(0).to(dtype))
        nats = float(losses.nll(z, logdet, sigma)[0])
        return {
            "nats_per_sample": nats,
            "bits_per_sample": nats / math.log(2.0),
            "num_samples": int(num_samples),
            "sample_rate": self.sample_rate,
            "sigma": sigma,
        }

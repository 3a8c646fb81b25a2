"""WaveGlow: the composition root that joins the flow core with the WaveNet conditioner.

::

    audio (B, T) --squeeze--> x (B, g, T/g) --MultiScaleFlow(steps)--> z (B, g, T/g), logdet (B,)
    mel (B, n_mels, F) --MelUpsampler--> (B, n_mels, T) --squeeze--> cond (B, n_mels*g, T/g)
                                                                      (shared by every step)

``forward``/``encode`` run audio -> z (training direction, exact likelihood); ``inverse``/``decode``
and ``infer`` run z -> audio in parallel over time.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from waveflow import losses
from waveflow.config import ModelConfig
from waveflow.flows import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ChannelReverse,
    EarlyOutputSchedule,
    Flow,
    FlowStep,
    InvertibleConv1x1,
    LUInvertibleConv1x1,
    MultiScaleFlow,
    squeeze,
    unsqueeze,
)
from waveflow.latent import item_latents
from waveflow.nn import FrameConditioner, MelUpsampler, SeparableWaveNet, WaveNet
from waveflow.nn.source import F0Predictor, sine_excitation
from waveflow.nn.wavenet import fold_weight_norm


def _build_conditioner(cfg: ModelConfig, n_a: int, out_channels: int) -> nn.Module:
    wn = cfg.wavenet
    sizes = (n_a, out_channels, cfg.cond_size, wn.n_layers, wn.n_channels, wn.kernel_size)
    if wn.separable:
        return SeparableWaveNet(
            *sizes,
            dilation_cycle=wn.dilation_cycle,
            weight_norm=cfg.weight_norm,
            # a source's excitation (the last n_group conditioning channels) reaches the shift only
            direct_channels=cfg.n_group if cfg.source_direct else 0,
            direct_out=out_channels // 2 if cfg.coupling == "affine" else out_channels,
        )
    return WaveNet(*sizes, weight_norm=cfg.weight_norm)


def _build_step(
    cfg: ModelConfig, k: int, num_channels: int, shared: dict[tuple[int, int], nn.Module]
) -> FlowStep:
    n_a = num_channels // 2
    n_b = num_channels - n_a
    out_channels = 2 * n_b if cfg.coupling == "affine" else n_b
    if cfg.share_wavenet:  # one network for every step of this width (WG-WaveNet)
        conditioner = shared.setdefault((n_a, out_channels), _build_conditioner(cfg, n_a, out_channels))
    else:
        conditioner = _build_conditioner(cfg, n_a, out_channels)
    swap = cfg.alternate_halves and k % 2 == 1
    coupling: Flow
    if cfg.coupling == "affine":
        coupling = AffineCoupling(num_channels, conditioner, swap=swap, log_scale_clamp=cfg.log_scale_clamp)
    else:
        coupling = AdditiveCoupling(num_channels, conditioner, swap=swap)
    mix: Flow | None = {
        "conv1x1": InvertibleConv1x1,
        "conv1x1_lu": LUInvertibleConv1x1,
        "reverse": ChannelReverse,
    }.get(cfg.mixing, lambda c: None)(num_channels)
    norm = ActNorm(num_channels) if cfg.actnorm else None
    return FlowStep(coupling, mix=mix, norm=norm)


def _check_finite(name: str, x: Tensor) -> None:
    if not torch.isfinite(x).all():
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN/Inf value(s)")


class WaveGlow(nn.Module):
    """A WaveGlow-style conditional flow vocoder. Build it with :meth:`from_config`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.n_mels = config.n_mels
        self.n_group = config.n_group
        self.hop_length = config.hop_length
        self.upsample: MelUpsampler | FrameConditioner
        if config.conditioning == "upsample":
            self.upsample = MelUpsampler(config.n_mels, config.hop_length, config.upsample_kernel_size)
        else:
            self.upsample = FrameConditioner(
                config.n_mels,
                config.hop_length,
                config.n_group,
                config.cond_channels,
                config.cond_kernel_size,
                weight_norm=config.weight_norm,
                source=config.source != "none",
                direct=config.source_direct,
            )
        # The pitch predictor of a source-excited model (waveflow.nn.source); None otherwise.
        self.f0_predictor = F0Predictor(config.n_mels) if config.source != "none" else None
        schedule = EarlyOutputSchedule.compute(
            config.n_flows, config.n_group, config.n_early_every, config.n_early_size
        )
        shared: dict[tuple[int, int], nn.Module] = {}
        steps = [_build_step(config, k, schedule.channels[k], shared) for k in range(config.n_flows)]
        self.flow = MultiScaleFlow(steps, schedule)

    @classmethod
    def from_config(cls, config: ModelConfig) -> WaveGlow:
        return cls(config)

    # -- properties -----------------------------------------------------------------------
    @property
    def schedule(self) -> EarlyOutputSchedule:
        return self.flow.schedule

    @property
    def receptive_field(self) -> int:
        """Width in audio samples of the latent window one output sample depends on.

        Each coupling sees ``context`` groups on either side; the steps compound, so an output
        group depends on ``n_flows * context`` groups each side (the 1x1 mixing is pointwise).
        Mel frames reach further through the upsampler kernel (``upsample_kernel_size`` samples).
        """
        return self.n_group * (2 * self.context_groups + 1)

    @property
    def context_groups(self) -> int:
        """``H``: groups each side of an output group whose latent and conditioning it depends on."""
        return sum(self.flow.contexts)

    # -- input checks -----------------------------------------------------------------------
    def _check_mel(self, mel: Tensor) -> None:
        if mel.dim() != 3:
            raise ValueError(f"mel must be (B, n_mels, frames), got shape {tuple(mel.shape)}")
        if mel.shape[1] != self.n_mels:
            raise ValueError(f"mel has {mel.shape[1]} mel bins but the model expects n_mels={self.n_mels}")
        if mel.shape[2] < 1:
            raise ValueError("mel has no frames")
        _check_finite("mel", mel)

    def _check_audio(self, audio: Tensor, mel: Tensor) -> None:
        if audio.dim() != 2:
            raise ValueError(f"audio must be (B, T), got shape {tuple(audio.shape)}")
        if audio.shape[0] != mel.shape[0]:
            raise ValueError(f"batch sizes differ: audio {audio.shape[0]}, mel {mel.shape[0]}")
        if audio.shape[1] == 0 or audio.shape[1] % self.n_group != 0:
            raise ValueError(
                f"audio length {audio.shape[1]} must be a positive multiple of n_group={self.n_group}"
            )
        _check_finite("audio", audio)

    # -- conditioning -----------------------------------------------------------------------
    @property
    def has_source(self) -> bool:
        """Whether the conditioning takes a pitch-synchronous excitation (``model.source``)."""
        return self.f0_predictor is not None

    def excitation(self, mel: Tensor, num_samples: int | None = None) -> Tensor:
        """The excitation ``(B, num_samples)`` of a source model, from the pitch it predicts from ``mel``.

        Deterministic (phase 0 at the first sample), so scoring and synthesis see a function of the
        mel alone. ``num_samples`` defaults to every sample the mel conditions.
        """
        if self.f0_predictor is None:
            raise ValueError("this model has no source (model.source='none'): it takes no excitation")
        if num_samples is None:
            num_samples = self.samples_covered(mel.shape[2])
        freq, voiced = self.f0_predictor.predict(mel)
        return sine_excitation(freq, voiced, self.hop_length, num_samples).to(mel.dtype)

    def _excitation_for(self, mel: Tensor, num_samples: int, excitation: Tensor | None) -> Tensor | None:
        if self.f0_predictor is None:
            if excitation is not None:
                raise ValueError("this model has no source (model.source='none'): it takes no excitation")
            return None
        if excitation is None:
            return self.excitation(mel, num_samples)
        if excitation.shape != (mel.shape[0], num_samples):
            raise ValueError(
                f"excitation must be (B={mel.shape[0]}, {num_samples}), got {tuple(excitation.shape)}"
            )
        return excitation

    def condition(self, mel: Tensor, num_samples: int, excitation: Tensor | None = None) -> Tensor:
        """The couplings' conditioning of the first ``num_samples`` samples: ``(B, cond_size, num_samples / n_group)``.

        WaveGlow: the mel upsampled to audio rate and grouped (``n_mels * n_group`` channels);
        compact flows: the frame-rate encoding (:class:`~waveflow.nn.FrameConditioner`). A source
        model also reads ``excitation`` ``(B, num_samples)`` (by default the one its predicted
        pitch gives, :meth:`excitation`).
        """
        if isinstance(self.upsample, FrameConditioner):
            return self.upsample(mel, num_samples, self._excitation_for(mel, num_samples, excitation))
        up = self.upsample(mel, num_samples)  # (B, n_mels, T)
        return squeeze(up, self.n_group)  # channel = mel_bin * n_group + j

    def cond_frames(self, start: int, stop: int, num_frames: int) -> tuple[int, int]:
        """Mel frames ``[f0, f1)`` that the conditioning of samples ``[start, stop)`` depends on."""
        return self.upsample.frame_range(start, stop, num_frames)

    def samples_covered(self, num_frames: int) -> int:
        """The most audio samples ``num_frames`` mel frames can condition."""
        if isinstance(self.upsample, FrameConditioner):
            return num_frames * self.hop_length
        return self.upsample.output_length(num_frames)

    @property
    def cond_lookahead(self) -> int:
        """Samples past a sample whose mel frames its conditioning reads (0 for the upsampler)."""
        if isinstance(self.upsample, FrameConditioner):
            return (self.upsample.pad + 1) * self.hop_length
        return 0

    def condition_window(
        self,
        mel: Tensor,
        mel_offset: int,
        start_group: int,
        num_groups: int,
        num_frames: int,
        excitation: Tensor | None = None,
    ) -> Tensor:
        """Conditioning of groups ``[start_group, start_group + num_groups)`` from a slice of the mel.

        ``mel`` holds the absolute frames ``[mel_offset, mel_offset + mel.shape[2])`` of a sequence
        of ``num_frames`` frames and must include :meth:`cond_frames` of the window. Equal to the
        matching slice of :meth:`condition` over the whole sequence (up to rounding). A source
        model needs the window's slice of the whole sequence's ``excitation`` (its phase
        accumulates from the first sample, so it cannot be computed from the slice).
        """
        g, hop = self.n_group, self.hop_length
        if isinstance(self.upsample, FrameConditioner):
            if self.has_source and excitation is None:
                raise ValueError(
                    "a source model's window needs the excitation of its samples "
                    "(slice model.excitation(whole mel))"
                )
            return self.upsample.window(
                mel, mel_offset, start_group * g, num_groups * g, num_frames, excitation
            )
        first = start_group * g - mel_offset * hop  # window start relative to the slice's first sample
        upsampled = self.upsample.window(mel, first, num_groups * g, mel_offset)  # (B, n_mels, W * g)
        return squeeze(upsampled, g)  # (B, n_mels * g, W)

    # -- directions -------------------------------------------------------------------------
    def forward(self, audio: Tensor, mel: Tensor, excitation: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Audio ``(B, T)`` -> ``(z (B, n_group, T / n_group), logdet (B,))``.

        ``excitation`` (source models only): ``(B, T)``, by default the one the mel's predicted
        pitch gives (training passes the reference's own, see :mod:`waveflow.nn.source`).
        """
        self._check_mel(mel)
        self._check_audio(audio, mel)
        cond = self.condition(mel, audio.shape[1], excitation)
        x = squeeze(audio, self.n_group)  # (B, g, T/g)
        return self.flow(x, cond)

    def inverse(self, z: Tensor, mel: Tensor, excitation: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``z (B, n_group, T / n_group)`` -> ``(audio (B, T), logdet (B,))`` (``excitation``: as :meth:`forward`)."""
        self._check_mel(mel)
        if z.dim() != 3 or z.shape[1] != self.n_group or z.shape[0] != mel.shape[0]:
            raise ValueError(
                f"z must be (B={mel.shape[0]}, n_group={self.n_group}, T/n_group), got {tuple(z.shape)}"
            )
        cond = self.condition(mel, z.shape[2] * self.n_group, excitation)
        x, logdet = self.flow.inverse(z, cond)
        return unsqueeze(x, self.n_group), logdet

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
        """Inverse flow over one window of groups ``[start, start + W)``; the audio of ``keep``.

        ``z``: ``(B, n_group, W)``, the latent of the window. ``mel``: ``(B, n_mels, f)`` holding
        absolute frames ``[mel_offset, mel_offset + f)``, which must include every frame that
        reaches the window (:meth:`cond_frames`). ``keep``: absolute groups ``[a, b)`` inside the
        window to return (default all), as audio ``(B, (b - a) * n_group)``. ``num_frames``: frames
        of the whole sequence (default: the slice reaches its end). ``excitation``: a source
        model's excitation of the window's samples ``(B, W * n_group)`` (a slice of
        :meth:`excitation` of the whole sequence). Groups of ``keep`` closer than
        :attr:`context_groups` to a window edge that is not an edge of the sequence are approximate.
        """
        width = z.shape[2]
        total_frames = mel_offset + mel.shape[2] if num_frames is None else num_frames
        cond = self.condition_window(mel, mel_offset, start, width, total_frames, excitation)
        local = None if keep is None else (keep[0] - start, keep[1] - start)
        if local is not None and not 0 <= local[0] < local[1] <= width:
            raise ValueError(f"keep {keep} is not inside the window [{start}, {start + width})")
        return unsqueeze(self.flow.inverse_window(z, cond, local), self.n_group)

    def encode(self, audio: Tensor, mel: Tensor) -> Tensor:
        """Audio -> latent ``z``; exact inverse of :meth:`decode`."""
        return self.forward(audio, mel)[0]

    def decode(self, z: Tensor, mel: Tensor) -> Tensor:
        """Latent ``z`` -> audio; exact inverse of :meth:`encode`."""
        return self.inverse(z, mel)[0]

    # -- likelihood -------------------------------------------------------------------------
    def nll(self, audio: Tensor, mel: Tensor, sigma: float = 1.0) -> Tensor:
        """Exact negative log-likelihood, nats per audio sample, per batch item ``(B,)``."""
        z, logdet = self.forward(audio, mel)
        return losses.nll(z, logdet, sigma)

    # -- synthesis --------------------------------------------------------------------------
    def sample_latent(
        self,
        batch_size: int,
        num_groups: int,
        sigma: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Draw ``z ~ N(0, sigma^2)`` of shape ``(B, n_group, num_groups)``.

        Blocks are drawn in NVIDIA's order (the remaining channels first, then the emitted blocks
        from the last early point to the first), so a seeded CPU generator reproduces
        ``WaveGlow.infer`` of NVIDIA/waveglow exactly.
        """
        gen_device = generator.device if generator is not None else device
        z = self.schedule.draw_latent(batch_size, num_groups, generator, gen_device)
        return (z * sigma).to(device=device, dtype=dtype)

    @torch.no_grad()
    def infer(
        self,
        mel: Tensor,
        sigma: float = 1.0,
        z: Tensor | None = None,
        generator: torch.Generator | None = None,
        latent_order: str = "nvidia",
    ) -> Tensor:
        """Synthesize ``(B, frames * hop_length)`` audio from ``mel`` (B, n_mels, frames).

        ``z`` (``(B, n_group, frames * hop_length / n_group)``), if given, is used as is (``sigma``
        is then ignored); otherwise it is drawn from ``N(0, sigma^2)`` with ``generator`` in
        ``latent_order`` (:mod:`waveflow.latent`: ``"nvidia"``, NVIDIA's order, or ``"stream"``, the
        order of :class:`~waveflow.infer.vocoder.Vocoder`; the same order and seed give the same audio).
        """
        self._check_mel(mel)
        num_groups = mel.shape[2] * self.hop_length // self.n_group
        if z is None:
            latents = item_latents(
                self.schedule,
                [num_groups] * mel.shape[0],
                sigma,
                generator,
                order=latent_order,
                device=mel.device,
                dtype=mel.dtype,
            )
            z = torch.cat(latents)
        elif z.shape != (mel.shape[0], self.n_group, num_groups):
            raise ValueError(
                f"z must have shape {(mel.shape[0], self.n_group, num_groups)} for {mel.shape[2]} frames, "
                f"got {tuple(z.shape)}"
            )
        return self.decode(z, mel)

    # -- inference preparation ----------------------------------------------------------------
    def remove_weight_norm(self) -> WaveGlow:
        """Fold weight normalisation into plain weights (outputs unchanged). Returns ``self``."""
        for step in self.flow.steps:
            step.coupling.conditioner.remove_weight_norm()
        if isinstance(self.upsample, FrameConditioner):
            fold_weight_norm(self.upsample)
        if self.f0_predictor is not None:
            fold_weight_norm(self.f0_predictor)
        return self


def folded_copy(model: WaveGlow) -> WaveGlow:
    """A new float32 :class:`WaveGlow` with ``model``'s weights, weight norm folded, in eval mode.

    Built from the config and the state dict, on ``model``'s device. Not ``copy.deepcopy``: a deep
    copy of a module with torch parametrizations shares its generated class, so folding the copy's
    weight norm would strip the original's ``weight`` too.
    """
    clone = WaveGlow(model.config)
    state = model.state_dict()
    if not any(".parametrizations." in key for key in state):
        clone.remove_weight_norm()  # the source is already folded: load plain weights
    clone.load_state_dict(state)
    return clone.to(next(model.parameters()).device).eval().remove_weight_norm()

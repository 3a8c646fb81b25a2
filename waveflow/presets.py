"""Named configurations, as builder functions (not registry strings).

Model presets return :class:`~waveflow.config.ModelConfig`; mel presets return
:class:`~waveflow.config.MelConfig`. Pair them with :class:`~waveflow.config.VocoderConfig`.
"""

from __future__ import annotations

from waveflow.config import MelConfig, ModelConfig, WaveNetConfig


# -- models ------------------------------------------------------------------------------------
def waveglow_ljspeech() -> ModelConfig:
    """NVIDIA's released WaveGlow (``waveglow_256channels``): 87,731,816 parameters without weight norm."""
    return ModelConfig(wavenet=WaveNetConfig(n_layers=8, n_channels=256, kernel_size=3))


def waveglow_paper() -> ModelConfig:
    """The WaveGlow paper's width (512 WN channels, DeepLearningExamples' default)."""
    return ModelConfig(wavenet=WaveNetConfig(n_layers=8, n_channels=512, kernel_size=3))


def waveglow_small() -> ModelConfig:
    """A CPU-trainable WaveGlow: same flow structure, narrower and shallower WaveNets."""
    return ModelConfig(wavenet=WaveNetConfig(n_layers=4, n_channels=64, kernel_size=3))


def waveglow_fast() -> ModelConfig:
    """The CPU synthesis preset: ``waveglow_small``'s WaveNets on groups of 16 samples.

    Doubling ``n_group`` (the SqueezeWave idea, taken one step) halves the number of positions every
    WaveNet runs on, so synthesis costs about half of ``waveglow_small`` per second of audio; early
    outputs of 4 channels keep the same three-stage shape (16 -> 12 -> 8 channels).
    """
    return ModelConfig(
        n_group=16,
        n_early_every=4,
        n_early_size=4,
        wavenet=WaveNetConfig(n_layers=4, n_channels=64, kernel_size=3),
    )


def compact() -> ModelConfig:
    """The compact flow (waveflow's default speech model): 5.2 M parameters, ~1 GMAC per second of audio.

    SqueezeWave's reshaping with frame-rate conditioning: one group is one hop (256 samples as 256
    channels, 86 positions per second at 22.05 kHz), the mel enters through a small frame-rate
    encoder instead of an audio-rate upsampler, and the coupling networks use depthwise-separable
    dilated convolutions (dilations 1, 2, 4, twice). Eight steps; 32 channels leave after the fourth.
    """
    return ModelConfig(
        n_group=256,
        n_flows=8,
        n_early_every=4,
        n_early_size=32,
        conditioning="frame",
        cond_channels=96,
        cond_kernel_size=4,
        log_scale_clamp=5.0,
        wavenet=WaveNetConfig(n_layers=6, n_channels=128, kernel_size=3, separable=True, dilation_cycle=3),
    )


def compact_source() -> ModelConfig:
    """The compact flow with a pitch-synchronous source (5.8 M parameters; :mod:`waveflow.nn.source`).

    A sine at the F0 that a pitch predictor reads off the mel, grouped like the audio, joins the
    frame-rate conditioning and reaches every coupling's shift through a direct linear path, so the
    flow places pulses at the speaker's pitch instead of once per hop.
    """
    return compact().replace(source="sine", source_direct=True)


def compact_tiny() -> ModelConfig:
    """A toy compact flow for tests (frame-rate conditioning, separable WaveNets, 16-sample groups)."""
    return ModelConfig(
        n_group=16,
        n_flows=4,
        n_early_every=2,
        n_early_size=4,
        conditioning="frame",
        cond_channels=16,
        cond_kernel_size=4,
        wavenet=WaveNetConfig(n_layers=3, n_channels=16, kernel_size=3, separable=True, dilation_cycle=2),
    )


def waveglow_tiny() -> ModelConfig:
    """A toy configuration for tests and smoke runs (seconds on a CPU)."""
    return ModelConfig(
        n_flows=4,
        n_group=4,
        n_early_every=2,
        n_early_size=2,
        wavenet=WaveNetConfig(n_layers=2, n_channels=16, kernel_size=3),
    )


def nice() -> ModelConfig:
    """NICE-style: additive (volume-preserving) couplings separated by channel reversals."""
    return waveglow_small().replace(coupling="additive", mixing="reverse")


def realnvp() -> ModelConfig:
    """RealNVP-style: affine couplings that alternate which half they transform; no learned mixing."""
    return waveglow_small().replace(coupling="affine", mixing="none", alternate_halves=True)


def glow() -> ModelConfig:
    """Glow-style: ActNorm, LU-parameterised invertible 1x1 convolution, affine coupling."""
    return waveglow_small().replace(coupling="affine", mixing="conv1x1_lu", actnorm=True)


# -- mel conventions ---------------------------------------------------------------------------
def tacotron2_mel() -> MelConfig:
    """NVIDIA Tacotron2 / WaveGlow (``TacotronSTFT``): ln, floor 1e-5, 0-8000 Hz, centred."""
    return MelConfig()


def hifigan_mel() -> MelConfig:
    """jik876/hifi-gan: as Tacotron2 but uncentred ((n_fft - hop) / 2 reflect padding, T // hop frames)."""
    return MelConfig(center=False, magnitude_eps=1e-9)


def espnet_mel() -> MelConfig:
    """ESPnet2 / ParallelWaveGAN LJSpeech: log10, floor 1e-10, 80-7600 Hz (before global mean/var norm)."""
    return MelConfig(f_min=80.0, f_max=7600.0, log="log10", log_floor=1e-10)

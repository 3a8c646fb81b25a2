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

"""Neural-network building blocks (no flow logic): the WaveNet conditioner and the mel upsampler."""

from waveflow.nn.upsample import MelUpsampler
from waveflow.nn.wavenet import WaveNet, gated_activation

__all__ = ["MelUpsampler", "WaveNet", "gated_activation"]

"""Neural-network building blocks (no flow logic): the WaveNet conditioner and the mel upsampler."""

from waveflow.nn.frame_cond import FrameConditioner
from waveflow.nn.separable import SeparableWaveNet
from waveflow.nn.upsample import MelUpsampler
from waveflow.nn.wavenet import WaveNet, gated_activation

__all__ = ["FrameConditioner", "MelUpsampler", "SeparableWaveNet", "WaveNet", "gated_activation"]

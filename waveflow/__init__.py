"""waveflow: a WaveGlow-style normalizing-flow vocoder."""

__version__ = "0.1.0"

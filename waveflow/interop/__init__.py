"""Reading checkpoints written by other WaveGlow implementations (NVIDIA's, in both formats)."""

from waveflow.interop.nvidia import load_nvidia_checkpoint, to_nvidia_state_dict
from waveflow.safe_load import UnsafeCheckpointError

__all__ = ["UnsafeCheckpointError", "load_nvidia_checkpoint", "to_nvidia_state_dict"]

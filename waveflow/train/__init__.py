"""Training: :func:`train` (the loop), YAML configs with dotted overrides, DDP through torchrun."""

from waveflow.train.loop import TrainingDivergedError, TrainResult, learning_rate_at, train
from waveflow.train.yaml_config import config_to_yaml, load_config, write_config

__all__ = [
    "TrainResult",
    "TrainingDivergedError",
    "config_to_yaml",
    "learning_rate_at",
    "load_config",
    "train",
    "write_config",
]

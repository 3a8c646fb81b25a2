"""A tiny 16 kHz checkpoint and helpers for the CLI tests (everything under pytest's tmp folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import perturbed_model, speech_like
from waveflow import presets
from waveflow.audio.features import MelSpectrogram
from waveflow.audio.io import write_wav
from waveflow.checkpoint import save_checkpoint
from waveflow.config import MelConfig
from waveflow.model import WaveGlow

SAMPLE_RATE = 16000
MEL = MelConfig(sample_rate=SAMPLE_RATE, n_fft=512, win_length=512, hop_length=128, n_mels=40, f_max=8000.0)
MODEL = presets.waveglow_tiny().replace(n_mels=40, hop_length=128, upsample_kernel_size=256)


def tiny_model(seed: int = 0) -> WaveGlow:
    """The tiny model with every weight perturbed, so no coupling is an identity."""
    return perturbed_model(MODEL, seed=seed, std=0.02)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, tiny_model(), MEL, metadata={"purpose": "cli tests"}, training_state={"step": 7})
    return path


def mel_of(audio: np.ndarray, config: MelConfig = MEL) -> np.ndarray:
    """``(n_mels, frames)`` float32 in ``config``'s convention."""
    return MelSpectrogram.from_config(config)(torch.from_numpy(audio)).numpy()


def speech_mel(num_samples: int, seed: int = 0) -> np.ndarray:
    return mel_of(speech_like(num_samples, SAMPLE_RATE, seed))


def write_speech_wav(
    path: Path, num_samples: int, seed: int = 0, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    audio = speech_like(num_samples, sample_rate, seed)
    write_wav(path, audio, sample_rate)
    return audio

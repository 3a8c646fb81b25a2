"""Shared test helpers: seeds, tiny configs, synthetic audio, the NVIDIA fixture folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WAVEFLOW_SHARED", REPO.parent / "shared"))
NVIDIA_FIXTURES = SHARED / "fixtures" / "nvidia_waveglow"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002  (code under test may use the legacy global RNG)
    yield


@pytest.fixture
def nvidia_fixtures() -> Path:
    """The NVIDIA reference folder; tests using it skip (with the reason) when it is absent."""
    if not NVIDIA_FIXTURES.is_dir():
        pytest.skip(f"NVIDIA fixtures not found at {NVIDIA_FIXTURES} (set WAVEFLOW_SHARED)")
    return NVIDIA_FIXTURES


def speech_like(num_samples: int, sample_rate: int = 22050, seed: int = 0) -> np.ndarray:
    """A deterministic voiced/unvoiced signal with a moving pitch, in [-1, 1], float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    f0 = 120 + 40 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))
    noise = rng.standard_normal(num_samples) * 0.05
    x = 0.3 * voiced * envelope + noise * (1 - envelope)
    return (0.9 * x / np.max(np.abs(x))).astype(np.float32)

"""Session-wide fixtures (the per-test seed, the NVIDIA fixture folder) and the repository paths.

Helper functions shared by test modules live in :mod:`tests.helpers`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import speech_like  # noqa: F401  (re-exported: some tests import it from here)

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

"""Helpers shared by the test modules: signals, seeded generators, perturbed tiny models, the small
vocoder of the inference tests, bytes of ``torch.save``, pickles that run code, and log readers.

Fixtures live in the ``conftest.py`` files; what several test files call lives here (a test module
never imports another test module for its helpers).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from waveflow.config import MelConfig, ModelConfig, WaveNetConfig
from waveflow.model import WaveGlow


# -- signals and random numbers ---------------------------------------------------------------------
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


def seeded(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """Run the block with ``num_threads`` intra-op threads (restored afterwards)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Import into a module to run its many-small-ops tests on one thread (restored afterwards).

    On a loaded machine a 2-thread OpenMP pool spins waiting for a descheduled sibling at every one
    of the thousands of tiny convolutions, and a 1 s test takes a minute; one thread is also
    faster for models this small.
    """
    with torch_threads(1):
        yield


# -- models with every layer away from its identity initialisation ------------------------------------
def randomize_(module: nn.Module, std: float = 0.3, seed: int = 123) -> nn.Module:
    """Perturb every parameter by ``std * N(0, 1)`` from a generator seeded with ``seed`` (in place),
    so that no layer is an identity (zero-initialised ends included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return module


def random_model(cfg: ModelConfig, std: float = 0.05) -> WaveGlow:
    """A WaveGlow in eval mode with ActNorm marked initialised and every parameter :func:`randomize_`\\ d."""
    model = WaveGlow.from_config(cfg)
    for step in model.flow.steps:
        if step.norm is not None:
            step.norm.initialized.fill_(True)
    return randomize_(model, std).eval()


def perturbed_model(config: ModelConfig, *, seed: int, std: float) -> WaveGlow:
    """``WaveGlow(config)`` built after ``torch.manual_seed(seed)``, every parameter moved by
    ``std * torch.randn_like`` from the global RNG (which it leaves advanced), in eval mode."""
    torch.manual_seed(seed)
    model = WaveGlow(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn_like(p))
    return model.eval()


# -- the small vocoder of the inference tests ---------------------------------------------------------
# Its receptive field (228 samples) spans several frames (hop 64), so chunking, padding and streaming
# effects are visible, at 8 kHz with 16 mels.
SMALL_SAMPLE_RATE = 8000
SMALL_MEL = MelConfig(
    sample_rate=SMALL_SAMPLE_RATE, n_fft=256, win_length=256, hop_length=64, n_mels=16, f_max=4000.0
)
SMALL_MODEL = ModelConfig(
    n_mels=16,
    hop_length=64,
    upsample_kernel_size=256,
    n_flows=4,
    n_group=4,
    n_early_every=2,
    n_early_size=2,
    wavenet=WaveNetConfig(n_layers=3, n_channels=16, kernel_size=3),
)


def small_model(config: ModelConfig = SMALL_MODEL) -> WaveGlow:
    """The small WaveGlow (or ``config``) with every layer perturbed away from its identity initialisation."""
    return random_model(config, std=0.1)


def speech_mel(vocoder, seconds: float, seed: int = 0) -> torch.Tensor:
    """A real log-mel ``(n_mels, frames)`` in the vocoder's own convention, 0.1 s of silence at both ends."""
    rate = vocoder.sample_rate
    silence = np.zeros(int(0.1 * rate), np.float32)
    audio = np.concatenate([silence, speech_like(int(seconds * rate), rate, seed), silence])
    return vocoder.mel(audio, rate)


# -- files and pickles -------------------------------------------------------------------------------
def torch_bytes(obj: Any, **kwargs: Any) -> bytes:
    """What ``torch.save(obj, f, **kwargs)`` writes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


class Payload:
    """Unpickling this calls ``pathlib.Path.touch(marker)``: harmless, but it is code from the file."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def run_recipe(script: Path, args: list[str], cwd: Path, timeout: float = 60, **env: str):
    """``bash script args`` in ``cwd`` with this interpreter's ``python -m waveflow`` as ``$WAVEFLOW``
    (plus ``env``); the completed process, output captured as text."""
    environ = dict(os.environ, WAVEFLOW=f"{sys.executable} -m waveflow", **env)
    return subprocess.run(
        ["bash", str(script), *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout
    )


# -- command output and training logs --------------------------------------------------------------
def one_error_line(capsys, command: str) -> str:
    """The one stderr line of a failed ``waveflow <command>`` (asserted to be exactly one such line)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"waveflow {command}: error:"), err
    return err[0]


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/train_log.jsonl``."""
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def train_losses(run_dir: Path) -> dict[int, float | None]:
    """Step -> logged loss (the last record of each step wins, as after a resume)."""
    return {r["step"]: r["loss"] for r in read_log(run_dir) if r["event"] == "train"}

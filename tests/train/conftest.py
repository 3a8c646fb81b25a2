"""Tiny training runs: a few short 8 kHz wav files, a 4-flow model, a 16-band mel, all under tmp_path."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import torch
import yaml

from tests.conftest import REPO
from tests.helpers import read_log, speech_like, torch_threads, train_losses  # noqa: F401  (re-exported)
from waveflow import presets

SAMPLE_RATE = 8000
SEGMENT_LENGTH = 2048
MEL = {
    "sample_rate": SAMPLE_RATE,
    "n_fft": 256,
    "win_length": 256,
    "hop_length": 64,
    "n_mels": 16,
    "f_max": 4000.0,
}
MODEL = presets.waveglow_tiny().replace(n_mels=16, hop_length=64, upsample_kernel_size=256)


@dataclass
class TinyRun:
    """A corpus and a YAML config for a tiny CPU run; ``run_dir(name)`` is where a run goes."""

    root: Path
    config_path: Path
    train_list: Path
    val_list: Path

    def run_dir(self, name: str = "run") -> Path:
        return self.root / name

    def config(self, *overrides: str):
        from waveflow.train import load_config

        return load_config(self.config_path, overrides)


def write_corpus(root: Path, lengths: list[int], name: str, seed: int = 0) -> Path:
    """One 16-bit wav per length (speech-like, seeds ``seed``, ``seed + 1``, ...) and a file list naming them."""
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, num_samples in enumerate(lengths):
        path = root / "wavs" / f"{name}{i}.wav"
        sf.write(path, speech_like(num_samples, SAMPLE_RATE, seed=seed + i), SAMPLE_RATE, subtype="PCM_16")
        lines.append(f"wavs/{path.name}\n")
    filelist = root / f"{name}.txt"
    filelist.write_text("".join(lines))
    return filelist


def base_config(train_list: Path, val_list: Path | None) -> dict[str, Any]:
    return {
        "model": MODEL.to_dict(),
        "mel": MEL,
        "data": {
            "training_files": str(train_list),
            "validation_files": str(val_list) if val_list else "",
            "segment_length": SEGMENT_LENGTH,
            "num_workers": 0,
        },
        "train": {
            "seed": 1234,
            "batch_size": 2,
            "max_steps": 10,
            "learning_rate": 1e-3,
            "log_every": 1,
            "validate_every": 5,
            "checkpoint_every": 5,
            "device": "cpu",
        },
    }


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these tiny models gain nothing from more, and on a busy machine
    (CI, parallel jobs) OpenMP threads competing for cores make a run many times slower."""
    with torch_threads(1):
        yield


@pytest.fixture
def tiny(tmp_path: Path) -> TinyRun:
    """5 training clips of 2500-4500 samples (2 batches of 2 per epoch), 2 validation clips."""
    train_list = write_corpus(tmp_path, [2500, 3000, 3500, 4000, 4500], "train")
    val_list = write_corpus(tmp_path, [3000, 5000], "val", seed=100)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(base_config(train_list, val_list)))
    return TinyRun(tmp_path, config_path, train_list, val_list)


def load(path: Path):
    from waveflow.checkpoint import load_checkpoint

    return load_checkpoint(path)


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def subprocess_env() -> dict[str, str]:
    """Environment for a child ``python -m waveflow``: this checkout first on the path, one thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"  # see _one_thread
    return env


PYTHON = sys.executable

"""The LJSpeech recipe: configs, argument handling, shellcheck, and the whole demo run (slow)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from tests.helpers import run_recipe
from waveflow import presets
from waveflow.config import ExperimentConfig

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "ljspeech"
RUN = RECIPE / "run.sh"


def _run(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return run_recipe(RUN, args, cwd, timeout)


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("waveglow", presets.waveglow_ljspeech()),
        ("small", presets.waveglow_small()),
        ("fast", presets.waveglow_fast()),
        ("debug", presets.waveglow_tiny()),
    ],
)
def test_configs_are_experiment_configs_with_the_preset_models(name, model):
    data = yaml.safe_load((RECIPE / "configs" / f"{name}.yaml").read_text())
    assert set(data) <= {"model", "mel", "data", "train"}
    config = ExperimentConfig.from_dict(data)
    assert config.model == model
    assert config.mel == presets.tacotron2_mel()


def test_waveglow_config_is_nvidias_training_setup():
    config = ExperimentConfig.from_dict(yaml.safe_load((RECIPE / "configs" / "waveglow.yaml").read_text()))
    train = config.train
    assert (train.batch_size, train.learning_rate, train.sigma, config.data.segment_length) == (
        12,
        1e-4,
        1.0,
        16000,
    )
    assert train.precision == "auto"


def test_usage_and_argument_errors(tmp_path: Path):
    assert _run(["--help"], tmp_path).returncode == 0
    bad = _run(["--no-such-option"], tmp_path)
    assert bad.returncode == 2 and "unknown option --no-such-option" in bad.stderr
    no_corpus = _run(["--stop-stage", "0", "--exp", "exp/x"], tmp_path)
    assert no_corpus.returncode == 2 and "stage 0 needs --ljspeech" in no_corpus.stderr
    no_run = _run(["--stage", "2", "--exp", "exp/x"], tmp_path)
    assert no_run.returncode != 0 and "no checkpoint in exp/x/train/checkpoints" in no_run.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck():
    scripts = sorted(RECIPE.parent.glob("*/run.sh"))
    assert len(scripts) >= 2  # ljspeech and speech_corpus
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.slow
def test_demo_runs_every_stage(tmp_path: Path):
    exp = tmp_path / "exp"
    result = _run(["--demo", "--exp", str(exp)], tmp_path, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    test_list = (exp / "data" / "test.txt").read_text().split()
    assert len(test_list) == 4
    assert (exp / "train" / "checkpoints" / "best.pt").is_file()
    wavs = sorted((exp / "wav" / "test").glob("*.wav"))
    assert [w.stem for w in wavs] == sorted(Path(p).stem for p in test_list)
    for wav in wavs:
        info = sf.info(wav)
        assert info.samplerate == 22050 and info.frames > 0
    assert (exp / "eval" / "metrics.csv").is_file()
    summary = json.loads((exp / "eval" / "summary.json").read_text())
    assert summary  # a parsed, non-empty summary

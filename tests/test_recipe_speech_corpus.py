"""The default model's recipe (recipes/speech_corpus): configs, arguments, every stage on a tiny
manifest corpus with a licence to leave out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf
import yaml

from tests.conftest import speech_like
from waveflow import presets
from waveflow.config import ExperimentConfig

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "speech_corpus"
RUN = RECIPE / "run.sh"


def _run(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, WAVEFLOW=f"{sys.executable} -m waveflow", THREADS="1")
    return subprocess.run(
        ["bash", str(RUN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_candidate_configs_share_the_compact_model_and_the_mel():
    for path in sorted((RECIPE / "configs").glob("*.yaml")):
        config = ExperimentConfig.from_dict(yaml.safe_load(path.read_text()))
        assert config.mel == presets.tacotron2_mel(), path.name
        if path.stem != "debug":
            assert config.model == presets.compact(), path.name


def test_usage_and_argument_errors(tmp_path: Path):
    assert _run(["--help"], tmp_path).returncode == 0
    bad = _run(["--no-such-option"], tmp_path)
    assert bad.returncode == 2 and "unknown option --no-such-option" in bad.stderr
    missing = _run([], tmp_path)
    assert missing.returncode == 2 and "--corpus DIR is required" in missing.stderr
    empty = _run(["--corpus", str(tmp_path / "none"), "--stop-stage", "0"], tmp_path)
    assert empty.returncode == 2 and "holds no corpus" in empty.stderr


def _manifest_corpus(root: Path) -> Path:
    """3 training clips (one GPL-2, to be left out) and 2 evaluation clips at 22.05 kHz."""
    rows = {
        "train": [("a", "CC0"), ("b", "GPL-2 (game)"), ("c", "BSD-like")],
        "eval": [("d", "GPL-2"), ("e", "CC0")],
    }
    for split, clips in rows.items():
        (root / split / "wavs").mkdir(parents=True)
        lines = []
        for i, (name, licence) in enumerate(clips):
            wav = root / split / "wavs" / f"{name}.wav"
            sf.write(wav, speech_like(22050, 22050, seed=i), 22050, subtype="PCM_16")
            lines.append(
                json.dumps(
                    {
                        "id": name,
                        "path": f"wavs/{name}.wav",
                        "licence": licence,
                        "source": "s",
                        "seconds": 1.0,
                    }
                )
            )
        (root / split / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_every_stage_on_a_tiny_corpus(tmp_path: Path):
    corpus = _manifest_corpus(tmp_path / "corpus")
    exp = tmp_path / "exp"
    config = RECIPE / "configs" / "debug.yaml"
    result = _run(
        ["--corpus", str(corpus), "--config", str(config), "--exp", str(exp)], tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    train_list = (exp / "data" / "train.txt").read_text().split()
    assert sorted(Path(p).name for p in train_list) == ["a.wav", "c.wav"]  # the GPL-2 clip is left out
    assert len((exp / "data" / "eval.txt").read_text().split()) == 2
    licences = json.loads((exp / "data" / "licences.json").read_text())
    assert licences["train"]["s | GPL-2 (game)"] == {"clips": 1, "minutes": 0.017, "kept": False}
    summary = json.loads((exp / "eval" / "summary.json").read_text())
    assert "waveflow" in json.dumps(summary) and (exp / "wav" / "eval" / "e.wav").is_file()
    from waveflow.checkpoint import load_checkpoint

    packaged = load_checkpoint(exp / "model.pt")
    assert packaged.training_state is None and packaged.weight_norm_folded
    assert packaged.metadata["weight_average"] is True and packaged.metadata["training_step"] == 4
